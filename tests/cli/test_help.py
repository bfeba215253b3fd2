"""What `--help` teaches: examples, the defaults of options without a fixed default value, flags
shown as flags (no `<bool>` value), and predict's drawing options."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app

runner = CliRunner()
COMMANDS = ["synth", "split", "train", "eval", "merge-submit", "predict", "show", "demo"]


def help_of(command: str) -> str:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", ["synth", "split", "eval", "merge-submit", "predict", "demo"])
def test_help_has_examples(command):
    text = flat(help_of(command))
    assert "Examples:" in text
    assert f"rgfl {command} " in text.split("Examples:", 1)[1]


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_are_shown_without_a_value_type(command):
    assert "<bool>" not in help_of(command)


@pytest.mark.parametrize(
    "command,shown",
    [
        ("split", ["[default: 1024]", "[default: 200]", "[default: all cores]"]),
        ("predict", ["[default: 200]", "[default: 0.3]", "[default: 0.05]"]),
        ("demo", ["[default: configs/rgfl_r18_tiny_cpu.yaml]"]),
        ("eval", ["[default: present]"]),
    ],
)
def test_defaults_are_shown(command, shown):
    text = flat(help_of(command))
    for fragment in shown:
        assert fragment in text, fragment


def test_predict_help_says_which_threshold_draws_and_offers_no_text():
    text = flat(help_of("predict"))
    assert "--no-text" in text
    score = text.split("--score-thr", 1)[1].split("[default: 0.05]", 1)[0]
    assert "(drawing uses --draw-thr)" in score and "Write and draw" not in score


def test_legend_moves_off_the_detections():
    from rgfl.visualize import draw_scene

    image = np.full((400, 600, 3), 200, np.uint8)
    # Detections in the top-left corner, where the legend used to go.
    polygons = np.array([[5, 5, 150, 5, 150, 60, 5, 60], [10, 70, 120, 70, 120, 110, 10, 110]], dtype=np.float64)
    canvas = draw_scene(image, ["plane", "ship"], det_polygons=polygons, det_labels=np.array([0, 1]), det_scores=np.array([0.9, 0.8]), text=False)
    # The legend darkens its box to 35 %: the inside of the detections keeps its colour ...
    assert (canvas[20:50, 20:140] == 200).all()
    # ... and the darkened box is in the top-right corner, the first free one.
    assert (canvas[2, 598] < 100).all() and (canvas[398, 2] == 200).all()
    # Without boxes to avoid it stays top-left.
    plain = draw_scene(image, ["plane"], det_polygons=np.array([[400, 300, 500, 300, 500, 380, 400, 380]], dtype=np.float64), det_labels=np.array([0]), det_scores=np.array([0.9]))
    assert (plain[2, 2] < 100).all()
