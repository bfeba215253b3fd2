from __future__ import annotations

import numpy as np
import pytest

from rgfl.dota.annotations import ImageLabels, format_number, polygon_areas, read_label_file, write_label_file
from rgfl.dota.classes import DOTA_V1_0, DOTA_V1_5, DOTA_V2_0, resolve_classes
from rgfl.errors import InputError, ProblemLog


def _object_lines(path):
    """Object lines of a DOTA file, parsed with plain string handling as an oracle."""
    rows = []
    for line in path.read_text().splitlines():
        tokens = line.split()
        if len(tokens) >= 9:
            rows.append(([float(t) for t in tokens[:8]], tokens[8], int(tokens[9]) if len(tokens) == 10 else 0))
    return rows


def test_reads_every_real_sample_file(dota_sample):
    files = sorted((dota_sample / "labelTxt").glob("*.txt"))
    assert len(files) == 7
    for path in files:
        labels = read_label_file(path, DOTA_V1_0)
        expected = _object_lines(path)
        assert len(labels) == len(expected)
        np.testing.assert_array_equal(labels.polygons, np.array([row[0] for row in expected]).reshape(-1, 8))
        assert labels.classes == [row[1] for row in expected]
        assert labels.difficult.tolist() == [row[2] for row in expected]


def test_headers_and_crlf(dota_sample):
    p0706 = read_label_file(dota_sample / "labelTxt" / "P0706.txt")
    assert b"\r\n" in (dota_sample / "labelTxt" / "P0706.txt").read_bytes()
    assert p0706.imagesource == "GoogleEarth"
    assert p0706.gsd == pytest.approx(0.255589285596)
    assert p0706.line_numbers[0] == 3  # two header lines come first
    assert read_label_file(dota_sample / "labelTxt" / "P1234.txt").gsd == 1.0


def test_round_trip_preserves_objects(dota_sample, tmp_path):
    for path in sorted((dota_sample / "labelTxt").glob("*.txt")):
        labels = read_label_file(path)
        out = tmp_path / path.name
        write_label_file(out, labels, header=True)
        again = read_label_file(out)
        np.testing.assert_array_equal(again.polygons, labels.polygons)
        assert again.classes == labels.classes
        assert again.difficult.tolist() == labels.difficult.tolist()
        assert again.gsd == labels.gsd and again.imagesource == labels.imagesource
    assert not list(tmp_path.glob(".*.tmp"))


def test_bad_lines_are_skipped_with_file_and_line(tmp_path, caplog):
    path = tmp_path / "bad.txt"
    path.write_text(
        "imagesource:GoogleEarth\n"
        "gsd:null\n"
        "0 0 10 0 10 10 0 10 plane 0\n"  # 3: good
        "0 0 10 0 10 10 plane 0\n"  # 4: too few fields
        "0 0 10 0 x 10 0 10 plane 0\n"  # 5: not a number
        "0 0 10 0 nan 10 0 10 plane 0\n"  # 6: NaN
        "0 0 10 0 10 10 0 10 spaceship 0\n"  # 7: unknown class
        "0 0 10 0 10 0 0 0 ship 0\n"  # 8: zero area
        "0 0 10 0 10 10 0 10 ship 7\n"  # 9: bad difficulty
        "   \n"
        "1.5 2.5 11.5 2.5 11.5 12.5 1.5 12.5 ship   \n"  # 11: float coordinates, no difficulty
    )
    log = ProblemLog()
    # The CLI may have set propagate=False on the "rgfl" logger; listen on it directly.
    log.logger.addHandler(caplog.handler)
    try:
        labels = read_label_file(path, DOTA_V1_0, log)
    finally:
        log.logger.removeHandler(caplog.handler)
    assert labels.gsd is None
    assert labels.classes == ["plane", "ship"]
    assert labels.line_numbers.tolist() == [3, 11]
    assert labels.difficult.tolist() == [0, 0]
    assert [p.line for p in log.problems] == [4, 5, 6, 7, 8, 9]
    assert all(p.path == path for p in log.problems)
    assert "unknown class 'spaceship'" in str(log.problems[3])
    assert f"{path}:5" in caplog.text


def test_strict_mode_raises_on_first_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0 0 10 0 10 10 0 10 plane 0\n0 0 10 0 10 10 0 10\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: expected"):
        read_label_file(path, DOTA_V1_0, ProblemLog(strict=True))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="label file not found"):
        read_label_file(tmp_path / "nope.txt")


def test_degenerate_polygons_kept_when_asked(tmp_path):
    path = tmp_path / "flat.txt"
    path.write_text("0 0 10 0 20 0 5 0 plane 1\n")
    assert len(read_label_file(path)) == 0
    kept = read_label_file(path, drop_degenerate=False)
    assert len(kept) == 1 and kept.difficult.tolist() == [1]


def test_labels_and_select():
    labels = ImageLabels(np.arange(16, dtype=float).reshape(2, 8), ["ship", "plane"], np.array([0, 2]), np.array([1, 2]))
    assert labels.labels(DOTA_V1_0).tolist() == [6, 0]
    picked = labels.select(np.array([False, True]))
    assert picked.classes == ["plane"] and picked.difficult.tolist() == [2]
    with pytest.raises(InputError, match="not in the class list"):
        labels.labels(["ship"])


def test_polygon_area_and_number_format():
    square = np.array([[0, 0, 2, 0, 2, 2, 0, 2], [0, 0, 0, 2, 2, 2, 2, 0]], dtype=float)
    assert polygon_areas(square).tolist() == [4.0, 4.0]
    assert [format_number(v) for v in (3.0, 2.5, -0.0001, 1 / 3, 1e4)] == ["3", "2.5", "0", "0.333", "10000"]


def test_class_sets():
    assert len(DOTA_V1_0) == 15 and len(DOTA_V1_5) == 16 and len(DOTA_V2_0) == 18
    assert DOTA_V1_0[0] == "plane" and DOTA_V1_0[-1] == "helicopter"
    assert resolve_classes("dota1.5") == DOTA_V1_5
    assert resolve_classes("DOTA-v2.0") == DOTA_V2_0
    assert resolve_classes(None) == DOTA_V1_0
    assert resolve_classes("car,boat") == ("car", "boat")


def test_class_file_and_errors(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("car\n\nboat\n")
    assert resolve_classes(str(path)) == ("car", "boat")
    with pytest.raises(InputError, match="unknown class set"):
        resolve_classes("dota3")
    with pytest.raises(InputError, match="duplicate"):
        resolve_classes("car,car")


def test_single_class_name():
    assert resolve_classes("plane") == ("plane",)
    assert resolve_classes("small-vehicle") == ("small-vehicle",)
    with pytest.raises(InputError, match="unknown class set"):
        resolve_classes("3.0")
