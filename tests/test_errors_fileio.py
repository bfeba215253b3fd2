from __future__ import annotations

import pytest

from rgfl.errors import InputError, ProblemLog
from rgfl.fileio import atomic_write, atomic_write_text, remove_stale_temp_files


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    atomic_write_text(path, "x")
    assert path.read_text() == "x"


def test_problem_log_collects_or_raises(tmp_path):
    log = ProblemLog()
    log.report("bad thing", tmp_path / "f.txt", 3)
    assert len(log) == 1 and str(log.problems[0]).endswith("f.txt:3: bad thing")
    with pytest.raises(InputError) as info:
        ProblemLog(strict=True).report("bad thing", tmp_path / "f.txt", 3)
    assert info.value.line == 3 and str(info.value).endswith("f.txt:3: bad thing")


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os

    path = tmp_path / "shared.txt"
    atomic_write_text(path, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_remove_stale_temp_files_removes_only_atomic_write_leftovers(tmp_path):
    # What `kill -9` during atomic_write leaves: the temp file under its exact name pattern.
    path = tmp_path / "epoch_0003.pt"
    writer = atomic_write(path, "wb")
    handle = writer.__enter__()
    handle.write(b"half a checkpoint")
    handle.flush()
    stale = next(tmp_path.glob(".epoch_0003.pt.*.tmp"))  # abandoned: the process is gone
    user_files = [".notes.tmp", "data.tmp", ".x.1234567.tmp", ".x.deadbeefX.tmp", ".x.DEADBEEF.tmp", "keep.txt"]
    for name in user_files:
        (tmp_path / name).write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".a.txt.0123abcd.tmp").write_text("not in this folder")

    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(user_files + ["sub"])
    assert (tmp_path / "sub" / ".a.txt.0123abcd.tmp").exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []
    handle.close()
