"""Rotated GFL head: shared towers, class-quality logits and box distributions, two variants.

Shape legend: B images, P prior points over all levels (level-major, then row-major), C classes,
K = reg_max + 1 bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["HeadOutputs", "RotatedGFLHead", "HEAD_VARIANTS"]

HEAD_VARIANTS = ("gfl", "vanilla")


@dataclass
class HeadOutputs:
    """Raw head outputs, flattened over levels so that index ``p`` matches ``Priors`` row ``p``.

    Attributes:
        cls_logits: Tensor[B, P, C] class(-quality) logits (sigmoid gives the score).
        box_logits: Tensor[B, P, 4K] (``gfl``: left/top/right/bottom distributions, each K bins) or
            Tensor[B, P, 5K] (``vanilla``: dx/dy/dw/dh/dtheta distributions).
        angle_logits: Tensor[B, P] (``gfl``; the angle follows ``model.angle_coding``, see ``DistanceAngleCoder``) or None (``vanilla``).
        level_sizes: ``[(H_l, W_l)]``, one per level, finest first.
        strides: stride of each level.
    """

    cls_logits: Tensor
    box_logits: Tensor
    angle_logits: Tensor | None
    level_sizes: list[tuple[int, int]]
    strides: list[int]

    def split_levels(self, tensor: Tensor) -> list[Tensor]:
        """Split a Tensor[B, P, ...] into per-level Tensor[B, H_l * W_l, ...]."""
        return list(tensor.split([h * w for h, w in self.level_sizes], dim=1))


class Scale(nn.Module):
    """A learnable scalar (init 1.0) multiplying one level's box logits (GFL, reference notes 6.1)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def _tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(32, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class RotatedGFLHead(nn.Module):
    """Shared head applied to every FPN level.

    Args:
        num_classes: C (no background channel).
        variant: ``"gfl"`` (QFL class-quality scores, 4 side-distance distributions over
            ``reg_max + 1`` bins, one angle logit, per-level learnable scales) or ``"vanilla"``
            (reference head of notes 7.1: 5 delta distributions over ``reg_max + 1`` bins, no scales).
        reg_max: number of bins minus one.
        in_channels, feat_channels, stacked_convs: tower shape (4 x conv3x3 + GN(32) + ReLU).
        num_levels: number of FPN levels (one Scale each in ``gfl``).
        prior_prob: initial foreground probability for the class bias (0.01).
    """

    def __init__(
        self,
        num_classes: int,
        variant: str = "gfl",
        reg_max: int = 16,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_levels: int = 5,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        if variant not in HEAD_VARIANTS:
            raise ValueError(f"head must be one of {HEAD_VARIANTS}, got {variant!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.variant = variant
        self.reg_max = reg_max
        self.num_bins = reg_max + 1
        self.cls_tower = _tower(in_channels, feat_channels, stacked_convs)
        self.reg_tower = _tower(in_channels, feat_channels, stacked_convs)
        self.cls_conv = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        num_distributions = 4 if variant == "gfl" else 5
        self.reg_conv = nn.Conv2d(feat_channels, num_distributions * self.num_bins, 3, padding=1)
        if variant == "gfl":
            self.angle_conv: nn.Conv2d | None = nn.Conv2d(feat_channels, 1, 3, padding=1)
            self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        else:
            self.angle_conv = None
            self.scales = nn.ModuleList()
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor], strides: list[int]) -> HeadOutputs:
        """Apply the head to ``features`` (list of Tensor[B, in_channels, H_l, W_l])."""
        cls_per_level, box_per_level, angle_per_level = [], [], []
        for level, feature in enumerate(features):
            cls_feat = self.cls_tower(feature)
            reg_feat = self.reg_tower(feature)
            cls = self.cls_conv(cls_feat)  # [B, C, H, W]
            box = self.reg_conv(reg_feat)  # [B, 4K or 5K, H, W]
            if self.variant == "gfl":
                box = self.scales[level](box)
                assert self.angle_conv is not None
                # float32 even under autocast: the unbounded linear angle coding has no squashing
                # to hide bf16 rounding (a step of 2**-7 in the logit near |a| = 1 is 0.35 degrees),
                # and the sigmoid's steep middle gains from it too.
                with torch.autocast(device_type=reg_feat.device.type, enabled=False):
                    angle = self.angle_conv(reg_feat.float())
                angle_per_level.append(angle.flatten(1))  # [B, H*W]
            cls_per_level.append(cls.flatten(2).transpose(1, 2))  # [B, H*W, C]
            box_per_level.append(box.flatten(2).transpose(1, 2))  # [B, H*W, 4K or 5K]
        return HeadOutputs(
            cls_logits=torch.cat(cls_per_level, dim=1),
            box_logits=torch.cat(box_per_level, dim=1),
            angle_logits=torch.cat(angle_per_level, dim=1) if angle_per_level else None,
            level_sizes=[(int(f.shape[2]), int(f.shape[3])) for f in features],
            strides=list(strides),
        )
