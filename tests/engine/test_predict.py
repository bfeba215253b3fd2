"""Sliding-window prediction on full-size images: windows, offsets, rates, padding, merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgfl.engine.inference import detections_to_numpy
from rgfl.engine.predict import SlidingWindowSettings, Window, plan_windows, predict_image, window_to_image
from tests.conftest import DEVICES
from tests.engine.blob_detector import BlobDetector, obb_to_polygons, paint_rectangles, polygon_iou_matrix, random_scene


def test_plan_windows_follows_the_split_grid():
    settings = SlidingWindowSettings(size=1024, overlap=200)
    windows = plan_windows(1500, 4000, settings)
    assert sorted({w.x for w in windows}) == [0, 824, 1648, 2472, 2976]
    assert sorted({w.y for w in windows}) == [0, 476]
    assert len(windows) == 10
    # image smaller than a window: one window at the origin
    assert plan_windows(300, 500, settings) == [Window(0, 0, 1024, 1.0)]
    # rate 0.5: the grid is laid over the half-size image
    half = plan_windows(4000, 4000, SlidingWindowSettings(size=1024, overlap=200, rates=(0.5,)))
    assert sorted({w.x for w in half}) == [0, 824, 976]


def test_windows_at_a_rate_match_the_split_patches(tmp_path):
    """The window pixels predict feeds the model are those of the patches `rgfl split` writes."""
    import cv2

    from rgfl.dota.split import SplitConfig, split_dataset
    from rgfl.engine.predict import _cut

    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    (tmp_path / "src" / "images").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "src" / "images" / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    split_dataset(tmp_path / "src", tmp_path / "out", SplitConfig(size=256, step=200, rates=(0.5, 1.5)), workers=1)
    settings = SlidingWindowSettings(size=256, overlap=56, rates=(0.5, 1.5))
    windows = plan_windows(700, 900, settings)
    patches = sorted(p.stem for p in (tmp_path / "out" / "images").iterdir())
    assert len(windows) == len(patches)
    for window in windows[:: max(1, len(windows) // 6)]:
        from rgfl.dota.patches import patch_name

        name = patch_name("scene", window.x, window.y, 256, window.rate)
        written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "images" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        cut, valid, scale = _cut(image, window, settings)
        assert scale == 1.0 and np.array_equal(cut.permute(1, 2, 0).numpy(), written), name


def test_window_to_image_undoes_offset_and_rate():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0, 0.3]])
    mapped = window_to_image(boxes, Window(100, 200, 512, 0.5))
    assert torch.allclose(mapped, torch.tensor([[220.0, 440.0, 60.0, 80.0, 0.3]]))
    assert torch.equal(boxes, torch.tensor([[10.0, 20.0, 30.0, 40.0, 0.3]])), "input must not be modified"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rates, input_size", [((1.0,), None), ((0.5, 1.0), None), ((1.0,), 384)])
def test_every_object_found_once_across_windows(device, rates, input_size):
    rng = np.random.default_rng(0)
    height, width = 1300, 2100  # not multiples of 32; border windows need padding
    boxes, labels = random_scene(rng, height, width, 40)
    image = paint_rectangles(height, width, boxes, labels)
    settings = SlidingWindowSettings(size=512, overlap=200, rates=rates, pad_value=(0, 0, 0), batch_size=3, input_size=input_size)
    detector = BlobDetector().to(device)
    result = predict_image(detector, image, settings, device=device, image_id="scene")

    polygons, scores, found_labels = detections_to_numpy(result.boxes, result.scores, result.labels)
    assert np.all(np.diff(scores) <= 0), "scores sorted in decreasing order"
    iou = polygon_iou_matrix(obb_to_polygons(boxes), polygons)
    best = iou.argmax(axis=1)
    # every object comes back ...
    assert (iou.max(axis=1) > (0.85 if rates == (1.0,) and input_size is None else 0.7)).all()
    assert (found_labels[best] == labels).all()
    # ... exactly once: the duplicates from overlapping windows (and scales) were merged
    assert len(polygons) == len(boxes)
    # batches of 3 windows
    assert detector.calls == -(-len(plan_windows(height, width, settings)) // 3)


def test_empty_image_and_tiny_image():
    detector = BlobDetector()
    empty = predict_image(detector, np.zeros((700, 900, 3), np.uint8), SlidingWindowSettings(size=512, overlap=100))
    assert len(empty) == 0 and empty.boxes.shape == (0, 5)
    boxes = np.array([[40.0, 30.0, 30.0, 14.0, 0.4]])
    tiny = paint_rectangles(70, 90, boxes, np.array([1]))
    result = predict_image(detector, tiny, SlidingWindowSettings(size=256, overlap=0, pad_value=(0, 0, 0)))
    assert len(result) == 1 and int(result.labels[0]) == 1


def test_max_per_img_keeps_the_best():
    rng = np.random.default_rng(1)
    boxes, labels = random_scene(rng, 900, 900, 25)
    image = paint_rectangles(900, 900, boxes, labels)
    result = predict_image(BlobDetector(), image, SlidingWindowSettings(size=512, overlap=128, max_per_img=5, pad_value=(0, 0, 0)))
    full = predict_image(BlobDetector(), image, SlidingWindowSettings(size=512, overlap=128, pad_value=(0, 0, 0)))
    assert len(result) == 5
    assert torch.equal(result.scores, full.scores[:5])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        SlidingWindowSettings(size=512, overlap=512)
    with pytest.raises(ValueError, match="rates"):
        SlidingWindowSettings(rates=(0.0,))
