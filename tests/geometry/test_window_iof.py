"""poly_window_iof against shapely (exact polygon intersection) and hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from rgfl.geometry.window_iof import poly_window_iof


def shapely_iof(polys: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Reference: make_valid(polygon) ∩ box, area ratio, in float64."""
    shapes = shapely.make_valid(shapely.polygons(polys.reshape(-1, 4, 2)))
    boxes = shapely.box(windows[:, 0], windows[:, 1], windows[:, 2], windows[:, 3])
    inter = shapely.area(shapely.intersection(shapes[:, None], boxes[None, :]))
    return inter / shapely.area(shapes)[:, None]


def test_hand_checked_square():
    square = np.array([[0, 0, 10, 0, 10, 10, 0, 10]], dtype=np.float64)
    windows = np.array([[0, 0, 5, 20], [0, 0, 10, 10], [-1, -1, 20, 20], [10, 0, 20, 10], [2, 2, 4, 4]])
    # left half, identical, containing, edge contact only (no area), 2x2 hole in the middle
    assert poly_window_iof(square, windows).tolist() == [[0.5, 1.0, 1.0, 0.0, 0.04]]


@pytest.mark.parametrize("kind", ["convex", "any"])
def test_random_quads_match_shapely(kind):
    rng = np.random.default_rng(7)
    n = 3000
    centers = rng.uniform(0, 3000, (n, 1, 2))
    if kind == "convex":
        # Rotated rectangles of DOTA-like sizes and elongations.
        w, h = rng.uniform(2, 300, n), rng.uniform(2, 80, n)
        theta = rng.uniform(-np.pi, np.pi, n)
        corners = np.stack([np.stack([sx * w / 2, sy * h / 2], -1) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))], 1)
        rot = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1), np.stack([np.sin(theta), np.cos(theta)], -1)], 1)
        polys = (centers + np.einsum("nij,nkj->nki", rot, corners)).reshape(n, 8)
    else:
        # Arbitrary quads: convex, non-convex (darts) and self-intersecting (bow ties).
        polys = (centers + rng.uniform(-150, 150, (n, 4, 2))).reshape(n, 8)
    windows = np.array([[x, y, x + 1024, y + 1024] for x in (0, 824, 1648, 1976) for y in (0, 824, 1976)], dtype=float)
    got = poly_window_iof(polys, windows)
    ref = shapely_iof(polys, windows)
    assert got.dtype == np.float64 and got.shape == (n, len(windows))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    # The random set must really exercise cut objects and, for "any", invalid shapes.
    assert ((got > 0) & (got < 1)).sum() > 200
    if kind == "any":
        assert (~shapely.is_valid(shapely.polygons(polys.reshape(-1, 4, 2)))).sum() > 100


def test_inside_is_exactly_one_even_at_large_coordinates():
    # mmrotate's float32 areas give 0.99999.. here and mark the object truncated.
    rng = np.random.default_rng(3)
    base = rng.uniform(3000, 3900, (500, 1, 2))
    polys = (base + rng.uniform(0, 90, (500, 4, 2))).reshape(-1, 8)
    window = np.array([[2976.0, 2976.0, 4000.0, 4000.0]])
    iof = poly_window_iof(polys, window)
    inside = (polys[:, 0::2].min(1) >= 2976) & (polys[:, 1::2].min(1) >= 2976)
    assert inside.sum() > 400
    assert (iof[inside, 0] == 1.0).all()


def test_touching_the_window_border_from_inside_is_one():
    poly = np.array([[0, 0, 1024, 0, 1024, 30, 0, 30]], dtype=np.float64)
    assert poly_window_iof(poly, np.array([[0, 0, 1024, 1024]]))[0, 0] == 1.0


def test_bow_tie_counts_both_lobes():
    # Edges 0-1 and 2-3 cross at (5, 5): two triangles of area 25 each.
    bow = np.array([[0, 0, 10, 10, 10, 0, 0, 10]], dtype=np.float64)
    iof = poly_window_iof(bow, np.array([[0, 0, 5, 10], [0, 0, 10, 5], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iof, [[0.5, 0.5, 1.0]], atol=1e-12)


def test_non_convex_dart():
    # Arrow head pointing right with the notch at (4, 5); area 30.
    dart = np.array([[0, 0, 10, 5, 0, 10, 4, 5]], dtype=np.float64)
    window = np.array([[0, 0, 4, 10]])
    np.testing.assert_allclose(poly_window_iof(dart, window), shapely_iof(dart, window.astype(float)), atol=1e-12)


def test_degenerate_and_empty_inputs():
    line = np.array([[0, 0, 10, 10, 10, 10, 0, 0]], dtype=np.float64)
    assert poly_window_iof(line, np.array([[0, 0, 20, 20]])).tolist() == [[0.0]]
    assert poly_window_iof(np.zeros((0, 8)), np.array([[0, 0, 1, 1]])).shape == (0, 1)
    assert poly_window_iof(line, np.zeros((0, 4))).shape == (1, 0)
    with pytest.raises(ValueError, match="finite"):
        poly_window_iof(np.full((1, 8), np.nan), np.array([[0, 0, 1, 1]]))


def test_self_touching_and_repeated_vertex_quads_match_shapely():
    polys = np.array(
        [
            [0, 0, 10, 0, 10, 10, 10, 10],  # repeated vertex: a triangle
            [0, 0, 10, 0, 5, 0, 5, 8],  # a vertex on another edge (zero-width spike + triangle)
            [0, 0, 10, 0, 10, 10, 5, 0],  # vertex 4 touches edge 1-2's start line: pinched
        ],
        dtype=np.float64,
    )
    windows = np.array([[0, 0, 6, 6], [3, -1, 20, 4], [-5, -5, 5, 20]], dtype=np.float64)
    got = poly_window_iof(polys, windows)
    np.testing.assert_allclose(got, shapely_iof(polys, windows), atol=1e-12)
