from __future__ import annotations

from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.annotations import read_label_file

runner = CliRunner()


def test_synth_writes_dataset(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", str(out), "--images", "2", "--size", "384", "--seed", "4", "--classes", "plane,ship"])
    assert result.exit_code == 0, result.output
    assert "total" in result.output
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == ["synth_00000.png", "synth_00001.png"]
    classes = set()
    for path in (out / "labelTxt").iterdir():
        classes |= set(read_label_file(path, ["plane", "ship"]).classes)
    assert classes <= {"plane", "ship"} and classes


def test_synth_help_and_bad_options(tmp_path):
    result = runner.invoke(app, ["synth", "--help"])
    assert result.exit_code == 0 and "--images" in result.output and "--seed" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--classes", "plane,bridge"])
    assert result.exit_code == 2 and "cannot draw" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--size", "8"])
    assert result.exit_code == 2
    assert not (tmp_path / "x" / "images").exists()
