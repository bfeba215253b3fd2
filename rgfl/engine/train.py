"""The training loop behind ``rgfl train``: one process, or one per GPU under ``torchrun``.

Usage::

    cfg = load_config("configs/rgfl_r18_tiny_cpu.yaml", ["data.root=split/train"])
    result = train(cfg, work_dir="runs/tiny", callbacks=[MyProgress()])

What a run writes to ``work_dir`` (rank 0 only): ``config.yaml`` (resolved config),
``log.jsonl`` (one JSON record per log interval, per epoch, per validation),
``checkpoints/epoch_NNNN.pt`` / ``iter_NNNNNNN.pt`` + ``checkpoints/last_checkpoint`` (the newest
``train.keep_checkpoints`` epoch checkpoints are kept, plus the best by validation, named in
``checkpoints/best.json``), and ``tensorboard/`` when tensorboard is installed. A work dir that
holds a run is refused unless ``resume`` or ``overwrite`` says what to do with it
(:mod:`rgfl.engine.run_dir`).

Exact resume: the sample order of an epoch depends only on (seed, epoch), augmentations are
seeded per (seed, epoch, sample index), the learning rate is a function of the global iteration,
and checkpoints hold model, optimizer, grad scaler, RNG states and the position inside the epoch.
On CPU a run that is interrupted (SIGINT/SIGTERM, or :meth:`Trainer.request_stop`) and resumed
therefore computes the same losses as one that was never interrupted.

Callbacks (rank 0 only) are objects with any of these methods: ``on_train_start(info: dict)``,
``on_log(record: dict)``, ``on_epoch_end(record: dict)``, ``on_validation(record: dict)``,
``on_checkpoint(path: Path)``, ``on_train_end(result: TrainResult)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rgfl import __version__
from rgfl.engine import distributed as dist_utils
from rgfl.engine.build import build_model, build_optimizer, build_train_dataset, class_names, load_model_state, model_signature
from rgfl.engine.checkpoint import (
    CheckpointError,
    ResumePoint,
    capture_rng_state,
    check_model_signature,
    checkpoint_dir,
    find_resume_point,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from rgfl.engine.compile import disable_compile, enable_compile
from rgfl.engine.config import Config, config_from_dict, config_to_dict, config_to_yaml
from rgfl.engine.metrics import JsonLinesLog, TensorBoardLog, format_eta
from rgfl.engine.preflight import check_training_setup
from rgfl.engine.run_dir import check_work_dir, clear_run, remove_stale_run_temp_files, trim_log
from rgfl.engine.sampler import EpochBatchSampler, SeededSamples, worker_init
from rgfl.engine.schedule import LRSchedule, scaled_lr
from rgfl.engine.validation import check_validation_available, validate
from rgfl.errors import RgflError
from rgfl.fileio import atomic_write_text

__all__ = ["train", "Trainer", "TrainResult", "NonFiniteLossError", "LossModule"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RgflError):
    """A loss became NaN or infinite and the config says to stop."""


@dataclass
class TrainResult:
    """How a run ended.

    Attributes:
        status: ``"completed"`` (all epochs), ``"max_iters"`` (stopped by schedule.max_iters) or
            ``"interrupted"`` (signal or :meth:`Trainer.request_stop`; a checkpoint was saved).
        epoch: epochs completed; iteration: optimizer steps done in total.
        checkpoint: the last checkpoint written (None if none was).
        skipped_batches: batches skipped for non-finite losses (``train.nonfinite_loss: skip``).
        last_record: the last logged record.
    """

    status: str
    epoch: int
    iteration: int
    checkpoint: Path | None
    skipped_batches: int = 0
    last_record: dict[str, Any] = field(default_factory=dict)


class LossModule(nn.Module):
    """``forward(images, targets) -> dict of losses``, so DDP's gradient hooks see the loss pass.

    DistributedDataParallel synchronizes gradients only for work done inside its ``forward``;
    calling ``detector.compute_losses`` on the unwrapped detector would skip that.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor, targets: list) -> dict[str, Tensor]:
        return self.detector.compute_losses(images, targets)


def _child_exited(signum: int, frame: Any) -> None:
    """SIGCHLD while stopping: nothing to do (a Python function, not SIG_IGN, which would reap
    the workers before the DataLoader can check how they ended)."""


class _StopRequest:
    """Turns SIGINT/SIGTERM into a request honoured between iterations; a second signal aborts."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now (checkpoint writes are atomic)
        if self.reason is None:
            self._expect_worker_deaths()
        self.request(name)
        logger.warning("%s received: finishing this iteration, saving a checkpoint, then exiting (Ctrl-C again to abort)", name)

    def _expect_worker_deaths(self) -> None:
        # A signal sent to the process group (`timeout`, batch schedulers, Ctrl-C in a terminal)
        # also kills the DataLoader workers. torch's SIGCHLD handler raises their death into
        # whatever the main process runs next: this handler, its log call, or the training step,
        # which would end the run without its checkpoint. From here on a dead worker is expected;
        # the loader still reports it at the next fetch, which `_batches` turns into the stop.
        if hasattr(signal, "SIGCHLD") and signal.SIGCHLD not in self._previous:
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _child_exited)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is signal.SIG_IGN:
                # Whoever started us wants it ignored: a shell starts background jobs (`cmd &`)
                # with SIGINT ignored so that a Ctrl-C meant for the foreground job leaves them
                # alone, and nohup-style launchers do the same. Honour that; SIGTERM still stops.
                logger.info("%s is ignored in this process (a background job?): it will not stop training", signal.Signals(signum).name)
                continue
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS, KiB on Linux


def _default_workers(world_local: int, device: torch.device) -> int:
    """DataLoader workers per process when the config leaves ``data.workers`` empty.

    On CUDA: all but one of this process's share of the cores, at most 8 (PNG decoding of 1024 px
    patches needs several). On CPU: none, because the training step itself uses every core and
    loading a patch costs milliseconds against seconds per step; a worker would only take cores
    from the convolutions (measured: 0.28 vs 0.47 images/s on 2 cores with one worker).
    """
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // max(1, world_local) - 1))


class Trainer:
    """Owns the model, optimizer, data and state of one training run (one process of it)."""

    def __init__(self, cfg: Config, work_dir: str | Path, callbacks: Sequence[Any] = ()):
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.callbacks = list(callbacks)
        self.stop = _StopRequest()
        self.dist = dist_utils.init_distributed(cfg.train.device)
        self.device = self.dist.device
        self.is_main = self.dist.is_main
        self.names = class_names(cfg.data)
        self.epoch = 0  # epoch in progress (0-based)
        self.batch_in_epoch = 0  # batches of it already trained
        self.iteration = 0  # optimizer steps done (global)
        self.skipped_batches = 0
        self.consecutive_skips = 0
        self.last_checkpoint: Path | None = None
        self.last_record: dict[str, Any] = {}
        self._setup()

    # ------------------------------------------------------------------------------------------
    # Set-up

    def _setup(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.train.seed)  # model init; per-sample augmentation seeds come from the sampler
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: autotuned convolutions pay off

        check_validation_available(cfg)
        self.dataset = build_train_dataset(cfg.data, self.names)
        self.total_batch = cfg.data.batch_size * self.dist.world_size
        self.sampler = EpochBatchSampler(len(self.dataset), cfg.data.batch_size, shuffle=True, seed=cfg.train.seed, rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader = self._build_loader()
        self.iters_per_epoch = len(self.sampler)
        self.total_iters = self.iters_per_epoch * cfg.schedule.epochs
        if cfg.schedule.max_iters is not None:
            self.total_iters = min(self.total_iters, cfg.schedule.max_iters)
        check_training_setup(cfg, self.dataset, self.total_iters, warn=self.is_main)

        self.detector = build_model(cfg.model, len(self.names)).to(self.device)
        if cfg.train.channels_last:
            self.detector = self.detector.to(memory_format=torch.channels_last)
        if cfg.train.sync_bn and self.dist.world_size > 1:
            self.detector = nn.SyncBatchNorm.convert_sync_batchnorm(self.detector)
        self.lr = scaled_lr(cfg.optimizer, self.total_batch)
        self.optimizer = build_optimizer(self.detector, cfg.optimizer, self.lr)
        self.schedule = LRSchedule.from_config(cfg.schedule, self.lr, self.iters_per_epoch)

        self.amp_dtype: torch.dtype | None = None
        if cfg.train.amp != "off":
            if self.device.type != "cuda":
                logger.warning("train.amp=%s needs a CUDA device; training in float32 on %s", cfg.train.amp, self.device)
            else:
                self.amp_dtype = torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

        module: nn.Module = LossModule(self.detector)
        if self.dist.world_size > 1:
            module = nn.parallel.DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.train.find_unused_parameters,
            )
        # Compiled parts, not the whole loss module: the assignment's shapes change every batch.
        self.compile_pending = bool(cfg.train.compile) and enable_compile(self.detector, self.device)
        self.loss_module = module

    def _build_loader(self) -> torch.utils.data.DataLoader:
        from rgfl.data import collate_batch

        data = self.cfg.data
        workers = data.workers if data.workers is not None else _default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), self.device)
        pin = data.pin_memory if data.pin_memory is not None else self.device.type == "cuda"
        return torch.utils.data.DataLoader(
            SeededSamples(self.dataset, self.cfg.train.seed),
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=pin,
            persistent_workers=data.persistent_workers and workers > 0,
            prefetch_factor=data.prefetch_factor if workers > 0 else None,
            worker_init_fn=worker_init if workers > 0 else None,
        )

    # ------------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self, complete_epoch: bool) -> dict[str, Any]:
        rng_states = dist_utils.all_gather_object(capture_rng_state())  # collective: every rank calls it
        return {
            "model_signature": model_signature(self.cfg),
            "model": self.detector.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "iteration": self.iteration,
            "complete": complete_epoch,
            "total_batch_size": self.total_batch,
            "world_size": self.dist.world_size,
            "skipped_batches": self.skipped_batches,
            "rng": rng_states,
            "sampler": self.sampler.state_dict(),
            "config": config_to_dict(self.cfg),
            "metrics": {k: v for k, v in self.last_record.items() if isinstance(v, (int, float, str))},
        }

    def save(self, name: str, complete_epoch: bool) -> Path | None:
        state = self.state_dict(complete_epoch)
        path = None
        if self.is_main:
            path = save_checkpoint(state, checkpoint_dir(self.work_dir) / name)
            self.last_checkpoint = path
            if complete_epoch:
                self._prune_epoch_checkpoints()
            self._emit("on_checkpoint", path)
        dist_utils.barrier()
        return path

    def _prune_epoch_checkpoints(self) -> None:
        """Retention (``train.keep_checkpoints``): the newest N epoch checkpoints, which include
        the final one, plus the best one by validation (``best.json``); 0 keeps all."""
        keep = self.cfg.train.keep_checkpoints
        if keep <= 0:
            return
        folder = checkpoint_dir(self.work_dir)
        best = read_best(self.work_dir)
        epochs = sorted(folder.glob("epoch_*.pt"), key=_epoch_number)
        for old in epochs[:-keep]:
            if best is None or old.name != best.get("checkpoint"):
                old.unlink(missing_ok=True)
        # Mid-epoch checkpoints are superseded by the epoch checkpoint that follows them.
        for old in folder.glob("iter_*.pt"):
            old.unlink(missing_ok=True)

    def _update_best(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Record the epoch checkpoint with the best ``eval.best_metric`` so far in ``best.json``."""
        name = self.cfg.eval.best_metric
        value = metrics.get(name)
        checkpoint = checkpoint_dir(self.work_dir) / f"epoch_{epoch:04d}.pt"
        if not isinstance(value, float) or not math.isfinite(value) or not checkpoint.is_file():
            return  # no checkpoint at this epoch (train.checkpoint_interval): nothing to keep
        best = read_best(self.work_dir)
        if best is not None and best.get("metric") == name and value <= best.get("value", -math.inf):
            return
        record = {"checkpoint": checkpoint.name, "epoch": epoch, "metric": name, "value": value}
        atomic_write_text(checkpoint_dir(self.work_dir) / BEST_POINTER, json.dumps(record) + "\n")
        logger.info("best %s so far: %.4f after epoch %d (%s)", name, value, epoch, checkpoint)

    def resume(self, checkpoint: str | Path, state: dict[str, Any] | None = None) -> None:
        """Restore everything from a checkpoint so the run continues exactly where it stopped.

        ``state`` is the already loaded checkpoint, if the caller has it.
        """
        path = Path(checkpoint)
        if state is None:
            state = load_checkpoint(path, map_location="cpu")
        check_model_signature(state, model_signature(self.cfg), path)
        load_model_state(self.detector, state["model"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"the optimizer state does not fit this model: {error}", path) from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._warn_config_changes(state.get("config", {}), path)
        self.iteration = int(state["iteration"])
        self.skipped_batches = int(state.get("skipped_batches", 0))
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        if state["total_batch_size"] != self.total_batch and not state["complete"]:
            # Another world size: convert the position in the epoch by samples consumed.
            consumed = self.batch_in_epoch * state["total_batch_size"]
            self.batch_in_epoch = consumed // self.total_batch
            logger.warning("total batch size changed from %d to %d: resuming mid-epoch at batch %d (not bit-exact)", state["total_batch_size"], self.total_batch, self.batch_in_epoch)
        if state["complete"]:
            self.epoch += 1
            self.batch_in_epoch = 0
        rng = state["rng"]
        restore_rng_state(rng[self.dist.rank] if len(rng) == self.dist.world_size else rng[0])
        self.last_checkpoint = path
        best = read_best(self.work_dir) if self.is_main else None
        if best is not None and int(best.get("epoch", 0)) > self.epoch:
            # The run goes back to before its best epoch (an older checkpoint): that epoch is redone.
            (checkpoint_dir(self.work_dir) / BEST_POINTER).unlink(missing_ok=True)
        if self.is_main:
            logger.info("resumed from %s at epoch %d, batch %d, iteration %d", path, self.epoch + 1, self.batch_in_epoch, self.iteration)

    def _warn_config_changes(self, old: dict, path: Path) -> None:
        if not self.is_main or not old:
            return
        try:
            old_cfg = config_to_dict(config_from_dict(old))
        except RgflError:
            return
        new_cfg = config_to_dict(self.cfg)
        changed = [f"{s}.{k}: {old_cfg[s][k]!r} -> {new_cfg[s][k]!r}" for s in new_cfg for k in new_cfg[s] if old_cfg.get(s, {}).get(k) != new_cfg[s][k]]
        if changed:
            logger.warning("config differs from the checkpoint's (%s): %s", path.name, "; ".join(changed))

    # ------------------------------------------------------------------------------------------
    # The loop

    def _emit(self, event: str, payload: Any) -> None:
        if not self.is_main:
            return
        for callback in self.callbacks:
            method = getattr(callback, event, None)
            if method is not None:
                method(payload)

    def _agree_to_stop(self) -> bool:
        """All ranks stop at the same iteration if any of them got a signal."""
        if self.dist.world_size == 1:
            return bool(self.stop)
        flag = torch.tensor([1.0 if self.stop else 0.0], device=self.device)
        return bool(dist_utils.all_reduce_sum(flag).item() > 0)

    def _batches(self) -> Iterator[Any]:
        # A worker killed by the same signal as this process surfaces as torch's RuntimeError
        # ("worker exited unexpectedly") or, when its pipe breaks before torch sees it dead, as
        # EOFError / ConnectionResetError: while stopping, all of them end the data, and the
        # main process still saves its checkpoint.
        worker_died = (RuntimeError, EOFError, OSError)
        try:
            iterator = iter(self.loader)  # persistent workers confirm the new epoch: may find one dead
        except worker_died:
            if self.stop:
                return
            raise
        while True:
            try:
                yield next(iterator)
            except StopIteration:
                return
            except worker_died:
                if self.stop:
                    return
                raise

    def run(self) -> TrainResult:
        cfg = self.cfg
        self._prepare_work_dir()
        jsonl = JsonLinesLog(self.work_dir / "log.jsonl") if self.is_main else None
        tensorboard = TensorBoardLog(self.work_dir / "tensorboard") if self.is_main and cfg.train.tensorboard else None
        self.stop.install()
        self._emit(
            "on_train_start",
            {
                "epochs": cfg.schedule.epochs,
                "iters_per_epoch": self.iters_per_epoch,
                "total_iters": self.total_iters,
                "start_iteration": self.iteration,
                "images": len(self.dataset),
                "world_size": self.dist.world_size,
                "total_batch_size": self.total_batch,
                "lr": self.lr,
                "device": str(self.device),
            },
        )
        status = "completed"
        try:
            status = self._loop(jsonl, tensorboard)
        finally:
            try:
                if self.stop:
                    self._release_workers()
            finally:
                self.stop.uninstall()
            if jsonl is not None:
                jsonl.close()
            if tensorboard is not None:
                tensorboard.close()
        result = TrainResult(status, self.epoch, self.iteration, self.last_checkpoint, self.skipped_batches, self.last_record)
        self._emit("on_train_end", result)
        return result

    def _release_workers(self) -> None:
        """Shut down the persistent DataLoader workers of a stopped run, dead or alive.

        A signal to the process group may have killed them; left registered with torch, a dead
        worker would be reported by torch's SIGCHLD handler (restored by ``uninstall``) at the next
        child exit anywhere in this process, e.g. during an evaluation after ``train`` returned.
        torch has no public call for this, hence the private iterator.
        """
        iterator = getattr(self.loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
            self.loader._iterator = None

    def _prepare_work_dir(self) -> None:
        if not self.is_main:
            return
        checkpoint_dir(self.work_dir).mkdir(parents=True, exist_ok=True)
        header = f"# resolved config of `rgfl train` (rgfl {__version__}); rerun with: rgfl train {self.work_dir / 'config.yaml'}"
        atomic_write_text(self.work_dir / "config.yaml", config_to_yaml(self.cfg, header))

    def _loop(self, jsonl: JsonLinesLog | None, tensorboard: TensorBoardLog | None) -> str:
        cfg = self.cfg
        self.detector.train()
        sums: dict[str, float] = {}
        window_start = time.perf_counter()
        window_iters = 0
        data_wait = 0.0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        while self.epoch < cfg.schedule.epochs:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            epoch_start = time.perf_counter()
            # Checkpoint and validation time between epochs is not training speed.
            sums, window_iters, data_wait, window_start = {}, 0, 0.0, epoch_start
            batches = self._batches()
            while True:
                if self.iteration >= self.total_iters and self.batch_in_epoch < self.iters_per_epoch:
                    self.save(f"iter_{self.iteration:07d}.pt", complete_epoch=False)
                    return "max_iters"
                if self._agree_to_stop():
                    self.save(f"iter_{self.iteration:07d}.pt", complete_epoch=False)
                    return "interrupted"
                fetch_start = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    if self.stop:
                        continue  # loop back to the stop check
                    break
                data_wait += time.perf_counter() - fetch_start

                lr = self.schedule.apply(self.optimizer, self.iteration)
                values = self._step(batch)
                self.iteration += 1
                self.batch_in_epoch += 1
                window_iters += 1
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value

                if self.iteration % cfg.train.log_interval == 0 or self.batch_in_epoch == self.iters_per_epoch:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    elapsed = time.perf_counter() - window_start
                    record = self._record(sums, window_iters, elapsed, data_wait, lr)
                    self.last_record = record
                    if jsonl is not None:
                        jsonl.write(record)
                    if tensorboard is not None:
                        tensorboard.write(record, self.iteration)
                    self._emit("on_log", record)
                    sums, window_iters, data_wait = {}, 0, 0.0
                    window_start = time.perf_counter()
                    if self.device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(self.device)

            # End of epoch.
            finished_epoch = self.epoch + 1
            epoch_record = {"event": "epoch_end", "epoch": finished_epoch, "iteration": self.iteration, "seconds": round(time.perf_counter() - epoch_start, 3), "skipped_batches": self.skipped_batches}
            last = finished_epoch == cfg.schedule.epochs or self.iteration >= self.total_iters
            if last or finished_epoch % cfg.train.checkpoint_interval == 0:
                path = self.save(f"epoch_{finished_epoch:04d}.pt", complete_epoch=True)
                epoch_record["checkpoint"] = str(path) if path else None
            if jsonl is not None:
                jsonl.write(epoch_record)
            self._emit("on_epoch_end", epoch_record)
            if cfg.eval.interval > 0 and (finished_epoch % cfg.eval.interval == 0 or last):
                self._validate(finished_epoch, jsonl, tensorboard)
            if self.is_main:
                from rgfl.plots import write_run_curves

                write_run_curves(self.work_dir)  # curves.png: losses, lr and validation AP so far
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.iteration >= self.total_iters and self.epoch < cfg.schedule.epochs:
                return "max_iters"
        return "completed"

    def _record(self, sums: dict[str, float], iters: int, elapsed: float, data_wait: float, lr: float) -> dict[str, Any]:
        seconds_per_iter = elapsed / max(iters, 1)
        record: dict[str, Any] = {
            "event": "train",
            "epoch": self.epoch + 1,
            "epochs": self.cfg.schedule.epochs,
            "iter_in_epoch": self.batch_in_epoch,
            "iters_per_epoch": self.iters_per_epoch,
            "iteration": self.iteration,
            "total_iters": self.total_iters,
            "lr": lr,
        }
        for name, total in sums.items():
            record[name] = total / max(iters, 1)
        record.update(
            {
                "images_per_s": self.total_batch / seconds_per_iter if seconds_per_iter > 0 else math.nan,
                "s_per_iter": seconds_per_iter,
                "data_wait_fraction": data_wait / elapsed if elapsed > 0 else 0.0,
                "memory_mb": round(_memory_mb(self.device), 1),
                "eta_s": seconds_per_iter * (self.total_iters - self.iteration),
                "eta": format_eta(seconds_per_iter * (self.total_iters - self.iteration)),
                "skipped_batches": self.skipped_batches,
                "time": time.time(),
            }
        )
        return record

    def _step(self, batch: Any) -> dict[str, float]:
        """One optimizer step (see :meth:`_step_once`); with ``train.compile`` the first step that
        raises while compiling falls back to eager with a warning and is run again."""
        if not self.compile_pending:
            return self._step_once(batch)
        try:
            values = self._step_once(batch)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
            logger.warning("train.compile: the first compiled step failed (%s: %s); training eagerly", type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            disable_compile(self.detector)
            self.optimizer.zero_grad(set_to_none=True)
            values = self._step_once(batch)
        self.compile_pending = False
        return values

    def _step_once(self, batch: Any) -> dict[str, float]:
        """One optimizer step. Returns the loss terms (averaged over ranks) as floats."""
        cfg = self.cfg
        images, targets = batch
        images = images.to(self.device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = [target.to(self.device) for target in targets]

        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            losses = self.loss_module(images, targets)
        names = sorted(name for name in losses if name.startswith("loss"))  # summed into the total
        extras = sorted(name for name in losses if not name.startswith("loss") and losses[name].numel() == 1)  # logged only (num_pos)
        total = sum(losses[name].float() for name in names)
        logged = names + ["loss"] + extras
        terms = torch.stack([losses[name].detach().float() for name in names] + [total.detach()] + [losses[name].detach().float().reshape(()) for name in extras])

        # One small all-reduce per step: the logged values (mean over ranks) and the non-finite
        # flags of the loss terms, so every rank takes the same skip/stop decision before backward
        # (a rank skipping backward alone would hang DDP's gradient all-reduce).
        bad = (~torch.isfinite(terms)).float()
        bad[len(names) + 1 :] = 0.0
        packed = dist_utils.all_reduce_sum(torch.cat([torch.nan_to_num(terms, nan=0.0, posinf=0.0, neginf=0.0), bad]))
        packed = packed.tolist()
        n = len(terms)
        values = {name: packed[i] / self.dist.world_size for i, name in enumerate(logged)}
        bad_terms = [name for i, name in enumerate(logged) if packed[n + i] > 0]

        if bad_terms:
            self.optimizer.zero_grad(set_to_none=True)
            self._handle_nonfinite(bad_terms, [losses[name] for name in names] + [total], names + ["loss"])
            return {"skipped": 1.0}

        self.consecutive_skips = 0
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
        else:
            total.backward()
        if cfg.optimizer.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.grad_clip)
            values["grad_norm"] = float(grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return values

    def _handle_nonfinite(self, bad_terms: list[str], tensors: list[Tensor], names: list[str]) -> None:
        local = {name: float(t.detach().float()) for name, t in zip(names, tensors)}
        where = f"iteration {self.iteration + 1} (epoch {self.epoch + 1}, batch {self.batch_in_epoch + 1}/{self.iters_per_epoch})"
        terms = ", ".join(f"{name} = {local[name]}" for name in bad_terms if name != "loss") or f"loss = {local['loss']}"
        if self.cfg.train.nonfinite_loss == "skip":
            self.skipped_batches += 1
            self.consecutive_skips += 1
            logger.warning("non-finite loss at %s: %s; batch skipped (%d skipped so far)", where, terms, self.skipped_batches)
            if self.consecutive_skips <= self.cfg.train.max_skipped:
                return
            reason = f"{self.consecutive_skips} batches in a row had non-finite losses (train.max_skipped = {self.cfg.train.max_skipped})"
        else:
            reason = "non-finite loss"
        good = str(self.last_checkpoint) if self.last_checkpoint is not None else "none written yet"
        raise NonFiniteLossError(
            f"{reason} at {where}: {terms}; last good checkpoint: {good}. "
            "Lower the learning rate (optimizer.lr / optimizer.base_lr), enable optimizer.grad_clip, "
            "or set train.nonfinite_loss=skip to skip such batches"
        )

    def _validate(self, epoch: int, jsonl: JsonLinesLog | None, tensorboard: TensorBoardLog | None) -> None:
        """AP50/AP75/mAP on ``eval.data`` through the evaluator of ``rgfl eval`` (rank 0; others wait)."""
        self.detector.eval()
        try:
            metrics = validate(self.detector, self.cfg, self.names, self.device, self.amp_dtype) if self.is_main else None
        finally:
            self.detector.train()
        dist_utils.barrier()
        if metrics is None:
            return
        record = {"event": "val", "epoch": epoch, "iteration": self.iteration, **metrics}
        self._update_best(epoch, metrics)
        if jsonl is not None:
            jsonl.write(record)
        if tensorboard is not None:
            tensorboard.write(metrics, self.iteration, prefix="val")
        self._emit("on_validation", record)


BEST_POINTER = "best.json"


def read_best(work_dir: str | Path) -> dict[str, Any] | None:
    """``checkpoints/best.json``: the checkpoint with the best validation score so far, or None."""
    path = checkpoint_dir(work_dir) / BEST_POINTER
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return best if isinstance(best, dict) else None


def _epoch_number(path: Path) -> int:
    digits = path.stem.removeprefix("epoch_")
    return int(digits) if digits.isdigit() else -1


def train(
    cfg: Config,
    work_dir: str | Path,
    resume: str | Path | bool | ResumePoint | None = None,
    callbacks: Sequence[Any] = (),
    overwrite: bool = False,
) -> TrainResult:
    """Train the detector described by ``cfg``; see the module docstring for outputs and resume.

    Args:
        resume: ``True``: continue from the newest intact checkpoint of ``work_dir`` (a corrupt
            newer one is skipped with a warning; from scratch if there is none yet); a path: from
            that checkpoint; a :class:`ResumePoint` already loaded (its state is released once used).
        overwrite: start over in a ``work_dir`` that holds a run, removing its checkpoints and log.

    Raises:
        InputError: ``work_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        CheckpointError: the checkpoint to resume from is missing, corrupt or of another model.
    """
    resuming = resume is not None and resume is not False
    check_work_dir(work_dir, resume=resuming, overwrite=overwrite)
    # Check the checkpoint before the (slow) set-up, so a wrong file fails in a second.
    point = resume if isinstance(resume, ResumePoint) else find_resume_point(work_dir, resume)
    if resuming and point is None:
        logger.warning("--resume: no checkpoint in %s yet; starting from scratch", checkpoint_dir(work_dir))
    if point is not None:
        check_model_signature(point.state, model_signature(cfg), point.path)
    trainer = Trainer(cfg, work_dir, callbacks)
    # The old run's files change only now that the new run's set-up has succeeded.
    if trainer.is_main:
        if overwrite:
            clear_run(work_dir)
        else:
            remove_stale_run_temp_files(work_dir)
        if resuming:
            trim_log(work_dir, int(point.state["iteration"]) if point is not None else 0)
    if point is not None:
        trainer.resume(point.path, point.state)
        point.state = {}  # the optimizer and model hold their own copies now
    return trainer.run()
