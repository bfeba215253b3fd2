"""RotatedGFL: ResNet-FPN + rotated GFL head, its training losses and batched inference.

Shape legend: B images, P prior points over all levels, C classes, K = reg_max + 1 bins,
M ground-truth boxes of one image, N positives over the batch. Boxes are ``obb``
``(cx, cy, w, h, theta)`` in input-image pixels, le135 (``w >= h``, ``theta`` in ``[-pi/4, 3pi/4)``).

Note on layering: the detector owns ``compute_losses`` (the engine contract), so ``rgfl.model``
imports ``rgfl.losses``; ``rgfl.losses`` never imports ``rgfl.model``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rgfl.losses.assigner import AssignResult, RotatedATSSAssigner
from rgfl.model.backbone import ResNetFPN
from rgfl.model.coder import Priors, make_priors, regularize_le135
from rgfl.model.heads import HeadOptions, HeadOutputs, PositiveTargets, head_class
from rgfl.model.heads.gfl import closest_representation as _closest_representation  # noqa: F401 (tests import it from here)
from rgfl.ops import batched_nms_rotated, obb2poly
from rgfl.structures import Detections, Target

__all__ = ["RotatedGFL"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


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
        max_per_img: detections kept per image after NMS, default 2000.
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
        if key not in self._priors_cache:
            if len(self._priors_cache) > 16:
                self._priors_cache.clear()
            self._priors_cache[key] = make_priors(outputs.level_sizes, self.strides, self.octave_base_scale, device, self.prior_offset)
        return self._priors_cache[key]

    def decode(self, box_logits: Tensor, angle_logits: Tensor | None, priors: Priors, index: Tensor) -> Tensor:
        """Decode predictions at prior rows ``index`` (Tensor[N]) into Tensor[N, 5] boxes (float32):
        the head variant's :meth:`~rgfl.model.heads.DenseHead.decode`.

        Args:
            box_logits: Tensor[N, D] rows of ``HeadOutputs.box_logits``.
            angle_logits: Tensor[N] rows of ``HeadOutputs.angle_logits``, or None for a head without.
        """
        return self.head.decode(box_logits, angle_logits, priors, index)

    # Settings that live in the head variant, readable (and the loss weights settable) here as before.
    @property
    def variant(self) -> str:
        return self.head.name

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    @property
    def angle_coding(self) -> str:
        return self.head.options.angle_coding

    @property
    def loss_bbox_weight(self) -> float:
        return self.head.options.loss_bbox_weight

    @property
    def quality_weight_floor(self) -> float:
        return self.head.options.quality_weight_floor

    @quality_weight_floor.setter
    def quality_weight_floor(self, value: float) -> None:
        self.head.options.quality_weight_floor = value

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
        self, outputs: HeadOutputs, targets: list[Target], assignments: list[AssignResult] | None = None
    ) -> dict[str, Tensor]:
        """Losses of precomputed head ``outputs`` (see :meth:`compute_losses`).

        ``assignments`` (one per image, from :meth:`assign`) may be given to reuse or time them.
        """
        device = outputs.cls_logits.device
        priors = self.priors(outputs, device)
        batch, num_priors, num_classes = outputs.cls_logits.shape
        if assignments is None:
            assignments = [self.assign(priors, target.to(device)) for target in targets]

        # Flatten images into one axis of B * P anchors.
        labels = torch.full((batch, num_priors), num_classes, dtype=torch.long, device=device)
        valid = torch.ones(batch, num_priors, dtype=torch.bool, device=device)
        pos_gt_boxes = []
        for b, (target, result) in enumerate(zip(targets, assignments)):
            labels[b, result.positive] = target.labels.to(device)[result.gt_index[result.positive]]
            valid[b] = ~result.ignored
            pos_gt_boxes.append(target.boxes.to(device=device, dtype=torch.float32)[result.gt_index[result.positive]])
        positive = torch.stack([r.positive for r in assignments]).view(-1)  # [B*P]
        pos_flat = positive.nonzero().squeeze(1)  # [N]
        pos_prior = pos_flat % num_priors
        gt_boxes = torch.cat(pos_gt_boxes) if pos_gt_boxes else outputs.cls_logits.new_zeros((0, 5))
        labels = labels.view(-1)
        valid = valid.view(-1)
        # mmdet/ATSS normalizer: sum over images of max(#positives, 1).
        num_pos_per_image = sum(max(int(r.positive.sum()), 1) for r in assignments)

        cls_logits = outputs.cls_logits.reshape(batch * num_priors, num_classes)
        box_logits = outputs.box_logits.reshape(batch * num_priors, -1)
        angle_logits = outputs.angle_logits.reshape(-1) if outputs.angle_logits is not None else None
        positives = PositiveTargets(labels, valid, pos_flat, pos_prior, gt_boxes, num_pos_per_image)
        return self.head.losses(cls_logits, box_logits, angle_logits, positives, priors)

    def assign(self, priors: Priors, target: Target) -> AssignResult:
        """Rotated ATSS assignment of one image's ground truths to the square anchors."""
        if target.boxes.dim() != 2 or target.boxes.shape[1] != 5:
            raise ValueError(f"target {target.image_id!r}: boxes must be [M, 5] obb, got {tuple(target.boxes.shape)}")
        labels = target.labels
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"target {target.image_id!r}: labels must be in [0, {self.num_classes}), got {labels.min().item()}..{labels.max().item()}"
            )
        return self.assigner(priors.anchors(), priors.num_per_level, target.boxes, target.ignore, level_strides=self.strides)

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
        scores = self.head.scores(outputs.cls_logits)  # [B, P, C] float32
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
        results = []
        for b in range(batch):
            mine = keep[b_idx[keep] == b][: self.max_per_img]
            det_boxes = boxes[mine]
            results.append(
                Detections(det_boxes, det_scores[mine], c_idx[mine], extras={"polygons": obb2poly(det_boxes)})
            )
        return results

    def _empty_detections(self, device: torch.device) -> Detections:
        return Detections(
            torch.zeros((0, 5), device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            extras={"polygons": torch.zeros((0, 8), device=device)},
        )

