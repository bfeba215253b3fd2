"""Which objects each window of ``rgfl split`` receives, and how they are written.

Two truncation modes (reference notes 3.2 and 3.3):

* default (as mmrotate): an object goes into a window when IoF >= ``iof_thr``; its full polygon is
  written (coordinates may leave the patch) and, when IoF < 1, its difficulty becomes 2.
* ``clip=True`` (as the DOTA development kit's ``ImgSplit_multi_process``): label coordinates are
  truncated to integers when read (before scaling by the rate; :func:`devkit_label_polygons`);
  objects of zero area are skipped; an object wholly inside the window is written as is; one partly
  inside (0 < IoF < 1) is clipped to the window, a 5-vertex result is reduced to 4 points by
  collapsing its shortest edge, results with fewer than 4 or more than 5 vertices are dropped, the
  start vertex is chosen to best match the original; every written coordinate is shifted into the
  patch and truncated to an integer, those of clipped objects then clamped into ``[1, size]``; the
  difficulty is kept when IoF > ``iof_thr``, else 2. As in the kit, the clip window ends at
  ``min(x + size, W - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rgfl.geometry.window_iof import poly_window_iof

__all__ = ["WindowLabels", "assign_objects", "devkit_label_polygons"]


@dataclass
class WindowLabels:
    """Objects of one patch, in patch pixels, and what happened to the others."""

    polygons: np.ndarray  # float64 [K, 8]
    classes: list[str]
    difficult: np.ndarray  # int64 [K]
    truncated: int = 0  # written objects cut by the window border
    dropped: int = 0  # objects overlapping the window that were not written


def assign_objects(
    polygons: np.ndarray,
    classes: Sequence[str],
    difficult: np.ndarray,
    windows: np.ndarray,
    image_size: tuple[int, int],
    iof_thr: float = 0.7,
    clip: bool = False,
    size: int | None = None,
) -> list[WindowLabels]:
    """Decide which objects each window receives and how they are written.

    Args:
        polygons: float64 [N, 8] object polygons in the (resized) image's pixels.
        classes, difficult: [N] class names and difficulty flags.
        windows: int [M, 4] windows ``x1 y1 x2 y2`` from :func:`sliding_windows`.
        image_size: (width, height) of the (resized) image; used by the clip mode's window.
        iof_thr: see the module docstring for the two modes.
        clip: devkit truncation instead of mmrotate's.
        size: window side (clip mode clamps coordinates into ``[1, size]``); defaults to the
            first window's width.

    Returns:
        One :class:`WindowLabels` per window, objects in input order.
    """
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    difficult = np.asarray(difficult, dtype=np.int64)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    width, height = image_size
    if size is None:
        size = int(windows[0, 2] - windows[0, 0]) if len(windows) else 0
    if clip:
        # The devkit's window polygon ends at the last pixel index, not at the image border.
        iof_windows = windows.astype(np.float64)
        iof_windows[:, 2] = np.minimum(windows[:, 2], width - 1)
        iof_windows[:, 3] = np.minimum(windows[:, 3], height - 1)
    else:
        iof_windows = windows.astype(np.float64)
    iof = poly_window_iof(polygons, iof_windows)  # [N, M]
    if clip:
        # The kit skips objects whose (integer) polygon has no area (shapely's area of the ring,
        # |shoelace|); truncating float labels can produce them. Counted as dropped where they touch.
        has_area = _shoelace_rows(polygons) != 0
        flat = ~has_area
        if flat.any():
            bx1, by1 = polygons[flat, 0::2].min(1), polygons[flat, 1::2].min(1)
            bx2, by2 = polygons[flat, 0::2].max(1), polygons[flat, 1::2].max(1)
            touches = (
                (bx1[:, None] <= iof_windows[None, :, 2])
                & (bx2[:, None] >= iof_windows[None, :, 0])
                & (by1[:, None] <= iof_windows[None, :, 3])
                & (by2[:, None] >= iof_windows[None, :, 1])
            )
            flat_per_window = touches.sum(0)
        else:
            flat_per_window = np.zeros(len(windows), dtype=np.int64)

    results = []
    for m, (x1, y1, _, _) in enumerate(windows):
        column = iof[:, m]
        offset = np.array([x1, y1] * 4, dtype=np.float64)
        if not clip:
            keep = np.flatnonzero(column >= iof_thr)
            cut = column[keep] < 1.0
            flags = np.where(cut, 2, difficult[keep])
            results.append(
                WindowLabels(
                    polygons[keep] - offset,
                    [classes[i] for i in keep],
                    flags.astype(np.int64),
                    truncated=int(cut.sum()),
                    dropped=int(((column > 0) & (column < iof_thr)).sum()),
                )
            )
            continue
        out_polys, out_classes, out_flags = [], [], []
        truncated = dropped = 0
        window_box = iof_windows[m]
        for i in np.flatnonzero((column > 0) & has_area):
            # The devkit shifts into the patch with int(), i.e. truncation toward zero.
            if column[i] >= 1.0:
                out_polys.append(np.trunc(polygons[i] - offset))
                out_flags.append(int(difficult[i]))
            else:
                clipped = _clip_like_devkit(polygons[i], window_box)
                if clipped is None:
                    dropped += 1
                    continue
                # Truncate first, then clamp (the kit's order: int(x - left), then <= 1 -> 1, >= size -> size).
                local = np.clip(np.trunc(clipped - offset), 1.0, float(size))
                out_polys.append(local)
                out_flags.append(int(difficult[i]) if column[i] > iof_thr else 2)
                truncated += 1
            out_classes.append(classes[i])
        results.append(
            WindowLabels(
                np.array(out_polys, dtype=np.float64).reshape(-1, 8),
                out_classes,
                np.array(out_flags, dtype=np.int64),
                truncated=truncated,
                dropped=dropped + int(flat_per_window[m]),
            )
        )
    return results


def devkit_label_polygons(polygons: np.ndarray, rate: float = 1.0) -> np.ndarray:
    """Label polygons as the DOTA devkit's splitter sees them, in the image resized by ``rate``.

    The kit parses coordinates with ``int()`` (truncation toward zero) and then multiplies the
    integers by the rate; IoF, clipping and output all start from these values.

    Args:
        polygons: float64 [N, 8] polygons as read from the label file (source-image pixels).

    Returns:
        float64 [N, 8] ``trunc(polygons) * rate``.
    """
    return np.trunc(np.asarray(polygons, dtype=np.float64).reshape(-1, 8)) * rate


def _shoelace_rows(polygons: np.ndarray) -> np.ndarray:
    """Signed shoelace areas [N] of polygons [N, 8]."""
    x, y = polygons[:, 0::2], polygons[:, 1::2]
    return 0.5 * np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)


def _clip_like_devkit(polygon: np.ndarray, window: np.ndarray) -> np.ndarray | None:
    """Polygon [8] clipped to window ``x1 y1 x2 y2`` and brought to 4 points, or None.

    Step by step as the devkit (``savepatches``), because the vertex order decides ties: the
    window ring is built (x1,y1) (x2,y1) (x2,y2) (x1,y2), the intersection is oriented with positive
    shoelace area (shapely's ``orient(sign=1)``: the closed ring is reversed, so the start vertex
    stays); 5 vertices -> the shortest edge (edges 0-1, 1-2, 2-3, 3-4, then 4-0; the first one on
    ties) collapses to its midpoint; fewer than 4 or more than 5 -> None; then the cyclic start
    closest to the original polygon (the first one on ties) is chosen. Float coordinates; the
    caller truncates.
    """
    import shapely

    shape = shapely.Polygon(polygon.reshape(4, 2))
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    x1, y1, x2, y2 = (float(v) for v in window)
    window_ring = shapely.Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
    piece = shapely.intersection(shape, window_ring)
    if not isinstance(piece, shapely.Polygon) or piece.is_empty:
        return None
    ring = np.asarray(piece.exterior.coords)  # closed: last == first
    if _shoelace(ring[:-1]) < 0:
        ring = ring[::-1]
    points = ring[:-1]
    if len(points) == 5:
        points = _collapse_shortest_edge(points)
    if len(points) != 4:
        return None
    original = polygon.reshape(4, 2)
    errors = [np.sum((np.roll(points, -k, axis=0) - original) ** 2) for k in range(4)]
    return np.roll(points, -int(np.argmin(errors)), axis=0).reshape(8)


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _collapse_shortest_edge(points: np.ndarray) -> np.ndarray:
    """5 points [5, 2] -> 4: the shortest edge ``k -> k+1`` (first one on ties) becomes its midpoint.

    Lengths as the devkit computes them (``sqrt(dx**2 + dy**2)``), so that ties are ties there too.
    """
    delta = np.roll(points, -1, axis=0) - points
    lengths = [math.sqrt(dx * dx + dy * dy) for dx, dy in delta.tolist()]
    k = lengths.index(min(lengths))
    nxt = (k + 1) % 5
    merged = points.copy()
    merged[k] = (points[k] + points[nxt]) / 2
    return np.delete(merged, nxt, axis=0)
