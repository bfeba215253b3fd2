"""`rgfl show`, `rgfl predict` and `rgfl demo` from the command line: help, pictures, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.classes import DOTA_V1_0

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result, *fragments: str) -> None:
    """Non-zero exit, one readable message, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = " ".join(result.output.split())  # rich wraps long lines
    for fragment in fragments:
        assert fragment in text, result.output


@pytest.mark.parametrize("command", ["show", "predict", "demo"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage: rgfl " + command in " ".join(result.output.split())


def test_show_draws_ground_truth_of_the_real_sample(dota_sample, tmp_path):
    image = dota_sample / "images" / "P1888.png"
    out = tmp_path / "P1888_show.png"
    result = invoke("show", image, "--out", out)  # labels found next to the image
    assert result.exit_code == 0, result.output
    assert "drew 64 ground-truth objects" in " ".join(result.output.split())
    drawn = cv2.imread(str(out))
    original = cv2.imread(str(image))
    assert drawn.shape == original.shape
    changed = np.any(drawn != original, axis=2)
    assert 0.01 < changed.mean() < 0.5  # outlines and a legend, not a repainted image
    # the large-vehicle colour (class 5 of DOTA-v1.0) is drawn; it is nowhere in the original
    from rgfl.visualize import class_color

    r, g, b = class_color(DOTA_V1_0.index("large-vehicle"))
    assert np.any(np.all(drawn == (b, g, r), axis=2))


def test_show_draws_detections_from_task1_files(tmp_path):
    image = np.full((300, 400, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "scene.png"), image)
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "Task1_plane.txt").write_text("scene 0.9 50 50 150 50 150 120 50 120\nother 0.8 1 1 9 1 9 9 1 9\nscene 0.1 10 10 20 10 20 20 10 20\n")
    (dets / "Task1_ship.txt").write_text("scene 0.6 200 200 300 210 290 260 195 250\r\n")
    result = invoke("show", tmp_path / "scene.png", "--dets", dets, "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert "drew 0 ground-truth objects and 2 detections" in " ".join(result.output.split())  # 0.1 < --score-thr 0.3
    assert (tmp_path / "s.png").is_file()


def test_show_bad_input(tmp_path):
    assert_clean_error(invoke("show", tmp_path / "missing.png"), "image not found")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert_clean_error(invoke("show", tmp_path / "broken.png", "--labels", tmp_path / "x.txt"), "cannot decode")
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((10, 10, 3), np.uint8))
    assert_clean_error(invoke("show", tmp_path / "ok.png"), "nothing to draw")
    assert_clean_error(invoke("show", tmp_path / "ok.png", "--labels", tmp_path / "none.txt"), "label file not found")
    assert_clean_error(invoke("show", tmp_path / "ok.png", "--dets", tmp_path), "no Task1_")
    assert_clean_error(invoke("show", tmp_path / "ok.png", "--dets", tmp_path, "--score-thr", "2"), "--score-thr")


def test_predict_bad_input(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((10, 10, 3), np.uint8))
    assert_clean_error(invoke("predict", tmp_path / "missing.pt", tmp_path / "a.png", "--out", tmp_path / "o"), "checkpoint not found")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert_clean_error(invoke("predict", tmp_path / "bad.pt", tmp_path / "a.png", "--out", tmp_path / "o"), "bad.pt", "checkpoint")
    assert_clean_error(invoke("predict", tmp_path / "bad.pt", tmp_path / "nope.png", "--out", tmp_path / "o"), "no such file")
    assert_clean_error(invoke("predict", tmp_path / "bad.pt", tmp_path / "a.png", "--out", tmp_path / "o", "--overlap", "2000"), "--overlap")
    assert_clean_error(invoke("predict", tmp_path / "bad.pt", tmp_path / "a.png", "--out", tmp_path / "o", "--rates", "0,x"), "--rates")
    assert_clean_error(invoke("predict", tmp_path / "bad.pt", tmp_path / "a.png", "--out", tmp_path / "o", "--device", "tpu"), "--device")
    assert not (tmp_path / "o").exists(), "nothing written when the input is refused"
