"""Intersection over foreground (IoF) of polygons against horizontal windows, exact in float64.

``rgfl split`` decides which objects go into which patch by IoF = area(polygon ∩ window) /
area(polygon). The decision is taken at a threshold (0.7) and "IoF < 1" marks an object as cut by
the patch border, so the value must be exact: an object wholly inside a window gets exactly 1.0
(mmrotate's splitter computes areas in float32 and marks many such objects as truncated).

How: a polygon whose horizontal bounding box lies inside the window gets 1.0 and one whose box
misses the window (or only touches it) gets 0.0, without arithmetic. Only the remaining pairs, the
objects that a window border really cuts, are clipped against the window's four edges
(Sutherland-Hodgman, vectorized over all such pairs in numpy; exact for any simple polygon, convex
or not, because the window is convex), and the clipped area is divided by the polygon's area, both
by the shoelace formula in float64.

Self-intersecting quadrilaterals ("bow ties", a DOTA annotation error) are split at the crossing
into their two triangles, and areas are the sums of the triangles' unsigned areas: the area shapely
gives after ``make_valid``. Zero-area polygons get IoF 0 (they cover nothing).

Pure numpy on purpose: split runs in many short-lived worker processes, and a JIT's start-up
(about 2 s per process for numba) would cost more than the computation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["poly_window_iof"]


def _cross(ax, ay, bx, by, cx, cy):
    """z of (b - a) x (c - a), elementwise."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _proper_crossing(px: np.ndarray, py: np.ndarray, i: int, j: int):
    """Edges i->i+1 and j->j+1 of quads [N, 4] cross at one interior point: mask [N], x [N], y [N]."""
    ax, ay, bx, by = px[:, i], py[:, i], px[:, (i + 1) % 4], py[:, (i + 1) % 4]
    cx, cy, dx, dy = px[:, j], py[:, j], px[:, (j + 1) % 4], py[:, (j + 1) % 4]
    d1 = _cross(ax, ay, bx, by, cx, cy)
    d2 = _cross(ax, ay, bx, by, dx, dy)
    d3 = _cross(cx, cy, dx, dy, ax, ay)
    d4 = _cross(cx, cy, dx, dy, bx, by)
    mask = (d1 * d2 < 0) & (d3 * d4 < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(mask, d3 / np.where(mask, d3 - d4, 1.0), 0.0)
    return mask, ax + t * (bx - ax), ay + t * (by - ay)


def _pieces(polys: np.ndarray):
    """Simple pieces of quads [N, 8]: each quad itself, or the two triangles of a bow tie.

    Returns:
        xs, ys: float64 [P, 4] vertices (a triangle leaves slot 3 unused).
        counts: int64 [P] vertex counts (4 or 3).
        owner: int64 [P] index of the quad each piece belongs to.
    """
    n = polys.shape[0]
    if n == 0:
        return np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    px, py = polys[:, 0::2], polys[:, 1::2]
    # A quad self-intersects when its opposite edges cross: 0-1 with 2-3, or 1-2 with 3-0.
    cross_a, ax, ay = _proper_crossing(px, py, 0, 2)
    cross_b, bx, by = _proper_crossing(px, py, 1, 3)
    cross_b &= ~cross_a
    simple = ~(cross_a | cross_b)
    xs, ys, counts, owner = [px[simple]], [py[simple]], [np.full(simple.sum(), 4)], [np.flatnonzero(simple)]
    for mask, ix, iy, lobes in (
        # Lobes of a crossing of edges 0-1 and 2-3 at X: (X, p1, p2) and (X, p3, p0).
        (cross_a, ax, ay, ((None, 1, 2), (None, 3, 0))),
        # Lobes of a crossing of edges 1-2 and 3-0 at X: (p0, p1, X) and (X, p2, p3).
        (cross_b, bx, by, ((0, 1, None), (None, 2, 3))),
    ):
        if not mask.any():
            continue
        for lobe in lobes:
            unused = np.zeros(mask.sum())  # slot 3 of a triangle
            lx = np.stack([ix[mask] if k is None else px[mask, k] for k in lobe] + [unused], axis=1)
            ly = np.stack([iy[mask] if k is None else py[mask, k] for k in lobe] + [unused], axis=1)
            xs.append(lx)
            ys.append(ly)
            counts.append(np.full(mask.sum(), 3))
            owner.append(np.flatnonzero(mask))
    order = np.argsort(np.concatenate(owner), kind="stable")
    return (
        np.concatenate(xs)[order].reshape(-1, 4),
        np.concatenate(ys)[order].reshape(-1, 4),
        np.concatenate(counts)[order].astype(np.int64),
        np.concatenate(owner)[order].astype(np.int64),
    )


def _shoelace(xs: np.ndarray, ys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Signed areas [K] of polygons given as [K, V] vertex arrays with ``counts`` valid vertices."""
    k, v = xs.shape
    if k == 0 or v == 0:
        return np.zeros(k)
    slots = np.arange(v)[None, :]
    nxt = (slots + 1) % np.maximum(counts, 1)[:, None]
    nx = np.take_along_axis(xs, nxt, axis=1)
    ny = np.take_along_axis(ys, nxt, axis=1)
    terms = np.where(slots < counts[:, None], xs * ny - nx * ys, 0.0)
    return 0.5 * terms.sum(axis=1)


def _clip_to_boxes(xs: np.ndarray, ys: np.ndarray, counts: np.ndarray, boxes: np.ndarray):
    """Clip polygons [K, V] to boxes [K, 4] (x1 y1 x2 y2), one pass per box side.

    Returns the clipped vertex arrays and counts (a polygon outside a box ends with count 0).
    """
    for side in range(4):
        k, v = xs.shape
        if k == 0 or v == 0:
            break
        axis_is_x = side in (0, 2)
        bound = boxes[:, side][:, None]
        sign = 1.0 if side in (0, 1) else -1.0  # keep x >= x1, y >= y1, x <= x2, y <= y2
        coord = xs if axis_is_x else ys
        slots = np.arange(v)[None, :]
        valid = slots < counts[:, None]
        prev = (slots - 1) % np.maximum(counts, 1)[:, None]
        qx = np.take_along_axis(xs, prev, axis=1)
        qy = np.take_along_axis(ys, prev, axis=1)
        q_coord = qx if axis_is_x else qy
        d_cur = sign * (coord - bound)
        d_prev = sign * (q_coord - bound)
        inside_cur = d_cur >= 0
        crossing = (inside_cur != (d_prev >= 0)) & valid
        keep = inside_cur & valid
        emitted = crossing.astype(np.int64) + keep
        start = np.cumsum(emitted, axis=1) - emitted  # first output slot of each input vertex
        new_counts = emitted.sum(axis=1)
        width = int(new_counts.max()) if k else 0
        out_x = np.zeros((k, max(width, 1)))
        out_y = np.zeros((k, max(width, 1)))
        rows, cols = np.nonzero(crossing)
        if rows.size:
            dc, dq = d_cur[rows, cols], d_prev[rows, cols]
            t = dq / (dq - dc)
            cx, cy, px, py = xs[rows, cols], ys[rows, cols], qx[rows, cols], qy[rows, cols]
            at = start[rows, cols]
            # The crossing lies exactly on the clip line: write that coordinate exactly.
            if axis_is_x:
                out_x[rows, at] = bound[rows, 0]
                out_y[rows, at] = py + t * (cy - py)
            else:
                out_x[rows, at] = px + t * (cx - px)
                out_y[rows, at] = bound[rows, 0]
        rows, cols = np.nonzero(keep)
        if rows.size:
            at = start[rows, cols] + crossing[rows, cols]
            out_x[rows, at] = xs[rows, cols]
            out_y[rows, at] = ys[rows, cols]
        xs, ys, counts = out_x, out_y, new_counts
    return xs, ys, counts


def poly_window_iof(polys: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """IoF of every polygon against every window.

    Args:
        polys: float64 [N, 8] quadrilaterals ``x1 y1 x2 y2 x3 y3 x4 y4`` in pixels, any vertex order
            or orientation, convex or not (bow ties: see the module docstring).
        windows: [M, 4] horizontal windows ``x1 y1 x2 y2`` (x1 <= x2, y1 <= y2), in the same pixels.

    Returns:
        float64 [N, M]: area(polygon ∩ window) / area(polygon), in [0, 1]. Exactly 1.0 when the
        polygon lies inside the window (boundary included), exactly 0.0 when they share no area.
    """
    polys = np.asarray(polys, dtype=np.float64).reshape(-1, 8)
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    if not (np.isfinite(polys).all() and np.isfinite(windows).all()):
        raise ValueError("poly_window_iof: polygons and windows must be finite")
    n, m = polys.shape[0], windows.shape[0]
    iof = np.zeros((n, m))
    if n == 0 or m == 0:
        return iof

    xs, ys, counts, owner = _pieces(polys)
    areas = np.bincount(owner, np.abs(_shoelace(xs, ys, counts)), minlength=n)  # [N]

    px, py = polys[:, 0::2], polys[:, 1::2]
    xmin, xmax = px.min(1)[:, None], px.max(1)[:, None]
    ymin, ymax = py.min(1)[:, None], py.max(1)[:, None]
    wx1, wy1, wx2, wy2 = (windows[:, i][None, :] for i in range(4))
    overlaps = (xmax > wx1) & (xmin < wx2) & (ymax > wy1) & (ymin < wy2) & (areas[:, None] > 0)
    inside = (xmin >= wx1) & (xmax <= wx2) & (ymin >= wy1) & (ymax <= wy2) & overlaps
    iof[inside] = 1.0

    # Pairs a window border cuts: clip each piece of the polygon against the window.
    pair_poly, pair_win = np.nonzero(overlaps & ~inside)
    if pair_poly.size:
        first_piece = np.searchsorted(owner, np.arange(n))  # pieces are sorted by owner
        piece_count = np.bincount(owner, minlength=n)
        reps = piece_count[pair_poly]
        pair_of_job = np.repeat(np.arange(pair_poly.size), reps)
        piece_of_job = np.repeat(first_piece[pair_poly], reps) + (
            np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        )
        cx, cy, cc = _clip_to_boxes(
            xs[piece_of_job], ys[piece_of_job], counts[piece_of_job], windows[pair_win[pair_of_job]]
        )
        inter = np.bincount(pair_of_job, np.abs(_shoelace(cx, cy, cc)), minlength=pair_poly.size)
        iof[pair_poly, pair_win] = np.minimum(inter / areas[pair_poly], 1.0)
    return iof
