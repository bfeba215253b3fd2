"""CPU time of one RotatedGFL training step, part by part, against torchvision's FCOS on the same input.

Usage::

    python benchmarks/train_step.py                      # all 8 settings, 3 timed steps each
    python benchmarks/train_step.py --sizes 512 --batches 1 --boxes 20 500 --repeats 5
    python benchmarks/train_step.py --sizes 512 --batches 2 --boxes 500 --compile   # eager vs train.compile
    # GPU table of issue 20 (about a minute on an H200):
    python benchmarks/train_step.py --device cuda --sizes 1024 --batches 2 8 --boxes 20 500 \
        --heads gfl vanilla --amp off bf16 --repeats 8
    python benchmarks/train_step.py --sizes 512 --batches 1 --boxes 20 500 --heads gfl gflv2   # gflv2's quality branch

For every (batch, image size, ground-truth count) setting, both detectors run the same images:
random rotated boxes, DOTA-like sizes (10-300 px, aspect 1-5), 15 classes. rgfl is timed part by
part inside one step on the CPU (backbone+FPN, head convolutions, assignment, losses, backward,
optimizer step; the whole step is the sum; on CUDA only the whole step, with one synchronisation at
its end, because a synchronisation between parts would stop the host from queueing ahead); FCOS (``fcos_resnet50_fpn(weights=None, weights_backbone=None)``,
images not resized: ``min_size = max_size = size``) is timed as a whole (forward with losses,
backward, optimizer step) with the horizontal boxes enclosing the same objects. Both use ResNet-50
and SGD (momentum 0.9, weight decay 1e-4), torch's default SGD implementation for the device.
``--amp bf16`` runs forward and losses of both under bf16 autocast. ``--compile`` adds a second
rgfl model with ``train.compile`` (backbone, head and loss terms compiled; its compilation happens
in the warm-up step). Medians over ``--repeats`` steps after one warm-up step.

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

from rgfl.engine.compile import enable_compile
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rgfl_step(model: RotatedGFL, optimizer, images, targets, amp: torch.dtype | None, parts: bool) -> dict[str, float]:
    """One step; with ``parts`` each part is timed (on CUDA with a synchronisation between parts,
    so the whole step is then only timed without ``parts``)."""
    device = images.device
    marks = [time.perf_counter()]

    def mark() -> None:
        if parts:
            _sync(device)
            marks.append(time.perf_counter())

    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        x = (images.float() - model.pixel_mean) / model.pixel_std
        features = model.backbone(x)
        mark()
        outputs = model.head(features, model.strides)
        mark()
        priors = model.priors(outputs, device)
        assignments = model.assign_batch(priors, targets)
        mark()
        losses = model.losses(outputs, targets, assignments)
        total = sum(v for k, v in losses.items() if k.startswith("loss"))
        mark()
    total.backward()
    mark()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    marks.append(time.perf_counter())
    times = {"step": marks[-1] - marks[0]}
    if parts:
        for name, a, b in zip(PARTS, marks[:-1], marks[1:]):
            times[name] = b - a
    return times


def fcos_step(model, optimizer, images, targets, amp: torch.dtype | None) -> float:
    device = images[0].device
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        losses = model(images, targets)
        total = sum(losses.values())
    total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - t0


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--boxes", type=int, nargs="+", default=[20, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heads", nargs="+", default=["gfl"], choices=list(HEAD_VARIANTS), help="heads timed in the same run (e.g. gfl gflv2: the cost of gflv2's quality branch)")
    parser.add_argument("--head", dest="heads", action="store", type=lambda h: [h], help="one head (same as --heads HEAD)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA only whole steps are timed)")
    parser.add_argument("--amp", nargs="+", default=["off"], choices=["off", "bf16"], help="autocast settings to run")
    parser.add_argument("--compile", action="store_true", help="also time rgfl with train.compile (rgfl.engine.compile), same run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = device.type == "cpu"
    torch.manual_seed(0)
    models = {}
    for head in args.heads:
        torch.manual_seed(0)
        models[head] = RotatedGFL(NUM_CLASSES, head=head, depth=50, pretrained="none").to(device).train()
        if args.compile:
            torch.manual_seed(0)
            compiled = RotatedGFL(NUM_CLASSES, head=head, depth=50, pretrained="none").to(device).train()
            if enable_compile(compiled, device):
                models[head + "+compile"] = compiled
    optimizers = {name: sgd(model) for name, model in models.items()}
    generator = torch.Generator().manual_seed(0)

    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, medians of {args.repeats} steps after one warm-up")
    columns = f"{'model':>15} {'amp':>4} {'batch':>5} {'size':>5} {'boxes':>5} | {'rgfl s':>7} {'fcos s':>7} {'ratio':>5}"
    if parts:
        columns += " | " + " ".join(f"{p:>12}" for p in PARTS) + f" | {'assign+loss':>11}"
    print(columns)
    print("-" * len(columns))
    for size in args.sizes:
        fcos = torchvision.models.detection.fcos_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, min_size=size, max_size=size
        ).to(device).train()
        fcos_opt = sgd(fcos)
        for amp_name in args.amp:
            amp = torch.bfloat16 if amp_name == "bf16" else None
            for batch in args.batches:
                for num_boxes in args.boxes:
                    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
                    targets = random_targets(batch, size, num_boxes, generator)
                    fcos_images = [img.float().div(255).to(device) for img in images]
                    fcos_targets = [
                        {"boxes": obb2hbb(t.boxes).clamp(0, size - 1).to(device), "labels": (t.labels + 1).to(device)} for t in targets
                    ]
                    images = images.to(device)
                    targets = [t.to(device) for t in targets]
                    runs: dict[str, dict[str, list[float]]] = {name: {} for name in models}
                    fcos_runs = []
                    for repeat in range(args.repeats + 1):
                        step_times = {name: rgfl_step(model, optimizers[name], images, targets, amp, parts) for name, model in models.items()}
                        fcos_time = fcos_step(fcos, fcos_opt, fcos_images, fcos_targets, amp)
                        if repeat == 0:
                            continue  # warm-up (oneDNN/cuDNN set-up, numba or torch.compile compilation)
                        for name, times in step_times.items():
                            for k, v in times.items():
                                runs[name].setdefault(k, []).append(v)
                        fcos_runs.append(fcos_time)
                    fcos_med = statistics.median(fcos_runs)
                    for name in models:
                        med = {k: statistics.median(v) for k, v in runs[name].items()}
                        line = (
                            f"{name:>15} {amp_name:>4} {batch:>5} {size:>5} {num_boxes:>5} | "
                            f"{med['step']:>7.3f} {fcos_med:>7.3f} {med['step'] / fcos_med:>5.2f}"
                        )
                        if parts:
                            share = (med["assign"] + med["losses"]) / med["step"]
                            line += " | " + " ".join(f"{med[p]:>7.3f} {med[p] / med['step']:>3.0%}" for p in PARTS) + f" | {share:>11.1%}"
                        print(line, flush=True)


if __name__ == "__main__":
    main()
