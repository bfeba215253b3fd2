"""Training throughput of `rgfl train` and the share of step time spent waiting for data.

For each setting the script generates a synthetic DOTA-format set (rgfl.dota.synth), then in the
same process:

1. runs the real training loop (rgfl.engine.train.Trainer: DataLoader workers, seeded sampling,
   AMP, logging) for ``--iters`` iterations after ``--warmup`` ones, logging every iteration;
2. runs the peer: the bare optimizer step (forward + losses + backward + SGD) of the same detector
   on one fixed, pre-loaded batch, i.e. what the loop would reach with free data loading and no
   bookkeeping.

Reported: images/s (median over iterations), seconds per iteration, the fraction of loop time
spent waiting for the next batch (target < 5%), and loop / bare-step throughput.

Settings: ``cpu-tiny`` (configs/rgfl_r18_tiny_cpu.yaml, 256 px, batch 4) always; on CUDA also
``cuda-r50-1024`` and ``cuda-r50-1024-amp`` (configs/rgfl_r50_fpn_1x_dota_le135.yaml, 1024 x 1024
patches, batch 2, fp32 vs bf16 autocast).

    python benchmarks/train_throughput.py                 # all settings available here
    python benchmarks/train_throughput.py --settings cpu-tiny --iters 20
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rgfl.dota.synth import generate_synthetic_dataset
from rgfl.engine.config import load_config

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {
    # name: (config, image size, images, overrides)
    "cpu-tiny": ("rgfl_r18_tiny_cpu.yaml", 256, 24, ["train.device=cpu", "data.input_size=256"]),
    "cuda-r50-1024": ("rgfl_r50_fpn_1x_dota_le135.yaml", 1024, 48, ["train.device=cuda", "model.pretrained=none", "train.amp=off"]),
    "cuda-r50-1024-amp": ("rgfl_r50_fpn_1x_dota_le135.yaml", 1024, 48, ["train.device=cuda", "model.pretrained=none", "train.amp=bf16"]),
}


class Collect:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_log(self, record: dict) -> None:
        self.records.append(record)


def run_loop(cfg, work_dir: Path, warmup: int) -> dict:
    from rgfl.engine.train import Trainer

    collect = Collect()
    trainer = Trainer(cfg, work_dir, callbacks=[collect])
    trainer.run()
    measured = collect.records[warmup:]
    seconds = [r["s_per_iter"] for r in measured]
    waits = [r["data_wait_fraction"] * r["s_per_iter"] for r in measured]
    return {
        "images_per_s": statistics.median(r["images_per_s"] for r in measured),
        "s_per_iter": statistics.median(seconds),
        "data_wait": sum(waits) / sum(seconds),
        "memory_mb": max(r["memory_mb"] for r in measured),
        "workers": trainer.loader.num_workers,
        "trainer": trainer,
    }


def run_bare_step(trainer, iters: int, warmup: int) -> float:
    """Median images/s of forward + losses + backward (+ clipping) + SGD on pre-loaded batches.

    The batches are the first ones of the loop's own order, loaded into memory beforehand, so the
    difference to the loop is data loading plus the engine's bookkeeping.
    """
    batches = []
    for batch in trainer.loader:
        batches.append(batch)
        if len(batches) == warmup + iters:
            break
    model, optimizer = trainer.detector, trainer.optimizer
    model.train()
    times = []
    for i in range(warmup + iters):
        images, targets = batches[i % len(batches)]
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        images = images.to(trainer.device)
        if trainer.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = [t.to(trainer.device) for t in targets]
        with torch.autocast(trainer.device.type, dtype=trainer.amp_dtype or torch.float32, enabled=trainer.amp_dtype is not None):
            losses = model.compute_losses(images, targets)
        total = sum(v for k, v in losses.items() if k.startswith("loss"))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if trainer.cfg.optimizer.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.optimizer.grad_clip)
        optimizer.step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return trainer.cfg.data.batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    available = [name for name in SETTINGS if name.startswith("cpu") or torch.cuda.is_available()]
    parser.add_argument("--settings", nargs="+", default=available, choices=list(SETTINGS))
    parser.add_argument("--iters", type=int, default=15, help="measured iterations per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the engine's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    rows = []
    for name in args.settings:
        config, size, images, overrides = SETTINGS[name]
        tmp = Path(tempfile.mkdtemp(prefix=f"rgfl_bench_{name}_"))
        try:
            generate_synthetic_dataset(tmp / "split", num_images=images, image_size=size, seed=0, empty_fraction=0.0)
            settings = overrides + [
                f"data.root={tmp / 'split'}",
                f"schedule.max_iters={args.warmup + args.iters}",
                "schedule.epochs=100",
                "train.log_interval=1",
                "train.tensorboard=false",
                "data.skip_empty=false",
            ]
            if args.workers is not None:
                settings.append(f"data.workers={args.workers}")
            cfg = load_config(REPO / "configs" / config, settings)
            loop = run_loop(cfg, tmp / "work", args.warmup)
            bare = run_bare_step(loop.pop("trainer"), args.iters, args.warmup)
            rows.append((name, cfg.data.batch_size, loop, bare))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"torch {torch.__version__}, {threads} CPU threads, " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"))
    header = f"{'setting':<20} {'batch':>5} {'workers':>7} {'img/s':>8} {'s/iter':>8} {'data wait':>9} {'bare img/s':>10} {'loop/bare':>9} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for name, batch, loop, bare in rows:
        print(
            f"{name:<20} {batch:>5} {loop['workers']:>7} {loop['images_per_s']:>8.2f} {loop['s_per_iter']:>8.3f} "
            f"{100 * loop['data_wait']:>8.1f}% {bare:>10.2f} {loop['images_per_s'] / bare:>9.2f} {loop['memory_mb']:>8.0f}"
        )


if __name__ == "__main__":
    main()
