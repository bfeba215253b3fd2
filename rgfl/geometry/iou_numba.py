"""Numba CPU kernels for rotated-box intersection: the bulk, non-differentiable path.

Same formulation as :mod:`rgfl.geometry.iou` (Green's theorem over clipped edges, see there),
written per pair in float64 whatever the input dtype, so float32 input gets float64 accuracy.
Pairwise IoU skips pairs whose enclosing horizontal boxes do not touch before doing exact work.
``fastmath`` stays off: reassociation would break the shared-crossing trick that makes the result
exact for nearly parallel edges.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = ["box_iou_rotated_numba", "intersection_area", "prepare_boxes", "box_hbb", "pair_iou", "PARALLEL_LAUNCH_LOCK"]

# One parallel kernel at a time per process: the fork-safe workqueue threading layer (see
# rgfl/geometry/__init__.py) aborts on concurrent launches from several Python threads.
PARALLEL_LAUNCH_LOCK = threading.Lock()

_INF = np.inf
# Relative cross-axis size under which an edge counts as parallel (see iou._snap_tolerance).
_SNAP = 1e-15


@numba.njit(cache=True, inline="always")
def _clip_edge(px, py, ex, ey, a, b):
    """One edge of A (start ``p``, vector ``e``, in B's frame) against B = |x|<=a, |y|<=b.

    Returns A's Green term for its piece inside B, and the interval bounds that this edge puts on
    each of B's four sides (bottom, top along x; right, left along y).
    """
    scale = abs(ex) + abs(ey)
    if abs(ex) <= _SNAP * scale:
        ex = 0.0
    if abs(ey) <= _SNAP * scale:
        ey = 0.0
    t_left = 0.0
    t_right = 0.0
    t_bottom = 0.0
    t_top = 0.0
    if ex == 0.0:
        if -a <= px and px <= a:
            enter_x, leave_x = -_INF, _INF
        else:
            enter_x, leave_x = _INF, -_INF
    else:
        t_left = (-a - px) / ex
        t_right = (a - px) / ex
        enter_x, leave_x = min(t_left, t_right), max(t_left, t_right)
    if ey == 0.0:
        if -b <= py and py <= b:
            enter_y, leave_y = -_INF, _INF
        else:
            enter_y, leave_y = _INF, -_INF
    else:
        t_bottom = (-b - py) / ey
        t_top = (b - py) / ey
        enter_y, leave_y = min(t_bottom, t_top), max(t_bottom, t_top)
    enter = max(0.0, max(enter_x, enter_y))
    leave = min(1.0, min(leave_x, leave_y))
    term = 0.0
    if leave > enter:
        term = 0.5 * (leave - enter) * (px * ey - py * ex)

    # Bottom (y=-b) and top (y=b) sides: ey * (x - px) <= ex * (c - py).
    if ey == 0.0:
        bottom_lo, bottom_hi = (-_INF, _INF) if ex * (-b - py) > 0.0 else (_INF, -_INF)
        top_lo, top_hi = (-_INF, _INF) if ex * (b - py) > 0.0 else (_INF, -_INF)
    elif ey > 0.0:
        bottom_lo, bottom_hi = -_INF, px + ex * t_bottom
        top_lo, top_hi = -_INF, px + ex * t_top
    else:
        bottom_lo, bottom_hi = px + ex * t_bottom, _INF
        top_lo, top_hi = px + ex * t_top, _INF
    # Right (x=a) and left (x=-a) sides: ex * (y - py) >= ey * (c - px).
    if ex == 0.0:
        right_lo, right_hi = (-_INF, _INF) if -ey * (a - px) > 0.0 else (_INF, -_INF)
        left_lo, left_hi = (-_INF, _INF) if -ey * (-a - px) > 0.0 else (_INF, -_INF)
    elif ex > 0.0:
        right_lo, right_hi = py + ey * t_right, _INF
        left_lo, left_hi = py + ey * t_left, _INF
    else:
        right_lo, right_hi = -_INF, py + ey * t_right
        left_lo, left_hi = -_INF, py + ey * t_left
    return term, bottom_lo, bottom_hi, top_lo, top_hi, right_lo, right_hi, left_lo, left_hi


@numba.njit(cache=True)
def intersection_area(cxa, cya, wa, ha, cos_a, sin_a, cxb, cyb, wb, hb, cos_b, sin_b):
    """Exact intersection area of two rotated boxes given by center, sides (>= 0) and the cosine
    and sine of their angles (float64 scalars). Taking cos/sin precomputed per box saves the four
    transcendental calls per pair that dominate the cost otherwise."""
    a = 0.5 * wb
    b = 0.5 * hb
    dx = cxa - cxb
    dy = cya - cyb
    px = dx * cos_b + dy * sin_b
    py = dy * cos_b - dx * sin_b
    # cos and sin of theta_a - theta_b; exactly (1, 0) up to rounding for equal angles.
    cos_p = cos_a * cos_b + sin_a * sin_b
    sin_p = sin_a * cos_b - cos_a * sin_b
    ux = 0.5 * wa * cos_p
    uy = 0.5 * wa * sin_p
    vx = -0.5 * ha * sin_p
    vy = 0.5 * ha * cos_p

    total = 0.0
    bottom_lo, bottom_hi, top_lo, top_hi = -a, a, -a, a
    right_lo, right_hi, left_lo, left_hi = -b, b, -b, b
    for k in range(4):
        if k == 0:
            cx, cy, ex, ey = px - ux - vx, py - uy - vy, 2.0 * ux, 2.0 * uy
        elif k == 1:
            cx, cy, ex, ey = px + ux - vx, py + uy - vy, 2.0 * vx, 2.0 * vy
        elif k == 2:
            cx, cy, ex, ey = px + ux + vx, py + uy + vy, -2.0 * ux, -2.0 * uy
        else:
            cx, cy, ex, ey = px - ux + vx, py - uy + vy, -2.0 * vx, -2.0 * vy
        term, blo, bhi, tlo, thi, rlo, rhi, llo, lhi = _clip_edge(cx, cy, ex, ey, a, b)
        total += term
        bottom_lo = max(bottom_lo, blo)
        bottom_hi = min(bottom_hi, bhi)
        top_lo = max(top_lo, tlo)
        top_hi = min(top_hi, thi)
        right_lo = max(right_lo, rlo)
        right_hi = min(right_hi, rhi)
        left_lo = max(left_lo, llo)
        left_hi = min(left_hi, lhi)
    sides_x = max(0.0, bottom_hi - bottom_lo) + max(0.0, top_hi - top_lo)
    sides_y = max(0.0, right_hi - right_lo) + max(0.0, left_hi - left_lo)
    total += 0.5 * (b * sides_x + a * sides_y)
    limit = min(wa * ha, wb * hb)
    return min(max(total, 0.0), limit)


@numba.njit(cache=True, inline="always")
def _ratio(inter, area1, area2, iof):
    denominator = area1 if iof else area1 + area2 - inter
    if denominator <= 0.0:
        return 0.0
    return min(max(inter / denominator, 0.0), 1.0)


@numba.njit(cache=True)
def prepare_boxes(boxes):
    """[N, 5] float64 obb -> [N, 6] ``(cx, cy, w, h, cos, sin)`` with negative sides set to 0."""
    n = boxes.shape[0]
    out = np.empty((n, 6), dtype=np.float64)
    for i in range(n):
        out[i, 0] = boxes[i, 0]
        out[i, 1] = boxes[i, 1]
        out[i, 2] = max(boxes[i, 2], 0.0)
        out[i, 3] = max(boxes[i, 3], 0.0)
        out[i, 4] = math.cos(boxes[i, 4])
        out[i, 5] = math.sin(boxes[i, 4])
    return out


@numba.njit(cache=True)
def box_hbb(prepared):
    """[N, 6] prepared boxes -> [N, 4] float64 xyxy enclosing boxes."""
    n = prepared.shape[0]
    out = np.empty((n, 4), dtype=np.float64)
    for i in range(n):
        c = abs(prepared[i, 4])
        s = abs(prepared[i, 5])
        hx = 0.5 * (prepared[i, 2] * c + prepared[i, 3] * s)
        hy = 0.5 * (prepared[i, 2] * s + prepared[i, 3] * c)
        out[i, 0] = prepared[i, 0] - hx
        out[i, 1] = prepared[i, 1] - hy
        out[i, 2] = prepared[i, 0] + hx
        out[i, 3] = prepared[i, 1] + hy
    return out


@numba.njit(cache=True, inline="always")
def pair_iou(boxes1, i, boxes2, j, iof):
    """IoU (or IoF) of prepared boxes ``boxes1[i]`` and ``boxes2[j]``."""
    inter = intersection_area(
        boxes1[i, 0], boxes1[i, 1], boxes1[i, 2], boxes1[i, 3], boxes1[i, 4], boxes1[i, 5],
        boxes2[j, 0], boxes2[j, 1], boxes2[j, 2], boxes2[j, 3], boxes2[j, 4], boxes2[j, 5],
    )  # fmt: skip
    return _ratio(inter, boxes1[i, 2] * boxes1[i, 3], boxes2[j, 2] * boxes2[j, 3], iof)


@numba.njit(cache=True, parallel=True)
def _aligned_kernel(boxes1, boxes2, iof, out):
    """Raw [N, 5] boxes: each pair is used once, so its trigonometry is done in the parallel loop."""
    for i in numba.prange(boxes1.shape[0]):
        wa, ha = max(boxes1[i, 2], 0.0), max(boxes1[i, 3], 0.0)
        wb, hb = max(boxes2[i, 2], 0.0), max(boxes2[i, 3], 0.0)
        inter = intersection_area(
            boxes1[i, 0], boxes1[i, 1], wa, ha, math.cos(boxes1[i, 4]), math.sin(boxes1[i, 4]),
            boxes2[i, 0], boxes2[i, 1], wb, hb, math.cos(boxes2[i, 4]), math.sin(boxes2[i, 4]),
        )  # fmt: skip
        out[i] = _ratio(inter, wa * ha, wb * hb, iof)


@numba.njit(cache=True)
def _sweep_order(boxes2):
    """Enclosing boxes of ``boxes2`` sorted by their x center, the permutation, and the largest
    half width: the candidates of a query x-range are a contiguous run of this order."""
    hbb2 = box_hbb(boxes2)
    centers = 0.5 * (hbb2[:, 0] + hbb2[:, 2])
    order = np.argsort(centers)
    half_width = 0.0
    for j in range(hbb2.shape[0]):
        half_width = max(half_width, 0.5 * (hbb2[j, 2] - hbb2[j, 0]))
    return hbb2[order], centers[order], order, half_width


@numba.njit(cache=True, parallel=True)
def _pairwise_kernel(boxes1, boxes2, sweep, iof, row_start, out):
    """IoU of boxes1[row_start : row_start + len(out)] with all of boxes2 into ``out`` [rows, M]."""
    hbb2, centers2, order2, half_width = sweep
    hbb1 = box_hbb(boxes1[row_start : row_start + out.shape[0]])
    for r in numba.prange(out.shape[0]):
        i = row_start + r
        out[r, :] = 0.0
        x0, y0, x1, y1 = hbb1[r, 0], hbb1[r, 1], hbb1[r, 2], hbb1[r, 3]
        first = np.searchsorted(centers2, x0 - half_width, side="left")
        last = np.searchsorted(centers2, x1 + half_width, side="right")
        for k in range(first, last):
            if hbb2[k, 0] > x1 or hbb2[k, 2] < x0 or hbb2[k, 1] > y1 or hbb2[k, 3] < y0:
                continue
            j = order2[k]
            out[r, j] = pair_iou(boxes1, i, boxes2, j, iof)


def _float64_array(boxes: Tensor) -> np.ndarray:
    return np.ascontiguousarray(boxes.detach().to("cpu", torch.float64).numpy())


def _prepared(boxes: Tensor) -> np.ndarray:
    return prepare_boxes(_float64_array(boxes))


def box_iou_rotated_numba(boxes1: Tensor, boxes2: Tensor, mode: str = "iou", aligned: bool = False) -> Tensor:
    """Exact rotated IoU on the CPU (float64 inside), no gradient.

    Args:
        boxes1: Tensor[N, 5] obb. boxes2: Tensor[M, 5] obb (``M == N`` when aligned).

    Returns:
        Tensor[N, M] or Tensor[N], dtype and device of ``boxes1``.
    """
    iof = mode == "iof"
    if aligned:
        b1, b2 = _float64_array(boxes1), _float64_array(boxes2)
        # Always a float64 output here: one signature keeps numba's first compile short.
        out = np.zeros(b1.shape[0], dtype=np.float64)
        if b1.shape[0]:
            with PARALLEL_LAUNCH_LOCK:
                _aligned_kernel(b1, b2, iof, out)
        return torch.from_numpy(out).to(device=boxes1.device, dtype=boxes1.dtype)
    # Pairwise: the kernel writes every entry of an output in the final dtype (float32 or
    # float64), so 20000 x 20000 float32 needs nothing beyond its 1.6 GB output.
    b1, b2 = _prepared(boxes1), _prepared(boxes2)
    n, m = b1.shape[0], b2.shape[0]
    result = np.empty((n, m), dtype=np.float64 if boxes1.dtype == torch.float64 else np.float32)
    if n and m:
        sweep = _sweep_order(b2)
        with PARALLEL_LAUNCH_LOCK:
            _pairwise_kernel(b1, b2, sweep, iof, 0, result)
    return torch.from_numpy(result).to(device=boxes1.device, dtype=boxes1.dtype)
