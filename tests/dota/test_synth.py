"""Synthetic DOTA data: determinism, variety, exact labels that parse back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgfl.dota.annotations import read_label_file
from rgfl.dota.classes import DOTA_V1_0
from rgfl.dota.synth import (
    DEFAULT_SYNTH_CLASSES,
    SYNTH_CLASSES,
    _Painter,
    _PAINTERS,
    _random_angle,
    _random_size,
    generate_synthetic_dataset,
    obb_corners,
    synth_image,
)
from rgfl.errors import InputError


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_runs_are_byte_identical(tmp_path):
    first = generate_synthetic_dataset(tmp_path / "a", num_images=2, image_size=512, seed=7)
    generate_synthetic_dataset(tmp_path / "b", num_images=2, image_size=512, seed=7)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert sorted(a) == ["images/synth_00000.png", "images/synth_00001.png", "labelTxt/synth_00000.txt", "labelTxt/synth_00001.txt"]
    assert a == b
    assert first.images == 2 and first.objects > 0
    # a different seed gives different data
    generate_synthetic_dataset(tmp_path / "c", num_images=2, image_size=512, seed=8)
    assert _tree_bytes(tmp_path / "c") != a
    # no temporary file left behind by the atomic writes
    assert not [p for p in (tmp_path / "a").rglob("*.tmp")]
    # parallel workers write the same bytes and count the same objects
    parallel = generate_synthetic_dataset(tmp_path / "d", num_images=2, image_size=512, seed=7, workers=2)
    assert _tree_bytes(tmp_path / "d") == a
    assert parallel.objects_per_class == first.objects_per_class


def test_labels_parse_back_exactly(tmp_path):
    summary = generate_synthetic_dataset(tmp_path, num_images=3, image_size=768, seed=1, class_names=SYNTH_CLASSES)
    total = 0
    for index in range(3):
        labels = read_label_file(tmp_path / "labelTxt" / f"synth_{index:05d}.txt", DOTA_V1_0)
        expected = synth_image(index, 1, 768, SYNTH_CLASSES)
        assert labels.imagesource == "rgfl-synth" and labels.gsd == pytest.approx(0.3)
        assert labels.classes == expected.labels.classes
        np.testing.assert_allclose(labels.polygons, obb_corners(expected.boxes), atol=0.051)
        assert (labels.difficult == 0).all()
        # every object lies inside its image
        assert labels.polygons.min(initial=0) >= 0 and labels.polygons.max(initial=0) <= 768
        total += len(labels)
    assert total == summary.objects


def test_class_variety_sizes_angles_and_clusters():
    boxes, classes = [], []
    for index in range(3):
        item = synth_image(index, seed=0, image_size=2048, class_names=SYNTH_CLASSES)
        boxes.append(item.boxes)
        classes += item.labels.classes
    boxes = np.concatenate(boxes)
    assert set(classes) == set(SYNTH_CLASSES)
    long_side = boxes[:, 2:4].max(1)
    # the smallest objects the generator draws: storage tanks from 12 px, small vehicles from 14 px
    assert long_side.min() < 16 and long_side.max() > 200
    angles = np.mod(boxes[:, 4], math.pi)
    assert np.histogram(angles, bins=6, range=(0, math.pi))[0].min() > 0  # all orientations
    # dense clusters: many small vehicles/tanks have a neighbour closer than twice their size
    small = long_side < 40
    centers = boxes[small, :2]
    distance = np.hypot(*(centers[:, None] - centers[None]).transpose(2, 0, 1))
    np.fill_diagonal(distance, np.inf)
    assert (distance.min(1) < 2 * long_side[small]).sum() >= 20


def test_objects_overlap_little_and_cross_patch_borders():
    from shapely.geometry import Polygon

    for seed in range(3):
        polygons = [Polygon(p.reshape(4, 2)) for p in synth_image(0, seed, 1536, SYNTH_CLASSES).labels.polygons]
        for i, a in enumerate(polygons):
            for b in polygons[i + 1 :]:
                if a.intersects(b):
                    assert a.intersection(b).area <= 0.1 * min(a.area, b.area)
    item = synth_image(0, seed=3, image_size=2048)
    # default split grid 1024/824 on 2048: window edges at 824, 1024, 1848
    xs, ys = item.labels.polygons[:, 0::2], item.labels.polygons[:, 1::2]
    crossing = [((xs.min(1) < e) & (xs.max(1) > e)) | ((ys.min(1) < e) & (ys.max(1) > e)) for e in (824, 1024, 1848)]
    assert np.any(crossing, axis=0).sum() >= 3


def test_empty_images_are_spread_and_counted(tmp_path):
    summary = generate_synthetic_dataset(tmp_path, num_images=4, image_size=256, seed=0, empty_fraction=0.5)
    assert summary.empty_images == 2
    sizes = [len(read_label_file(p)) for p in sorted((tmp_path / "labelTxt").glob("*.txt"))]
    assert sorted(sizes)[:2] == [0, 0] and min(sorted(sizes)[2:]) > 0


@pytest.mark.parametrize("name", SYNTH_CLASSES)
def test_each_drawing_fills_its_labelled_box(name):
    """Drawn pixels lie in the label box (pixel centres within half a pixel) and reach its sides."""
    rng = np.random.default_rng(5)
    for trial in range(6):
        length, short = _random_size(name, rng)
        theta = _random_angle(name, rng)
        box = np.array([150.3, 149.6, min(length, 280), min(short, 280), theta])
        canvas = np.zeros((300, 300, 3), np.uint8)
        _PAINTERS[name](_Painter(canvas, box, rng))
        ys, xs = np.nonzero(canvas.max(2) > 0)
        px, py = xs + 0.5 - box[0], ys + 0.5 - box[1]
        u = px * math.cos(theta) + py * math.sin(theta)
        v = -px * math.sin(theta) + py * math.cos(theta)
        assert np.abs(u).max() <= box[2] / 2 + 0.6 and np.abs(v).max() <= box[3] / 2 + 0.6, (name, trial)
        assert np.abs(u).max() >= box[2] / 2 - 1.0 and np.abs(v).max() >= box[3] / 2 - 1.0, (name, trial)


def test_large_benchmark_image_is_quick_and_dense():
    item = synth_image(0, seed=0, image_size=4000, num_objects=300)
    assert item.image.shape == (4000, 4000, 3)
    assert 250 <= len(item.labels) <= 300


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="cannot draw"):
        generate_synthetic_dataset(tmp_path, 1, 64, class_names=["plane", "bridge"])
    with pytest.raises(InputError, match="at least 32"):
        generate_synthetic_dataset(tmp_path, 1, 16)
    with pytest.raises(InputError, match="png or jpg"):
        generate_synthetic_dataset(tmp_path, 1, 64, ext="tif")
    assert set(DEFAULT_SYNTH_CLASSES) <= set(DOTA_V1_0)
