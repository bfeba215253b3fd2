from __future__ import annotations

import pytest

from rgfl.errors import InputError, ProblemLog
from rgfl.fileio import atomic_write, atomic_write_text


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
