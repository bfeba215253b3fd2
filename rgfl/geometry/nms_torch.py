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


def _clip_terms(corner_x: Tensor, corner_y: Tensor, edge_x: Tensor, edge_y: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``iou_numba._clip_edge`` on [P, 4] edges of A in B's frame (B = |x| <= a, |y| <= b, a, b [P, 1]).

    Returns A's Green term per edge [P, 4] and the lengths [P] of B's bottom, top, right and left
    sides that lie inside A, as the kernel gets them from the interval bounds of the four edges.
    Fewer ops than a literal replay, same values: the kernel's bound of a side is the max (or min)
    over the edges of either a crossing point or +-inf, and max/min round nothing; an edge parallel
    to a side whose line leaves the side outside makes the interval empty (length 0), one that
    leaves it inside bounds nothing. Likewise a parallel edge outside B's slab clips to nothing.
    """
    inf = math.inf
    scale = edge_x.abs() + edge_y.abs()
    x_parallel = edge_x.abs() <= _SNAP * scale
    y_parallel = edge_y.abs() <= _SNAP * scale
    ex = edge_x.masked_fill(x_parallel, 0.0)
    ey = edge_y.masked_fill(y_parallel, 0.0)
    # Parallel edges divide by 1 instead of 0; the quotient is unused there.
    safe_ex = ex.masked_fill(x_parallel, 1.0)
    safe_ey = ey.masked_fill(y_parallel, 1.0)
    px, py = corner_x, corner_y
    t_left = (-a - px) / safe_ex
    t_right = (a - px) / safe_ex
    t_bottom = (-b - py) / safe_ey
    t_top = (b - py) / safe_ey

    # Part of A's edge inside the closed slab (Liang-Barsky).
    outside = (x_parallel & ((px < -a) | (px > a))) | (y_parallel & ((py < -b) | (py > b)))
    enter = torch.maximum(torch.minimum(t_left, t_right).masked_fill(x_parallel, -inf), torch.minimum(t_bottom, t_top).masked_fill(y_parallel, -inf))
    leave = torch.minimum(torch.maximum(t_left, t_right).masked_fill(x_parallel, inf), torch.maximum(t_bottom, t_top).masked_fill(y_parallel, inf))
    enter = enter.clamp(min=0.0)
    leave = leave.clamp(max=1.0)
    inside = (leave > enter) & ~outside
    term = ((0.5 * (leave - enter)) * (px * ey - py * ex)).masked_fill(~inside, 0.0)

    def side(crossing: Tensor, upper: Tensor, lower: Tensor, closed: Tensor, half: Tensor) -> Tensor:
        hi = torch.minimum(half.squeeze(-1), crossing.masked_fill(~upper, inf).amin(-1))
        lo = torch.maximum(-half.squeeze(-1), crossing.masked_fill(~lower, -inf).amax(-1))
        return (hi - lo).clamp(min=0.0).masked_fill(closed.any(-1), 0.0)

    # Bottom (y = -b) and top (y = b) sides run along x; an edge going up (ey > 0) bounds them from
    # above. A parallel edge (ey == 0) keeps a side only if ex * (side - py) > 0.
    up, down = ey > 0.0, ey < 0.0
    bottom = side(px + ex * t_bottom, up, down, y_parallel & ~(ex * (-b - py) > 0.0), a)
    top = side(px + ex * t_top, up, down, y_parallel & ~(ex * (b - py) > 0.0), a)
    # Right (x = a) and left (x = -a) sides run along y; an edge going left (ex < 0) bounds them
    # from above. A parallel edge (ex == 0) keeps a side only if -ey * (side - px) > 0.
    going_left, going_right = ex < 0.0, ex > 0.0
    right = side(py + ey * t_right, going_left, going_right, x_parallel & ~(-ey * (a - px) > 0.0), b)
    left = side(py + ey * t_left, going_left, going_right, x_parallel & ~(-ey * (-a - px) > 0.0), b)
    return term, [bottom, top, right, left]


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
    term, (bottom, top, right, left) = _clip_terms(corner_x, corner_y, edge_x, edge_y, a.unsqueeze(-1), b.unsqueeze(-1))
    # The kernel adds the four terms one after the other: keep that order (a sum() may not).
    total = term[:, 0] + term[:, 1]
    total = total + term[:, 2]
    total = total + term[:, 3]
    sides_x = bottom + top
    sides_y = right + left
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


def _band_chunks(group_end: np.ndarray, budget: int) -> list[tuple[int, int, int]]:
    """Split sorted positions into row chunks ``(first, stop, column_stop)`` with
    ``(stop - first) * (column_stop - first) <= budget`` (at least one row each)."""
    n = group_end.shape[0]
    chunks = []
    first = 0
    while first < n:
        low, high = first + 1, n  # the largest stop that fits, by bisection (cost grows with stop)
        while low < high:
            middle = (low + high + 1) // 2
            if (middle - first) * (int(group_end[middle - 1]) - first) <= budget:
                low = middle
            else:
                high = middle - 1
        chunks.append((first, low, int(group_end[low - 1])))
        first = low
    return chunks


def _budgets(device: torch.device) -> tuple[int, int]:
    """(band entries, pairs per IoU batch): larger on a GPU, where each op launch costs more than
    its memory (2^21 pairs peak at about 2 GB of float64 temporaries); smaller on the CPU, where
    the torch path only runs when asked for."""
    if device.type == "cpu":
        return _BAND_ENTRIES, _PAIRS_PER_BATCH
    return _BAND_ENTRIES * 4, _PAIRS_PER_BATCH * 4


def _candidate_pairs(hbb: Tensor, group_end: np.ndarray, band_entries: int) -> tuple[Tensor, Tensor]:
    """Pairs (r, c), r < c in the same group, whose enclosing boxes touch; sorted by r, then c.

    Args:
        hbb: Tensor[N, 4] enclosing boxes in sorted order. group_end: numpy [N], the end of
            each position's group.
    """
    device = hbb.device
    group_end_device = torch.from_numpy(group_end).to(device)
    rows_out, cols_out = [], []
    for first, stop, column_stop in _band_chunks(group_end, band_entries):
        rows = torch.arange(first, stop, device=device)
        cols = torch.arange(first, column_stop, device=device)
        # The kernel's skip test, negated: enclosing boxes that touch count as overlapping.
        h_rows, h_cols = hbb[first:stop, None, :], hbb[None, first:column_stop, :]
        candidate = (
            (cols[None, :] > rows[:, None])
            & (cols[None, :] < group_end_device[first:stop, None])
            & (h_cols[..., 0] <= h_rows[..., 2])
            & (h_cols[..., 2] >= h_rows[..., 0])
            & (h_cols[..., 1] <= h_rows[..., 3])
            & (h_cols[..., 3] >= h_rows[..., 1])
        )
        r, c = torch.nonzero(candidate, as_tuple=True)  # row-major: sorted by r, then c
        rows_out.append(r + first)
        cols_out.append(c + first)
    return torch.cat(rows_out), torch.cat(cols_out)


def _suppressing_pairs(table: Tensor, hbb: Tensor, group_end: np.ndarray, iou_threshold: float) -> tuple[Tensor, Tensor]:
    """All pairs (r, c), r < c in the same group, with exact IoU(r, c) > threshold, sorted by r then c.

    Args:
        table: Tensor[N, 6] prepared boxes in sorted order (device). hbb: Tensor[N, 4] their
            enclosing boxes. group_end: numpy [N], the end of each position's group.
    """
    band_entries, pairs_per_batch = _budgets(table.device)
    r, c = _candidate_pairs(hbb, group_end, band_entries)
    rows_out, cols_out = [], []
    for s in range(0, r.shape[0], pairs_per_batch):
        rr, cc = r[s : s + pairs_per_batch], c[s : s + pairs_per_batch]
        suppress = exact_pair_iou(table[rr], table[cc]) > iou_threshold
        rows_out.append(rr[suppress])
        cols_out.append(cc[suppress])
    if not rows_out:
        return r, c
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
    # "+ 0.0" turns -0.0 into 0.0: numpy ranks them equal, a radix sort (CUDA) by their bits.
    order = torch.sort(-(scores64 + 0.0), stable=True).indices
    # Groups as contiguous blocks of the visiting order.
    by_group = torch.sort(label_values[order], stable=True).indices
    sorted_index = order[by_group]  # original index of each sorted position
    # One transfer of O(N) numbers: sorted boxes, scores (for the check) and group changes.
    sorted_labels = label_values[sorted_index]
    new_group = torch.ones(n, dtype=torch.float64, device=device)
    new_group[1:] = (sorted_labels[1:] != sorted_labels[:-1]).to(torch.float64)
    packed = torch.cat([boxes64[sorted_index], scores64[sorted_index, None], new_group[:, None]], dim=1).cpu().numpy()
    finite = np.isfinite(packed[:, :6]).all(axis=1)
    if not finite.all():
        # Name the first bad box by its original index, as the CPU path does.
        bad = int(sorted_index[torch.from_numpy(~finite).to(device)].min())
        raise ValueError(f"NMS got a non-finite box or score at index {bad}: box {boxes64[bad].tolist()}, score {float(scores64[bad])}")
    table_array = prepare_boxes(np.ascontiguousarray(packed[:, :5]))
    hbb_array = box_hbb(table_array)
    starts = np.flatnonzero(packed[:, 6])
    group_end = np.repeat(np.r_[starts[1:], n], np.diff(np.r_[starts, n])).astype(np.int64)
    table = torch.from_numpy(np.concatenate([table_array, hbb_array], axis=1)).to(device)
    rows, cols = _suppressing_pairs(table[:, :6], table[:, 6:], group_end, float(iou_threshold))
    # The suppression list as CSR by row, made on the device; one transfer; the greedy pass on the CPU.
    row_start = torch.searchsorted(rows, torch.arange(n + 1, device=device))
    row_start_host, cols_host = row_start.cpu().numpy(), cols.to(torch.int32).cpu().numpy()
    kept_sorted = _greedy_over_pairs(n, row_start_host, cols_host)
    # Back to visiting order: sorted position p is visiting rank by_group[p].
    visited = torch.zeros(n, dtype=torch.bool, device=device)
    visited[by_group] = torch.from_numpy(kept_sorted).to(device)
    return order[visited]
