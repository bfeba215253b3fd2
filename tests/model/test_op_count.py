"""Operator calls of the training losses (issue 20: a GPU training step is bound by operator
launches, not arithmetic). The count is that of ``benchmarks/op_count.py``: the top-level ATen
calls (those with no ATen caller) seen by ``torch.profiler`` on the CPU, with the assigner's IoU on
the torch path a GPU runs. It covers the whole loss part of a step, forward and backward: target
padding, assignment, the loss terms and their gradients down to the head outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from rgfl.model.detector import RotatedGFL
from rgfl.structures import Target

NUM_CLASSES = 5
SIZE = 128

# Top-level operator calls of one loss step (forward + backward) at batch 2, measured when the
# counts were cut (issue 20: 580 gfl and gflv2, 507 vanilla, with the rotated IoU's analytic
# backward); before, gfl and gflv2 made 929 and vanilla 831, 32 more at batch 6. A few calls of
# margin for other torch versions' decompositions; a change that adds calls to every training
# step must raise these bounds on purpose.
MAX_LOSS_OPS = {"gfl": 600, "vanilla": 525, "gflv2": 600}


def _top_level_ops(step) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    count = 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        count += parent is None
    return count


def _targets(batch: int, num_boxes: list[int], generator: torch.Generator) -> list[Target]:
    targets = []
    for n in num_boxes[:batch]:
        side = torch.empty(n).uniform_(8, 60, generator=generator)
        boxes = torch.stack(
            [
                torch.rand(n, generator=generator) * (SIZE - 20) + 10,
                torch.rand(n, generator=generator) * (SIZE - 20) + 10,
                side,
                side / torch.empty(n).uniform_(1, 4, generator=generator),
                (torch.rand(n, generator=generator) - 0.25) * math.pi,
            ],
            dim=1,
        )
        ignore = torch.rand(n, generator=generator) < 0.2
        targets.append(Target(boxes, torch.randint(0, NUM_CLASSES, (n,), generator=generator), ignore))
    return targets


def _loss_step_ops(head: str, batch: int, num_boxes: list[int]) -> int:
    torch.manual_seed(0)
    model = RotatedGFL(NUM_CLASSES, head=head, depth=18, pretrained="none", feat_channels=32, fpn_channels=32, stacked_convs=1).train()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    targets = _targets(batch, num_boxes, generator)
    outputs = model(images)
    # The head outputs as leaves: the count stops at them (the convolutions are not the losses').
    outputs.cls_logits = outputs.cls_logits.detach().requires_grad_()
    outputs.box_logits = outputs.box_logits.detach().requires_grad_()
    if outputs.angle_logits is not None:
        outputs.angle_logits = outputs.angle_logits.detach().requires_grad_()

    def step() -> None:
        losses = model.losses(outputs, targets)
        sum(value for name, value in losses.items() if name.startswith("loss")).backward()

    step()  # warm-up: priors and the assigner's per-level layout are built once
    return _top_level_ops(step)


@pytest.fixture(autouse=True)
def _torch_geometry(monkeypatch):
    # The assigner's IoU on the CPU would run the numba kernel (no ATen calls); count a GPU's path.
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "torch")


@pytest.mark.parametrize("head", ["gfl", "vanilla", "gflv2"])
def test_loss_step_operator_calls_stay_under_the_measured_bound(head):
    count = _loss_step_ops(head, 2, [7, 3])
    assert count <= MAX_LOSS_OPS[head], f"{head}: {count} top-level operator calls per loss step (bound {MAX_LOSS_OPS[head]})"


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_loss_step_operator_calls_do_not_grow_with_the_batch(head):
    # 2 images against 6, other numbers of objects, one image without any: the same calls.
    assert _loss_step_ops(head, 6, [4, 9, 0, 2, 6, 1]) == _loss_step_ops(head, 2, [7, 3])


def test_priors_build_their_anchors_once():
    torch.manual_seed(0)
    model = RotatedGFL(NUM_CLASSES, depth=18, pretrained="none", feat_channels=32, fpn_channels=32, stacked_convs=1)
    with torch.no_grad():
        outputs = model(torch.zeros((2, 3, SIZE, SIZE), dtype=torch.uint8))
    priors = model.priors(outputs, outputs.cls_logits.device)
    assert priors.anchors() is priors.anchors()
    assert model.priors(outputs, outputs.cls_logits.device) is priors
