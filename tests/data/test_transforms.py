"""Every transform moves the boxes with the pixels: checked on object masks.

Objects are drawn into an id mask (pixel (i, j) belongs to a polygon when its centre
(i + 0.5, j + 0.5) is inside), image and polygons are transformed together, and then:
- the transformed mask equals the transformed polygons rasterized again (exactly for flips and
  quarter turns, up to boundary pixels for interpolating transforms), and
- every mask pixel lies inside the le135 box the dataset would produce, and the box is tight
  (the mask reaches all four sides).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from rgfl.data import transforms as T
from rgfl.geometry.boxes import poly2obb
from rgfl.dota.synth import obb_corners


def _inside(polygon: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Points strictly inside a convex quadrilateral (either orientation)."""
    pts = polygon.reshape(4, 2)
    signs = []
    for k in range(4):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % 4]
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))
    signs = np.stack(signs)
    return np.all(signs > 0, axis=0) | np.all(signs < 0, axis=0)


def _rasterize(polygons: np.ndarray, height: int, width: int) -> np.ndarray:
    """Id mask [H, W] uint8: 0 background, k + 1 inside polygon k."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    mask = np.zeros((height, width), np.uint8)
    for k, polygon in enumerate(polygons):
        mask[_inside(polygon, xs, ys)] = k + 1
    return mask


def _scene(height: int = 160, width: int = 224) -> T.Sample:
    """A non-square image with rotated rectangles, one crossing nothing and some near borders."""
    boxes = np.array(
        [
            [60.3, 50.2, 50.0, 18.0, 0.35],
            [150.0, 40.0, 30.0, 30.0, 0.0],
            [170.2, 115.7, 60.0, 14.0, -1.1],
            [40.0, 125.0, 24.0, 9.0, 2.4],
            [112.0, 95.0, 12.0, 6.0, 1.3],
        ]
    )
    polygons = obb_corners(boxes)
    mask = _rasterize(polygons, height, width)
    image = np.repeat(mask[:, :, None], 3, axis=2)
    n = len(boxes)
    return T.Sample(image, polygons, np.arange(n, dtype=np.int64), np.zeros(n, bool), "scene")


def _check_boxes_cover_masks(sample: T.Sample, inside_tol: float, reach_tol: float) -> None:
    mask = sample.image[:, :, 0]
    boxes = poly2obb(torch.from_numpy(sample.polygons), "le135").numpy()
    whole = T._visible_fraction(sample.polygons, sample.width, sample.height) > 1 - 1e-9
    assert np.all((boxes[:, 4] >= -math.pi / 4 - 1e-9) & (boxes[:, 4] < 3 * math.pi / 4 + 1e-9))
    for k, (cx, cy, w, h, theta) in enumerate(boxes):
        ys, xs = np.nonzero(mask == sample.labels[k] + 1)
        assert xs.size > 0
        px, py = xs + 0.5 - cx, ys + 0.5 - cy
        u = px * math.cos(theta) + py * math.sin(theta)
        v = -px * math.sin(theta) + py * math.cos(theta)
        # covers the object ...
        assert np.abs(u).max() <= w / 2 + inside_tol and np.abs(v).max() <= h / 2 + inside_tol, k
        if not whole[k]:
            continue  # cut by the image border: only coverage can be checked
        # ... and is tight: the object reaches every side (pixel centres lie within 1/sqrt(2) px)
        assert np.abs(u).max() >= w / 2 - reach_tol and np.abs(v).max() >= h / 2 - reach_tol, k
        assert u.max() >= w / 2 - reach_tol and u.min() <= -w / 2 + reach_tol, k
        assert v.max() >= h / 2 - reach_tol and v.min() <= -h / 2 + reach_tol, k


EXACT = {
    "hflip": T.hflip,
    "vflip": T.vflip,
    "diagonal_flip": T.diagonal_flip,
    "rot90_k1": lambda s: T.rotate90(s, 1),
    "rot90_k2": lambda s: T.rotate90(s, 2),
    "rot90_k3": lambda s: T.rotate90(s, 3),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_flips_and_quarter_turns_are_exact(name):
    sample = _scene()
    moved = EXACT[name](sample)
    # the moved pixels are exactly the moved polygons rasterized again
    np.testing.assert_array_equal(moved.image[:, :, 0], _rasterize(moved.polygons, moved.height, moved.width))
    _check_boxes_cover_masks(moved, inside_tol=0.0, reach_tol=0.75)
    if name.startswith("rot90") and name != "rot90_k2":
        assert (moved.height, moved.width) == (sample.width, sample.height)
    assert moved.image.flags.c_contiguous


def test_flip_angles_follow_the_mirror():
    """A box at theta mirrors to -theta (mod pi) under a horizontal flip, as in mmrotate."""
    sample = _scene()
    before = poly2obb(torch.from_numpy(sample.polygons), "le135").numpy()
    after = poly2obb(torch.from_numpy(T.hflip(sample).polygons), "le135").numpy()
    np.testing.assert_allclose(after[:, 0], sample.width - before[:, 0], atol=1e-9)
    for (w0, h0, t0), (w1, h1, t1) in zip(before[:, 2:], after[:, 2:]):
        if abs(w0 - h0) > 1e-6:  # squares have no orientation
            assert w1 == pytest.approx(w0) and math.sin(2 * t1) == pytest.approx(-math.sin(2 * t0), abs=1e-9)


@pytest.mark.parametrize("angle", [30.0, -72.5, 90.0, 135.0, 200.0])
def test_arbitrary_rotation_moves_boxes_with_pixels(angle):
    sample = _scene()
    moved = T.rotate(sample, angle, visible_thr=0.7, pad_value=(0, 0, 0), interpolation=cv2.INTER_NEAREST)
    assert (moved.height, moved.width) == (sample.height, sample.width)
    again = _rasterize(moved.polygons, moved.height, moved.width)
    # nearest-neighbour resampling can only differ on boundary pixels
    for k in moved.labels:
        a, b = moved.image[:, :, 0] == k + 1, again == moved.labels.tolist().index(k) + 1
        assert (a ^ b).sum() <= 0.25 * b.sum() + 4
    _check_boxes_cover_masks(moved, inside_tol=0.75, reach_tol=1.5)


def test_rotation_keeps_ignores_or_drops_objects_leaving_the_image():
    """Squares on the image diagonal turn (45 degrees) into diamonds on the top edge."""
    diagonal = np.array([1.0, -1.0]) / math.sqrt(2)  # from the centre towards the top-right corner

    def at(radius, side):
        x, y = np.array([50.0, 50.0]) + radius * diagonal
        return [x, y, side, side, 0.0]

    boxes = np.array([at(0, 20), at(50, 10), at(66.5, 5), at(46, 6)])
    sample = T.Sample(np.zeros((100, 100, 3), np.uint8), obb_corners(boxes), np.arange(4), np.zeros(4, bool), "x")
    moved = T.rotate(sample, 45.0)
    # 0: stays whole; 1: diamond centred on the edge, half outside -> ignored; 2: leaves -> dropped;
    # 3: a sliver (0.243^2 of 36 px^2) outside -> kept as a normal object
    assert moved.labels.tolist() == [0, 1, 3]
    assert moved.ignore.tolist() == [False, True, False]
    fraction = T._visible_fraction(moved.polygons, 100, 100)
    np.testing.assert_allclose(fraction, [1.0, 0.5, 1 - (math.sqrt(18) - 4) ** 2 / 36], atol=1e-9)
    np.testing.assert_allclose(moved.polygons[1].reshape(4, 2)[:, 1].mean(), 0.0, atol=1e-9)


@pytest.mark.parametrize("scale", [0.5, 0.73, 1.6])
def test_resize_scales_boxes_and_updates_scale(scale):
    sample = _scene()
    moved = T.resize(sample, scale, interpolation=cv2.INTER_NEAREST_EXACT)  # INTER_NEAREST is off by half a pixel
    assert moved.image.shape[:2] == (round(sample.height * scale), round(sample.width * scale))
    assert moved.scale == pytest.approx(scale)
    np.testing.assert_allclose(moved.polygons, sample.polygons * scale)
    again = _rasterize(moved.polygons, moved.height, moved.width)
    for k in range(len(moved.labels)):
        a, b = moved.image[:, :, 0] == k + 1, again == k + 1
        assert (a ^ b).sum() <= 0.35 * b.sum() + 4
    _check_boxes_cover_masks(moved, inside_tol=0.5 * max(1.0, scale) + 0.25, reach_tol=0.75 * max(1.0, scale) + 0.75)
    twice = T.resize(moved, 2.0)
    assert twice.scale == pytest.approx(2 * scale)


@pytest.mark.parametrize("scale", [0.73, 1.37])
def test_resize_maps_pixels_by_exactly_the_scale(scale):
    """A ramp image whose value is the x of the pixel centre: after resizing, pixel j must hold
    the source x of its centre, (j + 0.5) / scale, as the polygons assume."""
    ramp = np.tile(np.arange(224, dtype=np.float32) + 0.5, (8, 1))[:, :, None].repeat(3, 2)
    sample = T.Sample(ramp, np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, bool))
    moved = T.resize(sample, scale, interpolation=cv2.INTER_LINEAR)
    centres = np.arange(moved.width) + 0.5
    inner = (centres / scale > 1) & (centres / scale < 223)
    np.testing.assert_allclose(moved.image[0, inner, 0], centres[inner] / scale, atol=1e-3)


def _single_object_sample(seed: int) -> T.Sample:
    rng = np.random.default_rng(seed)
    box = np.array([[rng.uniform(60, 140), rng.uniform(50, 110), rng.uniform(14, 50), rng.uniform(6, 20), rng.uniform(-3, 3)]])
    polygons = obb_corners(box)
    mask = (_rasterize(polygons, 160, 200) > 0).astype(np.uint8) * 255
    return T.Sample(np.repeat(mask[:, :, None], 3, axis=2), polygons, np.zeros(1, np.int64), np.zeros(1, bool), "one")


def test_random_pipeline_keeps_boxes_on_objects_and_is_reproducible():
    pipeline = T.build_transforms(hflip=0.3, vflip=0.3, diagonal_flip=0.3, rotate90=0.5, rotate=0.7, max_angle=180,
                                  scale_range=(0.7, 1.3), pad_value=(0, 0, 0))
    seen_shapes, checked = set(), 0
    for seed in range(25):
        sample = _single_object_sample(seed)
        out = pipeline(sample, torch.Generator().manual_seed(seed))
        repeat = pipeline(sample, torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(out.image, repeat.image)
        np.testing.assert_array_equal(out.polygons, repeat.polygons)
        seen_shapes.add(out.image.shape[:2])
        if len(out.labels) == 0 or out.ignore.any():
            continue
        binary = (out.image[:, :, 0] >= 128).astype(np.uint8)
        check = T.Sample(binary[:, :, None].repeat(3, 2), out.polygons, np.zeros(1, np.int64), out.ignore, "one")
        _check_boxes_cover_masks(check, inside_tol=1.0, reach_tol=1.6)
        checked += 1
    assert checked >= 12
    assert len(seen_shapes) > 3  # scales and quarter turns really happened


def test_randomness_comes_from_torch():
    flip = T.RandomFlip(horizontal=0.5)
    sample = _scene()
    torch.manual_seed(0)
    first = [flip(sample).polygons[0, 0] for _ in range(20)]
    torch.manual_seed(0)
    second = [flip(sample).polygons[0, 0] for _ in range(20)]
    assert first == second and len(set(first)) == 2


def test_bad_probabilities_are_rejected():
    with pytest.raises(ValueError, match="sum to at most 1"):
        T.RandomFlip(0.6, 0.6)
    with pytest.raises(ValueError, match="min_scale"):
        T.RandomResize(1.5, 0.5)


def test_images_without_objects_pass_every_transform():
    sample = T.Sample(np.zeros((40, 60, 3), np.uint8), np.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, bool), "empty")
    for function in list(EXACT.values()) + [lambda s: T.rotate(s, 33.0), lambda s: T.resize(s, 0.5)]:
        moved = function(sample)
        assert moved.polygons.shape == (0, 8) and moved.labels.shape == (0,) and moved.ignore.shape == (0,)


def test_agrees_with_torchvision_rotated_boxes_inside_the_image():
    """Independent oracle: torchvision v2 (angles in degrees, counter-clockwise on screen) moves
    boxes that stay inside the image to the same rectangles as rgfl's polygon transforms."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    height, width = 120, 200
    boxes = np.array([[100.0, 60.0, 40.0, 12.0, 0.4], [80.0, 50.0, 20.0, 8.0, -1.2], [120.0, 70.0, 16.0, 16.0, 0.0]])
    sample = T.Sample(np.zeros((height, width, 3), np.uint8), obb_corners(boxes), np.arange(3), np.zeros(3, bool), "x")
    tv_boxes = torch.from_numpy(boxes.copy())
    tv_boxes[:, 4] = -torch.rad2deg(tv_boxes[:, 4])
    tv = tv_tensors.BoundingBoxes(tv_boxes, format="CXCYWHR", canvas_size=(height, width))
    cases = [
        (T.hflip(sample), F.horizontal_flip(tv)),
        (T.vflip(sample), F.vertical_flip(tv)),
        (T.rotate(sample, 37.0), F.rotate(tv, 37.0)),
        (T.rotate(sample, -101.0), F.rotate(tv, -101.0)),
    ]
    for ours, theirs in cases:
        theirs = theirs.as_subclass(torch.Tensor).clone()
        theirs[:, 4] = -torch.deg2rad(theirs[:, 4])
        np.testing.assert_allclose(
            poly2obb(torch.from_numpy(ours.polygons), "le135").numpy(), poly2obb(obb_corners(theirs.numpy()), "le135"), atol=1e-3
        )
