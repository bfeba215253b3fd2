"""Folding BatchNorms into convolutions keeps the backbone's outputs (float64, random statistics)."""

import pytest
import torch
from torch import nn

from rgfl.model.backbone import ResNetFPN
from rgfl.model.fuse import fold_batchnorms
from torchvision.ops.misc import FrozenBatchNorm2d


def randomize_statistics(module: nn.Module, generator: torch.Generator) -> None:
    """Give every norm non-trivial statistics and affine parameters (random init has mean 0, var 1)."""
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = norm.weight.numel()
                norm.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(n, generator=generator))
                norm.running_mean.copy_(torch.randn(n, generator=generator))
                norm.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)


@pytest.mark.parametrize("depth,norm_eval", [(18, False), (50, True)])
def test_folded_backbone_gives_the_same_features(depth, norm_eval):
    generator = torch.Generator().manual_seed(depth)
    backbone = ResNetFPN(depth=depth, pretrained="none", norm_eval=norm_eval, out_channels=32).double().eval()
    randomize_statistics(backbone, generator)
    norms = sum(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in backbone.modules())
    images = torch.randn(2, 3, 96, 64, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        reference = backbone(images)
        assert fold_batchnorms(backbone) == norms  # every norm of the ResNet follows a convolution
        folded = backbone(images)
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in backbone.modules())
    for expected, got in zip(reference, folded):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-8 * expected.abs().max().item())


def test_norms_in_training_mode_are_not_folded():
    backbone = ResNetFPN(depth=18, pretrained="none", frozen_stages=-1, norm_eval=False, out_channels=16).train()
    assert fold_batchnorms(backbone) == 0
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
