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


def _write_manifest(split, parameters) -> None:
    manifest = {"format": "rgfl-split/1", "parameters": parameters, "source": "DOTA/train", "skipped": [], "images": []}
    (split / "split_manifest.json").write_text(json.dumps(manifest))


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_dry_run_refuses_unsplit_full_size_images_as_training_does(tmp_path):
    from rgfl.dota.synth import generate_synthetic_dataset

    big = tmp_path / "big"
    generate_synthetic_dataset(big, num_images=1, image_size=2100, seed=0, num_objects=3)
    trained = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(big), "--work-dir", str(tmp_path / "run")])
    assert trained.exit_code == 2 and not (tmp_path / "run").exists()
    (message,) = _error_lines(trained.stderr)
    assert "looks like unsplit full-size images" in message
    readable = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(big), "--dry-run"])
    assert readable.exit_code == 2 and _error_lines(readable.stderr) == [message]
    as_json = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(big), "--dry-run", "--json"])
    assert as_json.exit_code == 2 and _error_lines(as_json.stderr) == [message]
    summary = json.loads(as_json.stdout)
    assert summary["refused"] == [message.removeprefix("error: ")] and summary["data"]["patches"] == 1
    # Switched off as the message says: the dry-run passes.
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(big), "--dry-run", "--json", "--set", "data.max_image_side=null"])
    assert result.exit_code == 0, result.output
    assert "refused" not in json.loads(result.stdout)


def test_refused_split_with_json_also_prints_the_error_line_once(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    _write_manifest(split, {"size": 1024, "step": 824, "rates": [1.0], "truncation": "keep", "iof_thr": 0.7, "pad_value": [0, 0, 0]})
    trained = runner.invoke(app, ["train", str(VANILLA), "--data", str(split), "--work-dir", str(tmp_path / "run")])
    assert trained.exit_code == 2 and not (tmp_path / "run").exists()
    (message,) = _error_lines(trained.stderr)  # once, though both the CLI and train() used to be candidates
    assert "truncation: the split has keep" in message
    result = runner.invoke(app, ["train", str(VANILLA), "--data", str(split), "--dry-run", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["split_check"]["refused"] is True
    assert _error_lines(result.stderr) == [message]


def test_dry_run_shows_the_preflight_warnings_and_checks_the_device(tmp_path):
    split = make_split(tmp_path / "split", images=2, size=128)
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split), "--dry-run", "--set", "data.input_size=64", "--set", "schedule.warmup_iters=1000"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "data.input_size = 64 is smaller than the patches (128 px" in text
    assert "schedule.warmup_iters = 1000 is longer than the whole run" in text
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split), "--dry-run", "--json", "--set", "train.device=tpu"])
    assert result.exit_code == 2 and result.stdout == ""
    assert _error_lines(result.stderr) == ["error: train.device is 'tpu': expected auto, cpu, cuda or cuda:N (--device or --set train.device=...)"]


@pytest.mark.parametrize("setting", ["data.batch_size=0", "optimizer.base_batch_size=0", "schedule.epochs=-1"])
def test_out_of_range_settings_stop_the_dry_run_with_one_line(tmp_path, setting):
    split = make_split(tmp_path / "split", images=2)
    result = runner.invoke(app, ["train", str(TINY_CONFIG), "--data", str(split), "--dry-run", "--set", setting])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(_error_lines(result.stderr)) == 1 and setting.split("=")[0] + ": must be >= " in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", "not an rgfl split manifest: expected a JSON object, got list"),
        ('{"format": "rgfl-split/1", "parameters": 5}', "'parameters' must be an object, got 5"),
        ('{"format": "rgfl-split/1", "parameters": {"iof_thr": "x", "truncation": "keep"}}', "parameters.iof_thr must be a number, got 'x'"),
        ('{"format": "rgfl-split/1", "parameters": {"rates": 5, "truncation": "keep"}}', "parameters.rates must be a list of positive numbers, got 5"),
        ('{"format": "rgfl-split/1", "parameters": {"truncation": "keep"}, "source": 3}', "'source' must be a path, got 3"),
    ],
)
def test_malformed_manifest_stops_training_and_dry_run_with_one_line(tmp_path, text, expected):
    split = make_split(tmp_path / "split", images=2)
    (split / "split_manifest.json").write_text(text)
    manifest = split / "split_manifest.json"
    for extra in (["--work-dir", str(tmp_path / "run")], ["--dry-run"], ["--dry-run", "--json"]):
        result = runner.invoke(app, ["train", str(VANILLA), "--data", str(split), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
        lines = _error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: {manifest}: ") and expected in lines[0], (extra, result.stderr)
    assert not (tmp_path / "run").exists()
