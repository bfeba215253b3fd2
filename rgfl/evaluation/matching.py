"""Detection-to-ground-truth matching of the official DOTA Task1 evaluation (numba kernels).

The official script visits detections in score order and, for each one, computes the polygon IoU
with every ground truth of the same class in the same image that survives a horizontal-box
pre-filter, then takes the maximum and its (first) argmax. Neither the maximum nor the argmax
depend on the IoU threshold or on earlier matches, so :func:`best_overlaps` computes them once per
detection (in parallel), and :func:`greedy_match` replays the sequential greedy decision for one
threshold from those two numbers. Together they reproduce the official TP/FP sequence exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from rgfl.evaluation.polyiou import _BUF, _iou_poly_into

__all__ = ["best_overlaps", "greedy_match", "polygon_hbbs"]


def polygon_hbbs(polygons: np.ndarray) -> np.ndarray:
    """Horizontal boxes ``(xmin, ymin, xmax, ymax)`` [N, 4] of polygons [N, 8] (float64)."""
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    return np.stack([xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)], axis=1)


@njit(cache=True, parallel=True, error_model="numpy")
def _best_overlaps(
    det_polygons: np.ndarray,
    det_hbbs: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    gt_polygons: np.ndarray,
    gt_hbbs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    n = det_polygons.shape[0]
    ovmax = np.full(n, -np.inf)
    jmax = np.full(n, -1, dtype=np.int64)
    chunk = 1024
    for c in prange((n + chunk - 1) // chunk):
        # Scratch buffers once per chunk of detections, not per detection.
        ax = np.empty(8)
        ay = np.empty(8)
        bx = np.empty(8)
        by = np.empty(8)
        px = np.zeros(_BUF)
        py = np.zeros(_BUF)
        qx = np.zeros(_BUF)
        qy = np.zeros(_BUF)
        for d in range(c * chunk, min((c + 1) * chunk, n)):
            bxmin = det_hbbs[d, 0]
            bymin = det_hbbs[d, 1]
            bxmax = det_hbbs[d, 2]
            bymax = det_hbbs[d, 3]
            det_hbb_area = (bxmax - bxmin + 1.0) * (bymax - bymin + 1.0)
            have = False
            have_nan = False
            best = -np.inf
            best_j = -1
            for g in range(gt_start[d], gt_end[d]):
                # Official pre-filter: horizontal-box IoU with the "+1" pixel convention must be > 0.
                iw = max(min(gt_hbbs[g, 2], bxmax) - max(gt_hbbs[g, 0], bxmin) + 1.0, 0.0)
                ih = max(min(gt_hbbs[g, 3], bymax) - max(gt_hbbs[g, 1], bymin) + 1.0, 0.0)
                inters = iw * ih
                uni = (
                    det_hbb_area
                    + (gt_hbbs[g, 2] - gt_hbbs[g, 0] + 1.0) * (gt_hbbs[g, 3] - gt_hbbs[g, 1] + 1.0)
                    - inters
                )
                if not (inters / uni > 0):
                    continue
                value = _iou_poly_into(gt_polygons[g], det_polygons[d], ax, ay, bx, by, px, py, qx, qy)
                # np.max / np.argmax semantics: the first NaN wins both; otherwise the first maximum.
                if not have:
                    have = True
                    best = value
                    best_j = g
                    have_nan = np.isnan(value)
                elif have_nan:
                    continue
                elif np.isnan(value):
                    best = value
                    best_j = g
                    have_nan = True
                elif value > best:
                    best = value
                    best_j = g
            ovmax[d] = best
            jmax[d] = best_j
    return ovmax, jmax


def best_overlaps(
    det_polygons: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    gt_polygons: np.ndarray,
    gt_hbbs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum official IoU of each detection over its candidate ground truths, and its argmax.

    Args:
        det_polygons: float64 [N, 8] detection polygons.
        gt_start, gt_end: int64 [N]; detection d is compared with ground truths
            ``gt_start[d]:gt_end[d]`` (same image, same class, in file order; empty for images
            without labels).
        gt_polygons: float64 [M, 8].
        gt_hbbs: [M, 4] from :func:`polygon_hbbs` (computed when None).

    Returns:
        ``ovmax`` float64 [N] (``-inf`` when no ground truth passes the pre-filter, NaN where the
        official code gets NaN) and ``jmax`` int64 [N] (global ground-truth index, -1 for none).
    """
    det_polygons = np.ascontiguousarray(det_polygons, dtype=np.float64).reshape(-1, 8)
    gt_polygons = np.ascontiguousarray(gt_polygons, dtype=np.float64).reshape(-1, 8)
    if gt_hbbs is None:
        gt_hbbs = polygon_hbbs(gt_polygons)
    return _best_overlaps(
        det_polygons,
        polygon_hbbs(det_polygons),
        np.ascontiguousarray(gt_start, dtype=np.int64),
        np.ascontiguousarray(gt_end, dtype=np.int64),
        gt_polygons,
        np.ascontiguousarray(gt_hbbs, dtype=np.float64),
    )


@njit(cache=True)
def _greedy_match(
    order: np.ndarray, ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, iou_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    n = order.shape[0]
    tp = np.zeros(n)
    fp = np.zeros(n)
    matched = np.zeros(gt_difficult.shape[0], dtype=np.bool_)
    for k in range(n):
        d = order[k]
        if ovmax[d] > iou_thr:
            j = jmax[d]
            if not gt_difficult[j]:
                if not matched[j]:
                    tp[k] = 1.0
                    matched[j] = True
                else:
                    fp[k] = 1.0
        else:
            fp[k] = 1.0
    return tp, fp


def greedy_match(
    order: np.ndarray, ovmax: np.ndarray, jmax: np.ndarray, gt_difficult: np.ndarray, iou_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Official TP/FP flags for one IoU threshold, in visiting order.

    A detection whose best IoU is strictly above ``iou_thr`` is a true positive when its
    best-matching ground truth is not difficult and not yet matched, a false positive when that
    ground truth is already matched (no fall-back to the second best), and neither when it is
    difficult. Every other detection is a false positive.

    Args:
        order: int64 [N] visiting order (``np.argsort(-scores)``).
        ovmax, jmax: from :func:`best_overlaps`.
        gt_difficult: bool [M].

    Returns:
        tp, fp: float64 [N] flags (0 or 1) in visiting order.
    """
    return _greedy_match(
        np.ascontiguousarray(order, dtype=np.int64),
        ovmax,
        jmax,
        np.ascontiguousarray(gt_difficult, dtype=np.bool_),
        float(iou_thr),
    )
