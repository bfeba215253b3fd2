"""User text on the console: printed as typed (never read as rich markup), and never wrapped
when the output is not a terminal (logs, CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def make_source(root: Path, labels: str | None = "10 10 50 10 50 40 10 40 plane 0\n") -> Path:
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "A1.png"), np.full((90, 120, 3), 80, np.uint8))
    if labels is not None:
        (root / "labelTxt").mkdir()
        (root / "labelTxt" / "A1.txt").write_text(labels)
    return root


@pytest.mark.parametrize("name", ["a[/b]", "p[red]q", "x[bold]"])
def test_split_prints_bracketed_paths_as_typed(tmp_path, name):
    src = make_source(tmp_path / name)
    result = invoke("split", str(src), str(tmp_path / "out"), "--size", "64", "--overlap", "0", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert f"split {src} -> " in result.output


def test_missing_bracketed_source_is_named(tmp_path):
    result = invoke("split", str(tmp_path / "D" / "a[/b]"), str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "a[/b] is not a folder" in " ".join(result.output.replace("│", " ").split())


def test_split_error_keeps_the_value_in_brackets(tmp_path):
    src = make_source(tmp_path / "src")
    result = invoke("split", str(src), str(tmp_path / "out"), "--rates", "nan")
    assert result.exit_code == 2
    assert "got [nan]" in result.output


def test_strict_class_with_brackets_is_named(tmp_path):
    src = make_source(tmp_path / "src", labels="10 10 50 10 50 40 10 40 car[/x] 0\n")
    result = invoke("split", str(src), str(tmp_path / "out"), "--size", "64", "--overlap", "0", "--workers", "1", "--strict")
    assert result.exit_code == 2
    assert "unknown class 'car[/x]'" in result.output


def test_eval_error_names_a_bracketed_folder(tmp_path, dota_sample):
    result = invoke("eval", "--dets", str(tmp_path / "D" / "a[/b]"), "--gt", str(dota_sample / "labelTxt"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'D' / 'a[/b]'}: detection folder not found" in result.output


def test_eval_table_shows_bracketed_class_names(tmp_path, dota_sample):
    dets = tmp_path / "d[" / "e]"
    dets.mkdir(parents=True)
    (dets / "Task1_plane.txt").write_text("P1888 0.9 1 1 5 1 5 5 1 5\n")
    result = invoke("eval", "--dets", str(dets), "--gt", str(dota_sample / "labelTxt"), "--classes", "plane,car[/x]", "--mean-over", "all")
    assert result.exit_code == 0, result.output
    assert "car[/x]" in result.output


def test_output_without_terminal_does_not_wrap_long_paths(tmp_path):
    src = make_source(tmp_path / ("a_long_source_folder_name_" * 4))
    (src / "labelTxt" / "orphan.txt").write_text("1 1 5 1 5 5 1 5 plane 0\n")  # a warning
    out = tmp_path / ("a_long_output_folder_name_" * 5) / "split_of_the_sample"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    completed = subprocess.run(
        [sys.executable, "-m", "rgfl", "split", str(src), str(out), "--size", "64", "--overlap", "0", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert len(str(out)) > 120
    assert f"split {src} -> {out}: size 64" in completed.stderr  # one line on stderr
    assert f"output: {out}\n" in completed.stdout
    assert "│ images │ patches │" in completed.stdout.replace("┃", "│")
    assert f"WARNING  skipped: {src / 'labelTxt' / 'orphan.txt'}: label file has no image" in completed.stderr
    # Nothing padded to the (very wide) console width either.
    assert max(len(line) for line in (completed.stdout + completed.stderr).splitlines()) < 1000
