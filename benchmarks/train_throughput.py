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
patches, batch 2, fp32 vs bf16 autocast). The patches are synthetic scenes (``rgfl synth``)
written at the patch size, PNG by default (``--ext jpg``: JPEG quality 95, as ``rgfl split --ext
jpg`` writes them); ``--data SPLIT`` trains on an existing split folder instead.

Before the loop, the data path alone: how many patches per second one process decodes and
augments (``DotaDataset[i]``, the work of one DataLoader worker) for PNG and JPEG patches of the
1024 setting, and how many workers a step rate of ``--target`` images/s needs (the GPU reaches
about 20-26 images/s for an R50 step at 1024 px, batch 2).

    python benchmarks/train_throughput.py                 # all settings available here
    python benchmarks/train_throughput.py --settings cpu-tiny --iters 20
    python benchmarks/train_throughput.py --decode-only   # the data-path table alone (CPU)
    python benchmarks/train_throughput.py --settings cuda-r50-1024 cuda-r50-1024-amp --iters 20
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


def measure_decode(size: int, count: int, ext: str, tmp: Path) -> dict[str, float]:
    """One process reading + decoding + augmenting ``count`` synthetic ``size`` px patches in
    ``ext`` with the R50 config's training transforms, as one DataLoader worker does (one torch
    thread). Rates per CPU second of this process (what a worker with a core of its own reaches,
    robust to a loaded machine) and per wall second."""
    from rgfl.data.dataset import read_image
    from rgfl.engine.build import build_train_dataset, class_names

    root = tmp / f"decode_{ext}"
    generate_synthetic_dataset(root, num_images=count, image_size=size, seed=0, empty_fraction=0.0, ext=ext)
    cfg = load_config(REPO / "configs" / SETTINGS["cuda-r50-1024"][0], [f"data.root={root}", "data.skip_empty=false"])
    dataset = build_train_dataset(cfg.data, class_names(cfg.data))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset[0]  # imports, first-call costs
        cpu, wall = time.process_time(), time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        decode_cpu = time.process_time()
        for path in dataset.image_paths:
            read_image(path)
        decode_cpu = time.process_time() - decode_cpu
    finally:
        torch.set_num_threads(threads)
    megabytes = sum(f.stat().st_size for f in (root / "images").iterdir()) / count / 1e6
    return {"per_cpu_s": len(dataset) / cpu, "per_wall_s": len(dataset) / wall, "decode_share": decode_cpu / cpu, "mb": megabytes}


def decode_table(size: int, count: int, target: float) -> None:
    import math

    tmp = Path(tempfile.mkdtemp(prefix="rgfl_bench_decode_"))
    try:
        print(f"\ndata path: one process (one worker), {size} px synthetic patches, {count} per format, R50 config transforms")
        header = (
            f"{'format':<6} {'MB/patch':>8} {'patches/CPU s':>13} {'ms CPU/patch':>12} {'decode share':>12} {'patches/wall s':>14} "
            f"{f'workers for {target:g} img/s':>22}"
        )
        print(header)
        print("-" * len(header))
        for ext in ("png", "jpg"):
            r = measure_decode(size, count, ext, tmp)
            print(
                f"{ext:<6} {r['mb']:>8.2f} {r['per_cpu_s']:>13.1f} {1000 / r['per_cpu_s']:>12.1f} {100 * r['decode_share']:>11.0f}% "
                f"{r['per_wall_s']:>14.1f} {math.ceil(target / r['per_cpu_s']):>22}"
            )
        print("workers: ceil(target / patches per CPU second), each worker with a free core")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    available = [name for name in SETTINGS if name.startswith("cpu") or torch.cuda.is_available()]
    parser.add_argument("--settings", nargs="+", default=available, choices=list(SETTINGS))
    parser.add_argument("--iters", type=int, default=15, help="measured iterations per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the engine's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--ext", choices=["png", "jpg"], default="png", help="format of the generated patches")
    parser.add_argument("--data", type=Path, default=None, help="train on this split folder (images/ + labelTxt/) instead of generated patches")
    parser.add_argument("--decode-patches", type=int, default=12, help="patches per format in the data-path table (0: skip it)")
    parser.add_argument("--target", type=float, default=26.0, help="step rate (images/s) the data path must keep up with")
    parser.add_argument("--decode-only", action="store_true", help="print the data-path table only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.decode_patches:
        decode_table(1024, args.decode_patches, args.target)
    if args.decode_only:
        return

    rows = []
    for name in args.settings:
        config, size, images, overrides = SETTINGS[name]
        tmp = Path(tempfile.mkdtemp(prefix=f"rgfl_bench_{name}_"))
        try:
            root = args.data
            if root is None:
                root = tmp / "split"
                generate_synthetic_dataset(root, num_images=images, image_size=size, seed=0, empty_fraction=0.0, ext=args.ext)
            settings = overrides + [
                f"data.root={root}",
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
