"""The ``gfl`` head: rotated Generalized Focal Loss (reference notes 6, 7.2).

Outputs: C joint class-quality logits (QFL), 4 side-distance distributions of K bins (DFL; left,
top, right, bottom in the box's own rotated frame, stride units, scaled per level by a learnable
``Scale``) and one angle logit (``DistanceAngleCoder``). Losses: QFL with the rotated IoU of the
decoded box as the quality target, ``1 - IoU`` and DFL weighted by the positive's detached score.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgfl.losses.gfl import distribution_focal_loss, quality_focal_loss, reduce_mean, rotated_iou
from rgfl.model.coder import DistanceAngleCoder, Priors
from rgfl.model.heads.base import AnchorTargets, DenseHead, HeadOptions, Scale, repeated_priors, weighted
from rgfl.tensors import float32, kept

__all__ = ["GFLHead", "closest_representation", "closest_representation_parts"]


class GFLHead(DenseHead):
    """Rotated GFL head; see the module docstring and docs/model.md.

    Options used: ``angle_coding``, ``reach_aware``, ``loss_cls_weight``, ``loss_bbox_weight``
    (default 2), ``loss_dfl_weight``, ``quality_weight_floor``, ``qfl_beta``.
    """

    name = "gfl"
    default_reg_max = 16
    num_distributions = 4

    def __init__(self, num_classes: int, reg_max: int, options: HeadOptions, **shape) -> None:
        super().__init__(num_classes, reg_max, options, **shape)
        if options.loss_bbox_weight is None:
            options.loss_bbox_weight = 2.0
        feat_channels = self.cls_conv.in_channels
        self.angle_conv: nn.Conv2d = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(self.num_levels))
        self.register_buffer("projection", torch.arange(self.num_bins, dtype=torch.float32)[None], persistent=False)  # [1, K]
        self._level_of_point: dict[tuple, Tensor] = {}  # level index of each prior point, per level sizes and device
        self.init_weights()

    @classmethod
    def check_options(cls, reg_max: int, options: HeadOptions) -> None:
        super().check_options(reg_max, options)
        if options.angle_coding not in DistanceAngleCoder.ANGLE_CODINGS:
            raise ValueError(f"angle_coding must be one of {DistanceAngleCoder.ANGLE_CODINGS}, got {options.angle_coding!r}")
        if not 0.0 <= options.quality_weight_floor <= 1.0:
            raise ValueError(f"quality_weight_floor must be in [0, 1], got {options.quality_weight_floor}")

    def level_outputs(self, level: int, cls_feat: Tensor, reg_feat: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        box = self.reg_conv(reg_feat)  # [B, 4K, H, W], scaled in scale_box_logits
        # float32 even under autocast: the unbounded linear angle coding has no squashing to hide
        # bf16 rounding (a step of 2**-7 in the logit near |a| = 1 is 0.35 degrees), and the
        # sigmoid's steep middle gains from it too.
        with torch.autocast(device_type=reg_feat.device.type, enabled=False):
            angle = self.angle_conv(float32(reg_feat))
        return self.cls_conv(cls_feat), box, angle

    def scale_box_logits(self, box_logits: Tensor, level_sizes: list[tuple[int, int]]) -> Tensor:
        """Each level's logits times its learnable ``Scale`` (GFL), for all levels in one
        multiplication by a per-point vector of the scales (instead of one per level, and as many
        backward operators): the same products."""
        device = box_logits.device
        level_of_point = kept(  # [P] int64
            self._level_of_point,
            (tuple(level_sizes), str(device)),
            lambda: torch.cat([torch.full((h * w,), level, dtype=torch.long, device=device) for level, (h, w) in enumerate(level_sizes)]),
        )
        scales = torch.stack([scale.scale for scale in self.scales])[level_of_point]  # [P] float32
        if box_logits.dtype == scales.dtype:
            return box_logits * scales
        # Under autocast: the product in float32, then rounded, as the per-level multiplication by
        # the float32 scalar did.
        return (box_logits * scales).to(box_logits.dtype)

    @property
    def assign_reach(self) -> float | None:
        return float(self.reg_max) if self.options.reach_aware else None

    # ------------------------------------------------------------------ decoding
    def side_distances(self, box_logits: Tensor) -> Tensor:
        """Side distances Tensor[..., 4] (strides) of box logits Tensor[..., 4K]: the integral
        (expectation) of each distribution, as GFL decodes and trains. (Decoding a side by its
        strongest mode instead was measured worse; docs/model.md, gflv2.)"""
        probs = F.softmax(float32(box_logits).unflatten(-1, (4, self.num_bins)), dim=-1)
        return (probs * self.projection).sum(dim=-1)  # [1, K] broadcasts as [K]

    def decode_boxes(self, box_logits: Tensor, angle_logits: Tensor | None, centers: Tensor, strides: Tensor, anchor_side: Tensor) -> Tensor:
        assert angle_logits is not None
        theta = DistanceAngleCoder.angle_from_logit(float32(angle_logits), self.options.angle_coding)
        return DistanceAngleCoder.decode(centers, strides, self.side_distances(box_logits), theta)

    # ------------------------------------------------------------------ training
    def losses(
        self, cls_logits: Tensor, box_logits: Tensor, angle_logits: Tensor | None, targets: AnchorTargets, priors: Priors
    ) -> dict[str, Tensor]:
        assert angle_logits is not None
        opts = self.options
        positive, labels, gt_boxes, batch = targets.positive, targets.labels, targets.gt_boxes, targets.batch
        num_anchors = cls_logits.shape[0]
        # Every anchor is decoded and its terms masked to the positives (fixed shapes, no host sync).
        pred_boxes = self.decode_all(box_logits, angle_logits, priors, batch)  # [B*P, 5]
        iou = rotated_iou(pred_boxes, gt_boxes)  # [B*P] float32, differentiable
        pos_iou = torch.where(positive, iou.detach(), 0.0)
        # QFL target: the IoU at the ground-truth class of a positive, 0 elsewhere (labels == C
        # on negatives falls in the one-hot column that is cut off).
        quality = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes] * pos_iou[:, None]  # [B*P, C]
        # Quality weight: the detached max score of each positive (GFL 6.2), 0 elsewhere. The
        # scores are computed once, for the weight (detached) and for QFL.
        cls_logits = float32(cls_logits)  # one conversion under autocast (the gradients add up in float32)
        scores = torch.sigmoid(cls_logits)  # [B*P, C]
        weight = scores.detach().max(dim=1).values  # [B*P]
        if opts.quality_weight_floor > 0:
            weight = weight.clamp(min=opts.quality_weight_floor)
        weight = torch.where(positive, weight, 0.0)
        # DFL targets in the frame of the ground-truth representation closest to the predicted
        # angle (a rectangle has four: theta + k*pi/2, w/h swapped for odd k), so that DFL and
        # the angle branch never pull towards different but equivalent boxes.
        centers, sizes, angles = closest_representation_parts(gt_boxes, pred_boxes[:, 4].detach())
        points = repeated_priors(priors, "centers", batch)  # [B*P, 2]
        strides = priors.derived(("strides[:, None]", batch), lambda: repeated_priors(priors, "strides", batch)[:, None])  # [B*P, 1]
        distance_target = DistanceAngleCoder.encode_parts(points, strides, centers, sizes, angles)
        distance_target = distance_target.clamp(0.0, self.reg_max - 0.01)
        dfl = distribution_focal_loss(box_logits.reshape(num_anchors * 4, self.num_bins), distance_target.reshape(-1)).view(num_anchors, 4)
        # Every process joins both all-reduces, with or without positives (else DDP hangs).
        weight_sum = reduce_mean(weight.sum()).clamp(min=1.0)
        loss_bbox = (weight * (1.0 - iou)).sum() / weight_sum
        loss_dfl = (weight[:, None] * dfl).sum() / 4.0 / weight_sum
        avg_factor = reduce_mean(targets.num_pos_per_image).clamp(min=1.0)
        qfl = quality_focal_loss(cls_logits, quality, opts.qfl_beta, scores=scores)
        loss_qfl = (qfl * targets.valid[:, None]).sum() / avg_factor
        num_pos = positive.sum().float()
        return {
            "loss_qfl": weighted(opts.loss_cls_weight, loss_qfl),
            "loss_bbox": weighted(opts.loss_bbox_weight, loss_bbox),
            "loss_dfl": weighted(opts.loss_dfl_weight, loss_dfl),
            "num_pos": num_pos,
            "pos_iou": pos_iou.sum() / num_pos.clamp(min=1.0),
        }


def closest_representation(boxes: Tensor, theta: Tensor) -> Tensor:
    """Re-express ``boxes[N, 5]`` as ``(cx, cy, w', h', t + k*pi/2)`` with k chosen so the angle is
    closest to ``theta[N]`` (w and h swapped for odd k): the same rectangle in every case."""
    centers, sizes, angles = closest_representation_parts(boxes, theta)
    return torch.cat([centers, sizes, angles[:, None]], dim=1)


def closest_representation_parts(boxes: Tensor, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`closest_representation` as its parts: centers Tensor[N, 2], sizes Tensor[N, 2] (w', h'),
    angles Tensor[N] (what :meth:`DistanceAngleCoder.encode_parts` takes, without a concatenation)."""
    angle = boxes[:, 4]
    k = torch.round((theta - angle) / (math.pi / 2))
    odd = torch.remainder(k, 2) == 1
    sizes = boxes[:, 2:4]
    sizes = torch.where(odd[:, None], sizes.flip(1), sizes)
    return boxes[:, :2], sizes, angle + k * (math.pi / 2)
