"""Smoke run of the reference recipe: the vanilla R50 config, N iterations in fp32 and with bf16 autocast.

Trains configs/rgfl_vanilla_r50_fpn_1x_dota_le135.yaml (the reference results' recipe) through the
real training loop (rgfl.engine.train) on a split folder, once per precision, from the same seed and
the same initial weights, and prints the loss curve compactly (mean of every 25 iterations) and the
median seconds per iteration of each run, side by side. A smoke test of the recipe's numerics
(losses fall, bf16 follows fp32, no NaN), not a result.

No download: the backbone starts from random weights unless ``--pretrained PATH`` names a local
torchvision ResNet-50 state dict. The schedule is the config's except that the lr steps are
removed and the epochs are unlimited (the sample split has 3 iterations per epoch), so that N
iterations run at the warmup / base lr of the recipe.

On a GPU, with the DOTA sample (2 real images) split as the reference recipe does:

    rgfl split ../shared/data/dota-sample split/sample_1024_512 --preset dota-1024-512 --clip --pad-value 0
    python benchmarks/smoke_r50.py --data split/sample_1024_512 --iters 200 --device cuda

Tiny CPU check (a few seconds per iteration):

    python benchmarks/smoke_r50.py --data split/sample_1024_512 --iters 2 --every 1 --input-size 128 --device cpu --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "rgfl_vanilla_r50_fpn_1x_dota_le135.yaml"


def run(data: Path, precision: str, args: argparse.Namespace) -> list[dict]:
    from rgfl.engine.config import load_config
    from rgfl.engine.train import train

    overrides = [
        f"data.root={data}",
        f"model.pretrained={args.pretrained}",
        f"train.device={args.device}",
        f"train.amp={repr('off') if precision == 'fp32' else precision}",  # quoted: YAML reads a bare off as false
        f"train.seed={args.seed}",
        "train.log_interval=1",
        "train.tensorboard=false",
        "train.checkpoint_interval=1000000",
        "train.keep_checkpoints=1",
        "schedule.epochs=1000000",
        "schedule.milestones=[]",
        f"schedule.max_iters={args.iters}",
    ]
    if args.input_size:
        overrides.append(f"data.input_size={args.input_size}")
    if args.workers is not None:
        overrides.append(f"data.workers={args.workers}")
    overrides += args.set
    cfg = load_config(args.config, overrides)
    work_dir = Path(tempfile.mkdtemp(prefix=f"smoke_r50_{precision}_"))
    try:
        train(cfg, work_dir)
        lines = (work_dir / "log.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("event") == "train"]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints are not needed


def windows(records: list[dict], every: int) -> list[tuple[int, dict[str, float]]]:
    """Mean of each loss over consecutive windows of ``every`` iterations, keyed by the last one."""
    out = []
    for start in range(0, len(records), every):
        chunk = records[start : start + every]
        keys = [k for k in chunk[0] if k.startswith("loss") or k in ("num_pos", "pos_iou", "lr")]
        out.append((chunk[-1]["iteration"], {k: statistics.fmean(r[k] for r in chunk) for k in keys}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="split folder (rgfl split output with labelTxt/)")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="iterations per printed loss value")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    parser.add_argument("--pretrained", default="none", help="'none' or a local ResNet-50 state dict (never downloads)")
    parser.add_argument("--input-size", type=int, default=None, help="resize patches (tiny CPU checks); default: as cut")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", action="append", default=[], help="extra config override section.key=value")
    args = parser.parse_args()
    if args.pretrained.lower() == "imagenet":
        sys.exit("--pretrained imagenet would download weights; give 'none' or a local state dict path")
    if not (args.data / "labelTxt").is_dir():
        sys.exit(f"{args.data} has no labelTxt/: split the sample first (see the module docstring)")

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    results = {p: run(args.data, p, args) for p in precisions}

    curves = {p: windows(r, args.every) for p, r in results.items()}
    loss_keys = [k for k in curves[precisions[0]][0][1] if k.startswith("loss")] if curves[precisions[0]] else []
    print(f"\nvanilla R50 smoke run on {args.data}: {args.iters} iterations, device {args.device}, pretrained {args.pretrained}")
    header = ["iter", "lr"] + [f"{k.removeprefix('loss_')}[{p}]" for p in precisions for k in loss_keys] + [f"pos_iou[{p}]" for p in precisions]
    print(" ".join(f"{h:>14}" for h in header))
    for row in range(max(len(c) for c in curves.values())):
        first = curves[precisions[0]][row]
        cells = [f"{first[0]:>14d}", f"{first[1]['lr']:>14.3g}"]
        for p in precisions:
            values = curves[p][row][1] if row < len(curves[p]) else {}
            cells += [f"{values.get(k, float('nan')):>14.4f}" for k in loss_keys]
        for p in precisions:
            values = curves[p][row][1] if row < len(curves[p]) else {}
            cells.append(f"{values.get('pos_iou', float('nan')):>14.4f}")
        print(" ".join(cells))
    print()
    base = None
    for p in precisions:
        timed = [r["s_per_iter"] for r in results[p][5:]] or [r["s_per_iter"] for r in results[p]]
        median = statistics.median(timed)
        base = base or median
        finite = all(all(v == v and abs(v) != float("inf") for k, v in r.items() if k.startswith("loss")) for r in results[p])
        memory = max(r.get("memory_mb", 0.0) for r in results[p])
        print(f"{p:>5}: median {median:.3f} s/iter (after 5 warm-up iterations), {median / base:.2f}x of {precisions[0]}, "
              f"peak memory {memory:.0f} MB, all losses finite: {finite}")


if __name__ == "__main__":
    main()
