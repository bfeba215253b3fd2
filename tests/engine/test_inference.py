"""Batched patch inference streamed to disk per source image: order, shards, resume, Task1 output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rgfl.dota.patches import parse_patch_name, patch_name
from rgfl.engine.inference import (
    InferenceSettings,
    PatchImages,
    collate_patches,
    list_patch_images,
    shards_to_task1,
    stream_patch_detections,
)
from rgfl.errors import InputError, RgflError
from tests.conftest import DEVICES
from tests.engine.blob_detector import BlobDetector, paint_rectangles, random_scene

CLASSES = ("a", "b", "c", "d")


def _write_patches(root: Path, stem: str, image: np.ndarray, size: int, step: int) -> int:
    """Cut ``image`` into windows named as `rgfl split` names them (test data, not a splitter)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    height, width = image.shape[:2]
    count = 0
    for y in range(0, max(height - size, 0) + 1, step):
        for x in range(0, max(width - size, 0) + 1, step):
            crop = image[y : y + size, x : x + size]
            cv2.imwrite(str(root / "images" / f"{patch_name(stem, x, y, size)}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            count += 1
    return count


@pytest.fixture()
def split_root(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "split"
    counts = {}
    for stem, (height, width) in {"P0001": (700, 900), "P0002": (400, 400), "P0003": (640, 500)}.items():
        boxes, labels = random_scene(rng, height, width, 8, margin=20)
        counts[stem] = _write_patches(root, stem, paint_rectangles(height, width, boxes, labels), 400, 150)
    return root, counts


def test_patches_are_grouped_by_source_image(split_root):
    root, counts = split_root
    entries = list_patch_images(root / "images")
    stems = [origin.stem for _, origin in entries]
    assert stems == sorted(stems)
    assert {stem: stems.count(stem) for stem in set(stems)} == counts
    image, name, scale = PatchImages(entries)[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and name == entries[0][0].stem and scale == 1.0
    small, _, scale = PatchImages(entries, input_size=200)[0]
    assert scale == 0.5 and small.shape[1:] == (image.shape[1] // 2, image.shape[2] // 2)


def test_collate_pads_to_a_multiple_of_32():
    samples = [(torch.full((3, 50, 70), 7, dtype=torch.uint8), "a", 1.0), (torch.ones((3, 64, 33), dtype=torch.uint8), "b", 0.5)]
    images, sizes, names, scales = collate_patches(samples)
    assert images.shape == (2, 3, 64, 96) and sizes == [(50, 70), (64, 33)] and names == ["a", "b"] and scales == [1.0, 0.5]
    assert images[0, :, 50:].sum() == 0 and images[0, :, :50, :70].eq(7).all()


@pytest.mark.parametrize("device", DEVICES)
def test_stream_writes_one_shard_per_source_and_resumes(split_root, tmp_path, device):
    root, counts = split_root
    shards = tmp_path / "out" / "shards"
    settings = InferenceSettings(batch_size=3, workers=2, device=device)
    summary = stream_patch_detections(BlobDetector().to(device), root / "images", shards, settings, {"checkpoint": "x"})
    assert summary.patches == sum(counts.values()) and summary.resumed_images == 0
    assert sorted(p.stem for p in shards.glob("*.txt")) == sorted(counts)
    first = {p.name: p.read_text() for p in shards.glob("*.txt")}
    for text in first.values():
        for line in text.splitlines():
            fields = line.split()
            assert len(fields) == 11 and 0 <= int(fields[0]) < len(CLASSES) and "__400__" in fields[1]

    # an interrupted run: one source image lost its shard; the rerun does only that image
    (shards / "P0001.txt").unlink()
    detector = BlobDetector().to(device)
    again = stream_patch_detections(detector, root / "images", shards, settings, {"checkpoint": "x"})
    assert again.resumed_images == 2 and again.patches == counts["P0001"]
    assert {p.name: p.read_text() for p in shards.glob("*.txt")} == first, "resumed output equals the uninterrupted one"

    with pytest.raises(RgflError, match="another run"):
        stream_patch_detections(detector, root / "images", shards, settings, {"checkpoint": "y"})


def test_shards_become_patch_level_task1_files(split_root, tmp_path):
    from rgfl.dota.task1 import read_task1_dir

    root, _ = split_root
    shards = tmp_path / "shards"
    stream_patch_detections(BlobDetector(), root / "images", shards, InferenceSettings(batch_size=4, workers=0), {})
    lines = sum(len(p.read_text().splitlines()) for p in shards.glob("*.txt"))
    written = shards_to_task1(shards, tmp_path / "task1", CLASSES)
    assert written == lines > 0
    detections = read_task1_dir(tmp_path / "task1", CLASSES)
    assert sorted(p.name for p in (tmp_path / "task1").iterdir()) == [f"Task1_{c}.txt" for c in CLASSES]
    assert sum(len(d) for d in detections.values()) == lines
    stems = {parse_patch_name(name).stem for d in detections.values() for name in d.image_ids}
    assert stems <= {"P0001", "P0002", "P0003"}


def test_bad_split_folders(tmp_path):
    with pytest.raises(InputError, match="no images folder"):
        list_patch_images(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="no patch images"):
        list_patch_images(tmp_path / "images")
    cv2.imwrite(str(tmp_path / "images" / "P0001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="rgfl split"):
        list_patch_images(tmp_path / "images")
