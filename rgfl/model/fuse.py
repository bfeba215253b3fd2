"""Inference-only rewrites of a trained detector that give the same outputs for less work.

Folding a BatchNorm into the convolution before it: at inference a BatchNorm (frozen, or
trainable in eval mode) is the per-channel affine map ``y = x * s + b`` with
``s = gamma / sqrt(var + eps)`` and ``b = beta - mean * s``. Multiplying the convolution's
output channels by ``s`` and adding ``b`` to its bias gives the same result without a separate
pass over every feature map: ResNet-50 has 53 of them, a large share of its CPU time at 1024 px.

A folded model must not be trained again (its BatchNorms are gone), so this is applied to the
models that ``load_detector`` builds for ``rgfl eval``, ``merge-submit`` and ``predict``, never to
the training model.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Fold ``norm`` (a BatchNorm2d or FrozenBatchNorm2d in eval mode) into ``conv`` in place."""
    eps = norm.eps
    scale = norm.weight * torch.rsqrt(norm.running_var + eps)
    shift = norm.bias - norm.running_mean * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(norm, _NORMS)
        and not (isinstance(norm, nn.BatchNorm2d) and (norm.training or norm.running_var is None))
        and conv.out_channels == norm.weight.numel()
    )


@torch.no_grad()
def fold_batchnorms(module: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into it, in place.

    Covers the two places a ResNet has them: ``nn.Sequential`` runs ``(conv, norm)`` (the stem and
    the downsample shortcuts) and torchvision's residual blocks (``convK`` then ``bnK``). Folded
    norms are replaced by ``nn.Identity``. Modules in training mode are left alone.

    Returns: the number of BatchNorms folded.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (_, conv), (norm_name, norm) in zip(children, children[1:]):
                if _foldable(conv, norm):
                    _fold(conv, norm)
                    setattr(parent, norm_name, nn.Identity())
                    folded += 1
        elif isinstance(parent, (BasicBlock, Bottleneck)):
            for index in (1, 2, 3):
                conv, norm = getattr(parent, f"conv{index}", None), getattr(parent, f"bn{index}", None)
                if conv is not None and _foldable(conv, norm):
                    _fold(conv, norm)
                    setattr(parent, f"bn{index}", nn.Identity())
                    folded += 1
    return folded
