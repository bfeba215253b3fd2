"""`rgfl train --dry-run [--json]`: resolves config, derived values and data; trains and downloads nothing."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from typer.testing import CliRunner

from rgfl.cli.main import app
from tests.conftest import REPO_ROOT
from tests.engine.helpers import TINY_CONFIG, make_split

runner = CliRunner()
VANILLA = REPO_ROOT / "configs" / "rgfl_vanilla_r50_fpn_1x_dota_le135.yaml"


def test_json_is_one_object_with_the_resolved_config_derived_values_and_data(tmp_path, monkeypatch):
    split = make_split(tmp_path / "split", images=5)
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(torch_home))  # an ImageNet download would land here
    monkeypatch.setenv("WORLD_SIZE", "4")
    result = runner.invoke(
        app,
        ["train", str(VANILLA), "--data", str(split), "--dry-run", "--json", "--set", "schedule.warmup_iters=3", "--set", "expected_split.check=ignore"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert set(summary) == {"config", "derived", "data"}
    assert summary["config"]["schedule"]["warmup_iters"] == 3  # after --set
    assert summary["config"]["data"]["root"] == str(split)
    assert summary["config"]["model"]["pretrained"] == "imagenet" and not any(torch_home.rglob("*"))
    derived = summary["derived"]
    used = summary["data"]["patches_used"]
    assert summary["data"]["patches"] == 5 and 0 < used <= 5
    per_epoch = math.ceil(math.ceil(used / 4) / 2)
    assert derived == {
        "world_size": 4,
        "total_batch": 8,
        "lr": 0.01,
        "lr_per_image": 0.00125,
        "iters_per_epoch": per_epoch,
        "total_iters": 12 * per_epoch,
        "warmup_iters": 3,
        "milestone_iters": [8 * per_epoch, 11 * per_epoch],
    }
    objects = summary["data"]["objects"]
    assert set(objects) == {"positive", "ignored", "dropped"} and objects["positive"] > 0
    assert set(objects["dropped"]) == {"small", "difficult", "truncated"}
    assert not (tmp_path / "run").exists()


def test_readable_summary_without_json(tmp_path):
    split = make_split(tmp_path / "split", images=3)
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the tables go to stderr, like every progress output
    for fragment in ("optimizer.base_lr", "iters per epoch", "milestone iters", "objects trained as positives"):
        assert fragment in result.output


def test_work_dir_is_required_without_dry_run_and_json_only_with_it(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split)])
    assert result.exit_code == 2 and "--work-dir" in result.output
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split), "--work-dir", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 2 and "--json" in result.output and not (tmp_path / "run").exists()


def test_split_without_manifest_is_only_warned_about(tmp_path):
    split = make_split(tmp_path / "split", images=2)  # not written by rgfl split: no manifest
    result = runner.invoke(app, ["train", str(VANILLA), "--data", str(split), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["split_check"]["manifest_found"] is False


@pytest.mark.slow
def test_smoke_benchmark_runs_on_cpu(dota_sample, tmp_path):
    """benchmarks/smoke_r50.py (for the GPU smoke run) on a tiny CPU setting: 2 iterations at 64 px."""
    split = tmp_path / "sample_1024_512"
    result = runner.invoke(app, ["split", str(dota_sample), str(split), "--preset", "dota-1024-512", "--clip", "--pad-value", "0", "--workers", "1"])
    assert result.exit_code == 0, result.output
    script = REPO_ROOT / "benchmarks" / "smoke_r50.py"
    args = ["--data", str(split), "--iters", "2", "--every", "1", "--input-size", "64", "--device", "cpu", "--precisions", "fp32", "--workers", "0"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all losses finite: True" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
