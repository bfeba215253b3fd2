"""The ``vanilla`` head: the reference rotated GFL results' head (reference notes 7.1), reproduced.

Outputs: C focal-loss class logits and 5 delta distributions of K bins (dx, dy, dw, dh over
``linspace(-2, 2)``, dtheta over ``linspace(-5, 2)``), decoded by the le135 delta coder
(``DeltaXYWHACoder``) relative to each prior's square anchor; no angle branch, no ``Scale``.
Losses: sigmoid focal loss and ``-log IoU`` (rotated), both divided by the number of positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rgfl.losses.gfl import rotated_iou, sigmoid_focal_loss
from rgfl.model.coder import DeltaXYWHACoder, DistanceAngleCoder, Priors
from rgfl.model.heads.base import AnchorTargets, DenseHead, HeadOptions, weighted
from rgfl.tensors import float32

__all__ = ["VanillaHead"]


class VanillaHead(DenseHead):
    """Reference head; options used: ``loss_cls_weight``, ``loss_bbox_weight`` (default 1),
    ``focal_alpha``, ``focal_gamma``. ``reach_aware`` and ``quality_weight_floor`` are refused (they
    belong to the distance bins and score-weighted box loss of the gfl heads)."""

    name = "vanilla"
    default_reg_max = 8
    num_distributions = 5

    def __init__(self, num_classes: int, reg_max: int, options: HeadOptions, **shape) -> None:
        super().__init__(num_classes, reg_max, options, **shape)
        if options.loss_bbox_weight is None:
            options.loss_bbox_weight = 1.0
        # Reference bins (notes 7.1): deltas over linspace(-2, 2), the angle over linspace(-5, 2).
        deltas = torch.linspace(-2.0, 2.0, self.num_bins)
        angle = torch.linspace(-5.0, 2.0, self.num_bins)
        self.register_buffer("projection", torch.stack([deltas] * 4 + [angle]), persistent=False)  # [5, K]
        self.init_weights()

    @classmethod
    def check_options(cls, reg_max: int, options: HeadOptions) -> None:
        if options.reach_aware:
            raise ValueError("reach_aware assignment is for the gfl head's distance bins; the vanilla head regresses deltas")
        super().check_options(reg_max, options)
        if options.angle_coding not in DistanceAngleCoder.ANGLE_CODINGS:  # unused here, but a typo is still an error
            raise ValueError(f"angle_coding must be one of {DistanceAngleCoder.ANGLE_CODINGS}, got {options.angle_coding!r}")
        if options.quality_weight_floor > 0:
            raise ValueError("quality_weight_floor is for the gfl head's score-weighted box loss; the vanilla head does not weight it")

    def deltas(self, box_logits: Tensor) -> Tensor:
        """Deltas Tensor[..., 5] of box logits Tensor[..., 5K]: the expectation of each distribution."""
        probs = F.softmax(float32(box_logits).unflatten(-1, (5, self.num_bins)), dim=-1)
        return (probs * self.projection).sum(dim=-1)

    def decode_boxes(self, box_logits: Tensor, angle_logits: Tensor | None, centers: Tensor, strides: Tensor, anchor_side: Tensor) -> Tensor:
        # The square, axis-aligned anchor of each point (Priors.anchors()).
        anchors = torch.stack([centers[..., 0], centers[..., 1], anchor_side, anchor_side, torch.zeros_like(anchor_side)], dim=-1)
        return DeltaXYWHACoder.decode(anchors, self.deltas(box_logits))

    def decode_all(self, box_logits: Tensor, angle_logits: Tensor | None, priors: Priors, batch: int) -> Tensor:
        # As decode_boxes, with the anchors and their rotation, repeated per image, kept with the priors.
        anchors = priors.derived(("anchors", batch), lambda: priors.anchors().repeat(batch, 1))  # [B*P, 5]
        rotation = priors.derived(("anchor_rotation", batch), lambda: DeltaXYWHACoder.anchor_rotation(anchors))  # [B*P, 2, 2]
        return DeltaXYWHACoder.decode(anchors, self.deltas(box_logits), rotation)

    def losses(
        self, cls_logits: Tensor, box_logits: Tensor, angle_logits: Tensor | None, targets: AnchorTargets, priors: Priors
    ) -> dict[str, Tensor]:
        opts = self.options
        positive = targets.positive
        # Reference normalizer (notes 7.1): number of positives, no cross-process mean.
        avg_factor = targets.num_pos_per_image.clamp(min=1.0)
        one_hot = F.one_hot(targets.labels, self.num_classes + 1)[:, : self.num_classes]  # background row -> zeros
        focal = sigmoid_focal_loss(cls_logits, one_hot, opts.focal_alpha, opts.focal_gamma)
        loss_cls = (focal * targets.valid[:, None]).sum()
        # Every anchor decoded, the box term masked to the positives (fixed shapes, no host sync).
        pred_boxes = self.decode_all(box_logits, None, priors, targets.batch)
        iou = rotated_iou(pred_boxes, targets.gt_boxes)
        loss_bbox = torch.where(positive, -iou.clamp(min=1e-6).log(), 0.0).sum()
        num_pos = positive.sum().float()
        return {
            "loss_cls": weighted(opts.loss_cls_weight, loss_cls) / avg_factor,
            "loss_bbox": weighted(opts.loss_bbox_weight, loss_bbox) / avg_factor,
            "num_pos": num_pos,
            "pos_iou": torch.where(positive, iou.detach(), 0.0).sum() / num_pos.clamp(min=1.0),
        }
