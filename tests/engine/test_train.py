"""Short real training runs of the tiny config (ResNet-18, 128 px synthetic patches) on CPU."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from rgfl.engine.build import build_model, class_names, load_detector
from rgfl.engine.checkpoint import CheckpointError, find_latest_checkpoint, load_checkpoint, save_checkpoint
from rgfl.engine.config import config_from_dict, config_to_dict
from rgfl.engine.train import NonFiniteLossError, Trainer, train
from rgfl.errors import InputError
from tests.engine.helpers import TINY_CONFIG, requires_pipeline, tiny_config, tiny_overrides, train_records

pytestmark = requires_pipeline


class SignalAt:
    """Sends ``signum`` to this process after the logged iteration ``iteration`` (like Ctrl-C)."""

    def __init__(self, iteration: int, signum: int = signal.SIGINT):
        self.iteration = iteration
        self.signum = signum

    def on_log(self, record: dict) -> None:
        if record["iteration"] == self.iteration:
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def sigint_default():
    """SIGINT raises KeyboardInterrupt as in a terminal's foreground, also when pytest itself runs
    as a background job (started with SIGINT ignored, which training honours)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_short_run_writes_checkpoint_resolved_config_and_json_log(tiny_split, tmp_path):
    # Validation on the training patches themselves, through the DOTA evaluator of `rgfl eval`.
    cfg = tiny_config(tiny_split, **{"schedule.epochs": 1, "eval.interval": 1, "eval.data": tiny_split})
    result = train(cfg, tmp_path)
    assert result.status == "completed"
    assert result.iteration == 2  # 4 patches (one empty, kept), batch 2
    checkpoint = tmp_path / "checkpoints" / "epoch_0001.pt"
    assert result.checkpoint == checkpoint and find_latest_checkpoint(tmp_path) == checkpoint

    resolved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config_from_dict(resolved) == cfg

    records = train_records(tmp_path)
    assert [r["iteration"] for r in records] == [1, 2]
    for record in records:
        for key in ("epoch", "lr", "loss", "loss_qfl", "loss_bbox", "loss_dfl", "images_per_s", "eta", "memory_mb", "data_wait_fraction"):
            assert key in record, key
        assert math.isfinite(record["loss"])
    # The config's base lr scaled to the batch of 2, times the warmup ratio at iteration 1.
    assert (cfg.optimizer.base_lr, cfg.optimizer.base_batch_size, cfg.data.batch_size) == (0.004, 16, 2)
    assert records[0]["lr"] == pytest.approx(0.004 * 2 / 16 * 0.001)

    (validation,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert validation["epoch"] == 1 and validation["num_images"] == 4
    assert all(0.0 <= validation[key] <= 1.0 for key in ("AP50", "AP75", "mAP"))

    state = load_checkpoint(checkpoint)
    assert state["config"] == config_to_dict(cfg)
    assert state["iteration"] == 2 and state["complete"] and state["epoch"] == 0
    # The checkpoint rebuilds the detector for inference (what `rgfl eval` uses).
    detector, stored = load_detector(checkpoint, fold_norms=False)
    assert stored == cfg and not detector.training
    trained = dict(detector.state_dict())
    assert all(torch.equal(trained[k], v) for k, v in state["model"].items())
    # The default folds the BatchNorms into the convolutions: same detections.
    folded, _ = load_detector(checkpoint)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in folded.modules())
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        reference, fast = detector(images), folded(images)
    torch.testing.assert_close(fast.cls_logits, reference.cls_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.box_logits, reference.box_logits, rtol=1e-4, atol=1e-4)

    # The checkpoint's angle coding decides how its angles decode: `linear` when its config says
    # so, the sigmoid when its config predates the key (every checkpoint before it was sigmoid).
    assert detector.angle_coding == "sigmoid"
    model_section = {k: v for k, v in state["config"]["model"].items() if k != "angle_coding"}
    linear_checkpoint = save_checkpoint(dict(state, config={**state["config"], "model": {**model_section, "angle_coding": "linear"}}), tmp_path / "linear.pt")
    old_checkpoint = save_checkpoint(dict(state, config={**state["config"], "model": model_section}), tmp_path / "before_angle_coding.pt")
    linear_detector, _ = load_detector(linear_checkpoint, fold_norms=False)
    old_detector, old_cfg = load_detector(old_checkpoint, fold_norms=False)
    assert linear_detector.angle_coding == "linear"
    assert old_detector.angle_coding == "sigmoid" and old_cfg.model.angle_coding == "sigmoid"
    with torch.no_grad():
        logits = reference.angle_logits[0, :50]
        prior_index = torch.arange(50)
        box_logits = reference.box_logits[0, :50]
        priors = old_detector.priors(reference, images.device)
        old_theta = old_detector.decode(box_logits, logits, priors, prior_index)[:, 4]
        linear_theta = linear_detector.decode(box_logits, logits, priors, prior_index)[:, 4]
    torch.testing.assert_close(old_theta, (torch.sigmoid(logits) - 0.25) * math.pi)
    torch.testing.assert_close(linear_theta, (logits + 1) * math.pi / 4)


def test_interrupted_and_resumed_run_matches_uninterrupted_losses(tiny_split, tmp_path, sigint_default):
    # Augmentation on (flips), so resume must also reproduce the per-sample random draws.
    overrides = {"data.vflip": 0.25, "data.hflip": 0.5}
    full = train(tiny_config(tiny_split, **overrides), tmp_path / "full")
    assert full.status == "completed" and full.iteration == 4

    # SIGINT after iteration 3 = mid-epoch 2: a checkpoint is saved and the run stops cleanly.
    stopped = train(tiny_config(tiny_split, **overrides), tmp_path / "split", callbacks=[SignalAt(3)])
    assert stopped.status == "interrupted" and stopped.iteration == 3
    assert stopped.checkpoint.name == "iter_0000003.pt"
    state = load_checkpoint(stopped.checkpoint)
    assert (state["epoch"], state["batch_in_epoch"], state["complete"]) == (1, 1, False)

    resumed = train(tiny_config(tiny_split, **overrides), tmp_path / "split", resume=True)
    assert resumed.status == "completed" and resumed.iteration == 4

    def losses(folder):
        return [(r["iteration"], r["lr"], r["loss_qfl"], r["loss_bbox"], r["loss_dfl"]) for r in train_records(folder)]

    assert losses(tmp_path / "split") == losses(tmp_path / "full")  # bit-identical on CPU
    final_full = load_checkpoint(tmp_path / "full" / "checkpoints" / "epoch_0002.pt")["model"]
    final_resumed = load_checkpoint(tmp_path / "split" / "checkpoints" / "epoch_0002.pt")["model"]
    assert all(torch.equal(final_full[k], final_resumed[k]) for k in final_full)


def test_sigterm_leaves_a_loadable_checkpoint(tiny_split, tmp_path):
    # (channels-last memory format on: the option must not change what is saved)
    sigint_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    result = train(tiny_config(tiny_split, **{"train.channels_last": True}), tmp_path, callbacks=[SignalAt(1, signal.SIGTERM)])
    assert result.status == "interrupted"
    state = load_checkpoint(find_latest_checkpoint(tmp_path))
    assert state["iteration"] == 1
    model = build_model(tiny_config(tiny_split).model, len(class_names(tiny_config(tiny_split).data)))
    model.load_state_dict(state["model"])  # complete and consistent
    assert signal.getsignal(signal.SIGINT) is sigint_before  # handlers restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(tiny_split, tmp_path):
    # A background job of a shell (`rgfl train ... &`) or a nohup-style launcher starts with SIGINT
    # ignored, so that a Ctrl-C meant for the foreground leaves it alone; training honours that.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = train(tiny_config(tiny_split), tmp_path, callbacks=[SignalAt(1, signal.SIGINT)])
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.status == "completed" and result.iteration == 4


def test_a_run_from_before_the_angle_coding_key_resumes_only_with_the_sigmoid(tiny_split, tmp_path):
    first = train(tiny_config(tiny_split, **{"schedule.max_iters": 1, "model.angle_coding": "linear"}), tmp_path)
    assert first.status == "max_iters"
    state = load_checkpoint(first.checkpoint)
    assert state["model_signature"]["angle_coding"] == "linear"
    # The same checkpoint as written before the key existed (trained with the sigmoid coding).
    state["model_signature"].pop("angle_coding")
    state["config"]["model"].pop("angle_coding")
    save_checkpoint(state, first.checkpoint)
    with pytest.raises(CheckpointError, match=r"angle_coding is 'sigmoid' in the checkpoint but 'linear' in the config \(set model.angle_coding=sigmoid"):
        train(tiny_config(tiny_split, **{"model.angle_coding": "linear"}), tmp_path, resume=True)
    resumed = train(tiny_config(tiny_split), tmp_path, resume=True)  # the default: sigmoid
    assert resumed.status == "completed" and resumed.iteration == 4


def test_a_stride4_run_records_its_pyramid_and_refuses_another(tiny_split, tmp_path):
    # The tiny config uses the stride-4 level (P2-P7) with a 96-channel FPN.
    first = train(tiny_config(tiny_split, **{"schedule.max_iters": 1}), tmp_path)
    assert first.status == "max_iters"
    state = load_checkpoint(first.checkpoint)
    assert state["model_signature"]["fpn_min_level"] == 2 and state["model_signature"]["fpn_channels"] == 96
    detector, _ = load_detector(first.checkpoint)
    with torch.no_grad():
        outputs = detector(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert outputs.strides == [4, 8, 16, 32, 64, 128] and outputs.level_sizes[0] == (16, 16)
    with pytest.raises(CheckpointError, match=r"fpn_min_level is 2 in the checkpoint but 3 in the config"):
        train(tiny_config(tiny_split, **{"model.fpn_min_level": 3}), tmp_path, resume=True)
    # A checkpoint from before the keys was a P3-P7 pyramid of 256 channels.
    state["model_signature"].pop("fpn_min_level")
    state["model_signature"].pop("fpn_channels")
    save_checkpoint(state, first.checkpoint)
    with pytest.raises(CheckpointError, match=r"fpn_channels is 256 in the checkpoint but 96 in the config"):
        train(tiny_config(tiny_split), tmp_path, resume=True)


class KillWorkersOnStopNotice(logging.Handler):
    """Kills the run's DataLoader workers (from another process, as a process-group kill does)
    while the trainer logs its stop notice, so their SIGCHLD arrives inside the SIGTERM handler:
    the order seen when `timeout` stopped a run on the GPU machine."""

    def __init__(self) -> None:
        super().__init__()
        self.workers: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "SIGTERM received" in record.getMessage() and self.workers:
            subprocess.run(["kill", "-TERM", *map(str, self.workers)], check=True)  # sender is not the parent
            for pid in self.workers:
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped (the loader checks them)


class SigtermAt:
    def __init__(self, iteration: int, notice: KillWorkersOnStopNotice):
        self.iteration = iteration
        self.notice = notice

    def on_log(self, record: dict) -> None:
        if record["iteration"] == self.iteration:
            self.sigchld = signal.getsignal(signal.SIGCHLD)  # torch's, set when the workers started
            self.notice.workers = [child.pid for child in multiprocessing.active_children()]
            assert self.notice.workers, "the run has DataLoader worker processes"
            os.kill(os.getpid(), signal.SIGTERM)


def test_workers_dying_inside_the_sigterm_handler_do_not_break_the_stop(tiny_split, tmp_path, capfd):
    cfg = tiny_config(tiny_split, **{"data.workers": 1, "data.persistent_workers": True, "schedule.epochs": 3})
    notice = KillWorkersOnStopNotice()
    train_logger = logging.getLogger("rgfl.engine.train")
    train_logger.addHandler(notice)
    try:
        stopper = SigtermAt(1, notice)
        trainer = Trainer(cfg, tmp_path, [stopper])  # kept alive: its loader must not hold dead workers
        result = trainer.run()
    finally:
        train_logger.removeHandler(notice)
    sigchld_before_stop = stopper.sigchld
    assert result.status == "interrupted"
    assert load_checkpoint(find_latest_checkpoint(tmp_path))["iteration"] == 1
    assert "Logging error" not in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert signal.getsignal(signal.SIGCHLD) is sigchld_before_stop
    # No dead worker stays registered: torch's check, which its SIGCHLD handler runs at any later
    # child exit in this process, must pass.
    from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails

    _error_if_any_worker_fails()


def test_sigterm_to_the_process_group_of_a_training_run(tiny_split, tmp_path):
    # What `timeout`, Slurm or Ctrl-C in a terminal do: the main process and its DataLoader
    # workers get the signal together. The run must save its checkpoint and say how to resume.
    work_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_split, **{"data.workers": 1, "schedule.epochs": 1000})
    command = [sys.executable, "-m", "rgfl", "train", str(TINY_CONFIG), "--work-dir", str(work_dir)]
    command += [arg for override in overrides for arg in ("--set", override)]
    # Started as a shell script starts a background job (`rgfl train ... &`): SIGINT ignored. A
    # Ctrl-C in that terminal (SIGINT to the group) must leave it training; SIGTERM stops it.
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip

    def wait_for_iteration(iteration: int) -> None:
        deadline = time.monotonic() + 120
        log = work_dir / "log.jsonl"
        while not (log.is_file() and f'"iteration": {iteration},' in log.read_text()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"no training iteration {iteration} within 120 s"
            time.sleep(0.05)

    try:
        wait_for_iteration(1)
        os.killpg(process.pid, signal.SIGINT)
        wait_for_iteration(3)  # still training
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, (process.returncode, err[-4000:])
    assert "Traceback" not in err and "Logging error" not in err, err
    assert "SIGINT received" not in err and "SIGTERM received" in " ".join(err.split())
    state = load_checkpoint(find_latest_checkpoint(work_dir))
    assert state["iteration"] >= 3
    # The printed command (the console writes to stderr) continues the run with all its settings:
    # it was started with --set schedule.epochs=1000 over the config file's 12.
    continue_with = " ".join(err.split()).split("Continue with: ")[1].split()
    assert continue_with == ["rgfl", "train", "--work-dir", str(work_dir), "--resume"]
    from typer.testing import CliRunner

    from rgfl.cli.main import app

    stop_after = state["iteration"] + 1
    result = CliRunner().invoke(app, [*continue_with[1:], "--set", f"schedule.max_iters={stop_after}"])
    assert result.exit_code == 0, result.output
    resumed = load_checkpoint(find_latest_checkpoint(work_dir))
    assert resumed["iteration"] == stop_after
    assert resumed["config"]["schedule"]["epochs"] == 1000 and resumed["config"]["data"]["workers"] == 1


class NaNLogits:
    """Forward hook on the detector's class-logit convolution that turns its output into NaN on
    chosen calls: a real non-finite loss in a real model, at a known iteration."""

    def __init__(self, detector: torch.nn.Module, num_classes: int, bad_calls: set[int]):
        convs = [m for m in detector.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == num_classes]
        assert convs, "the head has a conv with one output channel per class"
        self.calls = 0
        self.bad_calls = bad_calls
        convs[-1].register_forward_hook(self)
        self.levels = len(detector.strides)  # the head is applied once per FPN level

    def __call__(self, module, inputs, output):
        self.calls += 1
        if (self.calls - 1) // self.levels + 1 in self.bad_calls:
            return output * float("nan")
        return output


def make_trainer(cfg, work_dir, bad_iterations):
    trainer = Trainer(cfg, work_dir)
    NaNLogits(trainer.detector, len(trainer.names), bad_iterations)
    return trainer


def test_nonfinite_loss_stops_with_iteration_term_and_last_checkpoint(tiny_split, tmp_path):
    trainer = make_trainer(tiny_config(tiny_split), tmp_path, bad_iterations={3})
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    message = str(info.value)
    assert "non-finite loss at iteration 3 (epoch 2, batch 1/2)" in message
    assert "loss_qfl = nan" in message
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'epoch_0001.pt'}" in message


def test_nonfinite_loss_skip_mode_counts_skipped_batches(tiny_split, tmp_path):
    cfg = tiny_config(tiny_split, **{"train.nonfinite_loss": "skip"})
    result = make_trainer(cfg, tmp_path, bad_iterations={2, 3}).run()
    assert result.status == "completed" and result.skipped_batches == 2
    weights = load_checkpoint(result.checkpoint)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())

    cfg = tiny_config(tiny_split, **{"train.nonfinite_loss": "skip", "train.max_skipped": 1})
    with pytest.raises(NonFiniteLossError, match=r"2 batches in a row had non-finite losses \(train.max_skipped = 1\)"):
        make_trainer(cfg, tmp_path / "again", bad_iterations={2, 3, 4}).run()


def test_batch_without_any_object_trains(tmp_path):
    # Two empty patches in one batch: no positive anchor anywhere, the classifier still learns
    # from negatives and the box branch gets zero (but connected) losses.
    from rgfl.dota.synth import generate_synthetic_dataset

    generate_synthetic_dataset(tmp_path / "empty", num_images=2, image_size=64, seed=0, empty_fraction=1.0)
    cfg = tiny_config(tmp_path / "empty", **{"schedule.epochs": 1, "schedule.warmup": "none"})
    result = train(cfg, tmp_path / "run")
    assert result.status == "completed" and result.iteration == 1 and result.skipped_batches == 0
    (record,) = train_records(tmp_path / "run")
    assert record["num_pos"] == 0 and record["loss_bbox"] == 0 and math.isfinite(record["loss_qfl"])


def test_a_work_dir_holding_a_run_is_refused_and_overwrite_starts_over(tiny_split, tmp_path):
    first = train(tiny_config(tiny_split), tmp_path)
    assert first.status == "completed"
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == ["epoch_0001.pt", "epoch_0002.pt"]
    (tmp_path / "notes.txt").write_text("mine")  # the user's own file in the work dir
    (tmp_path / "curves.png").write_bytes(b"old run's picture")
    (checkpoints / "mine.pt").write_bytes(b"not ours")
    stale = checkpoints / ".epoch_0003.pt.0123abcd.tmp"  # what `kill -9` during a save leaves
    stale.write_bytes(b"half")

    with pytest.raises(InputError, match=r"already holds a training run \(2 checkpoints \(newest epoch_0002.pt\), log.jsonl\); continue it with --resume, start it over with --overwrite"):
        train(tiny_config(tiny_split), tmp_path)
    with pytest.raises(InputError, match="--resume and --overwrite contradict each other"):
        train(tiny_config(tiny_split), tmp_path, resume=True, overwrite=True)
    # A new run that cannot start leaves the old one alone.
    with pytest.raises(InputError, match="training data folder not found"):
        train(tiny_config(tmp_path / "no_such_split"), tmp_path, overwrite=True)
    assert (checkpoints / "epoch_0002.pt").is_file() and (tmp_path / "log.jsonl").is_file()

    again = train(tiny_config(tiny_split, **{"schedule.max_iters": 1}), tmp_path, overwrite=True)
    assert again.status == "max_iters"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iter_0000001.pt", "last_checkpoint", "mine.pt"]
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "curves.png").exists()
    assert [r["iteration"] for r in train_records(tmp_path)] == [1]  # the old run's records are gone


def test_resume_removes_stale_temp_files_and_log_records_after_its_checkpoint(tiny_split, tmp_path):
    first = train(tiny_config(tiny_split, **{"schedule.max_iters": 3}), tmp_path)
    assert first.status == "max_iters" and first.checkpoint.name == "iter_0000003.pt"
    # A run killed (kill -9) after iteration 3's checkpoint: two more logged iterations, a torn
    # last line, and a checkpoint save cut short.
    with open(tmp_path / "log.jsonl", "a") as log:
        log.write(json.dumps({"event": "train", "iteration": 4}) + "\n" + json.dumps({"event": "train", "iteration": 5}) + "\n" + '{"event": "tr')
    stale = [tmp_path / "checkpoints" / ".epoch_0003.pt.89abcdef.tmp", tmp_path / ".config.yaml.01234567.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    resumed = train(tiny_config(tiny_split), tmp_path, resume=True)
    assert resumed.status == "completed" and resumed.iteration == 4
    assert not any(path.exists() for path in stale)
    assert [r["iteration"] for r in train_records(tmp_path)] == [1, 2, 3, 4]


def test_checkpoint_retention_keeps_the_newest_and_the_best(tiny_split, tmp_path):
    # 5 epochs of one step each, validated after every epoch; keep the newest 2 + the best by AP50.
    cfg = tiny_config(tiny_split, **{"schedule.epochs": 5, "data.batch_size": 4, "train.keep_checkpoints": 2, "eval.interval": 1, "eval.data": tiny_split})
    result = train(cfg, tmp_path)
    assert result.status == "completed" and result.epoch == 5
    scores = [json.loads(line)["AP50"] for line in (tmp_path / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert len(scores) == 5
    best_epoch = scores.index(max(scores)) + 1  # the first epoch with the highest score
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best == {"checkpoint": f"epoch_{best_epoch:04d}.pt", "epoch": best_epoch, "metric": "AP50", "value": max(scores)}
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert kept == sorted({"epoch_0004.pt", "epoch_0005.pt", f"epoch_{best_epoch:04d}.pt"})
    assert load_checkpoint(tmp_path / "checkpoints" / best["checkpoint"])["iteration"] == best_epoch


def test_retention_drops_the_old_best_when_the_newest_epoch_becomes_the_best(tiny_split, tmp_path):
    # The score a tiny model reaches cannot be chosen, so the trainer's own bookkeeping is driven
    # with given scores, epoch by epoch, as its validation step drives it (record the best, then
    # prune): epoch 2 is the best and outlives the newest 2 until epoch 5 becomes the best; then
    # it (outside the newest 2 and no longer the best) must go.
    from rgfl.engine.train import read_best

    cfg = tiny_config(tiny_split, **{"schedule.epochs": 5, "data.batch_size": 4, "train.keep_checkpoints": 2})
    trainer = Trainer(cfg, tmp_path)
    folder = tmp_path / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    kept = {}
    for epoch, score in zip((1, 2, 3, 4, 5), (0.1, 0.5, 0.4, 0.3, 0.6)):
        (folder / f"epoch_{epoch:04d}.pt").write_bytes(b"checkpoint")  # retention reads names only
        trainer._update_best(epoch, {"AP50": score})
        trainer._prune_epoch_checkpoints()
        kept[epoch] = sorted(p.name for p in folder.glob("*.pt"))
    assert kept[3] == ["epoch_0002.pt", "epoch_0003.pt"]
    assert kept[4] == ["epoch_0002.pt", "epoch_0003.pt", "epoch_0004.pt"]  # the best, older than the newest 2, stays
    assert read_best(tmp_path)["checkpoint"] == "epoch_0005.pt"
    assert kept[5] == ["epoch_0004.pt", "epoch_0005.pt"]  # the old best goes once it is no longer the best


def test_keep_checkpoints_zero_keeps_every_epoch(tiny_split, tmp_path):
    cfg = tiny_config(tiny_split, **{"schedule.epochs": 4, "data.batch_size": 4, "train.keep_checkpoints": 0})
    assert train(cfg, tmp_path).status == "completed"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == [f"epoch_{e:04d}.pt" for e in (1, 2, 3, 4)]
    # (the default, 3, is checked by the CLI test of resume)


def test_library_train_refuses_a_split_other_than_expected_split(tmp_path):
    # The check used to live only in `rgfl train`: train() itself trained on the wrong split.
    from tests.engine.helpers import make_split

    split = make_split(tmp_path / "split", images=2)
    manifest = {"format": "rgfl-split/1", "parameters": {"truncation": "keep", "iof_thr": 0.7}, "source": "DOTA/train", "skipped": [], "images": []}
    (split / "split_manifest.json").write_text(json.dumps(manifest))
    cfg = tiny_config(split, **{"expected_split.truncation": "clip-int", "schedule.max_iters": 1})
    with pytest.raises(InputError, match=r"truncation: the split has keep .* the config expects clip-int"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
