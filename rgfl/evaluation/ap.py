"""Average precision from a TP/FP sequence, as the official DOTA Task1 script computes it.

Two methods (``ap_method``):

- ``"voc07"`` (the official ``main()``): the mean over the 11 recall points
  ``numpy.arange(0., 1.1, 0.1)`` (their exact float64 values, e.g. 0.30000000000000004) of the
  largest precision at a recall ``>=`` the point (0 if none), accumulated as
  ``ap = ap + p / 11.`` in that order.
- ``"area"`` (all-point, the function's default in the script): area under the precision envelope
  (precision made non-increasing from the right) at the recall steps, with sentinels (0, 0) and
  (1, 0).

Recall is ``TP / npos``, precision ``TP / max(TP + FP, float64 eps)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AP_METHODS", "average_precision", "VOC07_RECALL_POINTS"]

AP_METHODS = ("voc07", "area")
# Exactly the official points (np.arange's float64 values, drift included); never i / 10.
VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)
_EPS = np.finfo(np.float64).eps


def average_precision(tp: np.ndarray, fp: np.ndarray, num_positives: int, method: str = "voc07") -> float:
    """AP of one class at one IoU threshold.

    Args:
        tp, fp: float64 [N] per-detection flags in score order (from ``greedy_match``).
        num_positives: number of non-difficult ground truths (``npos``).
        method: ``"voc07"`` or ``"area"``.

    A class without non-difficult ground truth gets 0. (The official code divides by zero there:
    with ``voc07`` its recall is NaN everywhere and the AP comes out 0 too; with ``area`` it gives
    NaN when the class has detections. rgfl reports 0 in both cases.)
    """
    if method not in AP_METHODS:
        raise ValueError(f"unknown AP method {method!r}; use one of {AP_METHODS}")
    if num_positives <= 0:
        return 0.0
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(fp)
    recall = tp_cum / float(num_positives)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, _EPS)
    if method == "voc07":
        return _voc07(recall, precision)
    return _area(recall, precision)


def _voc07(recall: np.ndarray, precision: np.ndarray) -> float:
    # Recall is non-decreasing, so "max precision where recall >= t" is a suffix maximum read at the
    # first index with recall >= t: the same value the official boolean mask gives, in O(N).
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    ap = 0.0
    for t in VOC07_RECALL_POINTS:
        first = int(np.searchsorted(recall, t, side="left"))
        p = envelope[first] if first < recall.shape[0] else 0
        ap = ap + p / 11.0
    return float(ap)


def _area(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def precision_recall(tp: np.ndarray, fp: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection in score order (the points AP is computed on).

    Same arithmetic as :func:`average_precision`; recall is all zeros when there is no positive.
    """
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(fp)
    recall = tp_cum / float(num_positives) if num_positives > 0 else np.zeros_like(tp_cum, dtype=np.float64)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, _EPS)
    return recall, precision
