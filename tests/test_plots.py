"""Training curves and precision-recall pictures: PNG of the promised size, data equal to the logs.

The curve data is checked against independent sources: ``log.jsonl`` records read here line by
line, and precision/recall sequences computed by hand from detections whose true/false-positive
status is known by construction (exact copies of ground-truth polygons and far-away boxes).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.dota.annotations import read_label_file
from rgfl.dota.classes import DOTA_V1_0
from rgfl.errors import ProblemLog

pytest.importorskip("matplotlib")

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def write_log(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def train_record(epoch: int, it: int, per_epoch: int, loss_a: float, lr: float) -> dict:
    return {
        "event": "train", "epoch": epoch, "epochs": 3, "iter_in_epoch": it, "iters_per_epoch": per_epoch,
        "iteration": (epoch - 1) * per_epoch + it, "lr": lr, "loss_a": loss_a, "loss_b": 2 * loss_a, "loss": 3 * loss_a,
        "num_pos": 5.0, "images_per_s": 10.0,
    }


def test_training_series_follows_the_log_and_drops_records_a_resume_repeats(tmp_path):
    from rgfl.plots import training_series

    records = [train_record(1, i, 4, 1.0 / i, 0.1 * i) for i in (2, 4)]
    records += [{"event": "epoch_end", "epoch": 1, "iteration": 4}, {"event": "val", "epoch": 1, "iteration": 4, "AP50": 0.5, "AP75": 0.25, "mAP": 0.3}]
    records += [train_record(2, 2, 4, 9.0, 9.0)]  # logged, then the run was killed before its checkpoint ...
    records += [train_record(2, 2, 4, 0.2, 0.3), train_record(2, 4, 4, 0.1, 0.4)]  # ... and resumed from iteration 4
    records += [{"event": "val", "epoch": 2, "iteration": 8, "AP50": 0.6, "AP75": float("nan"), "mAP": 0.4}]
    write_log(tmp_path / "run" / "log.jsonl", records)
    (tmp_path / "run" / "log.jsonl").open("a").write('{"event": "train", "epo')  # a line being written
    series = training_series(tmp_path / "run")
    assert sorted(series) == ["AP50", "AP75", "loss", "loss_a", "loss_b", "lr", "mAP"]
    assert series["loss_a"] == {"x": [0.5, 1.0, 1.5, 2.0], "y": [1.0 / 2, 1.0 / 4, 0.2, 0.1]}
    assert series["loss"]["y"] == [1.5, 0.75, pytest.approx(0.6), pytest.approx(0.3)]
    assert series["lr"]["y"] == [pytest.approx(0.2), pytest.approx(0.4), 0.3, 0.4]
    assert series["AP50"] == {"x": [1.0, 2.0], "y": [0.5, 0.6]}
    assert series["AP75"] == {"x": [1.0], "y": [0.25]}  # NaN left out
    assert "num_pos" not in series and "images_per_s" not in series


def test_plot_compares_runs_and_writes_the_data_it_drew(tmp_path):
    for name, scale in (("a", 1.0), ("b", 2.0)):
        records = [train_record(e, i, 2, scale / (e + i), 0.01) for e in (1, 2, 3) for i in (1, 2)]
        write_log(tmp_path / name / "log.jsonl", records)
    result = invoke("plot", tmp_path / "a", tmp_path / "b" / "log.jsonl", "--out", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    # 4 panels (loss, loss_a, loss_b, lr) in one row of 400 x 300 px panels
    assert png_size(tmp_path / "cmp.png") == (1600, 300)
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert sorted(data["runs"]) == ["a", "b"]
    for name in ("a", "b"):
        lines = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        assert data["runs"][name]["loss_b"]["y"] == [r["loss_b"] for r in lines]
        assert data["runs"][name]["loss_b"]["x"] == [r["epoch"] - 1 + r["iter_in_epoch"] / 2 for r in lines]
    # one run: the picture goes into the run's folder by default
    assert invoke("plot", tmp_path / "a").exit_code == 0
    assert png_size(tmp_path / "a" / "curves.png") == (1600, 300)


def test_plot_bad_input(tmp_path):
    from tests.cli.test_show_predict import assert_clean_error

    assert_clean_error(invoke("plot", tmp_path / "nope"), "nope", "training log not found")
    (tmp_path / "empty").mkdir()
    assert_clean_error(invoke("plot", tmp_path / "empty"), "no log.jsonl")
    write_log(tmp_path / "fresh" / "log.jsonl", [{"event": "epoch_end", "epoch": 1}])
    assert_clean_error(invoke("plot", tmp_path / "fresh"), "no train or val record")
    write_log(tmp_path / "ok" / "log.jsonl", [train_record(1, 1, 1, 1.0, 0.1)])
    assert_clean_error(invoke("plot", tmp_path / "ok", "--out", tmp_path / "x.jpg"), ".png")


def test_training_without_matplotlib_goes_on_with_one_warning(tmp_path, monkeypatch, caplog):
    import rgfl.plots as plots

    write_log(tmp_path / "log.jsonl", [train_record(1, 1, 1, 1.0, 0.1)])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    monkeypatch.setattr(plots, "_warned_missing", False)
    with caplog.at_level("WARNING", logger="rgfl"):
        assert plots.write_run_curves(tmp_path) is None
        assert plots.write_run_curves(tmp_path) is None
    assert [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()] == [
        plots.MATPLOTLIB_MISSING + "; training goes on without curves.png"
    ]
    assert not (tmp_path / "curves.png").exists()


def _detections_with_known_outcome(dota_sample: Path, out: Path) -> dict[str, list[tuple[float, bool]]]:
    """Task1 files: each non-difficult ground truth copied exactly (a true positive at any IoU) with
    a score, plus far-away false positives between them. Returns class -> [(score, is_tp)]."""
    rng = np.random.default_rng(0)
    truth: dict[str, list[tuple[float, bool]]] = {}
    lines: dict[str, list[str]] = {}
    for label_file in sorted((dota_sample / "labelTxt").glob("*.txt")):
        labels = read_label_file(label_file, None, ProblemLog())
        for polygon, name, difficult in zip(labels.polygons, labels.classes, labels.difficult):
            if difficult:
                continue
            for is_tp in (True, False) if rng.random() < 0.4 else (True,):
                if not is_tp and rng.random() < 0.5:
                    continue
                score = float(rng.random())
                poly = polygon if is_tp else polygon + 50000.0  # nowhere near any object
                if rng.random() < 0.2 and is_tp:
                    continue  # a missed object
                truth.setdefault(name, []).append((score, is_tp))
                lines.setdefault(name, []).append(f"{label_file.stem} {score!r} " + " ".join(f"{v:.1f}" for v in poly))
    out.mkdir()
    for name in DOTA_V1_0:
        (out / f"Task1_{name}.txt").write_text("".join(line + "\n" for line in lines.get(name, [])))
    return truth


def test_eval_writes_pr_curves_equal_to_a_hand_computed_precision_recall(dota_sample, tmp_path):
    truth = _detections_with_known_outcome(dota_sample, tmp_path / "dets")
    result = invoke("eval", "--dets", tmp_path / "dets", "--gt", dota_sample / "labelTxt", "--json", tmp_path / "out" / "metrics.json")
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "out" / "pr_curves.png") == (900, 600)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    data = json.loads((tmp_path / "out" / "pr_curves.json").read_text())
    assert list(data["classes"]) == list(DOTA_V1_0)
    assert data["mean_AP50"] == pytest.approx(metrics["AP50"], abs=1e-12)
    gt = {}
    for label_file in (dota_sample / "labelTxt").glob("*.txt"):
        labels = read_label_file(label_file, None, ProblemLog(), drop_degenerate=False)
        for name, difficult in zip(labels.classes, labels.difficult):
            gt[name] = gt.get(name, 0) + (difficult == 0)
    checked = 0
    for name, curve in data["classes"].items():
        assert curve["AP50"] == metrics["per_class"][name]["AP50"]
        outcomes = sorted(truth.get(name, []), key=lambda t: -t[0])  # scores are distinct
        tp = np.cumsum([is_tp for _, is_tp in outcomes])
        fp = np.cumsum([not is_tp for _, is_tp in outcomes])
        assert curve["num_dets"] == len(outcomes)
        if gt.get(name, 0):
            np.testing.assert_allclose(curve["recall"], tp / gt[name], rtol=0, atol=1e-15)
            np.testing.assert_allclose(curve["precision"], tp / np.maximum(tp + fp, 1), rtol=0, atol=1e-15)
            checked += 1
    assert checked >= 3, "the sample has several labelled classes"


def test_pr_curves_of_huge_evaluations_are_thinned_keeping_the_end():
    from rgfl.plots import MAX_PR_POINTS, _thin

    recall = np.linspace(0, 0.9, 10 * MAX_PR_POINTS)
    precision = np.linspace(1, 0.5, 10 * MAX_PR_POINTS)
    r, p = _thin(recall, precision)
    assert len(r) == MAX_PR_POINTS and r[0] == 0 and r[-1] == 0.9 and p[-1] == 0.5


class _CurvesSeenAtEpochEnd:
    """Reads curves.json when each epoch ends: it holds what the previous epochs logged."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.seen: list[dict | None] = []

    def on_epoch_end(self, record: dict) -> None:
        path = self.work_dir / "curves.json"
        self.seen.append(json.loads(path.read_text()) if path.is_file() else None)


def test_training_redraws_curves_after_every_epoch_with_validation(tmp_path):
    from rgfl.engine.train import train
    from tests.engine.helpers import make_split, tiny_config

    split = make_split(tmp_path / "split", images=2)
    work = tmp_path / "run"
    spy = _CurvesSeenAtEpochEnd(work)
    cfg = tiny_config(split, **{"eval.interval": 1, "eval.data": str(split), "eval.batch_size": 2})
    train(cfg, work, callbacks=[spy])
    assert spy.seen[0] is None  # nothing drawn before the first epoch ended ...
    assert spy.seen[1] is not None and max(spy.seen[1]["runs"]["run"]["loss"]["x"]) == 1.0  # ... epoch 1's after it
    assert png_size(work / "curves.png") == (1600, 600)  # 3 loss terms, total, lr, AP50, AP75, mAP
    records = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    series = json.loads((work / "curves.json").read_text())["runs"]["run"]
    val = [r for r in records if r["event"] == "val"]
    assert series["mAP"] == {"x": [float(r["epoch"]) for r in val], "y": [r["mAP"] for r in val]} and len(val) == 2
    train_records = [r for r in records if r["event"] == "train"]
    assert series["lr"]["y"] == [r["lr"] for r in train_records]
    assert series["loss_qfl"]["y"] == [r["loss_qfl"] for r in train_records]
