"""Cost of a head variant's own branches: forward + backward of the head alone, against another head.

Usage::

    python benchmarks/head_cost.py                          # gflv2 against gfl, 512 and 1024 px inputs, CPU
    python benchmarks/head_cost.py --device cuda --batch 8 --repeats 50

Whole training steps (benchmarks/train_step.py --heads gfl gflv2) vary by tens of percent from
step to step on a shared machine, more than a small branch costs. Here both heads (the same towers
and weights where they share them, ResNet-50 FPN widths: 256 channels, 4 convs per tower, P3-P7)
run on the same random FPN features, interleaved step by step, and the medians of forward +
backward (a sum of the outputs as the loss) are compared. On CUDA each timing is synchronized.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rgfl.model.heads import HEAD_VARIANTS, HeadOptions, build_head

STRIDES = [8, 16, 32, 64, 128]


def head_step(head: torch.nn.Module, features: list[torch.Tensor], sync) -> float:
    start = time.perf_counter()
    outputs = head(features, STRIDES)
    loss = outputs.cls_logits.float().sum() + outputs.box_logits.float().sum()
    if outputs.angle_logits is not None:
        loss = loss + outputs.angle_logits.sum()
    loss.backward()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--head", default="gflv2", choices=list(HEAD_VARIANTS))
    parser.add_argument("--peer", default="gfl", choices=list(HEAD_VARIANTS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="input sizes (the FPN maps are size / stride)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    heads = {}
    for name in (args.head, args.peer):
        torch.manual_seed(0)
        heads[name] = build_head(name, 15, None, HeadOptions(), in_channels=256, feat_channels=256, stacked_convs=4, num_levels=5).to(device)
    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, batch {args.batch}, medians of {args.repeats} after one warm-up")
    print(f"{'size':>5} | {args.head + ' s':>10} {args.peer + ' s':>10} {'ratio':>6} | {'extra ms':>8}")
    for size in args.sizes:
        generator = torch.Generator().manual_seed(size)
        features = [torch.randn(args.batch, 256, -(-size // s), -(-size // s), generator=generator).to(device) for s in STRIDES]
        times: dict[str, list[float]] = {name: [] for name in heads}
        for repeat in range(args.repeats + 1):
            for name, head in heads.items():
                head.zero_grad(set_to_none=True)
                elapsed = head_step(head, features, sync)
                if repeat:
                    times[name].append(elapsed)
        mine, peer = statistics.median(times[args.head]), statistics.median(times[args.peer])
        print(f"{size:>5} | {mine:>10.4f} {peer:>10.4f} {mine / peer:>6.3f} | {1000 * (mine - peer):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
