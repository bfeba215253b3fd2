"""Exact greedy rotated NMS, class-agnostic and class-aware, for up to millions of boxes.

Semantics (rgfl's, chosen to be reproducible; reference notes section 8.2): boxes are visited by
decreasing score, equal scores by lower index first; a visited box that is not suppressed is kept
and suppresses every later box of the same class whose exact rotated IoU with it is strictly
greater than ``iou_threshold``. The result is the list of kept indices in visiting order.

Why a grid: greedy NMS only compares boxes that overlap, so boxes are bucketed into a uniform grid
of their enclosing horizontal boxes, and each kept box looks only at the buckets it covers. Memory
is O(N), work is proportional to the number of overlapping pairs instead of N^2. The greedy loop
is sequential and runs in a numba kernel on the CPU (float64 IoU, see ``iou_numba``). Tensors on
another device (CUDA) use :mod:`rgfl.geometry.nms_torch` instead: the same IoU, bit for bit, for
all overlapping pairs at once on that device, then the greedy pass over the suppressing pairs; the
keep list is the same.

Why groups: class-aware NMS over a batch (images x classes as labels) is many independent greedy
problems, so the labels are split into groups that run on all cores at once; the kept boxes are
then put back in the global visiting order. One label (class-agnostic NMS) runs as one problem.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

from rgfl.geometry.iou import BACKEND_ENV, _as_tensor
from rgfl.geometry.iou_numba import PARALLEL_LAUNCH_LOCK, box_hbb, pair_iou, prepare_boxes

__all__ = ["nms_rotated", "batched_nms_rotated"]

NMS_BACKENDS = ("auto", "numba", "torch", "mmcv")
# At most this many grid entries per box on average; the cell size doubles until it holds.
_ENTRIES_PER_BOX = 8


@numba.njit(cache=True)
def _grid_ranges(hbb, x0, y0, cell, nx, ny):
    n = hbb.shape[0]
    ranges = np.empty((n, 4), dtype=np.int64)
    total = 0
    for i in range(n):
        gx0 = min(max(int(math.floor((hbb[i, 0] - x0) / cell)), 0), nx - 1)
        gy0 = min(max(int(math.floor((hbb[i, 1] - y0) / cell)), 0), ny - 1)
        gx1 = min(max(int(math.floor((hbb[i, 2] - x0) / cell)), 0), nx - 1)
        gy1 = min(max(int(math.floor((hbb[i, 3] - y0) / cell)), 0), ny - 1)
        ranges[i, 0], ranges[i, 1], ranges[i, 2], ranges[i, 3] = gx0, gy0, gx1, gy1
        total += (gx1 - gx0 + 1) * (gy1 - gy0 + 1)
    return ranges, total


@numba.njit(cache=True)
def _greedy_nms(boxes, order, labels, iou_threshold, cell):
    """Greedy NMS over ``boxes`` [N, 5] float64 visited in ``order``; returns kept indices."""
    n = boxes.shape[0]
    boxes = prepare_boxes(boxes)
    hbb = box_hbb(boxes)
    x0, y0 = hbb[:, 0].min(), hbb[:, 1].min()
    x1, y1 = hbb[:, 2].max(), hbb[:, 3].max()
    # Grow the cells until the grid is small and boxes cover few cells each.
    while ((x1 - x0) / cell + 1.0) * ((y1 - y0) / cell + 1.0) > 4.0 * n + 1024.0:
        cell *= 2.0
    while True:
        nx = int((x1 - x0) / cell) + 1
        ny = int((y1 - y0) / cell) + 1
        ranges, total = _grid_ranges(hbb, x0, y0, cell, nx, ny)
        if total <= _ENTRIES_PER_BOX * n + 1024:
            break
        cell *= 2.0
    # Bucket lists in CSR layout: entries[start[c]:start[c + 1]] are the boxes touching cell c.
    start = np.zeros(nx * ny + 1, dtype=np.int64)
    for i in range(n):
        for gy in range(ranges[i, 1], ranges[i, 3] + 1):
            for gx in range(ranges[i, 0], ranges[i, 2] + 1):
                start[gy * nx + gx + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    entries = np.empty(total, dtype=np.int64)
    for i in range(n):
        for gy in range(ranges[i, 1], ranges[i, 3] + 1):
            for gx in range(ranges[i, 0], ranges[i, 2] + 1):
                c = gy * nx + gx
                entries[fill[c]] = i
                fill[c] += 1

    rank = np.empty(n, dtype=np.int64)
    for k in range(n):
        rank[order[k]] = k
    suppressed = np.zeros(n, dtype=np.bool_)
    seen_by = np.full(n, -1, dtype=np.int64)  # last kept box that looked at this one
    keep = np.empty(n, dtype=np.int64)
    kept = 0
    for k in range(n):
        i = order[k]
        if suppressed[i]:
            continue
        keep[kept] = i
        kept += 1
        for gy in range(ranges[i, 1], ranges[i, 3] + 1):
            for gx in range(ranges[i, 0], ranges[i, 2] + 1):
                c = gy * nx + gx
                for e in range(start[c], start[c + 1]):
                    j = entries[e]
                    if rank[j] <= k or suppressed[j] or seen_by[j] == i or labels[j] != labels[i]:
                        continue
                    seen_by[j] = i
                    if hbb[j, 0] > hbb[i, 2] or hbb[j, 2] < hbb[i, 0] or hbb[j, 1] > hbb[i, 3] or hbb[j, 3] < hbb[i, 1]:
                        continue
                    if pair_iou(boxes, i, boxes, j, False) > iou_threshold:
                        suppressed[j] = True
    return keep[:kept]


@numba.njit(parallel=True, cache=True)
def _greedy_nms_groups(boxes, grouped, group_start, iou_threshold, kept_flag):
    """Greedy NMS of each group independently, groups in parallel.

    ``grouped`` lists box indices group by group, each group in visiting order; group ``g`` is
    ``grouped[group_start[g]:group_start[g + 1]]``. Sets ``kept_flag[i]`` for every kept box.
    """
    for g in numba.prange(group_start.shape[0] - 1):
        members = grouped[group_start[g] : group_start[g + 1]]
        n = members.shape[0]
        local = np.empty((n, 5), dtype=np.float64)
        for k in range(n):
            local[k] = boxes[members[k]]
        cell = max(np.median(np.maximum(local[:, 2], local[:, 3])), 1e-6)
        keep = _greedy_nms(local, np.arange(n), np.zeros(n, dtype=np.int64), iou_threshold, cell)
        for k in keep:
            kept_flag[members[k]] = True


def _group_nms(boxes: np.ndarray, order: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware greedy NMS split by label; returns kept indices in the global visiting ``order``."""
    _, group_of, group_sizes = np.unique(labels[order], return_inverse=True, return_counts=True)
    # Largest groups first, so that the long sequential ones start while the short ones fill in;
    # the stable sort keeps each group's boxes in visiting order.
    size_rank = np.empty_like(group_sizes)
    size_rank[np.argsort(-group_sizes, kind="stable")] = np.arange(group_sizes.shape[0])
    grouped = order[np.argsort(size_rank[group_of], kind="stable")]
    group_start = np.r_[0, np.cumsum(np.sort(group_sizes)[::-1])].astype(np.int64)
    kept_flag = np.zeros(boxes.shape[0], dtype=np.bool_)
    with PARALLEL_LAUNCH_LOCK:
        _greedy_nms_groups(boxes, grouped, group_start, iou_threshold, kept_flag)
    return order[kept_flag[order]]


def _resolve_nms_backend(backend: str, device: torch.device) -> str:
    import os

    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
        if backend == "torch":  # the IoU setting (differentiable path); NMS picks by device
            backend = "auto"
    if backend not in NMS_BACKENDS:
        raise ValueError(f"unknown NMS backend {backend!r} (argument or {BACKEND_ENV}); expected one of {', '.join(NMS_BACKENDS)}")
    if backend == "auto":
        # Both exact and equal. The numba kernel is also the faster one for CUDA input: on an H200
        # at the 3000-candidate stress (benchmarks/infer.py --post-only, batch 8) the device path
        # took 18.8 / 69.3 ms per batch at 1024 / 512 px against 8.6 / 15.3 ms for the copy to the
        # host and the kernel, because the greedy kernel computes IoUs only for kept boxes while
        # the device path computes every touching pair. backend="torch" keeps it on the device.
        return "numba"
    return backend


def _validate(boxes: Tensor, scores: Tensor, labels: Tensor | None) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"NMS expects boxes [N, 5], got shape {tuple(boxes.shape)}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"NMS expects scores [N] with N = {boxes.shape[0]}, got shape {tuple(scores.shape)}")
    if labels is not None and labels.shape != (boxes.shape[0],):
        raise ValueError(f"NMS expects labels [N] with N = {boxes.shape[0]}, got shape {tuple(labels.shape)}")


def _nms(boxes: Any, scores: Any, labels: Any, iou_threshold: float, backend: str) -> Any:
    boxes, from_numpy = _as_tensor(boxes)
    scores, _ = _as_tensor(scores)
    label_tensor = None
    if labels is not None:
        label_tensor = labels if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels))
    _validate(boxes, scores, label_tensor)
    device = boxes.device
    chosen = _resolve_nms_backend(backend, device)
    if chosen == "torch":
        from rgfl.geometry.nms_torch import nms_rotated_torch

        keep = nms_rotated_torch(boxes, scores, label_tensor, float(iou_threshold))
        return keep.cpu().numpy() if from_numpy else keep
    if chosen == "mmcv":
        from rgfl.geometry import mmcv_backend

        keep = mmcv_backend.nms_rotated_mmcv(boxes, scores, iou_threshold, label_tensor)
        return keep.cpu().numpy() if from_numpy else keep
    box_array = np.ascontiguousarray(boxes.detach().to("cpu", torch.float64).numpy())
    score_array = scores.detach().to("cpu", torch.float64).numpy()
    if not (np.isfinite(box_array).all() and np.isfinite(score_array).all()):
        bad = int(np.nonzero(~(np.isfinite(box_array).all(1) & np.isfinite(score_array)))[0][0])
        raise ValueError(f"NMS got a non-finite box or score at index {bad}: box {box_array[bad].tolist()}, score {score_array[bad]}")
    n = box_array.shape[0]
    if n == 0:
        keep_array = np.zeros(0, dtype=np.int64)
    else:
        # Decreasing score, ties by lower index: a stable sort of the negated scores.
        order = np.argsort(-score_array, kind="stable").astype(np.int64)
        label_array = np.zeros(n, dtype=np.int64) if label_tensor is None else label_tensor.detach().cpu().numpy().astype(np.int64)
        keep_array = _group_nms(box_array, order, label_array, float(iou_threshold))
    if from_numpy:
        return keep_array
    return torch.from_numpy(keep_array).to(device)


def nms_rotated(boxes: Any, scores: Any, iou_threshold: float, backend: str = "auto") -> Any:
    """Exact greedy NMS of rotated boxes.

    Args:
        boxes: Tensor[N, 5] obb ``(cx, cy, w, h, theta)`` (any theta), any device, or numpy.
        scores: Tensor[N].
        iou_threshold: a box is suppressed when its IoU with a kept, higher-ranked box is
            strictly greater than this.
        backend: ``"auto"`` (the numba kernel for every device, measured faster than the torch
            path on an H200 too; ``RGFL_GEOMETRY_BACKEND=mmcv`` switches to mmcv),
            ``"numba"``, ``"torch"`` (:mod:`rgfl.geometry.nms_torch`: pairwise IoU on the input's
            device, same keep list as numba) or ``"mmcv"`` (mmcv's kernel: suppresses at
            IoU >= threshold on CPU, ties unordered).

    Returns:
        LongTensor[K] indices of kept boxes, by decreasing score (ties: lower index first), on
        the device of ``boxes`` (numpy int64 for numpy input).

    Raises:
        ValueError: wrong shapes, or a NaN/infinite box or score.
    """
    return _nms(boxes, scores, None, iou_threshold, backend)


def batched_nms_rotated(boxes: Any, scores: Any, labels: Any, iou_threshold: float, backend: str = "auto") -> Any:
    """Class-aware exact greedy NMS: boxes suppress only boxes with the same label.

    Args:
        boxes: Tensor[N, 5] obb. scores: Tensor[N]. labels: Tensor[N] integer class indices.
        iou_threshold, backend: as in :func:`nms_rotated`.

    Returns:
        LongTensor[K] kept indices of all classes together, by decreasing score (ties: lower index).
    """
    return _nms(boxes, scores, labels, iou_threshold, backend)
