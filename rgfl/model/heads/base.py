"""What every head variant shares: the output layout contract, the conv towers, and the interface
that :class:`rgfl.model.detector.RotatedGFL` calls.

Shape legend: B images, P prior points over all levels, C classes, K = reg_max + 1 bins, D box
channels (a variant's number of distributions times K), N positives over the batch. Boxes are
``obb`` ``(cx, cy, w, h, theta)`` in input pixels.

A variant is one module (``gfl.py``, ``vanilla.py``, ``gflv2.py``) holding one subclass of
:class:`DenseHead`. It owns its output layout (what ``box_logits`` and ``angle_logits`` hold), its
use of a box coder (``decode``), its scores (``scores``) and its training losses (``losses``). The
detector owns what all variants share: backbone and FPN, prior points, ATSS assignment, the
flattening of the assignment into :class:`AnchorTargets`, and post-processing (top-k, threshold,
NMS). The detector never branches on the variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgfl.model.coder import Priors
from rgfl.tensors import float32

__all__ = ["HeadOutputs", "HeadOptions", "AnchorTargets", "DenseHead", "Scale", "conv_tower", "weighted", "repeated_priors"]


@dataclass
class HeadOutputs:
    """Raw head outputs, flattened over levels so that index ``p`` matches ``Priors`` row ``p``.

    Attributes:
        cls_logits: Tensor[B, P, C] logits of the detection score (``sigmoid`` gives it; for
            ``gflv2`` the logit of class score times the distribution-guided quality).
        box_logits: Tensor[B, P, D] (``gfl``/``gflv2``: left/top/right/bottom distributions, each K
            bins, D = 4K; ``vanilla``: dx/dy/dw/dh/dtheta distributions, D = 5K).
        angle_logits: Tensor[B, P] (``gfl``/``gflv2``; the angle follows ``model.angle_coding``, see
            ``DistanceAngleCoder``) or None (``vanilla``).
        level_sizes: ``[(H_l, W_l)]``, one per level, finest first.
        strides: stride of each level.
        quality: Tensor[B, P] float32, the ``gflv2`` distribution-guided quality already multiplied
            into the score (kept for inspection); None for the other variants.
    """

    cls_logits: Tensor
    box_logits: Tensor
    angle_logits: Tensor | None
    level_sizes: list[tuple[int, int]]
    strides: list[int]
    quality: Tensor | None = field(default=None)

    def split_levels(self, tensor: Tensor) -> list[Tensor]:
        """Split a Tensor[B, P, ...] into per-level Tensor[B, H_l * W_l, ...]."""
        return list(tensor.split([h * w for h, w in self.level_sizes], dim=1))


@dataclass
class HeadOptions:
    """Loss and decoding settings of a head; each variant uses its own and refuses the ones it
    cannot honour (see :class:`rgfl.model.detector.RotatedGFL` for their meaning)."""

    angle_coding: str = "sigmoid"
    reach_aware: bool = False
    loss_cls_weight: float = 1.0
    loss_bbox_weight: float | None = None  # None: the variant's default
    loss_dfl_weight: float = 0.25
    quality_weight_floor: float = 0.0
    qfl_beta: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class AnchorTargets:
    """The shared assignment, flattened over the batch (B * P anchors, image-major), as every
    variant's losses take it. Every shape is fixed by B and P (none depends on the objects), so the
    losses run without host synchronisation and compile (``train.compile``).

    Attributes:
        labels: Tensor[B*P] long, the class of each positive's box, C for every other anchor.
        valid: Tensor[B*P] bool, False where the anchor was won by an ignored box (no loss at all).
        positive: Tensor[B*P] bool.
        gt_boxes: Tensor[B*P, 5] float32, the box each positive was assigned (le135, input pixels);
            a finite, unused box at other anchors.
        num_pos_per_image: float32 scalar tensor, sum over images of ``max(#positives, 1)`` (mmdet's
            ATSS/GFL normalizer).
        batch: B (the rows of ``Priors`` repeat once per image).
    """

    labels: Tensor
    valid: Tensor
    positive: Tensor
    gt_boxes: Tensor
    num_pos_per_image: Tensor
    batch: int


class Scale(nn.Module):
    """A learnable scalar (init 1.0) multiplying one level's box logits (GFL, reference notes 6.1)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def conv_tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` x [conv3x3 (no bias) + GroupNorm(32) + ReLU]."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(32, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _tower_layers(tower: nn.Sequential) -> list[tuple[nn.Conv2d, nn.GroupNorm]]:
    """(conv, norm) of each [conv3x3 + GroupNorm + ReLU] block of a :func:`conv_tower`."""
    modules = list(tower)
    return [(modules[i], modules[i + 1]) for i in range(0, len(modules), 3)]


def _concat_levels(per_level: list[Tensor]) -> Tensor:
    """[Tensor[B, X, H_l, W_l]] -> Tensor[B, X, P] (levels in order, row-major points: the order of
    the priors). One concatenation for all levels, then one transpose gives the [B, P, X] layout
    (each operator is a launch on a GPU, and its backward another): a transposed view, not contiguous."""
    return torch.cat([t.flatten(2) for t in per_level], dim=2)


def weighted(weight: float, loss: Tensor) -> Tensor:
    """``weight * loss``, without the operator call (and its backward) for a weight of 1 (the same value)."""
    return loss if weight == 1.0 else weight * loss


def repeated_priors(priors: Priors, name: str, batch: int) -> Tensor:
    """``priors.<name>`` (``centers``, ``strides`` or ``anchor_side``) repeated for ``batch`` images:
    Tensor[B*P, ...], image-major, made once per priors and batch size."""
    tensor = getattr(priors, name)
    return priors.derived((name, batch), lambda: tensor.repeat(batch, *[1] * (tensor.dim() - 1)))


class DenseHead(nn.Module):
    """Base of the head variants: two towers (``cls_tower``, ``reg_tower``) shared over levels, a
    class conv (``cls_conv``, C logits) and a box conv (``reg_conv``, D logits).

    The module and parameter names are those of the single head class that came before the
    variants had modules of their own, so that old checkpoints load unchanged.

    Subclasses set the class attributes and implement :meth:`decode` and :meth:`losses`; they may
    add branches in :meth:`level_outputs` and :meth:`finish`.

    Args:
        num_classes: C (no background channel).
        reg_max: number of bins minus one of each distribution.
        options: loss and decoding settings (the variant checks which apply).
        in_channels, feat_channels, stacked_convs: tower shape (conv3x3 + GN(32) + ReLU blocks).
        num_levels: number of FPN levels.
        prior_prob: initial foreground probability for the class bias (0.01).
    """

    name: ClassVar[str]
    default_reg_max: ClassVar[int]
    num_distributions: ClassVar[int]  # distributions in reg_conv's output, K bins each

    def __init__(
        self,
        num_classes: int,
        reg_max: int,
        options: HeadOptions,
        *,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_levels: int = 5,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.check_options(reg_max, options)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.num_bins = reg_max + 1
        self.options = options
        self.num_levels = num_levels
        self.cls_tower = conv_tower(in_channels, feat_channels, stacked_convs)
        self.reg_tower = conv_tower(in_channels, feat_channels, stacked_convs)
        self.cls_conv = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.reg_conv = nn.Conv2d(feat_channels, self.num_distributions * self.num_bins, 3, padding=1)
        self.prior_prob = prior_prob

    def init_weights(self) -> None:
        """Conv weights N(0, 0.01), biases 0, class bias ``-log((1 - p) / p)``; call at the end of ``__init__``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_conv.bias, -math.log((1 - self.prior_prob) / self.prior_prob))

    # ------------------------------------------------------------------ layout
    def level_outputs(self, level: int, cls_feat: Tensor, reg_feat: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """One level from its tower features (Tensor[B, feat_channels, H, W] each): class logits
        Tensor[B, C, H, W], box logits Tensor[B, D, H, W], angle Tensor[B, 1, H, W] or None."""
        return self.cls_conv(cls_feat), self.reg_conv(reg_feat), None

    def paired_tower_layers(self) -> list[tuple[Tensor, Tensor, Tensor, int, float]]:
        """The class and box towers as one tower of twice the channels: per layer the two conv
        weights stacked along the output channels, the two GroupNorms' weights and biases likewise,
        and the number of groups and eps of the joint GroupNorm.

        Why: both towers read the same feature, so their first convolutions are one convolution
        with both weights, and every later layer is one grouped convolution (groups=2: the class
        half only sees class channels); a GroupNorm of 2G groups over both halves is exactly the
        two GroupNorms of G groups. The same arithmetic in half the operator calls of the towers,
        forward and backward, per level (issue 20: a training step on a GPU is bound by launches).
        Built once per forward (one ``cat`` per tensor), so the parameters, their names and the
        checkpoints stay those of two separate towers."""
        layers = []
        for cls_layer, reg_layer in zip(_tower_layers(self.cls_tower), _tower_layers(self.reg_tower)):
            (cls_conv, cls_norm), (reg_conv, reg_norm) = cls_layer, reg_layer
            layers.append(
                (
                    torch.cat([cls_conv.weight, reg_conv.weight]),
                    torch.cat([cls_norm.weight, reg_norm.weight]),
                    torch.cat([cls_norm.bias, reg_norm.bias]),
                    cls_norm.num_groups + reg_norm.num_groups,
                    cls_norm.eps,
                )
            )
        return layers

    @staticmethod
    def paired_towers(feature: Tensor, layers: list[tuple[Tensor, Tensor, Tensor, int, float]]) -> tuple[Tensor, Tensor]:
        """(class tower, box tower) features of one level's ``feature`` (Tensor[B, in_channels, H, W])
        through the :meth:`paired_tower_layers`."""
        x = feature
        for index, (weight, norm_weight, norm_bias, groups, eps) in enumerate(layers):
            x = F.conv2d(x, weight, padding=1, groups=1 if index == 0 else 2)
            x = F.relu(F.group_norm(x, groups, norm_weight, norm_bias, eps), inplace=True)
        if not layers:
            return feature, feature
        cls_feat, reg_feat = x.chunk(2, dim=1)
        return cls_feat, reg_feat

    def scale_box_logits(self, box_logits: Tensor, level_sizes: list[tuple[int, int]]) -> Tensor:
        """Hook on the box logits of all levels, Tensor[B, D, P] (``gfl`` multiplies each level by its ``Scale``)."""
        return box_logits

    def finish(self, outputs: HeadOutputs) -> HeadOutputs:
        """Hook on the flattened outputs of all levels (``gflv2`` multiplies in its quality here)."""
        return outputs

    def forward(self, features: list[Tensor], strides: list[int]) -> HeadOutputs:
        """Apply the head to ``features`` (list of Tensor[B, in_channels, H_l, W_l], finest first)."""
        cls_per_level, box_per_level, angle_per_level = [], [], []
        tower_layers = self.paired_tower_layers()
        for level, feature in enumerate(features):
            cls, box, angle = self.level_outputs(level, *self.paired_towers(feature, tower_layers))
            cls_per_level.append(cls)  # [B, C, H, W]
            box_per_level.append(box)  # [B, D, H, W]
            if angle is not None:
                angle_per_level.append(angle.flatten(1))  # [B, H*W]
        level_sizes = [(int(f.shape[2]), int(f.shape[3])) for f in features]
        box_logits = self.scale_box_logits(_concat_levels(box_per_level), level_sizes)  # [B, D, P]
        outputs = HeadOutputs(
            cls_logits=_concat_levels(cls_per_level).transpose(1, 2),  # [B, P, C]
            box_logits=box_logits.transpose(1, 2),  # [B, P, D]
            angle_logits=torch.cat(angle_per_level, dim=1) if angle_per_level else None,
            level_sizes=level_sizes,
            strides=list(strides),
        )
        return self.finish(outputs)

    # ------------------------------------------------------------------ interface
    @classmethod
    def check_options(cls, reg_max: int, options: HeadOptions) -> None:
        """Raise ValueError for settings this variant cannot honour (called before anything is built)."""
        if reg_max < 1:
            raise ValueError(f"reg_max must be >= 1, got {reg_max}")

    @property
    def assign_reach(self) -> float | None:
        """Reach of a side in strides for reach-aware ATSS (``RotatedATSSAssigner(reach=...)``), or None."""
        return None

    def scores(self, cls_logits: Tensor) -> Tensor:
        """Detection scores in [0, 1] (float32, same shape) from ``cls_logits`` (Tensor[..., C])."""
        return torch.sigmoid(float32(cls_logits))

    def decode(self, box_logits: Tensor, angle_logits: Tensor | None, priors: Priors, index: Tensor) -> Tensor:
        """Boxes Tensor[N, 5] float32 of the predictions at prior rows ``index`` (Tensor[N]).

        Args:
            box_logits: Tensor[N, D] rows of ``HeadOutputs.box_logits``.
            angle_logits: Tensor[N] rows of ``HeadOutputs.angle_logits`` (None where the variant has none).
        """
        return self.decode_boxes(box_logits, angle_logits, priors.centers[index], priors.strides[index], priors.anchor_side[index])

    def decode_boxes(self, box_logits: Tensor, angle_logits: Tensor | None, centers: Tensor, strides: Tensor, anchor_side: Tensor) -> Tensor:
        """Boxes Tensor[..., 5] float32 (raw angle: not regularized to le135) of predictions at given prior points.

        Everything broadcasts over the leading dimensions: rows (``box_logits [N, D]``, ``centers
        [N, 2]``, ``strides [N]``, ``anchor_side [N]``) as :meth:`decode` passes them, or a whole
        batch (``box_logits [B, P, D]``, ``angle_logits [B, P]``, ``centers [1, P, 2]``, ...) as the
        ONNX export does.
        """
        raise NotImplementedError

    def decode_all(self, box_logits: Tensor, angle_logits: Tensor | None, priors: Priors, batch: int) -> Tensor:
        """Boxes Tensor[B*P, 5] at every prior of ``batch`` images (rows image-major, as ``box_logits [B*P, D]``).

        The priors repeated once per image are kept with them (``Priors.derived``), so the rows
        decode as they are, without reshaping the logits and the boxes (operator calls, and as
        many in the backward pass)."""
        return self.decode_boxes(
            box_logits,
            angle_logits,
            repeated_priors(priors, "centers", batch),
            repeated_priors(priors, "strides", batch),
            repeated_priors(priors, "anchor_side", batch),
        )

    def losses(
        self, cls_logits: Tensor, box_logits: Tensor, angle_logits: Tensor | None, targets: AnchorTargets, priors: Priors
    ) -> dict[str, Tensor]:
        """Training losses (``loss_*`` float32 scalars, plus ``num_pos`` and ``pos_iou`` for logging).

        Args:
            cls_logits: Tensor[B*P, C]; box_logits: Tensor[B*P, D]; angle_logits: Tensor[B*P] or None.
        """
        raise NotImplementedError
