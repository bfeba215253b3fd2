"""Intersection over foreground (IoF) of polygons against horizontal windows, exact in float64.

``rgfl split`` decides which objects go into which patch by IoF = area(polygon ∩ window) /
area(polygon). The decision is taken at a threshold (0.7) and "IoF < 1" marks an object as cut by
the patch border, so the value must be exact: an object wholly inside a window gets exactly 1.0
(mmrotate's splitter computes areas in float32 and marks many such objects as truncated).

How: a polygon whose horizontal bounding box lies inside the window gets 1.0 and one whose box
misses the window (or only touches it) gets 0.0, without arithmetic. The rest are clipped against
the window's four edges (Sutherland-Hodgman; exact for any simple polygon, convex or not, because
the window is convex) and the clipped area is divided by the polygon's area, both by the shoelace
formula in float64.

Self-intersecting quadrilaterals ("bow ties", a DOTA annotation error) are split at the crossing
into their two triangles, and areas are the sums of the triangles' unsigned areas: the area shapely
gives after ``make_valid``. Zero-area polygons get IoF 0 (they cover nothing).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["poly_window_iof"]


@numba.njit(cache=True, nogil=True)
def _clip_area(px, py, n, x1, y1, x2, y2):
    """Signed shoelace area of polygon (px[:n], py[:n]) clipped to [x1, x2] x [y1, y2]."""
    # A convex polygon gains at most one vertex per clip edge, but a non-convex one can gain more
    # (each edge yields at most two vertices per pass); 16 n bounds four passes.
    cap = 16 * n
    ax = np.empty(cap)
    ay = np.empty(cap)
    bx = np.empty(cap)
    by = np.empty(cap)
    for i in range(n):
        ax[i] = px[i]
        ay[i] = py[i]
    count = n
    for side in range(4):
        if count == 0:
            break
        out = 0
        for i in range(count):
            cx, cy = ax[i], ay[i]
            j = i - 1 if i > 0 else count - 1
            qx, qy = ax[j], ay[j]
            # Signed distance inside the half-plane (>= 0 inside) for the current and previous vertex.
            if side == 0:
                dc, dq = cx - x1, qx - x1
            elif side == 1:
                dc, dq = x2 - cx, x2 - qx
            elif side == 2:
                dc, dq = cy - y1, qy - y1
            else:
                dc, dq = y2 - cy, y2 - qy
            inside_c = dc >= 0.0
            inside_q = dq >= 0.0
            if inside_c != inside_q:
                t = dq / (dq - dc)
                # The crossing lies exactly on the clip line: set that coordinate exactly.
                if side == 0:
                    bx[out], by[out] = x1, qy + t * (cy - qy)
                elif side == 1:
                    bx[out], by[out] = x2, qy + t * (cy - qy)
                elif side == 2:
                    bx[out], by[out] = qx + t * (cx - qx), y1
                else:
                    bx[out], by[out] = qx + t * (cx - qx), y2
                out += 1
            if inside_c:
                bx[out], by[out] = cx, cy
                out += 1
        for i in range(out):
            ax[i] = bx[i]
            ay[i] = by[i]
        count = out
    area = 0.0
    for i in range(count):
        j = i + 1 if i + 1 < count else 0
        area += ax[i] * ay[j] - ax[j] * ay[i]
    return 0.5 * area


@numba.njit(cache=True, nogil=True)
def _cross(ax, ay, bx, by, cx, cy):
    """z of (b - a) x (c - a)."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@numba.njit(cache=True, nogil=True)
def _crossing(x, y, i, j):
    """Where edges i->i+1 and j->j+1 of a quad cross properly; (False, 0, 0) if they don't."""
    ax, ay, bx, by = x[i], y[i], x[(i + 1) % 4], y[(i + 1) % 4]
    cx, cy, dx, dy = x[j], y[j], x[(j + 1) % 4], y[(j + 1) % 4]
    d1 = _cross(ax, ay, bx, by, cx, cy)
    d2 = _cross(ax, ay, bx, by, dx, dy)
    d3 = _cross(cx, cy, dx, dy, ax, ay)
    d4 = _cross(cx, cy, dx, dy, bx, by)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and ((d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)):
        t = d3 / (d3 - d4)
        return True, ax + t * (bx - ax), ay + t * (by - ay)
    return False, 0.0, 0.0


@numba.njit(cache=True, nogil=True)
def _iof_kernel(polys, windows, out):
    n_polys = polys.shape[0]
    n_windows = windows.shape[0]
    px = np.empty(4)
    py = np.empty(4)
    tx = np.empty(3)
    ty = np.empty(3)
    sx = np.empty(3)
    sy = np.empty(3)
    for p in range(n_polys):
        for k in range(4):
            px[k] = polys[p, 2 * k]
            py[k] = polys[p, 2 * k + 1]
        xmin, xmax = px.min(), px.max()
        ymin, ymax = py.min(), py.max()
        # Bow tie: edges 0-1 and 2-3 cross, or edges 1-2 and 3-0 cross.
        bow, ix, iy = _crossing(px, py, 0, 2)
        if bow:
            # Lobes: (X, p1, p2) and (X, p3, p0).
            tx[0], ty[0], tx[1], ty[1], tx[2], ty[2] = ix, iy, px[1], py[1], px[2], py[2]
            sx[0], sy[0], sx[1], sy[1], sx[2], sy[2] = ix, iy, px[3], py[3], px[0], py[0]
        else:
            bow, ix, iy = _crossing(px, py, 1, 3)
            if bow:
                # Lobes: (p0, p1, X) and (X, p2, p3).
                tx[0], ty[0], tx[1], ty[1], tx[2], ty[2] = px[0], py[0], px[1], py[1], ix, iy
                sx[0], sy[0], sx[1], sy[1], sx[2], sy[2] = ix, iy, px[2], py[2], px[3], py[3]
        if bow:
            area = abs(_clip_area(tx, ty, 3, -np.inf, -np.inf, np.inf, np.inf)) + abs(
                _clip_area(sx, sy, 3, -np.inf, -np.inf, np.inf, np.inf)
            )
        else:
            area = abs(_clip_area(px, py, 4, -np.inf, -np.inf, np.inf, np.inf))
        for w in range(n_windows):
            x1, y1, x2, y2 = windows[w, 0], windows[w, 1], windows[w, 2], windows[w, 3]
            if not area > 0.0 or xmax <= x1 or xmin >= x2 or ymax <= y1 or ymin >= y2:
                out[p, w] = 0.0
            elif xmin >= x1 and xmax <= x2 and ymin >= y1 and ymax <= y2:
                out[p, w] = 1.0
            else:
                if bow:
                    inter = abs(_clip_area(tx, ty, 3, x1, y1, x2, y2)) + abs(_clip_area(sx, sy, 3, x1, y1, x2, y2))
                else:
                    inter = abs(_clip_area(px, py, 4, x1, y1, x2, y2))
                out[p, w] = min(inter / area, 1.0)


def poly_window_iof(polys: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """IoF of every polygon against every window.

    Args:
        polys: float64 [N, 8] quadrilaterals ``x1 y1 x2 y2 x3 y3 x4 y4`` in pixels, any vertex order
            or orientation, convex or not.
        windows: [M, 4] horizontal windows ``x1 y1 x2 y2`` (x1 <= x2, y1 <= y2), in the same pixels.

    Returns:
        float64 [N, M]: area(polygon ∩ window) / area(polygon), in [0, 1]. Exactly 1.0 when the
        polygon lies inside the window (boundary included), exactly 0.0 when they share no area.
    """
    polys = np.ascontiguousarray(np.asarray(polys, dtype=np.float64).reshape(-1, 8))
    windows = np.ascontiguousarray(np.asarray(windows, dtype=np.float64).reshape(-1, 4))
    if not (np.isfinite(polys).all() and np.isfinite(windows).all()):
        raise ValueError("poly_window_iof: polygons and windows must be finite")
    out = np.empty((polys.shape[0], windows.shape[0]), dtype=np.float64)
    if out.size:
        _iof_kernel(polys, windows, out)
    return out
