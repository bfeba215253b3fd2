"""`rgfl eval --dets --gt`: table, JSON schema, errors."""

from __future__ import annotations

import json

import numpy as np
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
    assert set(doc) == {"AP50", "AP75", "mAP", "ap_method", "num_images", "per_class"}
    assert doc["ap_method"] == "voc07" and doc["num_images"] == 7
    assert list(doc["per_class"]) == list(DOTA_V1_0)
    for entry in doc["per_class"].values():
        assert set(entry) == {"num_gt", "num_dets", "AP50", "AP75", "mAP"}
        assert all(0.0 <= entry[k] <= 1.0 for k in ("AP50", "AP75", "mAP"))
    assert 0 < doc["mAP"] < doc["AP75"] < doc["AP50"] <= 1
    mean = sum(e["AP50"] for e in doc["per_class"].values()) / len(DOTA_V1_0)
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
