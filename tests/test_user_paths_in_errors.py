"""Error messages name what the user gave: their output path (never our temporary file) and,
for two class lists, where they differ."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.engine.checkpoint import CheckpointError, check_model_signature
from rgfl.fileio import atomic_write_bytes, atomic_write_text


def test_atomic_write_onto_a_folder_names_the_folder(tmp_path):
    target = tmp_path / "metrics.json"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        atomic_write_text(target, "{}")
    assert caught.value.filename == str(target)
    assert ".tmp" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


def test_atomic_write_into_a_missing_place_names_the_target(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(blocker / "sub" / "out.bin", b"1")  # a parent is a file
    assert ".tmp" not in str(caught.value)


def test_eval_json_onto_a_folder_is_one_line_naming_it(tmp_path, dota_sample):
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "Task1_plane.txt").write_text("")
    target = tmp_path / "out.json"
    target.mkdir()
    result = CliRunner().invoke(app, ["eval", "--dets", str(dets), "--gt", str(dota_sample / "labelTxt"), "--json", str(target)])
    assert result.exit_code == 2
    assert f"Is a directory: {target}" in " ".join(result.output.split())
    assert ".tmp" not in result.output and "Traceback" not in result.output


def test_class_mismatch_shows_the_difference_not_two_cut_lists(tmp_path):
    classes = [f"class-number-{k:02d}" for k in range(16)]
    state = {"model_signature": {"classes": classes}}
    with pytest.raises(CheckpointError) as caught:
        check_model_signature(state, {"classes": classes[:15] + ["helipad"]}, tmp_path)
    message = str(caught.value)
    assert "only in the checkpoint: ['class-number-15']" in message
    assert "only in the config: ['helipad']" in message
    with pytest.raises(CheckpointError, match="first at position 1: 'class-number-00' in the checkpoint, 'class-number-01' in the config"):
        check_model_signature(state, {"classes": [classes[1], classes[0], *classes[2:]]}, tmp_path)
    with pytest.raises(CheckpointError, match="16 entries in the checkpoint, 15 in the config; only in the checkpoint"):
        check_model_signature(state, {"classes": classes[:15]}, tmp_path)
