"""ATen operator calls of one training step, rgfl against torchvision's FCOS, counted on the CPU.

Usage::

    python benchmarks/op_count.py                                # gfl and vanilla, batch 2 and 8, 20 and 500 boxes
    python benchmarks/op_count.py --size 256 --batches 2 --boxes 500 --heads gfl --top 15

On a GPU every ATen operator that does work is at least one kernel launch, and at the batch sizes
of detection training a step is bound by launches, not arithmetic (issue 20). The count does not
depend on the device, so it is measured on the CPU with ``torch.profiler``.

What is counted: the *top-level* ATen operator calls of one step, that is every ``aten::`` event
whose parents in the profiler's call tree contain no other ``aten::`` event. This is one count per
operator the Python code or the autograd engine dispatches (``aten::linear`` counts once, not once
more for the ``aten::addmm`` it calls); the same rule is applied to both models. The total of all
``aten::`` events (nested included) is printed too. The assigner's IoU, which on the CPU would run
the numba kernel (no ATen calls), is forced onto the torch path that a GPU runs
(``RGFL_GEOMETRY_BACKEND=torch``), so that the count is the GPU's.

A step is the same for both: forward with losses, backward, SGD step (momentum 0.9, weight decay
1e-4), ``zero_grad(set_to_none=True)``, on the same random uint8 images and random rotated boxes
(``benchmarks/train_step.py``'s generator; FCOS gets the enclosing horizontal boxes), ResNet-50,
default settings (FCOS: ``fcos_resnet50_fpn(weights=None, weights_backbone=None)``, its transform
fixed to the input size). One unprofiled warm-up step first (priors cache, lazy initialisation).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

# The assigner's IoU (no gradient) runs the numba kernel on the CPU but the torch path on a GPU:
# count the GPU's path.
os.environ.setdefault("RGFL_GEOMETRY_BACKEND", "torch")

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import NUM_CLASSES, random_targets  # noqa: E402

from rgfl.model.detector import RotatedGFL  # noqa: E402
from rgfl.ops import obb2hbb  # noqa: E402


def count_ops(step) -> tuple[int, int, collections.Counter]:
    """(top-level aten calls, all aten calls, Counter of top-level names) of one call of ``step``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    top, total = collections.Counter(), 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        total += 1
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            top[event.name] += 1
    return sum(top.values()), total, top


def rgfl_step(model, optimizer, images, targets):
    def step():
        losses = model.compute_losses(images, targets)
        total = sum(v for k, v in losses.items() if k.startswith("loss"))
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def fcos_step(model, optimizer, images, targets):
    def step():
        losses = model(images, targets)
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    # foreach=True: the default on CUDA (one multi-tensor update instead of one per parameter),
    # which is what the count stands in for; on the CPU torch would pick the per-parameter loop.
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=1e-4, foreach=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--boxes", type=int, nargs="+", default=[20, 500])
    parser.add_argument("--heads", nargs="+", default=["gfl", "vanilla"], choices=["gfl", "vanilla", "gflv2"])
    parser.add_argument("--top", type=int, default=0, help="also list the N most called top-level ops of each rgfl step")
    parser.add_argument("--goal", type=float, default=0.8, help="ratio rgfl / FCOS to meet")
    args = parser.parse_args()
    torch.manual_seed(0)
    size = args.size
    models = {head: RotatedGFL(NUM_CLASSES, head=head, depth=50, pretrained="none").train() for head in args.heads}
    optimizers = {head: sgd(model) for head, model in models.items()}
    fcos = torchvision.models.detection.fcos_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, min_size=size, max_size=size
    ).train()
    fcos_opt = sgd(fcos)
    generator = torch.Generator().manual_seed(0)

    print(f"torch {torch.__version__}, {size} px, top-level ATen calls per training step (all ATen calls in brackets)")
    header = f"{'head':>7} {'batch':>5} {'boxes':>5} | {'rgfl':>14} {'FCOS':>14} | {'ratio':>5} {'goal':>4}"
    print(header)
    print("-" * len(header))
    failed = False
    for batch in args.batches:
        for num_boxes in args.boxes:
            images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
            targets = random_targets(batch, size, num_boxes, generator)
            fcos_images = [img.float() / 255 for img in images]
            fcos_targets = [{"boxes": obb2hbb(t.boxes).clamp(0, size - 1), "labels": t.labels + 1} for t in targets]
            step = fcos_step(fcos, fcos_opt, fcos_images, fcos_targets)
            step()  # warm-up
            fcos_top, fcos_all, _ = count_ops(step)
            for head in args.heads:
                step = rgfl_step(models[head], optimizers[head], images, targets)
                step()
                top, total, names = count_ops(step)
                ratio = top / fcos_top
                ok = ratio <= args.goal
                failed |= not ok
                print(
                    f"{head:>7} {batch:>5} {num_boxes:>5} | {top:>6} [{total:>6}] {fcos_top:>6} [{fcos_all:>6}] | "
                    f"{ratio:>5.2f} {'ok' if ok else 'MISS':>4}",
                    flush=True,
                )
                if args.top:
                    print("        " + ", ".join(f"{name[6:]} {n}" for name, n in names.most_common(args.top)))
    if failed:
        print(f"some settings miss the goal ratio {args.goal}")


if __name__ == "__main__":
    main()
