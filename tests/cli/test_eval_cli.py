"""`rgfl eval --dets --gt`: table, JSON schema, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.classes import DOTA_V1_0
from rgfl.dota.task1 import Task1Writer
from rgfl.evaluation import load_ground_truth

runner = CliRunner()


def text(result):
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def write_noisy_detections(label_dir, out_dir, seed=0):
    gt = load_ground_truth(label_dir)
    rng = np.random.default_rng(seed)
    with Task1Writer(out_dir, DOTA_V1_0) as writer:
        for image, labels in gt.items():
            for name in DOTA_V1_0:
                mask = np.array([n == name for n in labels.classes], dtype=bool)
                if mask.any():
                    polys = labels.polygons[mask] + rng.normal(0, 1.5, size=(int(mask.sum()), 8))
                    writer.add(name, image, rng.random(int(mask.sum())), polys)


def test_eval_prints_table_and_writes_schema(dota_sample, tmp_path):
    write_noisy_detections(dota_sample / "labelTxt", tmp_path / "dets")
    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", "--dets", str(tmp_path / "dets"), "--gt", str(dota_sample / "labelTxt"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "AP50" in text(result) and "storage-tank" in text(result)
    doc = json.loads(out.read_text())
    assert set(doc) == {"AP50", "AP75", "mAP", "ap_method", "num_images", "per_class", "mean_over", "num_classes", "num_classes_averaged"}
    assert doc["ap_method"] == "voc07" and doc["num_images"] == 7
    present = [name for name, entry in doc["per_class"].items() if entry["num_gt"] > 0]
    assert doc["mean_over"] == "present" and doc["num_classes"] == 15 and doc["num_classes_averaged"] == len(present) < 15
    assert list(doc["per_class"]) == list(DOTA_V1_0)
    for entry in doc["per_class"].values():
        assert set(entry) == {"num_gt", "num_dets", "AP50", "AP75", "mAP"}
        assert all(0.0 <= entry[k] <= 1.0 for k in ("AP50", "AP75", "mAP"))
    assert 0 < doc["mAP"] < doc["AP75"] < doc["AP50"] <= 1
    mean = sum(doc["per_class"][name]["AP50"] for name in present) / len(present)
    assert abs(mean - doc["AP50"]) < 1e-12
    # The noisy copies still find every object at IoU 0.5.
    assert doc["per_class"]["ship"]["AP50"] > 0.99


def test_eval_area_method_and_custom_thresholds(dota_sample, tmp_path):
    write_noisy_detections(dota_sample / "labelTxt", tmp_path / "dets")
    out = tmp_path / "m.json"
    args = ["eval", "--dets", str(tmp_path / "dets"), "--gt", str(dota_sample), "--ap-method", "area", "--iou-thrs", "0.6,0.8", "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["ap_method"] == "area"
    assert "AP@0.6" in text(result)


def test_eval_errors_are_one_line(tmp_path, dota_sample):
    result = runner.invoke(app, ["eval", "--dets", str(tmp_path / "missing"), "--gt", str(dota_sample / "labelTxt")])
    assert result.exit_code == 2
    assert "detection folder not found" in text(result) and "Traceback" not in text(result)
    result = runner.invoke(app, ["eval", "--gt", str(dota_sample / "labelTxt")])
    assert result.exit_code == 2 and "--dets" in text(result)


def test_eval_strict_stops_on_malformed_line(tmp_path, dota_sample):
    (tmp_path / "Task1_plane.txt").write_text("P0706 0.9 1 2 3 4 5 6 7\n")
    args = ["eval", "--dets", str(tmp_path), "--gt", str(dota_sample / "labelTxt")]
    result = runner.invoke(app, [*args, "--strict"])
    assert result.exit_code == 2 and "Task1_plane.txt:1" in text(result)
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "1 malformed lines skipped" in text(result)


def test_eval_image_list_restricts_images(dota_sample, tmp_path):
    write_noisy_detections(dota_sample / "labelTxt", tmp_path / "dets")
    (tmp_path / "list.txt").write_text("P0706\nP1888.png\n\n")
    out = tmp_path / "m.json"
    args = ["eval", "--dets", str(tmp_path / "dets"), "--gt", str(dota_sample / "labelTxt"), "--images", str(tmp_path / "list.txt"), "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["num_images"] == 2
    assert doc["per_class"]["plane"]["num_gt"] == 0  # planes are in other images
    assert "detections on unlabelled images" in text(result)  # the other images' detections
    (tmp_path / "list.txt").write_text("P9999\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "P9999" in text(result)


def test_perfect_detections_score_one_over_present_classes_and_less_over_all(dota_sample, tmp_path):
    """The ground truth as detections: mAP 1 over the classes present (mmrotate); the official
    all-classes mean divides the same sum by the 15 classes of the set."""
    gt = load_ground_truth(dota_sample / "labelTxt")
    with Task1Writer(tmp_path / "dets", DOTA_V1_0) as writer:
        for image, labels in gt.items():
            for name in set(labels.classes):
                mask = np.array([n == name for n in labels.classes])
                writer.add(name, image, np.ones(int(mask.sum())), labels.polygons[mask])
    docs = {}
    for mode in ("present", "all"):
        out = tmp_path / f"{mode}.json"
        result = runner.invoke(app, ["eval", "--dets", str(tmp_path / "dets"), "--gt", str(dota_sample / "labelTxt"), "--mean-over", mode, "--json", str(out)])
        assert result.exit_code == 0, result.output
        docs[mode] = json.loads(out.read_text())
    present = [n for n, e in docs["present"]["per_class"].items() if e["num_gt"] > 0]
    assert docs["present"]["mAP"] == pytest.approx(1.0, abs=1e-12)
    assert docs["present"]["num_classes_averaged"] == len(present)
    assert docs["all"]["num_classes_averaged"] == 15
    assert docs["all"]["mAP"] == pytest.approx(len(present) / 15, abs=1e-12)
    # One warning line lists the absent classes (not one line per class).
    warnings = [line for line in result.output.splitlines() if "no non-difficult ground truth" in line]
    assert len(warnings) == 1 and "counted as AP 0" in warnings[0]


def test_merged_eval_leaves_out_label_files_of_images_never_split(tmp_path, dota_sample):
    """`rgfl eval CHECKPOINT --merged --gt` scores only the images that DATA has patches of; the
    other label files would count every object as a miss. One warning says how many were left out."""
    import logging

    from rgfl.cli.run_model import _split_images_only

    data = tmp_path / "split"
    (data / "images").mkdir(parents=True)
    for name in ("P0706__1024__0___0", "P0706__1024__824___0", "P1888__1024__0___0__r0.5"):
        (data / "images" / f"{name}.png").write_bytes(b"")
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("rgfl")
    logger.addHandler(handler)
    try:
        kept = _split_images_only(dota_sample / "labelTxt", data, None)
        assert kept == ["P0706", "P1888"]
        assert len(messages) == 1 and "5 of 7 label files" in messages[0] and "never split" in messages[0]
        assert _split_images_only(dota_sample / "labelTxt", data, ["P1888"]) == ["P1888"]
        (data / "images" / "P0706__1024__0___0.png").unlink()
        (data / "images" / "P0706__1024__824___0.png").unlink()
        (data / "images" / "P1888__1024__0___0__r0.5.png").unlink()
        with pytest.raises(Exception, match="none of the label files"):
            _split_images_only(dota_sample / "labelTxt", data, None)
    finally:
        logger.removeHandler(handler)
