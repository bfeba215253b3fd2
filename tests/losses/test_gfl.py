"""QFL, DFL, focal and rotated IoU losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rgfl.losses.gfl import (
    distribution_focal_loss,
    quality_focal_loss,
    reduce_mean,
    rotated_iou,
    rotated_iou_loss,
    sigmoid_focal_loss,
)
from tests.conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_quality_focal_loss_by_hand(device):
    # logit 0 -> s = 0.5; target 0.8: BCE = -(0.8 log 0.5 + 0.2 log 0.5) = log 2, scale |0.8 - 0.5|^2 = 0.09.
    # logit log 3 -> s = 0.75; target 0 (a negative): BCE = -log 0.25, scale 0.75^2.
    # logit -log 3 -> s = 0.25; target 1: BCE = -log 0.25, scale 0.75^2.
    logits = torch.tensor([[0.0, math.log(3.0), -math.log(3.0)]], device=device)
    target = torch.tensor([[0.8, 0.0, 1.0]], device=device)
    loss = quality_focal_loss(logits, target, beta=2.0)
    expected = torch.tensor([[0.09 * math.log(2.0), 0.5625 * math.log(4.0), 0.5625 * math.log(4.0)]], device=device)
    torch.testing.assert_close(loss, expected)
    # A perfect prediction of a soft target costs nothing.
    perfect = quality_focal_loss(torch.tensor([[math.log(0.6 / 0.4)]]), torch.tensor([[0.6]]))
    assert float(perfect) == pytest.approx(0.0, abs=1e-12)


def test_quality_focal_loss_beta_and_extreme_logits():
    target = torch.tensor([[0.5]])
    loss1 = quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([[1.0]]), beta=1.0)
    assert float(loss1) == pytest.approx(0.5 * math.log(2.0))
    # Very confident wrong logits stay finite (computed from logits, not from log(sigmoid)).
    extreme = quality_focal_loss(torch.tensor([[80.0, -80.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(extreme).all()
    assert float(extreme[0, 0]) == pytest.approx(80.0, rel=1e-4)
    assert float(quality_focal_loss(torch.tensor([[0.0]]), target)) == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_distribution_focal_loss_by_hand(device):
    # logits (0, log 2, 0) -> probabilities (1/4, 1/2, 1/4).
    logits = torch.tensor([[0.0, math.log(2.0), 0.0]] * 3, device=device)
    target = torch.tensor([0.3, 1.0, 1.99], device=device)
    loss = distribution_focal_loss(logits, target)
    # y = 0.3: bins 0 and 1 with weights 0.7 and 0.3.
    # y = 1.0: bin 1 with weight 1 (bin 2 gets weight 0).
    # y = 1.99: bins 1 and 2 with weights 0.01 and 0.99.
    expected = torch.tensor(
        [
            0.7 * math.log(4.0) + 0.3 * math.log(2.0),
            math.log(2.0),
            0.01 * math.log(2.0) + 0.99 * math.log(4.0),
        ],
        device=device,
    )
    torch.testing.assert_close(loss, expected)


def test_distribution_focal_loss_is_minimal_at_the_two_nearest_bins():
    # The optimum spreads the mass over the two bins around the target in proportion to closeness.
    target = torch.tensor([2.25])
    best = torch.log(torch.tensor([[1e-9, 1e-9, 0.75, 0.25, 1e-9]]))
    worse = torch.log(torch.tensor([[1e-9, 0.1, 0.65, 0.25, 1e-9]]))
    assert float(distribution_focal_loss(best, target)) < float(distribution_focal_loss(worse, target))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(distribution_focal_loss(best, target)) == pytest.approx(entropy, rel=1e-5)


def test_sigmoid_focal_loss_by_hand():
    # logit 0, positive: alpha * (1 - 0.5)^2 * log 2; negative: (1 - alpha) * 0.5^2 * log 2.
    loss = sigmoid_focal_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), alpha=0.25, gamma=2.0)
    torch.testing.assert_close(loss, torch.tensor([[0.25 * 0.25 * math.log(2.0), 0.75 * 0.25 * math.log(2.0)]]))


@pytest.mark.parametrize("device", DEVICES)
def test_rotated_iou_losses(device):
    box = torch.tensor([[50.0, 50.0, 40.0, 20.0, 0.3]], device=device)
    same_other_parametrisation = torch.tensor([[50.0, 50.0, 20.0, 40.0, 0.3 + math.pi / 2]], device=device)
    half = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.0]], device=device)
    half_shifted = torch.tensor([[5.0, 0.0, 10.0, 10.0, 0.0]], device=device)  # overlap 50, union 150
    assert float(rotated_iou_loss(box, same_other_parametrisation)) == pytest.approx(0.0, abs=1e-5)
    assert float(rotated_iou_loss(half, half_shifted)) == pytest.approx(1 - 1 / 3, abs=1e-5)
    assert float(rotated_iou_loss(half, half_shifted, mode="log")) == pytest.approx(math.log(3.0), abs=1e-5)
    far = torch.tensor([[500.0, 0.0, 10.0, 10.0, 0.0]], device=device)
    assert float(rotated_iou_loss(half, far, mode="log")) == pytest.approx(-math.log(1e-6), rel=1e-6)


def test_rotated_iou_is_float32_and_differentiable_under_autocast():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0, 0.1]], requires_grad=True)
    target = torch.tensor([[3.0, 1.0, 12.0, 8.0, 0.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        iou = rotated_iou(pred.to(torch.bfloat16), target)
    assert iou.dtype == torch.float32
    iou.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_reduce_mean_without_distributed_is_identity():
    value = torch.tensor(3.5)
    assert float(reduce_mean(value)) == 3.5
