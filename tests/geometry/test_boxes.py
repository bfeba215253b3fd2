"""Box convention: angle versions, polygon <-> obb conversions, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

from rgfl.geometry.boxes import norm_angle, obb2hbb, obb2poly, poly2obb, regularize
from tests.conftest import DEVICES

RANGES = {"le135": (-math.pi / 4, 3 * math.pi / 4), "le90": (-math.pi / 2, math.pi / 2)}


def random_boxes(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    centers = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 1000
    sizes = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 100 + 1
    theta = (torch.rand(n, 1, generator=generator, dtype=torch.float64) - 0.5) * 8 * math.pi
    return torch.cat([centers, sizes, theta], dim=1).to(dtype)


def same_polygon_up_to_order(p: torch.Tensor, q: torch.Tensor, atol: float) -> torch.Tensor:
    """Per row: q's corners are p's corners in some cyclic order, either orientation."""
    p, q = p.reshape(-1, 4, 2), q.reshape(-1, 4, 2)
    best = torch.full((p.shape[0],), math.inf, dtype=p.dtype)
    for candidate in (q, q.flip(1)):
        for shift in range(4):
            error = (p - candidate.roll(shift, dims=1)).abs().amax(dim=(1, 2))
            best = torch.minimum(best, error)
    return best <= atol


@pytest.mark.parametrize("version", ["le135", "le90"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_norm_angle_is_floor_mod_into_range(version, dtype):
    low, high = RANGES[version]
    theta = torch.linspace(-20, 20, 10001, dtype=torch.float64)
    edges = torch.tensor([low, high, low - 1e-12, high - 1e-12, -1e-20, 1e-20, low + math.pi * 3, high - math.pi * 5], dtype=torch.float64)
    theta = torch.cat([theta, edges]).to(dtype)
    out = norm_angle(theta, version)
    assert out.dtype == dtype
    assert bool((out >= low).all()) and bool((out < high).all())
    # Differs from the input by a multiple of pi.
    turns = (theta.double() - out.double()) / math.pi
    assert torch.allclose(turns, turns.round(), atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_norm_angle_boundaries_and_input_types():
    assert norm_angle(3 * math.pi / 4) == pytest.approx(-math.pi / 4)
    assert norm_angle(-math.pi / 4) == pytest.approx(-math.pi / 4)
    assert norm_angle(-math.pi / 4 - 0.1) == pytest.approx(3 * math.pi / 4 - 0.1)
    assert norm_angle(math.pi / 2, "le90") == pytest.approx(-math.pi / 2)
    assert norm_angle(2.5, "oc") == 2.5
    angles = np.array([-3.0, 0.0, 3.0], dtype=np.float32)
    out = norm_angle(angles, "le135")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    with pytest.raises(ValueError, match="unknown angle version"):
        norm_angle(0.0, "le45")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("version", ["le135", "le90", "oc"])
def test_poly_obb_round_trip_any_vertex_order(device, version):
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(2000, generator).to(device)
    polys = obb2poly(boxes)
    # Any cyclic shift and either orientation must give the same rectangle.
    points = polys.reshape(-1, 4, 2)
    shuffled = torch.cat([points[:500].roll(1, dims=1), points[500:1000].flip(1), points[1000:1500].roll(3, dims=1).flip(1), points[1500:]])
    obb = poly2obb(shuffled.reshape(-1, 8), version)
    assert obb.device == boxes.device
    w, h, theta = obb[:, 2], obb[:, 3], obb[:, 4]
    if version == "oc":
        assert bool((theta > 0).all()) and bool((theta <= math.pi / 2).all())
    else:
        low, high = RANGES[version]
        assert bool((theta >= low).all()) and bool((theta < high).all())
        assert bool((w >= h).all())
    back = obb2poly(obb).cpu()
    assert bool(same_polygon_up_to_order(polys.cpu(), back, atol=1e-9).all())
    # Sizes and centers are the input's, whatever the representation.
    assert torch.allclose(obb[:, :2], boxes[:, :2], atol=1e-9)
    assert torch.allclose(obb[:, 2:4].sort(dim=1).values, boxes[:, 2:4].sort(dim=1).values, atol=1e-9)


def test_poly2obb_float32_large_coordinates():
    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(1000, generator)
    boxes[:, :2] += 1e4
    polys = obb2poly(boxes).float()
    obb = poly2obb(polys)
    assert obb.dtype == torch.float32
    back = obb2poly(obb.double())
    assert bool(same_polygon_up_to_order(polys.double(), back, atol=5e-3).all())


def test_poly2obb_is_minimum_area_rectangle_for_free_quads():
    rng = np.random.default_rng(2)
    polys = rng.uniform(0, 100, size=(300, 8))
    obb = poly2obb(polys)
    rect = obb2poly(obb)
    for poly, box, corners in zip(polys, obb, rect):
        quad = shapely.MultiPoint(poly.reshape(4, 2))
        reference = shapely.minimum_rotated_rectangle(quad)
        assert box[2] * box[3] == pytest.approx(reference.area, rel=1e-9, abs=1e-9)
        # The rectangle encloses all 4 points.
        assert shapely.Polygon(corners.reshape(4, 2)).buffer(1e-7).contains(quad)


def test_axis_aligned_rectangle_and_square_conventions():
    # DOTA example from the reference notes: listed from the top-left corner, clockwise on screen.
    square = np.array([0, 0, 10, 0, 10, 10, 0, 10], dtype=np.float64)
    np.testing.assert_allclose(poly2obb(square), [5, 5, 10, 10, 0], atol=1e-12)
    # Rotated by exactly pi/4: theta lands on the low end of [-pi/4, pi/4).
    diamond = np.array([5, 0, 10, 5, 5, 10, 0, 5], dtype=np.float64)
    out = poly2obb(diamond)
    np.testing.assert_allclose(out[:4], [5, 5, math.sqrt(50), math.sqrt(50)], atol=1e-12)
    assert out[4] == pytest.approx(-math.pi / 4)
    tall = np.array([0, 0, 5, 0, 5, 10, 0, 10], dtype=np.float64)
    np.testing.assert_allclose(poly2obb(tall), [2.5, 5, 10, 5, math.pi / 2], atol=1e-12)
    np.testing.assert_allclose(poly2obb(tall, "le90"), [2.5, 5, 10, 5, -math.pi / 2], atol=1e-12)
    np.testing.assert_allclose(poly2obb(tall, "oc"), [2.5, 5, 10, 5, math.pi / 2], atol=1e-12)
    wide = np.array([0, 0, 10, 0, 10, 5, 0, 5], dtype=np.float64)
    np.testing.assert_allclose(poly2obb(wide, "oc"), [5, 2.5, 5, 10, math.pi / 2], atol=1e-12)


@pytest.mark.parametrize("version", ["le135", "le90"])
def test_squares_get_theta_in_minus_pi4_pi4(version):
    theta = torch.linspace(-7, 7, 501, dtype=torch.float64)
    squares = torch.stack([torch.full_like(theta, 3.0), torch.full_like(theta, -2.0), torch.full_like(theta, 8.0), torch.full_like(theta, 8.0), theta], dim=1)
    out = poly2obb(obb2poly(squares), version)
    assert bool((out[:, 4] >= -math.pi / 4).all()) and bool((out[:, 4] < math.pi / 4).all())
    assert bool(same_polygon_up_to_order(obb2poly(squares), obb2poly(out), atol=1e-9).all())


@pytest.mark.parametrize("version", ["le135", "le90", "oc"])
def test_regularize_maps_every_parametrisation_to_one_box(version):
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(500, generator)
    cx, cy, w, h, t = boxes.unbind(1)
    variants = [
        boxes,
        torch.stack([cx, cy, h, w, t + math.pi / 2], 1),
        torch.stack([cx, cy, w, h, t - 3 * math.pi], 1),
        torch.stack([cx, cy, h, w, t - math.pi / 2 + 4 * math.pi], 1),
    ]
    canonical = [regularize(v, version) for v in variants]
    for other in canonical[1:]:
        assert torch.allclose(canonical[0], other, atol=1e-9)
    assert bool(same_polygon_up_to_order(obb2poly(boxes), obb2poly(canonical[0]), atol=1e-9).all())


def test_obb2hbb_encloses_the_corners():
    generator = torch.Generator().manual_seed(4)
    boxes = random_boxes(300, generator)
    corners = obb2poly(boxes).reshape(-1, 4, 2)
    expected = torch.cat([corners.amin(1), corners.amax(1)], dim=1)
    assert torch.allclose(obb2hbb(boxes), expected, atol=1e-9)
    assert isinstance(obb2hbb(boxes.numpy()), np.ndarray)


def test_degenerate_polygons_have_defined_results():
    point = np.array([1, 2, 1, 2, 1, 2, 1, 2], dtype=np.float64)
    np.testing.assert_array_equal(poly2obb(point), [1, 2, 0, 0, 0])
    segment = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.float64)
    np.testing.assert_allclose(poly2obb(segment), [1.5, 1.5, 3 * math.sqrt(2), 0, math.pi / 4], atol=1e-12)
    triangle = np.array([0, 0, 4, 0, 4, 0, 0, 3], dtype=np.float64)  # a repeated vertex
    out = poly2obb(triangle)
    assert out[2] * out[3] == pytest.approx(shapely.minimum_rotated_rectangle(shapely.MultiPoint(triangle.reshape(4, 2))).area)
    with pytest.raises(ValueError, match="NaN"):
        poly2obb(np.array([[0, 0, 1, 0, 1, 1, 0, 1], [0, 0, 1, np.nan, 1, 1, 0, 1]], dtype=np.float64))
    with pytest.raises(ValueError, match=r"\[\.\.\., 8\]"):
        poly2obb(np.zeros((3, 6)))
    assert poly2obb(np.zeros((0, 8))).shape == (0, 5)
