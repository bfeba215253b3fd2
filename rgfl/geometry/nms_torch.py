"""Exact greedy rotated NMS with the pairwise work on the device of its input (CUDA tensors).

Same semantics and the same keep list as the numba kernel in :mod:`rgfl.geometry.nms`: boxes are
visited by decreasing score (equal scores: lower index first), a visited box that is not suppressed
is kept and suppresses every later box of its label whose rotated IoU with it is strictly greater
than the threshold; the result lists the kept indices in visiting order.

How it stays bit-identical to the CPU kernel:

- The IoU of a pair is :func:`rgfl.geometry.iou_numba.intersection_area` replayed operation by
  operation in float64 torch (:func:`exact_pair_iou`): the same products, sums and divisions in
  the same order, each one an IEEE-rounded elementwise op (a torch op never fuses ``a * b + c``
  into an FMA across ops), so every device rounds alike. The kept box is always the first box of
  the pair, as in the kernel (the formula is not symmetric to the last bit).
- The cosine and sine of each angle are the only values that would differ: torch's ``cos`` (SLEEF
  on the CPU, CUDA's libdevice) and the C library's ``cos`` that numba calls disagree by one ulp
  on about 0.1% of angles. So the per-box table ``(cx, cy, w, h, cos, sin)`` and its enclosing
  boxes are made by the same numba function as the kernel's, on the CPU, from one copy of the
  [N, 5] boxes; only O(N) numbers travel, the O(pairs) work stays on the device.
- Pairs whose enclosing horizontal boxes do not touch are skipped, as the kernel skips them.

Why a suppression list and a CPU greedy pass: greedy NMS is sequential, and a loop over boxes on
the device would cost one host round trip per kept box. Instead all suppressing pairs ``(i, j)``
(``i`` visited before ``j``, same label, IoU > threshold) are found at once on the device, copied
in one transfer, and the greedy pass over them runs in a small numba loop (O(N + pairs)), the
approach of torchvision's CUDA NMS with a sparse list instead of a dense bit mask.

Groups: boxes are sorted by (label, visiting rank), so each label is one contiguous block and the
candidate pairs of a block of rows are a band of columns up to the end of its last label. Bands
are processed in chunks of bounded size (rows x columns), so memory stays bounded for any N.
No coordinate offsets are used to separate labels: an offset would change the rounding of
``cx_a - cx_b`` and break the bit-exactness.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from rgfl.geometry.iou_numba import box_hbb, prepare_boxes

__all__ = ["nms_rotated_torch", "exact_pair_iou"]

# Relative cross-axis size under which an edge counts as parallel (iou_numba._SNAP).
_SNAP = 1e-15
# Row x column entries of one band chunk (bool masks of this size, plus a few of its rows' data).
_BAND_ENTRIES = 1 << 24
# Candidate pairs whose exact IoU is computed at once: about 40 float64 [P, 4] temporaries.
_PAIRS_PER_BATCH = 1 << 19


def _clip_bounds(corner_x: Tensor, corner_y: Tensor, edge_x: Tensor, edge_y: Tensor, a: Tensor, b: Tensor):
    """``iou_numba._clip_edge`` on [P, 4] edges of A in B's frame (B = |x| <= a, |y| <= b, a, b [P, 1]).

    Returns A's Green term per edge [P, 4] and the bounds each edge puts on B's four sides, [P, 4]
    each: bottom (lo, hi), top (lo, hi), right (lo, hi), left (lo, hi).
    """
    inf = math.inf
    scale = edge_x.abs() + edge_y.abs()
    zero = torch.zeros((), dtype=edge_x.dtype, device=edge_x.device)
    one = torch.ones((), dtype=edge_x.dtype, device=edge_x.device)
    x_parallel = edge_x.abs() <= _SNAP * scale
    y_parallel = edge_y.abs() <= _SNAP * scale
    ex = torch.where(x_parallel, zero, edge_x)
    ey = torch.where(y_parallel, zero, edge_y)
    safe_ex = torch.where(x_parallel, one, ex)
    safe_ey = torch.where(y_parallel, one, ey)
    px, py = corner_x, corner_y
    t_left = (-a - px) / safe_ex
    t_right = (a - px) / safe_ex
    t_bottom = (-b - py) / safe_ey
    t_top = (b - py) / safe_ey

    x_inside = (-a <= px) & (px <= a)
    enter_x = torch.where(x_parallel, torch.where(x_inside, -inf, inf), torch.minimum(t_left, t_right))
    leave_x = torch.where(x_parallel, torch.where(x_inside, inf, -inf), torch.maximum(t_left, t_right))
    y_inside = (-b <= py) & (py <= b)
    enter_y = torch.where(y_parallel, torch.where(y_inside, -inf, inf), torch.minimum(t_bottom, t_top))
    leave_y = torch.where(y_parallel, torch.where(y_inside, inf, -inf), torch.maximum(t_bottom, t_top))
    enter = torch.maximum(zero, torch.maximum(enter_x, enter_y))
    leave = torch.minimum(one, torch.minimum(leave_x, leave_y))
    term = torch.where(leave > enter, (0.5 * (leave - enter)) * (px * ey - py * ex), zero)

    # Bottom (y = -b) and top (y = b) sides.
    crossing_bottom = px + ex * t_bottom
    crossing_top = px + ex * t_top
    up = ey > 0.0
    bottom_open = ex * (-b - py) > 0.0
    top_open = ex * (b - py) > 0.0
    bottom_lo = torch.where(y_parallel, torch.where(bottom_open, -inf, inf), torch.where(up, -inf, crossing_bottom))
    bottom_hi = torch.where(y_parallel, torch.where(bottom_open, inf, -inf), torch.where(up, crossing_bottom, inf))
    top_lo = torch.where(y_parallel, torch.where(top_open, -inf, inf), torch.where(up, -inf, crossing_top))
    top_hi = torch.where(y_parallel, torch.where(top_open, inf, -inf), torch.where(up, crossing_top, inf))
    # Right (x = a) and left (x = -a) sides.
    crossing_right = py + ey * t_right
    crossing_left = py + ey * t_left
    right_going = ex > 0.0
    right_open = -ey * (a - px) > 0.0
    left_open = -ey * (-a - px) > 0.0
    right_lo = torch.where(x_parallel, torch.where(right_open, -inf, inf), torch.where(right_going, crossing_right, -inf))
    right_hi = torch.where(x_parallel, torch.where(right_open, inf, -inf), torch.where(right_going, inf, crossing_right))
    left_lo = torch.where(x_parallel, torch.where(left_open, -inf, inf), torch.where(right_going, crossing_left, -inf))
    left_hi = torch.where(x_parallel, torch.where(left_open, inf, -inf), torch.where(right_going, inf, crossing_left))
    return term, (bottom_lo, bottom_hi, top_lo, top_hi, right_lo, right_hi, left_lo, left_hi)


def exact_pair_iou(first: Tensor, second: Tensor) -> Tensor:
    """IoU of aligned pairs of prepared boxes, bit-identical to ``iou_numba.pair_iou(first, i, second, j)``.

    Args:
        first, second: Tensor[P, 6] float64 ``(cx, cy, w, h, cos, sin)`` with ``w, h >= 0``
            (``iou_numba.prepare_boxes``), same device. ``first`` is the higher-ranked box.

    Returns:
        Tensor[P] float64 IoU in ``[0, 1]``.
    """
    cxa, cya, wa, ha, cos_a, sin_a = first.unbind(-1)
    cxb, cyb, wb, hb, cos_b, sin_b = second.unbind(-1)
    a = 0.5 * wb
    b = 0.5 * hb
    dx = cxa - cxb
    dy = cya - cyb
    px = dx * cos_b + dy * sin_b
    py = dy * cos_b - dx * sin_b
    cos_p = cos_a * cos_b + sin_a * sin_b
    sin_p = sin_a * cos_b - cos_a * sin_b
    ux = (0.5 * wa) * cos_p
    uy = (0.5 * wa) * sin_p
    vx = (-0.5 * ha) * sin_p
    vy = (0.5 * ha) * cos_p
    # The kernel's four edges, in its order: corners and edge vectors [P, 4].
    px_minus, px_plus, py_minus, py_plus = px - ux, px + ux, py - uy, py + uy
    corner_x = torch.stack([px_minus - vx, px_plus - vx, px_plus + vx, px_minus + vx], dim=-1)
    corner_y = torch.stack([py_minus - vy, py_plus - vy, py_plus + vy, py_minus + vy], dim=-1)
    edge_x = torch.stack([2.0 * ux, 2.0 * vx, -2.0 * ux, -2.0 * vx], dim=-1)
    edge_y = torch.stack([2.0 * uy, 2.0 * vy, -2.0 * uy, -2.0 * vy], dim=-1)
    a4, b4 = a.unsqueeze(-1), b.unsqueeze(-1)
    term, bounds = _clip_bounds(corner_x, corner_y, edge_x, edge_y, a4, b4)
    bottom_lo, bottom_hi, top_lo, top_hi, right_lo, right_hi, left_lo, left_hi = bounds

    # The kernel adds the four terms one after the other: keep that order (a sum() may not).
    total = term[:, 0] + term[:, 1]
    total = total + term[:, 2]
    total = total + term[:, 3]
    # max/min are exact in any order.
    bottom = torch.minimum(a, bottom_hi.amin(-1)) - torch.maximum(-a, bottom_lo.amax(-1))
    top = torch.minimum(a, top_hi.amin(-1)) - torch.maximum(-a, top_lo.amax(-1))
    right = torch.minimum(b, right_hi.amin(-1)) - torch.maximum(-b, right_lo.amax(-1))
    left = torch.minimum(b, left_hi.amin(-1)) - torch.maximum(-b, left_lo.amax(-1))
    sides_x = bottom.clamp(min=0.0) + top.clamp(min=0.0)
    sides_y = right.clamp(min=0.0) + left.clamp(min=0.0)
    total = total + 0.5 * (b * sides_x + a * sides_y)
    area_a = wa * ha
    area_b = wb * hb
    inter = torch.minimum(total.clamp(min=0.0), torch.minimum(area_a, area_b))
    denominator = area_a + area_b - inter
    positive = denominator > 0.0
    ratio = inter / torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, ratio.clamp(0.0, 1.0), torch.zeros_like(ratio))


@numba.njit(cache=True)
def _greedy_over_pairs(n, row_start, suppressed_column):
    """Greedy pass over sorted positions 0..n-1; row ``r`` suppresses ``suppressed_column[row_start[r]:row_start[r + 1]]``."""
    removed = np.zeros(n, dtype=np.bool_)
    kept = np.zeros(n, dtype=np.bool_)
    for r in range(n):
        if removed[r]:
            continue
        kept[r] = True
        for e in range(row_start[r], row_start[r + 1]):
            removed[suppressed_column[e]] = True
    return kept


def _band_chunks(group_end: np.ndarray) -> list[tuple[int, int, int]]:
    """Split sorted positions into row chunks ``(first, stop, column_stop)`` with
    ``(stop - first) * (column_stop - first) <= _BAND_ENTRIES`` (at least one row each)."""
    n = group_end.shape[0]
    chunks = []
    first = 0
    while first < n:
        low, high = first + 1, n  # the largest stop that fits, by bisection (cost grows with stop)
        while low < high:
            middle = (low + high + 1) // 2
            if (middle - first) * (int(group_end[middle - 1]) - first) <= _BAND_ENTRIES:
                low = middle
            else:
                high = middle - 1
        chunks.append((first, low, int(group_end[low - 1])))
        first = low
    return chunks


def _suppressing_pairs(table: Tensor, hbb: Tensor, group_end: np.ndarray, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """All pairs (r, c), r < c in the same group, with exact IoU(r, c) > threshold, sorted by r then c.

    Args:
        table: Tensor[N, 6] prepared boxes in sorted order (device). hbb: Tensor[N, 4] their
            enclosing boxes. group_end: numpy [N], the end of each position's group.
    """
    device = table.device
    group_end_device = torch.from_numpy(group_end).to(device)
    rows_out, cols_out = [], []
    for first, stop, column_stop in _band_chunks(group_end):
        rows = torch.arange(first, stop, device=device)
        cols = torch.arange(first, column_stop, device=device)
        # The kernel's skip test, negated: enclosing boxes that touch count as overlapping.
        h_rows, h_cols = hbb[first:stop], hbb[first:column_stop]
        candidate = (
            (cols[None, :] > rows[:, None])
            & (cols[None, :] < group_end_device[first:stop, None])
            & (h_cols[None, :, 0] <= h_rows[:, None, 2])
            & (h_cols[None, :, 2] >= h_rows[:, None, 0])
            & (h_cols[None, :, 1] <= h_rows[:, None, 3])
            & (h_cols[None, :, 3] >= h_rows[:, None, 1])
        )
        r, c = torch.nonzero(candidate, as_tuple=True)  # row-major: sorted by r, then c
        r, c = r + first, c + first
        for s in range(0, r.shape[0], _PAIRS_PER_BATCH):
            rr, cc = r[s : s + _PAIRS_PER_BATCH], c[s : s + _PAIRS_PER_BATCH]
            suppress = exact_pair_iou(table[rr], table[cc]) > iou_threshold
            rows_out.append(rr[suppress])
            cols_out.append(cc[suppress])
    if not rows_out:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    return torch.cat(rows_out), torch.cat(cols_out)


def nms_rotated_torch(boxes: Tensor, scores: Tensor, labels: Tensor | None, iou_threshold: float) -> Tensor:
    """Exact class-aware greedy rotated NMS on the device of ``boxes`` (same keep list as numba).

    Args:
        boxes: Tensor[N, 5] obb (any theta; computed in float64). scores: Tensor[N].
        labels: Tensor[N] integer labels (boxes suppress only their own label), or None (one label).
        iou_threshold: suppress IoU strictly greater than this.

    Returns:
        LongTensor[K] kept indices in visiting order (decreasing score, ties: lower index), on the
        device of ``boxes``.

    Raises:
        ValueError: a NaN/infinite box or score (named by index).
    """
    device = boxes.device
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    boxes64 = boxes.detach().to(torch.float64)
    scores64 = scores.detach().to(device=device, dtype=torch.float64)
    label_values = torch.zeros(n, dtype=torch.long, device=device) if labels is None else labels.detach().to(device=device, dtype=torch.long)
    # Visiting order: a stable sort of the negated scores (numpy's argsort(-s, kind="stable")).
    order = torch.sort(-scores64, stable=True).indices
    # Groups as contiguous blocks of the visiting order.
    by_group = torch.sort(label_values[order], stable=True).indices
    sorted_index = order[by_group]  # original index of each sorted position
    # One transfer of O(N) numbers: the sorted boxes and labels, and the scores for the check.
    packed = torch.cat([boxes64[sorted_index], scores64[sorted_index, None]], dim=1).cpu().numpy()
    sorted_labels = label_values[sorted_index].cpu().numpy()
    finite = np.isfinite(packed).all(axis=1)
    if not finite.all():
        # Name the first bad box by its original index, as the CPU path does.
        bad = int(sorted_index[torch.from_numpy(~finite).to(device)].min())
        box = boxes64[bad].tolist()
        raise ValueError(f"NMS got a non-finite box or score at index {bad}: box {box}, score {float(scores64[bad])}")
    box_array = np.ascontiguousarray(packed[:, :5])
    table_array = prepare_boxes(box_array)
    hbb_array = box_hbb(table_array)
    boundaries = np.flatnonzero(np.diff(sorted_labels)) + 1
    group_sizes = np.diff(np.r_[0, boundaries, n])
    group_end = np.repeat(np.r_[boundaries, n], group_sizes).astype(np.int64)
    table = torch.from_numpy(np.concatenate([table_array, hbb_array], axis=1)).to(device)
    rows, cols = _suppressing_pairs(table[:, :6], table[:, 6:], group_end, float(iou_threshold))
    # One transfer of the suppression list; the greedy pass on the CPU.
    rows_host, cols_host = rows.cpu().numpy(), cols.cpu().numpy()
    row_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows_host, minlength=n), out=row_start[1:])
    kept_sorted = _greedy_over_pairs(n, row_start, cols_host.astype(np.int64))
    # Back to visiting order: sorted position p is visiting rank by_group[p].
    visited = torch.zeros(n, dtype=torch.bool, device=device)
    visited[by_group] = torch.from_numpy(kept_sorted).to(device)
    return order[visited]
