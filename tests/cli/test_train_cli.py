"""`rgfl train` through the Typer app: bad input gives one line and exit 2, a short run works."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.engine.checkpoint import load_checkpoint, save_checkpoint
from tests.engine.helpers import TINY_CONFIG, make_split, requires_pipeline

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threads only fight over a busy machine's cores
    yield
    torch.set_num_threads(threads)


def invoke(*args: str):
    return runner.invoke(app, ["train", *map(str, args)])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert text.startswith("error:")
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_missing_data_folder(tmp_path):
    result = invoke(TINY_CONFIG, "--data", tmp_path / "nope", "--work-dir", tmp_path / "run")
    assert_one_line_error(result, "nope: training data folder not found")


def test_data_folder_without_images(tmp_path):
    (tmp_path / "split").mkdir()
    result = invoke(TINY_CONFIG, "--data", tmp_path / "split", "--work-dir", tmp_path / "run")
    assert_one_line_error(result, "no images/ folder")


def test_unknown_config_key_in_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  backbone: resnet18\nschedule:\n  epoch: 3\n")
    result = invoke(config, "--data", tmp_path, "--work-dir", tmp_path / "run")
    assert_one_line_error(result, "bad.yaml:4", "unknown config key 'schedule.epoch' (value 3)", "did you mean 'schedule.epochs'?")


def test_unknown_set_key(tmp_path):
    result = invoke(TINY_CONFIG, "--data", tmp_path, "--work-dir", tmp_path / "run", "--set", "optimizer.momentun=0.8")
    assert_one_line_error(result, "unknown --set key 'optimizer.momentun'", "did you mean 'optimizer.momentum'?")


def test_validation_without_data(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", tmp_path / "run", "--set", "eval.interval=1")
    assert_one_line_error(result, "eval.interval is set but eval.data is not")


def test_missing_config_file(tmp_path):
    result = invoke(tmp_path / "nope.yaml", "--data", tmp_path, "--work-dir", tmp_path / "run")
    assert_one_line_error(result, "nope.yaml: config file not found")


def test_corrupt_checkpoint(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", tmp_path / "run", "--resume-from", bad)
    assert_one_line_error(result, "bad.pt: not a readable rgfl checkpoint")


def test_checkpoint_from_another_model(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    other = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    save_checkpoint({"model_signature": {"head": "vanilla", "backbone": "resnet50"}, "model": {"w": torch.zeros(1)}}, other)
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", tmp_path / "run", "--resume")
    assert_one_line_error(result, "checkpoint is from another model: head is 'vanilla' in the checkpoint but 'gfl' in the config")


def test_resume_path_not_found(tmp_path):
    result = invoke(TINY_CONFIG, "--data", tmp_path, "--work-dir", tmp_path / "run", "--resume-from", tmp_path / "gone.pt")
    assert_one_line_error(result, "gone.pt: checkpoint to resume from not found")


@requires_pipeline
def test_short_run_and_resume_of_a_finished_run(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    args = [TINY_CONFIG, "--data", split, "--work-dir", tmp_path / "run", "--set", "data.batch_size=2", "--set", "data.input_size=64", "--set", "data.workers=0", "--set", "schedule.epochs=1", "--set", "train.device=cpu"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "finished (completed) after 1 epochs, 1 iterations" in " ".join(result.output.split())
    assert (tmp_path / "run" / "checkpoints" / "epoch_0001.pt").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "log.jsonl").is_file()
    # Resuming a finished run with more epochs continues from the end of epoch 1.
    result = invoke(*args, "--resume", "--set", "schedule.epochs=2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "epoch_0002.pt").is_file()


def test_missing_config_without_resume(tmp_path):
    result = invoke("--work-dir", tmp_path / "run")
    assert_one_line_error(result, "missing CONFIG: give a config file (see configs/), or --resume to continue the run in --work-dir")


def test_resume_from_a_checkpoint_with_flipped_bytes(tmp_path):
    broken = save_checkpoint({"model": {"w": torch.randn(400_000)}, "config": {}}, tmp_path / "broken.pt")
    data = bytearray(broken.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    broken.write_bytes(bytes(data))
    result = invoke("--work-dir", tmp_path / "run", "--resume-from", broken)
    assert_one_line_error(result, "broken.pt: not a readable rgfl checkpoint (corrupt file: record", "does not match its checksum")


@requires_pipeline
def test_resume_continues_with_the_runs_own_config_and_a_used_work_dir_is_refused(tmp_path):
    split = make_split(tmp_path / "split", images=2)
    run = tmp_path / "run"
    tiny = ["--set", "data.input_size=64", "--set", "data.workers=0", "--set", "data.skip_empty=false"]
    # Shortcuts and --set as a user gives them; max_iters stops the run after 2 of its 3 epochs.
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", run, *tiny, "--epochs", "3", "--batch-size", "2", "--device", "cpu", "--set", "schedule.max_iters=2")
    assert result.exit_code == 0, result.output
    assert "finished (max_iters) after 2 epochs, 2 iterations" in " ".join(result.output.split())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["schedule"]["epochs"], saved["data"]["batch_size"], saved["train"]["device"]) == (3, 2, "cpu")

    # The same command again would start over on top of the run: refused, saying what to do.
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", run, *tiny)
    assert_one_line_error(result, "run: the work dir already holds a training run (2 checkpoints (newest epoch_0002.pt), log.jsonl)", "--resume", "--overwrite")
    result = invoke("--work-dir", run, "--resume", "--overwrite")
    assert_one_line_error(result, "--resume and --overwrite contradict each other")

    # The newest checkpoint is cut short: --resume falls back to epoch 1 with a warning. Given the
    # config file as well (whose schedule.epochs is 12), the run still keeps its own 3 epochs and
    # changes only the key named by --set.
    newest = run / "checkpoints" / "epoch_0002.pt"
    with open(newest, "r+b") as handle:
        handle.truncate(newest.stat().st_size // 3)
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", run, "--resume", "--set", "schedule.max_iters=null")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipping" in text and "epoch_0001.pt, the newest intact checkpoint (skipped: epoch_0002.pt)" in text
    assert "differs from the run's saved config in" in text and "schedule.epochs" in text and "the run keeps its own values" in text
    assert "finished (completed) after 3 epochs, 3 iterations" in text
    assert [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines() if '"train"' in line] == [1, 2, 3]

    # No CONFIG needed: one more epoch through the shortcut, the rest as the run had it.
    result = invoke("--work-dir", run, "--resume", "--epochs", "4")
    assert result.exit_code == 0, result.output
    assert "finished (completed) after 4 epochs, 4 iterations" in " ".join(result.output.split())
    cfg = load_checkpoint(run / "checkpoints" / "epoch_0004.pt")["config"]
    assert (cfg["schedule"]["epochs"], cfg["schedule"]["max_iters"], cfg["data"]["batch_size"], cfg["data"]["input_size"], cfg["train"]["device"]) == (4, None, 2, 64, "cpu")
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["epoch_0002.pt", "epoch_0003.pt", "epoch_0004.pt"]  # the newest 3

    # --overwrite starts over.
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", run, *tiny, "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == ["epoch_0001.pt"]
    assert [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines() if '"train"' in line] == [1]


@pytest.mark.parametrize("device", ["gpu9", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"]))
def test_bad_device(tmp_path, device):
    split = make_split(tmp_path / "split", images=2)
    result = invoke(TINY_CONFIG, "--data", split, "--work-dir", tmp_path / "run", "--device", device)
    assert_one_line_error(result, f"train.device is '{device}'")
    assert not (tmp_path / "run").exists()
