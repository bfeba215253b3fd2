from __future__ import annotations

import pytest
import torch

from rgfl.engine.config import OptimizerConfig, ScheduleConfig
from rgfl.engine.schedule import LRSchedule, scaled_lr


def reference_schedule(iters_per_epoch: int = 1000) -> LRSchedule:
    return LRSchedule.from_config(ScheduleConfig(), base_lr=0.01, iters_per_epoch=iters_per_epoch)


@pytest.mark.parametrize(
    ("iteration", "expected"),
    [
        (0, 0.01 * 0.001),  # warmup starts at ratio * lr
        (250, 0.01 * (1 - 0.5 * 0.999)),  # halfway: 1 - (1 - 250/500) * (1 - 0.001)
        (499, 0.01 * (1 - (1 / 500) * 0.999)),
        (500, 0.01),  # warmup over
        (7999, 0.01),  # last iteration of epoch 8 (1-based)
        (8000, 0.001),  # first iteration of epoch 9: first decay
        (10999, 0.001),
        (11000, 0.0001),  # epoch 12: second decay
        (11999, 0.0001),
    ],
)
def test_1x_schedule_at_chosen_iterations(iteration, expected):
    assert reference_schedule().lr(iteration) == pytest.approx(expected, rel=1e-12)


def test_warmup_and_decay_compose_when_an_epoch_is_shorter_than_warmup():
    schedule = reference_schedule(iters_per_epoch=50)  # epoch 9 starts at iteration 400 < 500
    assert schedule.lr(400) == pytest.approx(0.001 * (1 - (1 - 400 / 500) * 0.999))


def test_constant_and_no_warmup():
    constant = LRSchedule(0.02, 100, warmup="constant", warmup_iters=10, warmup_ratio=1 / 3)
    assert constant.lr(9) == pytest.approx(0.02 / 3) and constant.lr(10) == 0.02
    assert LRSchedule(0.02, 100, warmup="none").lr(0) == 0.02


def test_apply_sets_every_param_group():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0)
    lr = reference_schedule().apply(optimizer, 8000)
    assert lr == pytest.approx(0.001)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.001, 0.001])


def test_linear_scaling_rule():
    gfl = OptimizerConfig(base_lr=0.01, base_batch_size=16)
    assert scaled_lr(gfl, 16) == pytest.approx(0.01)  # 8 GPUs x 2: the reference
    assert scaled_lr(gfl, 2) == pytest.approx(0.00125)  # 1 GPU x 2
    assert scaled_lr(gfl, 32) == pytest.approx(0.02)  # 2 nodes x 8 GPUs x 2
    vanilla = OptimizerConfig(base_lr=0.0025, base_batch_size=2)
    assert scaled_lr(vanilla, 16) == pytest.approx(0.02)
    assert scaled_lr(OptimizerConfig(lr=0.5), 64) == 0.5  # explicit lr wins
