"""CPU time of one RotatedGFL training step, part by part, against torchvision's FCOS on the same input.

Usage::

    python benchmarks/train_step.py                      # all 8 settings, 3 timed steps each
    python benchmarks/train_step.py --sizes 512 --batches 1 --boxes 20 500 --repeats 5
    python benchmarks/train_step.py --head gflv2 --peer gfl   # the cost of gflv2's quality branch

For every (batch, image size, ground-truth count) setting, both detectors run the same images:
random rotated boxes, DOTA-like sizes (10-300 px, aspect 1-5), 15 classes. rgfl is timed part by
part inside one step (backbone+FPN, head convolutions, assignment, losses, backward, optimizer
step; the whole step is the sum); FCOS (``fcos_resnet50_fpn(weights=None, weights_backbone=None)``,
images not resized: ``min_size = max_size = size``) is timed as a whole (forward with losses,
backward, optimizer step) with the horizontal boxes enclosing the same objects. Both use ResNet-50
and SGD (momentum 0.9, weight decay 1e-4). Medians over ``--repeats`` steps after one warm-up step.

Note: with ``weights_backbone=None`` torchvision trains every backbone stage with ordinary
BatchNorm, while rgfl's defaults freeze the stem + stage 1 and the BatchNorm statistics (the usual
detection setting, reference notes 6.4); the table therefore compares the default training steps.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torchvision

from rgfl.model.detector import RotatedGFL
from rgfl.model.heads import HEAD_VARIANTS
from rgfl.ops import obb2hbb
from rgfl.structures import Target

NUM_CLASSES = 15
PARTS = ("backbone+fpn", "head", "assign", "losses", "backward", "optim")


def random_targets(batch: int, size: int, num_boxes: int, generator: torch.Generator) -> list[Target]:
    targets = []
    for _ in range(batch):
        side = torch.exp(torch.empty(num_boxes).uniform_(math.log(10), math.log(300), generator=generator))
        aspect = torch.empty(num_boxes).uniform_(1.0, 5.0, generator=generator)
        w = side
        h = (side / aspect).clamp(min=4.0)
        cx = torch.rand(num_boxes, generator=generator) * (size - 20) + 10
        cy = torch.rand(num_boxes, generator=generator) * (size - 20) + 10
        theta = -math.pi / 4 + torch.rand(num_boxes, generator=generator) * math.pi
        boxes = torch.stack([cx, cy, w, h, theta], dim=1)
        labels = torch.randint(0, NUM_CLASSES, (num_boxes,), generator=generator)
        targets.append(Target(boxes, labels))
    return targets


def rgfl_step(model: RotatedGFL, optimizer, images, targets) -> dict[str, float]:
    times = {}
    t0 = time.perf_counter()
    x = (images.float() - model.pixel_mean) / model.pixel_std
    features = model.backbone(x)
    t1 = time.perf_counter()
    outputs = model.head(features, model.strides)
    t2 = time.perf_counter()
    priors = model.priors(outputs, images.device)
    assignments = [model.assign(priors, t) for t in targets]
    t3 = time.perf_counter()
    losses = model.losses(outputs, targets, assignments)
    total = sum(v for k, v in losses.items() if k.startswith("loss"))
    t4 = time.perf_counter()
    total.backward()
    t5 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t6 = time.perf_counter()
    for name, (a, b) in zip(PARTS, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)]):
        times[name] = b - a
    times["step"] = t6 - t0
    return times


def fcos_step(model, optimizer, images, targets) -> float:
    t0 = time.perf_counter()
    losses = model(images, targets)
    total = sum(losses.values())
    total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--boxes", type=int, nargs="+", default=[20, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--head", default="gfl", choices=list(HEAD_VARIANTS))
    parser.add_argument("--peer", default="fcos", choices=["fcos", *HEAD_VARIANTS], help="what to compare with: torchvision FCOS, or rgfl with another head (e.g. --head gflv2 --peer gfl: the cost of the quality branch)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rgfl_model = RotatedGFL(NUM_CLASSES, head=args.head, depth=50, pretrained="none").train()
    rgfl_opt = torch.optim.SGD([p for p in rgfl_model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)

    header = (
        f"{'batch':>5} {'size':>5} {'boxes':>5} | {'rgfl s':>7} {args.peer[:4] + ' s':>7} {'ratio':>5} | "
        + " ".join(f"{p:>12}" for p in PARTS)
        + f" | {'assign+loss':>11}"
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, head {args.head}, peer {args.peer}, medians of {args.repeats} steps")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        if args.peer == "fcos":
            fcos = torchvision.models.detection.fcos_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, min_size=size, max_size=size
            ).train()
            fcos_opt = torch.optim.SGD([p for p in fcos.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4)
        else:  # the same detector with another head, the same initial weights where they share parameters
            torch.manual_seed(0)
            fcos = RotatedGFL(NUM_CLASSES, head=args.peer, depth=50, pretrained="none").train()
            fcos_opt = torch.optim.SGD([p for p in fcos.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4)
        for batch in args.batches:
            for num_boxes in args.boxes:
                images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
                targets = random_targets(batch, size, num_boxes, generator)
                fcos_images = [img.float() / 255 for img in images]
                fcos_targets = [
                    {"boxes": obb2hbb(t.boxes).clamp(0, size - 1), "labels": t.labels + 1} for t in targets
                ]
                runs: dict[str, list[float]] = {k: [] for k in (*PARTS, "step")}
                fcos_runs = []
                for repeat in range(args.repeats + 1):
                    times = rgfl_step(rgfl_model, rgfl_opt, images, targets)
                    if args.peer == "fcos":
                        fcos_time = fcos_step(fcos, fcos_opt, fcos_images, fcos_targets)
                    else:
                        fcos_time = rgfl_step(fcos, fcos_opt, images, targets)["step"]
                    if repeat == 0:
                        continue  # warm-up (oneDNN primitive creation, numba compilation)
                    for k, v in times.items():
                        runs[k].append(v)
                    fcos_runs.append(fcos_time)
                med = {k: statistics.median(v) for k, v in runs.items()}
                fcos_med = statistics.median(fcos_runs)
                share = (med["assign"] + med["losses"]) / med["step"]
                print(
                    f"{batch:>5} {size:>5} {num_boxes:>5} | {med['step']:>7.2f} {fcos_med:>7.2f} {med['step'] / fcos_med:>5.2f} | "
                    + " ".join(f"{med[p]:>7.3f} {med[p] / med['step']:>3.0%}" for p in PARTS)
                    + f" | {share:>11.1%}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
