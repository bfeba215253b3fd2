"""DotaDataset on the real DOTA sample and on small synthetic folders; collate_batch."""

from __future__ import annotations

import logging
import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from rgfl.data import DotaDataset, collate_batch
from rgfl.data import transforms as T
from rgfl.dota.annotations import read_label_file
from rgfl.dota.classes import DOTA_V1_0
from rgfl.dota.synth import generate_synthetic_dataset, obb_corners
from rgfl.errors import InputError, ProblemLog


@pytest.fixture
def rgfl_log(caplog):
    """Warnings of the 'rgfl' logger (the CLI may have turned off its propagation to the root)."""
    logger = logging.getLogger("rgfl")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_real_sample_images_labels_and_warnings(dota_sample, rgfl_log):
    caplog = rgfl_log
    dataset = DotaDataset(dota_sample, DOTA_V1_0)
    assert dataset.image_ids == ["P0706", "P1888"]
    # label files whose image is missing are skipped, each with a warning naming the file
    missing = {"P0770", "P1088", "P1234", "P2598", "P2709"}
    assert {p.path.stem for p in dataset.problems.problems} == missing
    for stem in missing:
        assert f"{stem}.txt" in caplog.text
    for index, stem in enumerate(dataset.image_ids):
        image, target = dataset[index]
        reference = cv2.imread(str(dota_sample / "images" / f"{stem}.png"))[:, :, ::-1]
        assert image.dtype == torch.uint8 and image.shape == (3,) + reference.shape[:2]
        assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(reference.copy()))  # RGB order
        labels = read_label_file(dota_sample / "labelTxt" / f"{stem}.txt", DOTA_V1_0)
        assert target.image_id == stem and target.scale == 1.0
        assert target.boxes.shape == (len(labels), 5) and target.boxes.dtype == torch.float32
        assert target.labels.tolist() == [DOTA_V1_0.index(c) for c in labels.classes]
        assert not target.ignore.any()  # difficult 1 is kept by default
        theta = target.boxes[:, 4]
        assert bool(((theta >= -math.pi / 4 - 1e-6) & (theta < 3 * math.pi / 4 + 1e-6)).all())
        # the box is a rectangle around the labelled quadrilateral: centre inside its hull
        xs, ys = labels.polygons[:, 0::2], labels.polygons[:, 1::2]
        assert np.all((target.boxes[:, 0].numpy() >= xs.min(1) - 1e-3) & (target.boxes[:, 0].numpy() <= xs.max(1) + 1e-3))
        assert np.all((target.boxes[:, 1].numpy() >= ys.min(1) - 1e-3) & (target.boxes[:, 1].numpy() <= ys.max(1) + 1e-3))


def test_difficult_modes_on_real_sample(dota_sample):
    flags = read_label_file(dota_sample / "labelTxt" / "P0706.txt", DOTA_V1_0).difficult
    assert (flags == 1).sum() > 0
    keep = DotaDataset(dota_sample, DOTA_V1_0, difficult="keep", problems=ProblemLog())
    ignore = DotaDataset(dota_sample, "dota1.0", difficult="ignore", problems=ProblemLog())
    assert ignore.class_names == DOTA_V1_0
    drop = DotaDataset(dota_sample, DOTA_V1_0, difficult="drop", problems=ProblemLog())
    assert len(keep.objects(0)[0]) == len(flags)
    assert ignore.objects(0)[2].tolist() == (flags == 1).tolist()
    assert len(drop.objects(0)[0]) == (flags == 0).sum() and not drop.objects(0)[2].any()
    with pytest.raises(ValueError, match="difficult must be one of"):
        DotaDataset(dota_sample, DOTA_V1_0, difficult="skip")


def _write_folder(root, image, polygons, classes, difficult=None, extra_lines=()):
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    cv2.imwrite(str(root / "images" / "scene.png"), image[:, :, ::-1])
    difficult = [0] * len(classes) if difficult is None else difficult
    lines = ["imagesource:test", "gsd:null"]
    lines += [" ".join(f"{v:.3f}" for v in p) + f" {c} {d}" for p, c, d in zip(polygons, classes, difficult)]
    lines += list(extra_lines)
    (root / "labelTxt" / "scene.txt").write_text("\r\n".join(lines) + "\r\n")


def test_truncated_objects_bad_lines_and_strict(tmp_path, rgfl_log):
    boxes = np.array([[40.0, 40.0, 30.0, 12.0, 0.4], [90.0, 70.0, 20.0, 20.0, 0.0], [20.0, 100.0, 16.0, 8.0, 1.0]])
    image = np.zeros((128, 128, 3), np.uint8)
    _write_folder(tmp_path, image, obb_corners(boxes), ["plane", "ship", "small-vehicle"], [0, 2, 1],
                  extra_lines=["1 2 3 4 5 6 7 plane 0", "1 1 9 1 9 9 1 9 bridge-x 0"])
    dataset = DotaDataset(tmp_path, DOTA_V1_0)
    assert len(dataset.problems) == 2
    assert "scene.txt:6" in rgfl_log.text and "scene.txt:7" in rgfl_log.text
    _, target = dataset[0]
    assert target.labels.tolist() == [0, 6, 4]
    assert target.ignore.tolist() == [False, True, False]  # difficult 2 (truncated) ignored by default
    assert DotaDataset(tmp_path, DOTA_V1_0, truncated="drop", problems=ProblemLog())[0][1].labels.tolist() == [0, 4]
    with pytest.raises(InputError, match=r"scene.txt:6"):
        DotaDataset(tmp_path, DOTA_V1_0, problems=ProblemLog(strict=True))


def test_boxes_follow_the_object_masks_through_the_dataset(tmp_path):
    """Image = object-id mask; after random flips and quarter turns every box covers its object."""
    height, width = 96, 160
    boxes = np.array([[40.3, 30.2, 40.0, 14.0, 0.3], [110.0, 60.0, 50.0, 10.0, 2.2], [60.0, 72.0, 18.0, 8.0, -0.9]])
    polygons = obb_corners(boxes)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    mask = np.zeros((height, width), np.uint8)
    for k, polygon in enumerate(polygons):
        pts = polygon.reshape(4, 2)
        cross = [(pts[(i + 1) % 4, 0] - pts[i, 0]) * (ys - pts[i, 1]) - (pts[(i + 1) % 4, 1] - pts[i, 1]) * (xs - pts[i, 0]) for i in range(4)]
        mask[np.all(np.stack(cross) > 0, 0) | np.all(np.stack(cross) < 0, 0)] = 40 * (k + 1)
    _write_folder(tmp_path, np.repeat(mask[:, :, None], 3, 2), polygons, ["plane", "ship", "small-vehicle"])
    pipeline = T.Compose([T.RandomFlip(0.3, 0.3, 0.3), T.RandomRotate90(0.75)])
    dataset = DotaDataset(tmp_path, DOTA_V1_0, transforms=pipeline, seed=11)
    shapes = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        image, target = dataset[0]
        shapes.add(tuple(image.shape))
        for k, (cx, cy, w, h, theta) in enumerate(target.boxes.double().tolist()):
            rows, cols = np.nonzero(image[0].numpy() == 40 * (k + 1))
            px, py = cols + 0.5 - cx, rows + 0.5 - cy
            u = px * math.cos(theta) + py * math.sin(theta)
            v = -px * math.sin(theta) + py * math.cos(theta)
            assert np.abs(u).max() <= w / 2 + 1e-3 and np.abs(v).max() <= h / 2 + 1e-3
            assert np.abs(u).max() >= w / 2 - 0.75 and np.abs(v).max() >= h / 2 - 0.75
    assert shapes == {(3, height, width), (3, width, height)}


def test_seeded_augmentation_is_reproducible_per_sample_and_epoch(tmp_path):
    generate_synthetic_dataset(tmp_path, num_images=2, image_size=256, seed=2, empty_fraction=0.0)
    pipeline = T.build_transforms(hflip=0.5, vflip=0.5, rotate90=0.5, rotate=0.5)
    first = DotaDataset(tmp_path, DOTA_V1_0, transforms=pipeline, seed=5)
    second = DotaDataset(tmp_path, DOTA_V1_0, transforms=pipeline, seed=5)
    torch.manual_seed(123)  # the global RNG must not matter
    a = [first[i] for i in (1, 0)]
    torch.manual_seed(999)
    b = [second[i] for i in (1, 0)]
    for (image_a, target_a), (image_b, target_b) in zip(a, b):
        assert torch.equal(image_a, image_b) and torch.equal(target_a.boxes, target_b.boxes)
    differs = False
    for epoch in range(1, 6):
        second.set_epoch(epoch)
        differs |= not torch.equal(second[0][0], a[1][0])
    assert differs


def test_filter_empty_and_test_set_without_labels(tmp_path):
    summary = generate_synthetic_dataset(tmp_path / "set", num_images=4, image_size=128, seed=0, empty_fraction=0.5)
    assert summary.empty_images == 2
    assert len(DotaDataset(tmp_path / "set", DOTA_V1_0)) == 4
    filtered = DotaDataset(tmp_path / "set", DOTA_V1_0, filter_empty=True)
    assert len(filtered) == 2 and filtered.num_filtered == 2
    shutil.rmtree(tmp_path / "set" / "labelTxt")
    test_set = DotaDataset(tmp_path / "set", DOTA_V1_0)
    assert len(test_set) == 4 and not test_set.has_labels
    image, target = test_set[0]
    assert image.shape == (3, 128, 128) and target.boxes.shape == (0, 5) and target.labels.shape == (0,)


def test_unreadable_or_truncated_image_is_a_clear_error(tmp_path, dota_sample):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "garbage.png").write_bytes(b"not an image at all")
    data = (dota_sample / "images" / "P1888.png").read_bytes()
    (tmp_path / "images" / "truncated.png").write_bytes(data[: len(data) // 3])
    dataset = DotaDataset(tmp_path, DOTA_V1_0)
    assert dataset.image_ids == ["garbage", "truncated"]
    for index, name in enumerate(dataset.image_ids):
        with pytest.raises(InputError, match=f"{name}.png"):
            dataset[index]
    with pytest.raises(InputError, match="no images/ folder"):
        DotaDataset(tmp_path / "nowhere", DOTA_V1_0)


def test_dataloader_with_collate(dota_sample):
    dataset = DotaDataset(dota_sample, DOTA_V1_0, problems=ProblemLog())
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_batch)
    images, targets = next(iter(loader))
    assert images.shape == (2, 3, 1184, 1120)
    assert [t.image_id for t in targets] == ["P0706", "P1888"]
