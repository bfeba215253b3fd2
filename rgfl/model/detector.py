"""RotatedGFL: ResNet-FPN + rotated GFL head, its training losses and batched inference.

Shape legend: B images, P prior points over all levels, C classes, K = reg_max + 1 bins,
M ground-truth boxes of one image, N positives over the batch. Boxes are ``obb``
``(cx, cy, w, h, theta)`` in input-image pixels, le135 (``w >= h``, ``theta`` in ``[-pi/4, 3pi/4)``).

Note on layering: the detector owns ``compute_losses`` (the engine contract), so ``rgfl.model``
imports ``rgfl.losses``; ``rgfl.losses`` never imports ``rgfl.model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rgfl.losses.assigner import AssignResult, RotatedATSSAssigner
from rgfl.model.backbone import ResNetFPN
from rgfl.model.coder import Priors, make_priors, regularize_le135
from rgfl.model.heads import AnchorTargets, HeadOptions, HeadOutputs, head_class
from rgfl.model.heads.gfl import closest_representation as _closest_representation  # noqa: F401 (tests import it from here)
from rgfl.ops import batched_nms_rotated, obb2poly
from rgfl.structures import Detections, Target
from rgfl.tensors import converted, kept

__all__ = ["RotatedGFL"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _head_option(name: str) -> property:
    """A detector attribute that reads and writes ``self.head.options.<name>`` (:class:`HeadOptions`)."""
    return property(
        lambda self: getattr(self.head.options, name),
        lambda self, value: setattr(self.head.options, name, value),
        doc=f"``{name}`` of the head variant's options.",
    )


class RotatedGFL(nn.Module):
    """Rotated Generalized Focal Loss detector (one-stage, anchor-point based, le135 boxes).

    Args:
        num_classes: C, number of object classes (no background class).
        head: ``"gfl"`` (QFL with rotated-IoU quality targets + DFL + rotated IoU loss, the default)
            or ``"vanilla"`` (the reference head of notes 7.1: focal loss + delta distributions +
            ``-log`` rotated IoU loss).
        depth: ResNet depth, 18, 34, 50 or 101.
        pretrained: ``"imagenet"``, ``"none"`` or the path of a local ResNet state dict.
        frozen_stages: -1 none, 0 stem, k stem + layer1..k (default 1).
        norm_eval: freeze the statistics of every backbone BatchNorm; default True.
        norm_affine: with ``norm_eval``, ``"frozen"`` (default) also fixes their weight and bias,
            ``"trainable"`` trains them outside the frozen stages (the reference).
        prior_offset: prior points at ``(j + offset) * stride``; 0.5 (default) the cell centres,
            0 the reference's mmdet anchor centres.
        reg_max: bins minus one of each distribution; None -> 16 for ``gfl``, 8 for ``vanilla``.
        feat_channels, stacked_convs: head towers (256 channels, 4 conv + GN(32) + ReLU each).
        fpn_channels: FPN width (256), the head's input.
        fpn_min_level: 3 for the reference's P3-P7 levels (strides 8 to 128); 2 adds P2 (stride 4).
        octave_base_scale: side of the square anchor in strides (assignment only); default 4.
        topk: ATSS candidates per level (9).
        reach_aware: ``gfl`` only, not in the reference: ATSS considers a level for a box only if
            its priors can reach the box's sides (``max(w, h) / 2 <= reg_max * stride``), so that
            long thin objects (piers, bridges) are not given to levels where their box is out of
            reach of the distance bins (see :class:`rgfl.losses.assigner.RotatedATSSAssigner`).
        angle_coding: ``gfl`` angle from its logit ``a``: ``"sigmoid"`` ``(sigmoid(a) - 1/4) * pi``
            (default; bounded to le135) or ``"linear"`` ``pi/4 * (1 + a)`` (unbounded, reaches thin
            boxes just past the le135 boundary; see docs/model.md for what it measured).
        loss_cls_weight: weight of QFL (``gfl``) or focal loss (``vanilla``); default 1.
        loss_bbox_weight: weight of the rotated IoU loss; None -> 2 (``gfl``) or 1 (``vanilla``).
        loss_dfl_weight: weight of DFL (``gfl`` only); default 0.25.
        quality_weight_floor: ``gfl`` only, not in the reference (0): lower bound of the per-positive
            weight of the box and DFL losses, which GFL sets to the positive's detached max class
            score. A rare class whose boxes start far off keeps scores near 0 and so gets almost no
            box gradient (the sample's harbor piers: weights about 0.01 against 0.5 for ships).
        qfl_beta: QFL exponent (2). focal_alpha, focal_gamma: focal loss (0.25, 2) for ``vanilla``.
        nms_pre: candidates kept per level before NMS (by max class score), default 2000.
        score_thr: minimum score of a detection (strictly greater), default 0.05.
        nms_iou: class-aware rotated NMS IoU threshold, default 0.1.
        max_per_img: detections kept per image after NMS, default 2000 (0 keeps all).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        head: str = "gfl",
        depth: int = 50,
        pretrained: str | Path = "imagenet",
        frozen_stages: int = 1,
        norm_eval: bool = True,
        reg_max: int | None = None,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        fpn_channels: int = 256,
        fpn_min_level: int = 3,
        octave_base_scale: float = 4.0,
        topk: int = 9,
        reach_aware: bool = False,
        angle_coding: str = "sigmoid",
        loss_cls_weight: float = 1.0,
        loss_bbox_weight: float | None = None,
        loss_dfl_weight: float = 0.25,
        quality_weight_floor: float = 0.0,
        qfl_beta: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        nms_pre: int = 2000,
        score_thr: float = 0.05,
        nms_iou: float = 0.1,
        max_per_img: int = 2000,
        norm_affine: str = "frozen",
        prior_offset: float = 0.5,
    ) -> None:
        super().__init__()
        head_cls = head_class(head)
        options = HeadOptions(
            angle_coding=angle_coding,
            reach_aware=reach_aware,
            loss_cls_weight=loss_cls_weight,
            loss_bbox_weight=loss_bbox_weight,
            loss_dfl_weight=loss_dfl_weight,
            quality_weight_floor=quality_weight_floor,
            qfl_beta=qfl_beta,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
        )
        self.num_classes = num_classes
        self.octave_base_scale = float(octave_base_scale)
        self.nms_pre = nms_pre
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.max_per_img = max_per_img

        reg_max = head_cls.default_reg_max if reg_max is None else reg_max
        head_cls.check_options(reg_max, options)  # before the backbone, which may load weights
        if not 0.0 <= prior_offset < 1.0:
            raise ValueError(f"prior_offset must be in [0, 1) (a fraction of the stride), got {prior_offset}")
        self.prior_offset = float(prior_offset)
        self.backbone = ResNetFPN(depth, pretrained, frozen_stages, norm_eval, fpn_channels, fpn_min_level, norm_affine=norm_affine)
        self.strides = list(self.backbone.strides)
        self.head = head_cls(
            num_classes,
            reg_max,
            options,
            in_channels=fpn_channels,
            feat_channels=feat_channels,
            stacked_convs=stacked_convs,
            num_levels=len(self.strides),
        )
        self.assigner = RotatedATSSAssigner(topk, reach=self.head.assign_reach)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._priors_cache: dict[tuple, Priors] = {}

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor) -> HeadOutputs:
        """Head outputs for ``images`` (Tensor[B, 3, H, W] uint8 or float, RGB, 0..255)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
        x = (images.float() - self.pixel_mean) / self.pixel_std
        features = self.backbone(x)
        return self.head(features, self.strides)

    def priors(self, outputs: HeadOutputs, device: torch.device) -> Priors:
        """The prior points of ``outputs`` (cached per feature-map sizes and device)."""
        key = (tuple(outputs.level_sizes), str(device))
        return kept(self._priors_cache, key, lambda: make_priors(outputs.level_sizes, self.strides, self.octave_base_scale, device, self.prior_offset))

    def decode(self, box_logits: Tensor, angle_logits: Tensor | None, priors: Priors, index: Tensor) -> Tensor:
        """Decode predictions at prior rows ``index`` (Tensor[N]) into Tensor[N, 5] boxes (float32):
        the head variant's :meth:`~rgfl.model.heads.DenseHead.decode`.

        Args:
            box_logits: Tensor[N, D] rows of ``HeadOutputs.box_logits``.
            angle_logits: Tensor[N] rows of ``HeadOutputs.angle_logits``, or None for a head without.
        """
        return self.head.decode(box_logits, angle_logits, priors, index)

    # Settings that live in the head variant, readable (and settable) here as before the variants had modules.
    @property
    def variant(self) -> str:
        return self.head.name

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    angle_coding = _head_option("angle_coding")
    loss_cls_weight = _head_option("loss_cls_weight")
    loss_bbox_weight = _head_option("loss_bbox_weight")
    loss_dfl_weight = _head_option("loss_dfl_weight")
    quality_weight_floor = _head_option("quality_weight_floor")
    qfl_beta = _head_option("qfl_beta")
    focal_alpha = _head_option("focal_alpha")
    focal_gamma = _head_option("focal_gamma")

    # ------------------------------------------------------------------ training
    def compute_losses(self, images: Tensor, targets: list[Target]) -> dict[str, Tensor]:
        """Training losses of one batch.

        Args:
            images: Tensor[B, 3, H, W] uint8/float RGB 0..255.
            targets: B ``Target`` (boxes Tensor[M, 5] le135 in input pixels, labels Tensor[M], ignore Tensor[M]).

        Returns: ``gfl``: ``loss_qfl``, ``loss_bbox``, ``loss_dfl``; ``vanilla``: ``loss_cls``,
        ``loss_bbox``; plus, for logging only (no ``loss`` prefix), ``num_pos`` and ``pos_iou``
        (mean rotated IoU of the decoded positives with their ground truths). Float32 scalars.
        """
        if len(targets) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(targets)} targets")
        outputs = self(images)
        return self.losses(outputs, targets)

    def losses(
        self, outputs: HeadOutputs, targets: list[Target], assignments: AssignResult | list[AssignResult] | None = None
    ) -> dict[str, Tensor]:
        """Losses of precomputed head ``outputs`` (see :meth:`compute_losses`).

        ``assignments`` (from :meth:`assign_batch`, or one per image from :meth:`assign`) may be
        given to reuse or time them.

        Batched design: the whole batch is one set of tensors over B * P anchors. Targets are padded
        to the batch's largest M, the assignment runs on all images at once, and the box losses
        are computed at every anchor and masked to the positives (a where, not a boolean index),
        so every shape is known before the step runs: no per-image Python loop, no operator count
        growing with B, no host-device synchronisation. Decoding all anchors costs a few more
        flops than decoding only the positives, far less than the launches it saves.
        """
        device = outputs.cls_logits.device
        priors = self.priors(outputs, device)
        batch, num_priors, num_classes = outputs.cls_logits.shape
        padded = self._pad_targets(targets, device)
        if assignments is None:
            result = self._assign_padded(priors, padded)
        elif isinstance(assignments, AssignResult):
            result = assignments
        else:
            result = AssignResult(*(torch.stack([getattr(r, f).to(device) for r in assignments]) for f in ("gt_index", "positive", "ignored", "gt_iou")))

        # Flatten images into one axis of B * P anchors; negatives point at ground truth 0 of their
        # image (or the padding row) so that every anchor has a finite, unused box target.
        gt_index = result.gt_index.clamp(min=0)  # [B, P]
        image_index = priors.derived(("image_index", batch), lambda: torch.arange(batch, device=device)[:, None])  # [B, 1] int64
        positive = result.positive.reshape(-1)  # [B*P]
        labels = torch.where(result.positive, padded.labels[image_index, gt_index], num_classes).reshape(-1)
        valid = (~result.ignored).reshape(-1)
        gt_boxes = padded.boxes[image_index, gt_index].reshape(-1, 5)
        # mmdet/ATSS normalizer: sum over images of max(#positives, 1).
        num_pos_per_image = result.positive.sum(dim=1).clamp(min=1).sum().float()

        cls_logits = outputs.cls_logits.reshape(batch * num_priors, num_classes)
        box_logits = outputs.box_logits.reshape(batch * num_priors, -1)
        angle_logits = outputs.angle_logits.reshape(-1) if outputs.angle_logits is not None else None
        return self.loss_terms(cls_logits, box_logits, angle_logits, labels, valid, positive, gt_boxes, priors, batch, num_pos_per_image)

    def loss_terms(
        self,
        cls_logits: Tensor,
        box_logits: Tensor,
        angle_logits: Tensor | None,
        labels: Tensor,
        valid: Tensor,
        positive: Tensor,
        gt_boxes: Tensor,
        priors: Priors,
        batch: int,
        num_pos_per_image: Tensor,
    ) -> dict[str, Tensor]:
        """The loss terms from the assigned, flattened batch (every tensor over the B * P anchors:
        logits Tensor[B*P, ...], labels Tensor[B*P] with C for negatives, valid/positive
        Tensor[B*P] bool, gt_boxes Tensor[B*P, 5]). Shapes do not depend on the objects, so this is
        the part ``train.compile`` compiles (see ``rgfl.engine.compile``)."""
        targets = AnchorTargets(labels, valid, positive, gt_boxes, num_pos_per_image, batch)
        return self.head.losses(cls_logits, box_logits, angle_logits, targets, priors)

    def assign(self, priors: Priors, target: Target) -> AssignResult:
        """Rotated ATSS assignment of one image's ground truths to the square anchors (fields Tensor[P])."""
        result = self.assign_batch(priors, [target])
        return AssignResult(result.gt_index[0], result.positive[0], result.ignored[0], result.gt_iou[0])

    def assign_batch(self, priors: Priors, targets: list[Target]) -> AssignResult:
        """Rotated ATSS assignment of a batch at once (fields Tensor[B, P])."""
        return self._assign_padded(priors, self._pad_targets(targets, priors.centers.device))

    def _assign_padded(self, priors: Priors, padded: "_PaddedTargets") -> AssignResult:
        return self.assigner.assign_batch(
            priors.anchors(), priors.num_per_level, padded.boxes, padded.valid, padded.ignore, level_strides=self.strides
        )

    def _pad_targets(self, targets: list[Target], device: torch.device) -> "_PaddedTargets":
        """The batch's targets as Tensor[B, M, ...] padded to the largest M (at least 1)."""
        for target in targets:
            if target.boxes.dim() != 2 or target.boxes.shape[1] != 5:
                raise ValueError(f"target {target.image_id!r}: boxes must be [M, 5] obb, got {tuple(target.boxes.shape)}")
        # The range check reads the labels on the host only where they already are there: reading
        # device tensors would stall the step (a device-side assert guards those). One check for
        # all of them (each operator is a launch); the per-target one only names the culprit.
        host_labels = [t.labels for t in targets if t.labels.numel() and t.labels.device.type == "cpu"]
        if host_labels:
            low, high = torch.cat(host_labels).aminmax() if len(host_labels) > 1 else host_labels[0].aminmax()
            if int(low) < 0 or int(high) >= self.num_classes:
                for target in targets:
                    labels = target.labels
                    if labels.numel() and labels.device.type == "cpu" and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                        raise ValueError(
                            f"target {target.image_id!r}: labels must be in [0, {self.num_classes}), got {labels.min().item()}..{labels.max().item()}"
                        )
        pad = torch.nn.utils.rnn.pad_sequence
        # (Conversions that would be no-ops are skipped: each is an operator call.)
        boxes = pad([converted(t.boxes, device, torch.float32) for t in targets], batch_first=True)
        label_list = [converted(t.labels, device, torch.long) for t in targets]  # class indices (one_hot, gather) are int64
        ignore = pad([converted(t.ignore, device) if t.ignore is not None else t.labels.new_zeros(t.labels.shape, dtype=torch.bool).to(device) for t in targets], batch_first=True)
        if boxes.shape[1] == 0:  # no object in the whole batch: one padding row keeps shapes non-empty
            batch = len(targets)
            boxes = boxes.new_zeros((batch, 1, 5))
            labels = pad(label_list, batch_first=True).new_zeros((batch, 1))
            ignore = ignore.new_zeros((batch, 1))
            valid = torch.zeros((batch, 1), dtype=torch.bool, device=device)
        else:
            # Padding rows get int64's lowest value, which no class has: one comparison marks
            # the real rows (instead of a tensor of ones per image). A padding row is never
            # assigned, so its label is always masked out.
            padding = torch.iinfo(torch.long).min
            labels = pad(label_list, batch_first=True, padding_value=padding)
            valid = labels != padding
            if device.type != "cpu":
                # Real rows must be in [0, C); the padding rows are negative, hence the "== valid".
                torch._assert_async((((labels >= 0) == valid) & (labels < self.num_classes)).all(), "target labels out of range")
        return _PaddedTargets(boxes, labels, ignore, valid)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: Tensor, image_sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Detect objects in a batch.

        Args:
            images: Tensor[B, 3, H, W] uint8/float RGB 0..255 (possibly zero-padded bottom/right).
            image_sizes: optional ``[(h, w)]`` per image before padding; prior points whose centers
                lie in the padding are not used.

        Returns: B ``Detections`` with boxes Tensor[N, 5] (le135, input pixels, ``w >= h``), scores
        Tensor[N] sorted in decreasing order, labels Tensor[N], and ``extras["polygons"]`` Tensor[N, 8].
        """
        outputs = self(images)
        return self.postprocess(outputs, image_sizes)

    @torch.no_grad()
    def postprocess(self, outputs: HeadOutputs, image_sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        """Turn head ``outputs`` into detections (see :meth:`predict`); all images in one pass."""
        device = outputs.cls_logits.device
        priors = self.priors(outputs, device)
        batch, num_priors, num_classes = outputs.cls_logits.shape
        scores = self.head.scores(outputs.cls_logits)  # [B, P, C]
        max_scores = scores.max(dim=2).values  # [B, P]
        if image_sizes is not None:
            if len(image_sizes) != batch:
                raise ValueError(f"got {len(image_sizes)} image sizes for {batch} images")
            sizes = torch.tensor([[h, w] for h, w in image_sizes], dtype=torch.float32, device=device)  # [B, 2]
            inside = (priors.centers[None, :, 1] < sizes[:, None, 0]) & (priors.centers[None, :, 0] < sizes[:, None, 1])
            max_scores = torch.where(inside, max_scores, torch.full_like(max_scores, -1.0))

        # Per level the nms_pre best priors of each image (by max class score).
        selected = []
        start = 0
        for count in priors.num_per_level:
            k = min(self.nms_pre, count)
            selected.append(max_scores[:, start : start + count].topk(k, dim=1).indices + start)
            start += count
        prior_index = torch.cat(selected, dim=1)  # [B, S]
        num_selected = prior_index.shape[1]
        batch_index = torch.arange(batch, device=device)[:, None].expand(batch, num_selected)
        cand_scores = scores[batch_index, prior_index]  # [B, S, C]
        keep_valid = max_scores[batch_index, prior_index] >= 0  # drops padding priors
        cand_scores = cand_scores * keep_valid[..., None]
        # Every (prior, class) pair above the threshold is a candidate detection (multiclass NMS).
        b_idx, s_idx, c_idx = (cand_scores > self.score_thr).nonzero(as_tuple=True)
        if b_idx.numel() == 0:
            return [self._empty_detections(device) for _ in range(batch)]
        flat_prior = prior_index[b_idx, s_idx]
        angle = outputs.angle_logits[b_idx, flat_prior] if outputs.angle_logits is not None else None
        boxes = self.decode(outputs.box_logits[b_idx, flat_prior], angle, priors, flat_prior)
        boxes = regularize_le135(boxes)
        det_scores = cand_scores[b_idx, s_idx, c_idx]
        groups = b_idx * num_classes + c_idx  # NMS within (image, class)
        keep = batched_nms_rotated(boxes, det_scores, groups, self.nms_iou)
        keep = keep[det_scores[keep].argsort(descending=True, stable=True)]
        # Images as contiguous runs of ``keep`` (each still by decreasing score), split with one
        # host transfer of the counts instead of a boolean mask (a device sync) per image; the
        # gathers and polygons run once for the batch.
        keep = keep[b_idx[keep].argsort(stable=True)]
        # (not bincount: on CUDA it reads the maximum back first)
        counts = (b_idx[keep][None, :] == torch.arange(batch, device=device)[:, None]).sum(dim=1).tolist()
        if self.max_per_img and max(counts) > self.max_per_img:
            # The first max_per_img of each run, positions made on the host (a mask would sync).
            import numpy as np

            starts = np.cumsum([0] + counts[:-1])
            counts = [min(count, self.max_per_img) for count in counts]
            positions = np.concatenate([np.arange(start, start + count) for start, count in zip(starts, counts)])
            keep = keep[torch.from_numpy(positions).to(device)]
        det_boxes, det_kept_scores, det_labels = boxes[keep], det_scores[keep], c_idx[keep]
        polygons = obb2poly(det_boxes)
        return [
            Detections(b, s, c, extras={"polygons": p})
            for b, s, c, p in zip(det_boxes.split(counts), det_kept_scores.split(counts), det_labels.split(counts), polygons.split(counts))
        ]

    def _empty_detections(self, device: torch.device) -> Detections:
        return Detections(
            torch.zeros((0, 5), device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            extras={"polygons": torch.zeros((0, 8), device=device)},
        )


@dataclass
class _PaddedTargets:
    """A batch's targets padded to the largest M: boxes Tensor[B, M, 5] float32, labels Tensor[B, M]
    int64 (any value on padding rows), ignore and valid Tensor[B, M] bool (valid is False on padding rows)."""

    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    valid: Tensor
