"""Task1 detection files: reading quirks, malformed lines, unrounded writing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rgfl.dota.task1 import Task1Detections, Task1Writer, read_task1_dir, read_task1_file, write_task1_file
from rgfl.errors import InputError, ProblemLog


def test_crlf_blank_lines_and_extra_spaces(tmp_path):
    path = tmp_path / "Task1_plane.txt"
    path.write_bytes(b"P1 0.9 1 2 3 4 5 6 7 8\r\n\r\n  P2\t0.5  1 2 3 4 5 6 7 8  \r\n\n")
    det = read_task1_file(path)
    assert det.image_ids == ["P1", "P2"]
    assert det.scores.tolist() == [0.9, 0.5]
    assert det.polygons.shape == (2, 8)
    assert det.line_numbers.tolist() == [1, 3]


def test_empty_file_has_no_detections(tmp_path):
    path = tmp_path / "Task1_plane.txt"
    path.write_text("")
    det = read_task1_file(path)
    assert len(det) == 0 and det.polygons.shape == (0, 8)


def test_malformed_lines_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "Task1_plane.txt"
    path.write_text("P1 0.9 1 2 3 4 5 6 7 8\nP2 0.5 1 2 3 4 5 6 7\nP3 x 1 2 3 4 5 6 7 8\nP4 0.1 1 2 3 4 5 6 7 nan\nP5 0.2 1 2 3 4 5 6 7 8\n")
    problems = ProblemLog()
    det = read_task1_file(path, problems)
    assert det.image_ids == ["P1", "P5"]
    assert det.line_numbers.tolist() == [1, 5]
    assert [(p.path, p.line) for p in problems.problems] == [(path, 2), (path, 3), (path, 4)]
    with pytest.raises(InputError, match=r"Task1_plane.txt:2"):
        read_task1_file(path, ProblemLog(strict=True))


def test_scores_round_trip_unrounded(tmp_path):
    scores = np.array([0.123456789012345, 1e-7, 0.5, 1 / 3])
    polygons = np.random.default_rng(0).uniform(0, 4000, size=(4, 8))
    path = tmp_path / "Task1_ship.txt"
    write_task1_file(path, Task1Detections(["P1"] * 4, scores, polygons))
    det = read_task1_file(path)
    assert det.scores.tolist() == scores.tolist()  # bit-exact
    np.testing.assert_allclose(det.polygons, polygons, atol=1e-5)


def test_writer_creates_every_class_file_and_reader_handles_missing_ones(tmp_path, caplog):
    with Task1Writer(tmp_path, ["plane", "ship"]) as writer:
        writer.add("ship", "P1", np.array([0.7]), np.zeros((1, 8)))
    assert (tmp_path / "Task1_plane.txt").read_text() == ""
    assert (tmp_path / "Task1_ship.txt").read_text().startswith("P1 0.7 0 0 0")
    (tmp_path / "Task1_plane.txt").unlink()
    (tmp_path / "Task1_other.txt").write_text("")
    rgfl_logger = logging.getLogger("rgfl")  # the CLI stops propagation to the root logger
    rgfl_logger.addHandler(caplog.handler)
    try:
        result = read_task1_dir(tmp_path, ["plane", "ship"])
    finally:
        rgfl_logger.removeHandler(caplog.handler)
    assert len(result["plane"]) == 0 and len(result["ship"]) == 1
    assert "other" in caplog.text and "no Task1_<class>.txt for 1 of 2 classes, they have no detections: plane" in caplog.text


def test_writer_leaves_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError):
        with Task1Writer(tmp_path, ["plane"]) as writer:
            writer.add("plane", "P1", np.array([0.7]), np.zeros((1, 8)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_folder_without_task1_files_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no Task1_"):
        read_task1_dir(tmp_path, ["plane"])


def test_bulk_scanner_gives_exactly_pythons_floats():
    from rgfl.dota.task1 import parse_task1_bytes
    from rgfl.dota.task1_scan import scan_task1_bytes

    rng = np.random.default_rng(0)
    tokens = [repr(float(x)) for x in rng.random(3000) * 10.0 ** rng.integers(-30, 30, 3000)]
    tokens += [f"{x:.{k}g}" for x in rng.random(300) * 1e4 for k in (3, 8, 12, 15, 17, 20)]
    tokens += ["1e22", "1e23", "-0", "0.000", "123.456e-5", "9007199254740993", "1E5", "+3.5", ".5", "5.", "0.30000000000000004"]
    data = "".join(f"img{i} {t} 1 2 3 4 5 6 7 {t}\r\n" for i, t in enumerate(tokens)).encode()
    assert len(scan_task1_bytes(data)[3]) == 0  # the fast path handles all of these
    det = parse_task1_bytes(data)
    expected = np.array([float(t) for t in tokens])
    assert det.scores.tobytes() == expected.tobytes()  # bit-identical, signs of zero included
    assert det.polygons[:, 7].tobytes() == expected.tobytes()
    assert det.image_ids[5] == "img5" and det.line_numbers[5] == 6
    # Anything unusual is set aside (line number, byte range) for the reporting path.
    assert scan_task1_bytes(b"a 1 2 3 4 5 6 7 nan\n")[3].tolist() == [[1, 0, 19]]
    assert scan_task1_bytes(b"a 1 2 3 4 5 6 7\n")[3].tolist() == [[1, 0, 15]]


def test_malformed_lines_keep_the_bulk_path_and_the_file_order(tmp_path):
    """Bad lines are reported with their numbers; the good ones come out exactly as the
    line-by-line parser gives them, in file order (the order breaks score ties)."""
    from rgfl.dota.task1 import parse_task1_bytes, parse_task1_text

    rng = np.random.default_rng(3)
    lines = [f"img{i % 7} {rng.random():.3f} " + " ".join(f"{v:.2f}" for v in rng.random(8) * 900) for i in range(400)]
    lines[10] = "img1 0.5 1 2 3 4 5 6 7"  # 9 fields
    lines[50] = "img2 0.5 1 2 x 4 5 6 7 8"  # not a number
    lines[51] = "img2 0.5 1 2 3 4 5 6 7 1e999"  # infinite after the exact-float fallback
    lines[52] = "img2 0.5 1 2 3 4 5 6 7 nan"
    lines[60] = "img3 0.75 1_000 2 3 4 5 6 7 8"  # Python's float reads it: kept, in place
    lines[61] = "img3 0.75 " + "1" * 25 + " 2 3 4 5 6 7 8"  # more digits than the exact path takes
    data = ("\r\n".join(lines) + "\r\n").encode()
    fast_log, slow_log = ProblemLog(), ProblemLog()
    fast = parse_task1_bytes(data, "T.txt", fast_log)
    slow = parse_task1_text(data.decode(), "T.txt", slow_log)
    assert [str(p) for p in fast_log.problems] == [str(p) for p in slow_log.problems]
    assert [p.line for p in fast_log.problems] == [11, 51, 52, 53]
    assert fast.image_ids == slow.image_ids and len(fast) == 396
    assert fast.line_numbers.tolist() == slow.line_numbers.tolist()
    assert fast.scores.tobytes() == slow.scores.tobytes() and fast.polygons.tobytes() == slow.polygons.tobytes()
    assert fast.polygons[56, 0] == 1000.0 and fast.line_numbers[56] == 61  # after four dropped lines
