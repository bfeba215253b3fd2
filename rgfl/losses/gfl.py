"""Generalized Focal Loss terms and the rotated IoU losses (reference notes 6.2, 7.1, 7.2).

Shape legend: N anchors (flattened over images and levels), C classes, K = reg_max + 1 bins.
Every function returns the unreduced per-element loss; weighting and normalization are done by
the caller so that they are visible in one place (``RotatedGFL.compute_losses``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rgfl.ops import box_iou_rotated
from rgfl.tensors import float32

__all__ = [
    "quality_focal_loss",
    "distribution_focal_loss",
    "sigmoid_focal_loss",
    "rotated_iou",
    "rotated_iou_loss",
    "reduce_mean",
]


def quality_focal_loss(logits: Tensor, quality: Tensor, beta: float = 2.0, scores: Tensor | None = None) -> Tensor:
    """QFL per element: ``-|y - s|^beta * (y log s + (1 - y) log(1 - s))`` with ``s = sigmoid(logits)``.

    Args:
        logits: Tensor[N, C] class-quality logits.
        quality: Tensor[N, C] soft targets ``y`` in [0, 1] (the IoU at the ground-truth class of a
            positive, 0 elsewhere).
        scores: ``sigmoid(logits.float())`` where the caller already has it (not detached), else None.

    Returns: Tensor[N, C] float32 (computed in float32 for stability under autocast).
    """
    logits = float32(logits)
    quality = float32(quality)
    scale = ((torch.sigmoid(logits) if scores is None else scores) - quality).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, quality, reduction="none") * scale


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL per distribution: ``-((y_r - y) log S(y_l) + (y - y_l) log S(y_r))``.

    Args:
        logits: Tensor[N, K] bin logits (softmax gives S).
        target: Tensor[N] continuous target in bin units, already clamped into ``[0, K - 1)``.

    Returns: Tensor[N] float32.
    """
    logits = float32(logits)
    target = float32(target)
    # A non-finite target (weights already diverged) must give a non-finite loss that the engine
    # reports, not an out-of-range index: gather on bin 0 and let NaN flow through the weights.
    # The bins are found in float32 (exact for these small integers) and both are gathered at once.
    last = logits.shape[1] - 1
    left = torch.where(torch.isfinite(target), target, 0.0).floor().clamp(0, last)
    right = left + 1
    weights = torch.stack([right - target, target - left], dim=1)  # [N, 2]
    bins = torch.stack([left, right.clamp(max=last)], dim=1).long()  # weight_right is 0 wherever this clamps
    log_prob = F.log_softmax(logits, dim=1).gather(1, bins)  # [N, 2]
    # The sum of two terms, left then right: the same rounding as writing the addition out.
    return -(weights * log_prob).sum(dim=1)


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss per element (RetinaNet; hard 0/1 ``targets``), Tensor[N, C] float32."""
    logits = float32(logits)
    targets = float32(targets)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * ce * (1 - p_t).pow(gamma)


def rotated_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Aligned rotated IoU ``Tensor[N]`` of ``pred[N, 5]`` and ``target[N, 5]``, always in float32.

    Differentiable with respect to ``pred``. Autocast is disabled inside: the polygon clipping
    loses too much in half precision.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        # box_iou_rotated's result is already in [0, 1].
        return box_iou_rotated(float32(pred), float32(target), aligned=True)


def rotated_iou_loss(pred: Tensor, target: Tensor, mode: str = "linear", eps: float = 1e-6) -> Tensor:
    """Rotated IoU loss per box pair, Tensor[N] float32.

    ``mode="linear"``: ``1 - IoU`` (the ``gfl`` head, in place of GFL's ``1 - GIoU``);
    ``mode="log"``: ``-log(max(IoU, eps))`` (the ``vanilla`` head, mmdet's RotatedIoULoss default).
    """
    iou = rotated_iou(pred, target)
    if mode == "linear":
        return 1.0 - iou
    if mode == "log":
        return -iou.clamp(min=eps).log()
    raise ValueError(f"mode must be 'linear' or 'log', got {mode!r}")


def reduce_mean(value: Tensor) -> Tensor:
    """Mean of a scalar tensor over the processes of ``torch.distributed`` (identity when not initialized)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    value = value.clone()
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
    return value / torch.distributed.get_world_size()
