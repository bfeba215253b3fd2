"""Polygon IoU exactly as DOTA_devkit's ``polyiou`` computes it (numba, float64).

The official DOTA Task1 evaluation scores detections with ``polyiou.iou_poly(gt, det)``, a C++
routine that works on the raw 4-point polygons:

1. Each polygon whose signed (shoelace) area is negative has its vertex order reversed.
2. The intersection area is the sum, over every pair of edges (one of each polygon), of the
   signed intersection of the two triangles that the edges form with the origin (0, 0). Each
   triangle pair is intersected by cutting the first triangle with the three lines of the second
   (half-plane cuts, tolerance ``sig(d) = d > 1e-8 ? 1 : d < -1e-8 ? -1 : 0``), consecutive
   duplicate points merged.
3. IoU = inter / (|area(gt)| + |area(det)| - inter); a zero union gives NaN (or inf) as in C.

For simple (non-self-intersecting) quadrilaterals this equals the true polygon IoU up to rounding;
for self-intersecting ("bow-tie") quadrilaterals it is the signed-area variant, which we keep
because the official numbers are computed that way. Every operation below is done in the same
order as in the C++ code, so results agree to the last bit on the same inputs except in one
undefined case of the original (a cut point within 1e-8 of the cutting line's direction, where
the C++ code reads a stale buffer slot); that needs coordinates conspiring at 1e-8 and is ignored.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["iou_poly", "poly_iou_matrix"]

_EPS = 1e-8
_BUF = 24  # a triangle cut by three lines has at most 6 vertices; generous room for the closing copy


@njit(cache=True, inline="always")
def _sig(d: float) -> int:
    return (1 if d > _EPS else 0) - (1 if d < -_EPS else 0)


@njit(cache=True, inline="always")
def _cross(ox: float, oy: float, ax: float, ay: float, bx: float, by: float) -> float:
    return (ax - ox) * (by - oy) - (bx - ox) * (ay - oy)


@njit(cache=True)
def _area(xs: np.ndarray, ys: np.ndarray, n: int) -> float:
    """Signed shoelace area of the first n points; writes the closing copy at index n (as in C)."""
    xs[n] = xs[0]
    ys[n] = ys[0]
    res = 0.0
    for i in range(n):
        res += xs[i] * ys[i + 1] - ys[i] * xs[i + 1]
    return res / 2.0


@njit(cache=True)
def _polygon_cut(
    px: np.ndarray, py: np.ndarray, n: int, ax: float, ay: float, bx: float, by: float, qx: np.ndarray, qy: np.ndarray
) -> int:
    """Keep the part of polygon p left of the directed line a->b, in place; returns the new n."""
    m = 0
    px[n] = px[0]
    py[n] = py[0]
    for i in range(n):
        si = _sig(_cross(ax, ay, bx, by, px[i], py[i]))
        if si > 0:
            qx[m] = px[i]
            qy[m] = py[i]
            m += 1
        if si != _sig(_cross(ax, ay, bx, by, px[i + 1], py[i + 1])):
            # lineCross(a, b, p[i], p[i+1]); when it "fails" the C code leaves the slot untouched.
            s1 = _cross(ax, ay, bx, by, px[i], py[i])
            s2 = _cross(ax, ay, bx, by, px[i + 1], py[i + 1])
            if not (_sig(s1) == 0 and _sig(s2) == 0) and _sig(s2 - s1) != 0:
                qx[m] = (px[i] * s2 - px[i + 1] * s1) / (s2 - s1)
                qy[m] = (py[i] * s2 - py[i + 1] * s1) / (s2 - s1)
            m += 1
    n = 0
    for i in range(m):
        if i == 0 or not (_sig(qx[i] - qx[i - 1]) == 0 and _sig(qy[i] - qy[i - 1]) == 0):
            px[n] = qx[i]
            py[n] = qy[i]
            n += 1
    while n > 1 and _sig(px[n - 1] - px[0]) == 0 and _sig(py[n - 1] - py[0]) == 0:
        n -= 1
    return n


@njit(cache=True)
def _triangle_intersection(
    ax: float, ay: float, bx: float, by: float, cx: float, cy: float, dx: float, dy: float,
    px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray,
) -> float:  # fmt: skip
    """Signed intersection area of triangles (o, a, b) and (o, c, d), o the origin."""
    s1 = _sig(_cross(0.0, 0.0, ax, ay, bx, by))
    s2 = _sig(_cross(0.0, 0.0, cx, cy, dx, dy))
    if s1 == 0 or s2 == 0:
        return 0.0
    if s1 == -1:
        ax, ay, bx, by = bx, by, ax, ay
    if s2 == -1:
        cx, cy, dx, dy = dx, dy, cx, cy
    px[0] = 0.0
    py[0] = 0.0
    px[1] = ax
    py[1] = ay
    px[2] = bx
    py[2] = by
    n = 3
    n = _polygon_cut(px, py, n, 0.0, 0.0, cx, cy, qx, qy)
    n = _polygon_cut(px, py, n, cx, cy, dx, dy, qx, qy)
    n = _polygon_cut(px, py, n, dx, dy, 0.0, 0.0, qx, qy)
    res = abs(_area(px, py, n))
    if s1 * s2 == -1:
        res = -res
    return res


@njit(cache=True, error_model="numpy")
def _iou_poly_into(
    p: np.ndarray, q: np.ndarray, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
    px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray,
) -> float:  # fmt: skip
    """``iou_poly(p, q)`` for two 8-vectors, using caller-provided scratch buffers."""
    for i in range(4):
        ax[i] = p[2 * i]
        ay[i] = p[2 * i + 1]
        bx[i] = q[2 * i]
        by[i] = q[2 * i + 1]
    if _area(ax, ay, 4) < 0:
        ax[0], ax[1], ax[2], ax[3] = ax[3], ax[2], ax[1], ax[0]
        ay[0], ay[1], ay[2], ay[3] = ay[3], ay[2], ay[1], ay[0]
    if _area(bx, by, 4) < 0:
        bx[0], bx[1], bx[2], bx[3] = bx[3], bx[2], bx[1], bx[0]
        by[0], by[1], by[2], by[3] = by[3], by[2], by[1], by[0]
    ax[4] = ax[0]
    ay[4] = ay[0]
    bx[4] = bx[0]
    by[4] = by[0]
    inter = 0.0
    for i in range(4):
        for j in range(4):
            inter += _triangle_intersection(
                ax[i], ay[i], ax[i + 1], ay[i + 1], bx[j], by[j], bx[j + 1], by[j + 1], px, py, qx, qy
            )
    union = abs(_area(ax, ay, 4)) + abs(_area(bx, by, 4)) - inter
    return inter / union


@njit(cache=True, error_model="numpy")
def iou_poly(p: np.ndarray, q: np.ndarray) -> float:
    """DOTA_devkit ``polyiou.iou_poly(p, q)`` for two float64 arrays [8] (``x1 y1 ... x4 y4``).

    The official evaluation calls it as ``iou_poly(ground_truth, detection)``; the order matters
    only in the last bit of the result.
    """
    ax = np.empty(8)
    ay = np.empty(8)
    bx = np.empty(8)
    by = np.empty(8)
    px = np.zeros(_BUF)
    py = np.zeros(_BUF)
    qx = np.zeros(_BUF)
    qy = np.zeros(_BUF)
    return _iou_poly_into(p, q, ax, ay, bx, by, px, py, qx, qy)


@njit(cache=True, parallel=True, error_model="numpy")
def _iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    out = np.empty((first.shape[0], second.shape[0]))
    for i in prange(first.shape[0]):
        ax = np.empty(8)
        ay = np.empty(8)
        bx = np.empty(8)
        by = np.empty(8)
        px = np.zeros(_BUF)
        py = np.zeros(_BUF)
        qx = np.zeros(_BUF)
        qy = np.zeros(_BUF)
        for j in range(second.shape[0]):
            out[i, j] = _iou_poly_into(first[i], second[j], ax, ay, bx, by, px, py, qx, qy)
    return out


def poly_iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise ``iou_poly(first[i], second[j])`` -> float64 [N, M] for polygons [N, 8] and [M, 8]."""
    first = np.ascontiguousarray(first, dtype=np.float64).reshape(-1, 8)
    second = np.ascontiguousarray(second, dtype=np.float64).reshape(-1, 8)
    return _iou_matrix(first, second)
