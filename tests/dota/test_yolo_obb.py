"""`rgfl convert`: DOTA labelTxt <-> YOLO-OBB on the real DOTA sample, round trip, splits, bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.annotations import read_label_file
from rgfl.dota.classes import DOTA_V1_0
from rgfl.errors import InputError, ProblemLog

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_clean_error(result, *fragments: str) -> None:
    """Non-zero exit, a message without traceback holding each fragment (rich may wrap long paths anywhere)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = "".join(result.output.split())
    for fragment in fragments:
        assert "".join(fragment.split()) in text, result.output


@pytest.fixture
def sample(dota_sample, tmp_path):
    """The two sample images with their labels (the other label files have no image)."""
    root = tmp_path / "dota"
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for image in (dota_sample / "images").glob("*.png"):
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(dota_sample / "labelTxt" / f"{image.stem}.txt", root / "labelTxt" / f"{image.stem}.txt")
    return root


def test_round_trip_dota_yolo_dota_on_the_real_sample(sample, tmp_path):
    result = invoke("convert", sample, tmp_path / "yolo", "--to", "yolo-obb")
    assert result.exit_code == 0, result.output
    assert "2 images, 600 objects, 15 classes" in flat(result.output)
    result = invoke("convert", tmp_path / "yolo", tmp_path / "back", "--to", "dota")
    assert result.exit_code == 0, result.output
    checked_difficult = 0
    for label_file in sorted((sample / "labelTxt").glob("*.txt")):
        original = read_label_file(label_file, None, ProblemLog(), drop_degenerate=False)
        back = read_label_file(tmp_path / "back" / "labelTxt" / label_file.name, None, ProblemLog(), drop_degenerate=False)
        height, width = cv2.imread(str(sample / "images" / f"{label_file.stem}.png")).shape[:2]
        assert np.abs(back.polygons - original.polygons).max() <= 1e-6 * max(width, height)
        assert back.classes == original.classes
        assert back.difficult.tolist() == original.difficult.tolist()
        checked_difficult += int(original.difficult.sum())
        assert (back.imagesource, back.gsd) == (original.imagesource, original.gsd)
        # integer DOTA coordinates come back as the same text (line endings aside)
        assert (tmp_path / "back" / "labelTxt" / label_file.name).read_text() == label_file.read_text().replace("\r\n", "\n")
        assert (tmp_path / "back" / "images" / f"{label_file.stem}.png").read_bytes() == (sample / "images" / f"{label_file.stem}.png").read_bytes()
    assert checked_difficult > 0, "P0706 has difficult objects"


def test_yolo_labels_are_class_index_and_corners_over_image_size(sample, tmp_path):
    assert invoke("convert", sample, tmp_path / "yolo", "--to", "yolo-obb").exit_code == 0
    labels = read_label_file(sample / "labelTxt" / "P1888.txt", None, ProblemLog())
    height, width = cv2.imread(str(sample / "images" / "P1888.png")).shape[:2]
    lines = (tmp_path / "yolo" / "labels" / "P1888.txt").read_text().splitlines()
    assert len(lines) == len(labels)
    for line, polygon, name in zip(lines, labels.polygons, labels.classes):
        fields = line.split()
        assert len(fields) == 9 and int(fields[0]) == DOTA_V1_0.index(name)
        expected = polygon / np.array([width, height] * 4)
        np.testing.assert_allclose([float(v) for v in fields[1:]], expected, rtol=1e-9, atol=1e-12)
    data = yaml.safe_load((tmp_path / "yolo" / "dataset.yaml").read_text())
    assert data["names"] == dict(enumerate(DOTA_V1_0))
    assert data["path"] == str((tmp_path / "yolo").resolve()) and data["train"] == "images" and data["val"] == "images"
    sidecar = json.loads((tmp_path / "yolo" / "dota_extras.json").read_text())
    original = read_label_file(sample / "labelTxt" / "P0706.txt", None, ProblemLog())
    assert sidecar["images"]["P0706"]["difficult"] == original.difficult.tolist()


def test_splits_make_one_dataset_and_come_back_as_folders(sample, tmp_path):
    out = tmp_path / "yolo"
    for split in ("train", "val"):
        result = invoke("convert", sample, out, "--to", "yolo-obb", "--split", split, "--classes", "dota1.5")
        assert result.exit_code == 0, result.output
    data = yaml.safe_load((out / "dataset.yaml").read_text())
    assert (data["train"], data["val"], len(data["names"])) == ("images/train", "images/val", 16)
    assert sorted(p.name for p in (out / "labels" / "val").iterdir()) == ["P0706.txt", "P1888.txt"]
    # another class list into the same dataset is refused
    assert_clean_error(invoke("convert", sample, out, "--to", "yolo-obb", "--split", "test"), "dataset.yaml", "other class names")
    result = invoke("convert", out, tmp_path / "back", "--to", "dota")
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        back = read_label_file(tmp_path / "back" / split / "labelTxt" / "P0706.txt", None, ProblemLog())
        assert back.difficult.sum() == read_label_file(sample / "labelTxt" / "P0706.txt", None, ProblemLog()).difficult.sum()


def test_clip_keeps_coordinates_inside_the_unit_square(sample, tmp_path):
    result = invoke("convert", sample, tmp_path / "raw", "--to", "yolo-obb")
    assert "1 objects reaching outside their image" in flat(result.output)
    values = np.array([[float(v) for v in line.split()[1:]] for p in (tmp_path / "raw" / "labels").glob("*.txt") for line in p.read_text().splitlines()])
    assert values.min() < 0 or values.max() > 1
    result = invoke("convert", sample, tmp_path / "clipped", "--to", "yolo-obb", "--clip")
    assert result.exit_code == 0 and "(clipped)" in flat(result.output)
    values = np.array([[float(v) for v in line.split()[1:]] for p in (tmp_path / "clipped" / "labels").glob("*.txt") for line in p.read_text().splitlines()])
    assert values.min() >= 0 and values.max() <= 1


def test_yolo_dataset_from_elsewhere_without_sidecar(tmp_path):
    """A hand-made YOLO-OBB folder (list-style names, no sidecar): difficult 0, exact corners."""
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((50, 200, 3), np.uint8))
    (root / "labels" / "a.txt").write_text("1 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8\n\n0 0 0 1 0 1 1 0 1\n")
    (root / "data.yaml").write_text("names: [car, truck]\n")
    result = invoke("convert", root, tmp_path / "dota", "--to", "dota")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dota" / "labelTxt" / "a.txt").read_text() == "20 10 100 10 100 40 20 40 truck 0\n0 0 200 0 200 50 0 50 car 0\n"


def test_bad_input_names_file_and_line(sample, tmp_path):
    assert_clean_error(invoke("convert", tmp_path / "nope", tmp_path / "o", "--to", "yolo-obb"), "nope", "no images/")
    assert_clean_error(invoke("convert", sample, sample, "--to", "yolo-obb"), "different folders")
    assert_clean_error(invoke("convert", sample, tmp_path / "o", "--to", "coco"), "coco")
    assert_clean_error(invoke("convert", sample, tmp_path / "o", "--to", "yolo-obb", "--split", "dev"), "--split")
    # an unknown class in a DOTA label: skipped with a warning, or an error under --strict
    bad = sample / "labelTxt" / "P1888.txt"
    bad.write_text(bad.read_text() + "1 1 9 1 9 9 1 9 spaceship 0\n")
    lines = len(bad.read_text().splitlines())
    result = invoke("convert", sample, tmp_path / "y1", "--to", "yolo-obb")
    assert result.exit_code == 0 and "1 bad label lines skipped" in flat(result.output)
    assert_clean_error(invoke("convert", sample, tmp_path / "y2", "--to", "yolo-obb", "--strict"), f"P1888.txt:{lines}", "unknown class 'spaceship'")
    # malformed YOLO lines
    yolo = tmp_path / "y1"
    (yolo / "labels" / "P0706.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2 0.1\n99 0 0 1 0 1 1 0 1\n0 a 0 1 0 1 1 0 1\n")
    (yolo / "dota_extras.json").unlink()
    assert_clean_error(invoke("convert", yolo, tmp_path / "d1", "--to", "dota", "--strict"), "P0706.txt:1", "(9 fields), got 8")
    result = invoke("convert", yolo, tmp_path / "d2", "--to", "dota")
    assert result.exit_code == 0 and "3 bad label lines skipped" in flat(result.output)
    assert (tmp_path / "d2" / "labelTxt" / "P0706.txt").read_text() == ""
    # no class names anywhere
    (yolo / "dataset.yaml").unlink()
    assert_clean_error(invoke("convert", yolo, tmp_path / "d3", "--to", "dota"), "no dataset yaml", "--classes")
    (yolo / "dataset.yaml").write_text("names: {0: a, 2: b}\n")
    assert_clean_error(invoke("convert", yolo, tmp_path / "d3", "--to", "dota"), "dataset.yaml", "without gaps")
    (yolo / "dataset.yaml").write_text("names: [a, b\n")
    assert_clean_error(invoke("convert", yolo, tmp_path / "d3", "--to", "dota"), "dataset.yaml", "not a valid YAML")
    # a broken image
    (sample / "images" / "P0706.png").write_bytes(b"junk")
    assert_clean_error(invoke("convert", sample, tmp_path / "y3", "--to", "yolo-obb"), "P0706.png", "cannot read the image size")


def test_python_api_convert(sample, tmp_path):
    from rgfl.api import convert

    summary = convert(sample, tmp_path / "yolo", "yolo-obb", classes=DOTA_V1_0)
    assert (summary.images, summary.objects, summary.outside) == (2, 600, 1)
    (tmp_path / "yolo" / "dataset.yaml").unlink()
    with pytest.raises(InputError, match="no dataset yaml"):
        convert(tmp_path / "yolo", tmp_path / "x", "dota")
    summary = convert(tmp_path / "yolo", tmp_path / "back", "dota", classes="dota1.0")
    assert (summary.images, summary.objects) == (2, 600)
