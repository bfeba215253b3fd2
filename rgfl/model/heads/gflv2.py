"""The ``gflv2`` head: ``gfl`` plus GFocalV2's distribution-guided quality predictor (DGQP).

GFocalV2 ("Generalized Focal Loss V2: Learning Reliable Localization Quality Estimation for Dense
Object Detection", Li et al., CVPR 2021) reads how sure the box is from the shape of its side
distributions: a sharp peak is a confident side, a flat or bimodal one an ambiguous side. Per
prior point, the top-k probabilities (k = 4) of each of the 4 side distributions and their mean
(4 x 5 = 20 numbers) go through an MLP (20 -> 64 -> ReLU -> 1 -> sigmoid) to a quality ``q`` in
(0, 1), and the detection score is ``sigmoid(cls) * q``, trained by QFL and used at inference.

What this head keeps from ``gfl``: the towers, the side distributions and DFL, the angle branch,
the rotated IoU loss, the closest-representation DFL targets and every option. The choices the
rotated case forces (docs/model.md, "gflv2"):

* The quality reads only the 4 side distributions; the angle is a single logit with no
  distribution, so its uncertainty has no shape to read. The QFL target (the rotated IoU of the
  decoded box) does fall with an angle error, so that part of the quality is left to the class
  branch, whose features see the object.
* The 4 sides are the distances left, top, right, bottom of the *predicted* box in its own
  rotated frame, in that order, as the head outputs them. DFL trains them in the frame of the
  ground-truth representation closest to the predicted angle (w/h swapped for a quarter turn), so
  the distributions DGQP reads always describe the prediction's own frame; a quarter-turned
  representation of the same box would present the sides cyclically shifted (l, t, r, b) ->
  (t, r, b, l), and the MLP (GFocalV2's, not symmetric) would see them in another order.
* The product is kept as a logit, ``logit(sigmoid(c) * q)``, computed in float32 from log-sigmoids
  (no rounding of a probability near 0 or 1), so that QFL, the box-loss weights, ``postprocess``
  and exported models use the ``cls_logits`` of every head alike: ``sigmoid`` of it is the product
  exactly, and QFL of it equals GFocalV2's QFL on the product (its ``use_sigmoid=False``).
* As in GFocalV2, gradients flow from the score through DGQP into the side distributions (no
  detach), and the quality is one scalar per point shared by all classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgfl.model.heads.base import HeadOptions, HeadOutputs
from rgfl.tensors import float32
from rgfl.model.heads.gfl import GFLHead

__all__ = ["GFLv2Head", "DistributionQuality", "joint_logit"]


class DistributionQuality(nn.Module):
    """DGQP: side distributions -> localization-quality logit.

    Args:
        num_bins: K, bins per side (``reg_max + 1``); must be >= ``topk``.
        topk: probabilities kept per side (GFocalV2: 4).
        hidden: width of the one hidden layer (GFocalV2: 64).

    Initialised as GFocalV2's (weights N(0, 0.01), zero biases): the logit starts within about
    0.01 of 0, i.e. every quality starts at 0.5.
    """

    num_sides = 4

    def __init__(self, num_bins: int, topk: int = 4, hidden: int = 64) -> None:
        super().__init__()
        if not 1 <= topk <= num_bins:
            raise ValueError(f"the quality branch reads the top {topk} of each side's {num_bins} bins; set model.reg_max >= {topk - 1}")
        self.num_bins = num_bins
        self.topk = topk
        self.hidden = nn.Linear(self.num_sides * (topk + 1), hidden)
        self.out = nn.Linear(hidden, 1)
        for layer in (self.hidden, self.out):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def statistics(self, probs: Tensor) -> Tensor:
        """Tensor[..., 4, K] side probabilities -> Tensor[..., 4 * (k + 1)]: per side (in the input
        order) its top-k probabilities, largest first, then their mean."""
        top = probs.topk(self.topk, dim=-1).values  # [..., 4, k]
        return torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1).flatten(-2)

    def forward(self, box_logits: Tensor) -> Tensor:
        """Quality logits Tensor[...] (float32) of side logits Tensor[..., 4K] (softmax per side)."""
        with torch.autocast(device_type=box_logits.device.type, enabled=False):
            probs = F.softmax(float32(box_logits).unflatten(-1, (self.num_sides, self.num_bins)), dim=-1)
            return self.out(F.relu(self.hidden(self.statistics(probs)))).squeeze(-1)


def joint_logit(cls_logits: Tensor, quality_logits: Tensor) -> Tensor:
    """``logit(sigmoid(cls) * sigmoid(quality))`` in float32, without forming either probability.

    ``log(s q) = logsigmoid(c) + logsigmoid(z)`` and ``1 - s q = sigmoid(-c) + sigmoid(c) sigmoid(-z)``,
    so ``log(1 - s q) = logaddexp(logsigmoid(-c), logsigmoid(c) + logsigmoid(-z))``: finite and
    smooth for any inputs. ``quality_logits`` broadcasts against ``cls_logits`` (e.g. [B, P, 1] vs [B, P, C]).
    """
    c = float32(cls_logits)
    z = float32(quality_logits)
    log_s, log_not_s = F.logsigmoid(c), F.logsigmoid(-c)
    log_p = log_s + F.logsigmoid(z)
    log_not_p = _logaddexp(log_not_s, log_s + F.logsigmoid(-z))
    return log_p - log_not_p


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    # torch.logaddexp in elementary operations, which every ONNX opset exports.
    return torch.maximum(a, b) + torch.log1p(torch.exp(-(a - b).abs()))


class GFLv2Head(GFLHead):
    """``gfl`` + DGQP (module docstring). Options: those of :class:`GFLHead`. Needs ``reg_max >= 3``."""

    name = "gflv2"
    default_reg_max = 16
    dgqp_topk = 4
    dgqp_hidden = 64

    def __init__(self, num_classes: int, reg_max: int, options: HeadOptions, **shape) -> None:
        super().__init__(num_classes, reg_max, options, **shape)
        self.dgqp = DistributionQuality(self.num_bins, self.dgqp_topk, self.dgqp_hidden)

    @classmethod
    def check_options(cls, reg_max: int, options: HeadOptions) -> None:
        super().check_options(reg_max, options)
        if reg_max + 1 < cls.dgqp_topk:
            raise ValueError(f"the gflv2 quality branch reads the top {cls.dgqp_topk} bins of each side: reg_max must be >= {cls.dgqp_topk - 1}, got {reg_max}")

    def finish(self, outputs: HeadOutputs) -> HeadOutputs:
        quality_logits = self.dgqp(outputs.box_logits)  # [B, P]
        with torch.autocast(device_type=quality_logits.device.type, enabled=False):
            outputs.cls_logits = joint_logit(outputs.cls_logits, quality_logits[..., None])
            outputs.quality = torch.sigmoid(quality_logits)
        return outputs
