"""`rgfl merge-submit --dets --out`: files for every class, zip, summary, errors."""

from __future__ import annotations

import zipfile

import numpy as np
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.classes import DOTA_V1_0
from rgfl.dota.task1 import read_task1_dir

runner = CliRunner()


def text(result):
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())
SQUARE = np.array([0, 0, 10, 0, 10, 10, 0, 10], dtype=np.float64)


def write_patch_dets(folder):
    folder.mkdir()
    rows = [
        ("P0001__1024__0___0", 0.9, SQUARE + 600),
        ("P0001__1024__512___512", 0.8, SQUARE + 88),  # the same object seen from the next patch
        ("P0001__1024__512___0", 0.3, SQUARE + np.tile([700, 20], 4)),
        ("P0002__0.5__0___0", 0.6, SQUARE),  # devkit name, rate 0.5
    ]
    text = "".join(f"{n} {s!r} " + " ".join(f"{v:g}" for v in p) + "\n" for n, s, p in rows)
    (folder / "Task1_plane.txt").write_text(text)


def test_merge_submit_writes_every_class_and_zip(tmp_path):
    write_patch_dets(tmp_path / "in")
    out = tmp_path / "submission"
    result = runner.invoke(app, ["merge-submit", "--dets", str(tmp_path / "in"), "--out", str(out), "--zip"])
    assert result.exit_code == 0, result.output
    assert "4 detections in, 3 out" in text(result) and "2 images" in text(result)
    assert sorted(p.name for p in out.glob("Task1_*.txt")) == sorted(f"Task1_{c}.txt" for c in DOTA_V1_0)
    merged = read_task1_dir(out, DOTA_V1_0)
    assert merged["plane"].image_ids == ["P0001", "P0001", "P0002"]
    assert merged["plane"].scores.tolist() == [0.9, 0.3, 0.6]
    np.testing.assert_array_equal(merged["plane"].polygons[2], SQUARE / 0.5)
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert len(archive.namelist()) == 15 and all("/" not in n for n in archive.namelist())


def test_merge_submit_score_threshold(tmp_path):
    write_patch_dets(tmp_path / "in")
    args = ["merge-submit", "--dets", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--score-thr", "0.5"]
    assert runner.invoke(app, args).exit_code == 0
    assert read_task1_dir(tmp_path / "o", DOTA_V1_0)["plane"].scores.tolist() == [0.9, 0.6]


def test_merge_submit_errors(tmp_path):
    result = runner.invoke(app, ["merge-submit", "--dets", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "detection folder not found" in text(result)
    assert "Traceback" not in text(result)
    result = runner.invoke(app, ["merge-submit", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--dets" in text(result)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "Task1_plane.txt").write_text("P0001 0.5 0 0 1 0 1 1 0 1\n")
    result = runner.invoke(app, ["merge-submit", "--dets", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--strict"])
    assert result.exit_code == 2 and "Task1_plane.txt:1" in text(result) and "not a patch name" in text(result)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("Task1_*"))


def test_merge_submit_with_manifest(tmp_path):
    import json

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "Task1_ship.txt").write_text("tileA 0.5 0 0 10 0 10 10 0 10\n")
    manifest = {"format": "rgfl-split/1", "images": [{"stem": "P5", "patches": [{"name": "tileA", "x": 824, "y": 0, "rate": 1.0}]}]}
    (tmp_path / "split_manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "o"
    args = ["merge-submit", "--dets", str(tmp_path / "in"), "--out", str(out), "--manifest", str(tmp_path / "split_manifest.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ship = read_task1_dir(out, DOTA_V1_0)["ship"]
    assert ship.image_ids == ["P5"]
    np.testing.assert_array_equal(ship.polygons[0], [824, 0, 834, 0, 834, 10, 824, 10])
    (tmp_path / "split_manifest.json").write_text("{}")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not an rgfl split manifest" in text(result)


def test_rerun_removes_temp_files_of_a_killed_merge(tmp_path):
    """kill -9 in the middle of writing a class file leaves its temp file; the next merge into the
    same folder removes it (our temp-name pattern only, never the user's files)."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "submission"
    out.mkdir()
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from rgfl.fileio import atomic_write\n"
            "with atomic_write(sys.argv[1]) as handle:\n"
            "    handle.write('P0001 0.5 1 2 3 4 5 6 7 8\\n'); handle.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
            str(out / "Task1_plane.txt"),
        ],
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    stale = [p.name for p in out.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".Task1_plane.txt.") and stale[0].endswith(".tmp")
    (out / ".notes.tmp").write_text("mine")
    (out / "draft.tmp").write_text("mine")
    write_patch_dets(tmp_path / "in")
    result = runner.invoke(app, ["merge-submit", "--dets", str(tmp_path / "in"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".notes.tmp", "draft.tmp", *(f"Task1_{c}.txt" for c in DOTA_V1_0)])
    assert os.path.getsize(out / "Task1_plane.txt") > 0
