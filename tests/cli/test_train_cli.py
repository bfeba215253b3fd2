"""`rgfl train` through the Typer app: bad input gives one line and exit 2, a short run works."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from rgfl.cli.main import app
from rgfl.engine.checkpoint import save_checkpoint
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
