"""The Python API (rgfl.api) against the engine functions it wraps and the commands built on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.errors import InputError, RgflError
from tests.engine.helpers import TINY_CONFIG

runner = CliRunner()
CLASSES = ("plane", "ship", "harbor")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_tiny_checkpoint(path: Path, input_size: int = 128) -> Path:
    """A tiny random model whose scores spread over (0, 1) (a fresh head scores 0.01 everywhere)."""
    from rgfl.engine.build import build_model
    from rgfl.engine.checkpoint import save_checkpoint
    from rgfl.engine.config import config_to_dict, load_config

    overrides = ["data.classes=" + ",".join(CLASSES), f"data.input_size={input_size}", "model.stacked_convs=1", "model.nms_pre=300"]
    cfg = load_config(TINY_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(CLASSES))
    with torch.no_grad():
        model.head.cls_conv.weight.mul_(8.0)
        model.head.cls_conv.bias.fill_(-1.0)
    return save_checkpoint({"config": config_to_dict(cfg), "model": model.state_dict()}, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("api") / "run" / "checkpoints" / "epoch_0001.pt")


def test_detector_predicts_like_the_engine_on_a_path_an_array_and_grey(checkpoint, dota_sample):
    from rgfl.api import Detector
    from rgfl.engine.build import load_detector
    from rgfl.engine.predict import SlidingWindowSettings, predict_image
    from rgfl.visualize import read_image_rgb

    detector = Detector.from_checkpoint(checkpoint.parent.parent, device="cpu")  # a work dir: its latest checkpoint
    assert detector.class_names == CLASSES and detector.input_size == 128 and detector.source == checkpoint
    image_path = dota_sample / "images" / "P1888.png"
    picture = read_image_rgb(image_path)
    result = detector.predict(image_path, size=256, overlap=64)
    model, _ = load_detector(checkpoint)
    reference = predict_image(model, picture, SlidingWindowSettings(size=256, overlap=64, input_size=128), "cpu", "P1888")
    assert len(result) == len(reference) > 20 and result.image_id == "P1888"
    np.testing.assert_array_equal(result.boxes, reference.boxes.numpy())
    np.testing.assert_array_equal(result.labels, reference.labels.numpy())
    assert result.names == [CLASSES[k] for k in reference.labels.tolist()]
    assert result.polygons.shape == (len(result), 8)
    same = detector.predict(picture, size=256, overlap=64, image_id="x")
    np.testing.assert_array_equal(same.boxes, result.boxes)
    grey = detector.predict(picture[:, :, 1], size=256, overlap=64, score_thr=0.5)
    assert len(grey) and grey.scores.min() >= 0.5
    strong = result.select(result.scores >= 0.5)
    assert len(strong) == int((result.scores >= 0.5).sum())


def test_detector_bad_input(checkpoint, tmp_path):
    from rgfl.api import Detector

    with pytest.raises(InputError, match="checkpoint not found"):
        Detector.from_checkpoint(tmp_path / "gone.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no checkpoint in this folder"):
        Detector.from_checkpoint(tmp_path / "empty")
    detector = Detector.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(RgflError, match="uint8"):
        detector.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(RgflError, match=r"\[H, W, 3\]"):
        detector.predict(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(InputError, match="image not found"):
        detector.predict(tmp_path / "nope.png")
    with pytest.raises(RgflError, match="overlap"):
        detector.predict(np.zeros((64, 64, 3), np.uint8), size=256, overlap=300)


def test_evaluate_equals_the_eval_command(dota_sample, tmp_path):
    from rgfl.api import evaluate

    dets = tmp_path / "dets"
    dets.mkdir()
    lines = [f"P1888 0.9 {line.split(' small-vehicle')[0]}" for line in (dota_sample / "labelTxt" / "P1888.txt").read_text().splitlines() if "small-vehicle" in line]
    (dets / "Task1_small-vehicle.txt").write_text("\n".join(lines[::2]) + "\nP1888 0.95 0 0 10 0 10 10 0 10\n")
    result = evaluate(dets, dota_sample / "labelTxt", classes="dota1.0", image_list=["P1888"])
    cli = invoke("eval", "--dets", dets, "--gt", dota_sample / "labelTxt", "--images", _image_list(tmp_path), "--json", tmp_path / "m.json")
    assert cli.exit_code == 0, cli.output
    assert result.to_dict() == json.loads((tmp_path / "m.json").read_text())
    assert 0.3 < result.per_class["small-vehicle"].ap[0.5] < 0.7  # every other object found, one false positive first


def _image_list(folder: Path) -> Path:
    path = folder / "images.txt"
    path.write_text("P1888\n")
    return path


def test_split_equals_the_split_command(dota_sample, tmp_path):
    from rgfl.api import split

    summary = split(dota_sample, tmp_path / "api", size=256, overlap=56, classes="dota1.0", workers=1)
    assert invoke("split", dota_sample, tmp_path / "cli", "--size", 256, "--overlap", 56, "--classes", "dota1.0", "--workers", 1).exit_code == 0
    api_files = sorted(p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*") if p.is_file())
    cli_files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert api_files == cli_files and summary.patches > 4
    for relative in api_files:
        if relative.suffix == ".txt":
            assert (tmp_path / "api" / relative).read_bytes() == (tmp_path / "cli" / relative).read_bytes()
    with pytest.raises(RgflError, match="unknown preset"):
        split(dota_sample, tmp_path / "x", preset="dota-2048")


def test_predict_command_is_the_api(checkpoint, dota_sample, tmp_path):
    """`rgfl predict` writes exactly what Detector.predict returns (score threshold applied)."""
    from rgfl.api import Detector
    from rgfl.dota.task1 import read_task1_file

    image = dota_sample / "images" / "P1888.png"
    result = invoke("predict", checkpoint, image, "--out", tmp_path / "out", "--size", 256, "--overlap", 64, "--device", "cpu", "--score-thr", 0.3)
    assert result.exit_code == 0, result.output
    prediction = Detector.from_checkpoint(checkpoint, "cpu").predict(image, size=256, overlap=64, score_thr=0.3)
    for label, name in enumerate(CLASSES):
        written = read_task1_file(tmp_path / "out" / f"Task1_{name}.txt")
        mine = prediction.select(prediction.labels == label)
        assert len(written) == len(mine)
        np.testing.assert_allclose(written.scores, mine.scores, rtol=1e-6)
        np.testing.assert_allclose(written.polygons, mine.polygons, atol=1e-3)
