"""Test-time defaults follow the reference recipe: fp32 unless --amp, no per-image cap when merging."""

from __future__ import annotations

import inspect

import numpy as np
from typer.testing import CliRunner

from rgfl.cli.evaluate import eval_command
from rgfl.cli.main import app
from rgfl.cli.merge_submit import merge_submit_command
from rgfl.cli.predict import predict_command
from rgfl.engine.inference import InferenceSettings
from rgfl.engine.predict import SlidingWindowSettings

runner = CliRunner()


def test_merge_keeps_every_detection_of_a_dense_image_by_default(tmp_path):
    # 2500 separate small vehicles on one image: the reference's merge (devkit) keeps them all.
    folder = tmp_path / "patch_dets"
    folder.mkdir()
    square = np.array([0, 0, 6, 0, 6, 6, 0, 6], dtype=np.float64)
    lines = []
    for k in range(2500):
        row, col = divmod(k, 50)
        polygon = square + np.tile([col * 10.0, row * 10.0], 4)
        lines.append(f"P0001__1024__0___0 {0.05 + k / 1e5:.6f} " + " ".join(f"{v:g}" for v in polygon) + "\n")
    (folder / "Task1_small-vehicle.txt").write_text("".join(lines))
    out = tmp_path / "merged"
    result = runner.invoke(app, ["merge-submit", "--dets", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len((out / "Task1_small-vehicle.txt").read_text().splitlines()) == 2500
    capped = tmp_path / "capped"
    result = runner.invoke(app, ["merge-submit", "--dets", str(folder), "--out", str(capped), "--max-per-img", "2000"])
    assert result.exit_code == 0, result.output
    assert len((capped / "Task1_small-vehicle.txt").read_text().splitlines()) == 2000


def test_inference_is_fp32_unless_amp_is_asked_for():
    for command in (eval_command, merge_submit_command, predict_command):
        assert inspect.signature(command).parameters["amp"].default is False, command.__name__
    assert InferenceSettings().amp is False and SlidingWindowSettings().amp is False
    assert SlidingWindowSettings().max_per_img == 0
    assert inspect.signature(predict_command).parameters["max_per_img"].default == 0
