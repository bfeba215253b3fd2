"""Merging patch detections: name parsing, mapping back, NMS rules, streaming, round trip on real data."""

from __future__ import annotations

import json
import numpy as np
import pytest
from shapely.geometry import Polygon

from rgfl.dota.annotations import read_label_file
from rgfl.dota.merge import (
    PatchDetections,
    load_split_manifest,
    map_to_source,
    merge_image_detections,
    merge_patch_detections,
    write_merged_task1,
    zip_task1_files,
)
from rgfl.dota.patches import parse_patch_name, patch_name
from rgfl.dota.task1 import Task1Detections, Task1Writer, read_task1_dir, write_task1_file
from rgfl.errors import InputError, ProblemLog
from rgfl.evaluation import evaluate_detections, load_ground_truth
from tests.conftest import DEVICES

SQUARE = np.array([0, 0, 10, 0, 10, 10, 0, 10], dtype=np.float64)


def test_map_to_source_with_offset_and_rate():
    origin = parse_patch_name("P0001__1024__512___256")
    np.testing.assert_array_equal(map_to_source(SQUARE[None], origin)[0], SQUARE + np.tile([512, 256], 4))
    devkit = parse_patch_name("P0001__0.5__100___200")  # devkit names: rate field, resized pixels
    np.testing.assert_allclose(map_to_source(SQUARE[None], devkit)[0], (SQUARE + np.tile([100, 200], 4)) / 0.5)
    scaled = parse_patch_name(patch_name("P0001", 824, 0, 1024, 1.5))
    np.testing.assert_allclose(map_to_source(SQUARE[None], scaled)[0], (SQUARE + np.tile([824, 0], 4)) / 1.5)


def test_nms_suppresses_strictly_above_threshold_per_class():
    a = SQUARE
    b = SQUARE + np.tile([0, 0], 4)
    b = np.array([0, 0, 10, 0, 10, 10, 0, 10]) + np.array([6, 0] * 4)  # IoU 40/160 = 0.25
    polys = np.stack([a, b, a])
    labels = np.array([0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7])
    keep = merge_image_detections(labels, scores, polys, iou_thr=0.25)
    assert keep.tolist() == [0, 1, 2]  # 0.25 is not > 0.25; class 1 is independent
    keep = merge_image_detections(labels, scores, polys, iou_thr=0.2)
    assert keep.tolist() == [0, 2]


def test_equal_scores_keep_the_earlier_detection():
    polys = np.stack([SQUARE + 1, SQUARE])
    keep = merge_image_detections(np.array([0, 0]), np.array([0.5, 0.5]), polys, iou_thr=0.1)
    assert keep.tolist() == [0]


def test_quadrilateral_uses_minimum_area_rectangle_but_is_written_unchanged():
    kite = np.array([5, 0, 10, 5, 5, 12, 0, 5], dtype=np.float64)  # not a rectangle
    keep = merge_image_detections(np.array([0]), np.array([0.3]), kite[None])
    assert keep.tolist() == [0]
    source = PatchDetections({"a": Task1Detections(["P1__1024__0___0"], [0.3], kite[None])}, ["a"])
    (image,) = list(merge_patch_detections(source))
    np.testing.assert_array_equal(image.polygons[0], kite)


def test_score_threshold_and_cap_per_image():
    polys = np.stack([SQUARE + 20 * k for k in range(5)])
    labels = np.array([0, 1, 0, 1, 0])
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.05])
    assert sorted(merge_image_detections(labels, scores, polys, score_thr=0.1).tolist()) == [0, 1, 2, 3]
    keep = merge_image_detections(labels, scores, polys, max_per_img=3)
    assert sorted(keep.tolist()) == [1, 2, 3]
    assert keep.tolist() == [2, 1, 3]  # grouped by class, decreasing score


def write_patch_files(folder, rows_per_class):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in rows_per_class.items():
        (folder / f"Task1_{name}.txt").write_text("".join(rows))


def line(name, score, poly):
    return f"{name} {score!r} " + " ".join(f"{v:g}" for v in poly) + "\n"


def test_streams_interleaved_files_and_reports_bad_names(tmp_path):
    # Lines of two source images interleaved; one line with a full-image name; a malformed line.
    rows = [
        line("A__1024__0___0", 0.9, SQUARE),
        line("B__1024__0___0", 0.8, SQUARE),
        "\n",
        line("A__1024__512___0", 0.7, SQUARE),
        line("A", 0.6, SQUARE),
        "A__1024__0___0 0.5 1 2 3\n",
        line("B__1024__0___512", 0.4, SQUARE + 100),
    ]
    write_patch_files(tmp_path / "in", {"plane": rows, "ship": []})
    problems = ProblemLog()
    source = PatchDetections(tmp_path / "in", ["plane", "ship", "harbor"], problems=problems)
    assert source.stems == ["A", "B"] and source.num_patches == 4
    summary = write_merged_task1(merge_patch_detections(source), tmp_path / "out", ["plane", "ship", "harbor"])
    assert [(p.line, "not a patch name" in p.message) for p in problems.problems] == [(5, True), (6, False)]
    assert summary.images == 2 and summary.detections_in == 4 and summary.detections_out == 4
    merged = read_task1_dir(tmp_path / "out", ["plane", "ship", "harbor"])
    assert merged["plane"].image_ids == ["A", "A", "B", "B"]
    np.testing.assert_array_equal(merged["plane"].polygons[1], SQUARE + np.tile([512, 0], 4))
    np.testing.assert_array_equal(merged["plane"].polygons[3], SQUARE + np.tile([100, 612], 4))
    assert (tmp_path / "out" / "Task1_harbor.txt").read_text() == ""
    with pytest.raises(InputError, match="Task1_plane.txt:5"):
        PatchDetections(tmp_path / "in", ["plane"], problems=ProblemLog(strict=True))


def test_manifest_gives_the_origins(tmp_path):
    manifest = {
        "format": "rgfl-split/1",
        "images": [{"stem": "P9", "width": 3000, "height": 3000, "patches": [{"name": "tile7", "rate": 0.5, "x": 100, "y": 50}]}],
    }
    (tmp_path / "split_manifest.json").write_text(json.dumps(manifest))
    origins = load_split_manifest(tmp_path)
    source = PatchDetections({"a": Task1Detections(["tile7"], [0.5], SQUARE[None])}, ["a"], origins)
    (image,) = list(merge_patch_detections(source))
    assert image.stem == "P9"
    np.testing.assert_allclose(image.polygons[0], (SQUARE + np.tile([100, 50], 4)) / 0.5)


def test_zip_is_flat_with_every_class(tmp_path):
    import zipfile

    with Task1Writer(tmp_path, ["a", "b"]) as writer:
        writer.add("a", "P1", np.array([0.25]), SQUARE[None])
    path = zip_task1_files(tmp_path, ["a", "b"])
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["Task1_a.txt", "Task1_b.txt"]
        assert archive.read("Task1_a.txt").decode().startswith("P1 0.25 ")


@pytest.mark.parametrize("rates", [(1.0,), (1.0, 0.5)])
def test_round_trip_on_real_samples(dota_sample, tmp_path, rates):
    """Split the labelled samples (1024, step 512) with `rgfl split`'s library, turn every patch
    label into a score-1 detection, merge back through the split manifest and evaluate."""
    from rgfl.dota.split import SplitConfig, split_dataset

    stems = ["P0706", "P1888"]
    src = tmp_path / "src"
    for sub, ext in (("images", "png"), ("labelTxt", "txt")):
        (src / sub).mkdir(parents=True)
        for stem in stems:
            (src / sub / f"{stem}.{ext}").symlink_to(dota_sample / sub / f"{stem}.{ext}")
    split_dataset(src, tmp_path / "split", SplitConfig(size=1024, step=512, rates=rates, png_compression=0), workers=1)

    gt = {s: v for s, v in load_ground_truth(dota_sample / "labelTxt").items() if s in stems}
    class_names = sorted({n for lab in gt.values() for n in lab.classes})
    per_class = {name: ([], []) for name in class_names}
    for label_file in sorted((tmp_path / "split" / "labelTxt").glob("*.txt")):
        patch = read_label_file(label_file)
        for poly, cls in zip(patch.polygons, patch.classes):
            per_class[cls][0].append(label_file.stem)
            per_class[cls][1].append(poly)
    detections = {
        name: Task1Detections(ids, np.ones(len(ids)), np.array(polys).reshape(-1, 8)) for name, (ids, polys) in per_class.items()
    }
    write_patch_files(tmp_path / "patches", {})
    for name, det in detections.items():
        write_task1_file(tmp_path / "patches" / f"Task1_{name}.txt", det)
    origins = load_split_manifest(tmp_path / "split")
    source = PatchDetections(tmp_path / "patches", class_names, origins)
    summary = write_merged_task1(merge_patch_detections(source), tmp_path / "merged", class_names)
    assert summary.images == 2 and source.num_patches == len(origins)

    result = evaluate_detections(tmp_path / "merged", gt, class_names, iou_thrs=[0.5])
    assert result.AP50 >= 0.99, result.AP50

    # Name every object that did not come back, and check the reason.
    merged = read_task1_dir(tmp_path / "merged", class_names)
    inside = {(i.split("__")[0], cls) for cls, (ids, _) in per_class.items() for i in ids}
    lost = []
    for stem in stems:
        labels = gt[stem]
        for k, (poly, cls) in enumerate(zip(labels.polygons, labels.classes)):
            mine = [p for i, p in zip(merged[cls].image_ids, merged[cls].polygons) if i == stem]
            if any(np.abs(p - poly).max() < 1e-3 for p in mine):
                continue
            lost.append((stem, int(labels.line_numbers[k]), cls))
            if (stem, cls) not in inside:  # reason 1: in no patch (IoF < 0.7 everywhere)
                continue
            # Reason 2: NMS at IoU > 0.1 against a kept object of the same class.
            rect = Polygon(_min_rect(poly))
            assert any(
                rect.intersection(Polygon(_min_rect(p))).area / rect.union(Polygon(_min_rect(p))).area > 0.1 for p in mine
            ), (stem, labels.line_numbers[k], cls)
    print("objects lost (in no patch, or NMS overlap > 0.1 with a kept object of the same class):", lost)
    assert len(lost) <= 0.01 * sum(len(gt[s]) for s in stems)


def _min_rect(poly):
    import cv2

    return cv2.boxPoints(cv2.minAreaRect(poly.reshape(4, 2).astype(np.float32)))


@pytest.mark.parametrize("device", DEVICES)
def test_model_detections_become_task1_and_merge(device):
    import torch

    from rgfl.dota.merge import task1_from_detections
    from rgfl.structures import Detections

    boxes = torch.tensor([[50.0, 40.0, 20.0, 10.0, 0.3], [50.5, 40.0, 20.0, 10.0, 0.3], [10.0, 10.0, 4.0, 4.0, 0.0]], device=device)
    det = Detections(boxes, torch.tensor([0.9, 0.8, 0.7], device=device), torch.tensor([1, 1, 0], device=device))
    per_class = task1_from_detections([("P7__1024__100___0", det)], ["a", "b"])
    assert per_class["a"].image_ids == ["P7__1024__100___0"] and len(per_class["b"]) == 2
    np.testing.assert_allclose(per_class["a"].polygons[0], [8, 8, 12, 8, 12, 12, 8, 12], atol=1e-6)
    (image,) = list(merge_patch_detections(PatchDetections(per_class, ["a", "b"])))
    assert image.stem == "P7" and image.labels.tolist() == [0, 1]  # the near-duplicate is suppressed
    np.testing.assert_allclose(image.polygons[0], [108, 8, 112, 8, 112, 12, 108, 12], atol=1e-6)


def test_index_holds_ranges_not_detections(tmp_path):
    # 3000 lines of one image over 30 patches, then 3000 of another: two byte ranges in the index.
    rows = [line(f"A__1024__{512 * (k % 30)}___0", 0.5, SQUARE) for k in range(3000)]
    rows += [line(f"B__1024__0___{512 * (k % 30)}", 0.5, SQUARE) for k in range(3000)]
    write_patch_files(tmp_path / "in", {"plane": rows})
    source = PatchDetections(tmp_path / "in", ["plane"])
    assert source.num_runs == 2 and source.num_patches == 60
    labels, scores, polygons = source.load("B")
    assert len(scores) == 3000 and polygons[:, 1::2].max() == 512 * 29 + 10


@pytest.mark.parametrize(
    "text",
    [
        '{"images": [{"stem": "P0001", "patches": [{"name": "p", "x": 1e400, "y": 0}]}]}',  # inf: OverflowError
        '{"images": [{"stem": "P0001", "patches": [{"name": "p", "x": 0, "y": 0, "rate": 0}]}]}',  # later divided by
        '{"images": [{"stem": 5, "patches": [{"name": "p", "x": 0, "y": 0}]}]}',
        '{"images": [{"stem": "P0001", "patches": [{"name": ["p"], "x": 0, "y": 0}]}]}',
        "[]",
    ],
)
def test_malformed_manifest_is_one_input_error_naming_the_file(tmp_path, text):
    path = tmp_path / "split_manifest.json"
    path.write_text(text)
    with pytest.raises(InputError, match="not an rgfl split manifest") as info:
        load_split_manifest(tmp_path)
    assert str(info.value).startswith(f"{path}: ")
