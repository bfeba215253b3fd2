"""On the real DOTA sample, split as the README says, the training set holds exactly the positives
the reference recipe trains on.

The reference count is made here without rgfl's split code, step by step as the fork's devkit
(DOTA_devkit/ImgSplit_multi_process.py) and loader (mmdet/datasets/dotav1.py + poly2obb_np v2) do,
with shapely: every label polygon (integer coordinates, as the devkit parses them) is intersected
with every window; IoF 1 -> written as is; 0 < IoF < 1 -> the clipped piece (5 points -> 4 by
merging the shortest edge, more -> left out, start vertex closest to the original, integer patch
coordinates clamped into [1, 1024]) with the original difficulty when IoF > 0.7, else 2. The loader
then drops boxes with an edge under 2 px and trains difficulty <= 1.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.data import DotaDataset
from rgfl.dota.classes import DOTA_V1_0
from rgfl.engine.build import build_train_dataset, class_names
from rgfl.engine.config import load_config
from rgfl.engine.split_check import compare_split
from rgfl.geometry.boxes import poly2obb_edges
from tests.conftest import REPO_ROOT

runner = CliRunner()
SIZE, STEP = 1024, 512
CONFIG = REPO_ROOT / "configs" / "rgfl_vanilla_r50_fpn_1x_dota_le135.yaml"
IMAGE_SIZES = {"P0706": (1111, 1182), "P1888": (712, 557)}  # (width, height), docs of the sample


def devkit_windows(width: int, height: int) -> list[tuple[int, int]]:
    """(left, up) of every window, by the devkit's while loops."""
    out, left = [], 0
    while left < width:
        if left + SIZE >= width:
            left = max(width - SIZE, 0)
        up = 0
        while up < height:
            if up + SIZE >= height:
                up = max(height - SIZE, 0)
            out.append((left, up))
            if up + SIZE >= height:
                break
            up += STEP
        if left + SIZE >= width:
            break
        left += STEP
    return out


def read_devkit_labels(path: Path) -> list[tuple[list[int], str, int]]:
    objects = []
    for line in path.read_text().splitlines():
        tokens = line.split()
        if len(tokens) < 9:
            continue  # header lines
        difficulty = int(tokens[9]) if len(tokens) >= 10 else 0
        objects.append(([int(float(v)) for v in tokens[:8]], tokens[8], difficulty))
    return objects


def four_from_five(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    lengths = [math.dist(points[i], points[(i + 1) % 5]) for i in range(5)]
    k = int(np.argsort(lengths, kind="stable")[0])
    merged = ((points[k][0] + points[(k + 1) % 5][0]) / 2, (points[k][1] + points[(k + 1) % 5][1]) / 2)
    out = []
    for i in range(5):
        if i == k:
            out.append(merged)
        elif i != (k + 1) % 5:
            out.append(points[i])
    if k == 4:  # the devkit skips point 0 and appends the merged point last
        out = out[1:] + out[:1]
    return out


def best_start(points: list[tuple[float, float]], original: list[int]) -> list[float]:
    target = np.array(original, dtype=float)
    shifts = [np.array([c for p in points[s:] + points[:s] for c in p]) for s in range(4)]
    return list(shifts[int(np.argmin([np.sum((c - target) ** 2) for c in shifts]))])


def reference_patch_objects(width: int, height: int, labels: list, left: int, up: int) -> list[tuple[list[int], str, int]]:
    right, down = min(left + SIZE, width - 1), min(up + SIZE, height - 1)
    window = Polygon([(left, up), (right, up), (right, down), (left, down)])
    written = []
    for poly, name, difficulty in labels:
        shape = Polygon([(poly[0], poly[1]), (poly[2], poly[3]), (poly[4], poly[5]), (poly[6], poly[7])])
        if shape.area <= 0:
            continue
        piece = shape.intersection(window)
        iof = piece.area / shape.area
        if iof == 1:
            written.append(([int(v - o) for v, o in zip(poly, [left, up] * 4)], name, difficulty))
        elif iof > 0:
            points = list(orient(piece, sign=1).exterior.coords)[:-1]
            if len(points) < 4 or len(points) > 5:
                continue
            if len(points) == 5:
                points = four_from_five(points)
            ordered = best_start(points, poly)
            local = [min(max(int(v - o), 1), SIZE) for v, o in zip(ordered, [left, up] * 4)]
            written.append((local, name, difficulty if iof > 0.7 else 2))
    return written


def reference_outcome(poly: list[int], difficulty: int) -> str:
    p = np.array(poly, dtype=np.float32).reshape(4, 2)
    if np.linalg.norm(p[0] - p[1]) < 2 or np.linalg.norm(p[1] - p[2]) < 2:
        return "small"
    return "positive" if difficulty <= 1 else "truncated"


@pytest.fixture(scope="module")
def readme_split(dota_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split") / "train_1024_512"
    # The README's reference command (DOTA-v1.0, step by step) on the sample.
    result = runner.invoke(app, ["split", str(dota_sample), str(out), "--preset", "dota-1024-512", "--clip", "--pad-value", "0", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def reference(dota_sample) -> dict[str, dict]:
    """patch window (stem, left, up) -> {"positive": Counter of (class, polygon), counts by outcome}."""
    patches = {}
    for stem, (width, height) in IMAGE_SIZES.items():
        labels = [o for o in read_devkit_labels(dota_sample / "labelTxt" / f"{stem}.txt") if o[1] in DOTA_V1_0]
        for left, up in devkit_windows(width, height):
            outcome = Counter()
            positives = Counter()
            for poly, name, difficulty in reference_patch_objects(width, height, labels, left, up):
                kind = reference_outcome(poly, difficulty)
                outcome[kind] += 1
                if kind == "positive":
                    positives[(name, tuple(poly))] += 1
            patches[(stem, left, up)] = {"positive": positives, "outcome": outcome}
    return patches


def test_every_reference_positive_is_a_positive_of_the_dataset(readme_split, reference):
    cfg = load_config(CONFIG, [f"data.root={readme_split}"])
    dataset = build_train_dataset(cfg.data, class_names(cfg.data))
    ours = {}
    for index, image_id in enumerate(dataset.image_ids):
        stem, x, y = re.fullmatch(r"(.+)__1024__(\d+)___(\d+)", image_id).groups()
        polygons, labels, ignore = dataset.objects(index)
        assert not ignore.any()  # the reference has no ignored objects
        ours[(stem, int(x), int(y))] = Counter(
            (DOTA_V1_0[label], tuple(int(v) for v in polygon)) for polygon, label in zip(polygons, labels)
        )
        assert np.array_equal(polygons, np.round(polygons))  # the devkit's integer coordinates
    expected = {key: value["positive"] for key, value in reference.items() if value["positive"]}
    assert set(ours) == set(expected)  # the same patches are trained (empty ones left out)
    for key in expected:
        assert ours[key] == expected[key], key
    total = sum(sum(c.values()) for c in expected.values())
    assert total > 2000  # the sample is dense: a real check, not an empty one
    # Cut objects are among them: positives that touch the patch border after clipping.
    clipped = sum(1 for c in expected.values() for (_, poly) in c if 1 in poly or SIZE in poly)
    assert clipped > 10


def test_dry_run_counts_match_the_reference(readme_split, reference):
    result = runner.invoke(app, ["train", str(CONFIG), "--data", str(readme_split), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    outcome = sum((value["outcome"] for value in reference.values()), Counter())
    data = summary["data"]
    assert data["patches"] == len(reference)
    assert data["patches_used"] == sum(1 for value in reference.values() if value["positive"])
    assert data["objects"]["positive"] == outcome["positive"]
    assert data["objects"]["ignored"] == 0
    assert data["objects"]["dropped"]["truncated"] == outcome["truncated"] > 0
    assert data["objects"]["dropped"]["small"] == outcome["small"]
    assert summary["split_check"]["rule_mismatches"] == [] and summary["split_check"]["data_mismatches"] == []


def test_targets_are_the_reference_edge_boxes(readme_split):
    cfg = load_config(CONFIG, [f"data.root={readme_split}", "data.hflip=0"])
    dataset = build_train_dataset(cfg.data, class_names(cfg.data))
    for index in range(len(dataset)):
        polygons, _, _ = dataset.objects(index)
        _, target = dataset[index]
        for polygon, box in zip(polygons, target.boxes.double().numpy()):
            p = polygon.reshape(4, 2)
            e1, e2 = np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[2] - p[1])
            direction = p[1] - p[0] if e1 > e2 else p[3] - p[0]
            theta = (math.atan2(direction[1], direction[0]) + math.pi / 4) % math.pi - math.pi / 4
            centre = (p[0] + p[2]) / 2
            assert box == pytest.approx([centre[0], centre[1], max(e1, e2), min(e1, e2), theta], abs=1e-4)


def test_default_split_is_refused_with_the_command_that_makes_the_reference_split(dota_sample, tmp_path):
    mmrotate_split = tmp_path / "train_1024_512"
    result = runner.invoke(app, ["split", str(dota_sample), str(mmrotate_split), "--preset", "dota-1024-512", "--workers", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", str(CONFIG), "--data", str(mmrotate_split), "--work-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in text and "truncation" in text
    # The message holds the exact command (compared without whitespace: rich wraps long paths).
    command = compare_split(load_config(CONFIG).expected_split, mmrotate_split).command
    assert "".join(f"Make the expected split with: {command} and pass".split()) in "".join(result.output.split())
    assert "--clip" in command and "--preset dota-1024-512" in command and "--pad-value 0,0,0" in command
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # The printed command makes a split the config accepts.
    result = runner.invoke(app, shlex.split(command)[1:] + ["--workers", "1"])
    assert result.exit_code == 0, result.output
    fixed = Path(shlex.split(command)[3])
    assert fixed == tmp_path / "train_1024_512_devkit"
    result = runner.invoke(app, ["train", str(CONFIG), "--data", str(fixed), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split_check"]["rule_mismatches"] == []
    # --dry-run on the refused split prints its JSON and exits 2 as training would.
    result = runner.invoke(app, ["train", str(CONFIG), "--data", str(mmrotate_split), "--dry-run", "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["split_check"]["refused"] is True
    # With check=warn the same split trains (here: resolves) with a warning only.
    result = runner.invoke(app, ["train", str(CONFIG), "--data", str(mmrotate_split), "--dry-run", "--json", "--set", "expected_split.check=warn"])
    assert result.exit_code == 0, result.output


def test_min_edge_and_box_from_options_keep_the_old_behaviour(readme_split):
    default = DotaDataset(readme_split, DOTA_V1_0, truncated="drop")
    assert default.box_from == "min_area_rect" and default.object_counts["dropped"]["small"] == 0
    strict = DotaDataset(readme_split, DOTA_V1_0, truncated="drop", min_edge=2, box_from="edges")
    assert strict.object_counts["positive"] == default.object_counts["positive"] - strict.object_counts["dropped"]["small"]
    polygons = strict.objects(0)[0]
    assert np.allclose(strict.polygons_to_boxes(polygons).numpy(), poly2obb_edges(polygons).astype(np.float32))
    assert shapely.__version__  # shapely is what the reference count above used
