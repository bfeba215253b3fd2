"""The one-call frozen BatchNorm of the backbone against torchvision's FrozenBatchNorm2d."""

from __future__ import annotations

import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from rgfl.model.backbone import LeanFrozenBatchNorm2d, ResNetFPN


def test_lean_frozen_batchnorm_matches_torchvision_values_gradients_and_keys():
    generator = torch.Generator().manual_seed(0)
    reference, lean = FrozenBatchNorm2d(16), LeanFrozenBatchNorm2d(16)
    state = {
        "weight": torch.randn(16, generator=generator),
        "bias": torch.randn(16, generator=generator),
        "running_mean": torch.randn(16, generator=generator) * 3,
        "running_var": torch.rand(16, generator=generator) * 4 + 1e-3,
    }
    reference.load_state_dict(state)
    lean.load_state_dict(state)
    assert list(lean.state_dict()) == list(reference.state_dict())
    x = (torch.randn(2, 16, 5, 7, generator=generator) * 10).requires_grad_(True)
    expected = reference(x)
    (expected * torch.arange(expected.numel()).view_as(expected).sin()).sum().backward()
    expected_grad, x.grad = x.grad.clone(), None
    got = lean(x)
    (got * torch.arange(got.numel()).view_as(got).sin()).sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_the_frozen_backbone_uses_it_and_the_trainable_one_does_not():
    frozen = ResNetFPN(18, "none", norm_eval=True)
    trainable = ResNetFPN(18, "none", norm_eval=False)
    assert any(isinstance(m, LeanFrozenBatchNorm2d) for m in frozen.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in trainable.modules())
