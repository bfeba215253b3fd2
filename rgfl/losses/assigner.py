"""Rotated ATSS: adaptive positive selection with rotated IoU (reference notes 6.3, 7.1).

Shape legend: P prior anchors over all levels (level-major), M ground-truth boxes, K candidates per
ground truth (``sum_l min(topk, P_l)``). Boxes are ``obb`` ``(cx, cy, w, h, theta)`` pixels/radians.

The whole assignment is vectorized over images, ground truths and anchors (one small loop over the
FPN levels only), so a batch of patches with 500+ objects each costs a few tensor operations, not
500 Python turns, and never waits on the device.
Unlike mmdet, which computes the IoU of every anchor with every ground truth, only the K candidates
of each ground truth get an IoU: the threshold uses only candidates and only candidates can become
positive, so the result is the same at a fraction of the cost.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rgfl.ops import box_iou_rotated
from rgfl.tensors import converted, float32

__all__ = ["AssignResult", "RotatedATSSAssigner"]


@dataclass
class AssignResult:
    """Assignment of the anchors of one image (fields Tensor[P]) or of a batch (fields Tensor[B, P],
    from :meth:`RotatedATSSAssigner.assign_batch`).

    Attributes:
        gt_index: Tensor[P] int64, index of the ground truth an anchor was given to, -1 for negatives.
        positive: Tensor[P] bool, anchors that train box regression and get a class target.
        ignored: Tensor[P] bool, anchors won by an ignored ground truth: excluded from every loss.
        gt_iou: Tensor[P] float32 IoU of the anchor with its ground truth (0 for negatives).
    """

    gt_index: Tensor
    positive: Tensor
    ignored: Tensor
    gt_iou: Tensor


class RotatedATSSAssigner:
    """ATSS with rotated IoU and an inside test in the ground truth's own frame.

    For each ground truth: per level the ``min(topk, P_l)`` anchors whose centers are closest to
    the ground-truth center become candidates; the IoU threshold is mean + std (unbiased) of the
    candidates' rotated IoUs; a candidate is positive if its IoU >= threshold and its center is
    strictly inside the rotated box (every side distance in the box frame > ``min_inside`` px).
    An anchor positive for several ground truths goes to the one with the highest IoU (equal IoUs:
    the lower ground-truth index). Ground truths flagged ``ignore`` take part in this competition;
    the anchors they win are ignored (neither positive nor negative).

    Reach-aware variant (``reach`` set; not in the reference): a distance head whose sides are
    distributions over ``reach + 1`` bins (GFL's ``reg_max``) cannot predict a side farther than
    ``reach * stride`` from its point. Plain ATSS gives long thin objects (harbors, bridges) to the
    finest levels, where their thin box best matches the small square anchors, and from there the
    ends are out of reach: the box can never be right, so the object is never learned. With
    ``reach`` set, a level takes part for a ground truth only if a point at the box centre reaches
    every side, ``max(w, h) / 2 <= reach * stride`` (a positive off the centre may need up to about
    a stride more, which DFL clamps to the last bin); a box too large for every level keeps the
    coarsest. Objects that fit every level (all but a few in DOTA) are assigned exactly as plain
    ATSS does.

    Args:
        topk: candidates per level (9).
        min_inside: margin of the inside test in pixels (0.01, as mmdet/RATSS).
        reach: None for plain ATSS, else the largest side distance in strides (``reg_max``).
    """

    def __init__(self, topk: int = 9, min_inside: float = 0.01, reach: float | None = None) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if reach is not None and reach <= 0:
            raise ValueError(f"reach must be > 0 strides, got {reach}")
        self.topk = topk
        self.min_inside = min_inside
        self.reach = reach
        self._cached_layout: _Layout | None = None

    @torch.no_grad()
    def __call__(
        self,
        anchors: Tensor,
        num_per_level: list[int],
        gt_boxes: Tensor,
        gt_ignore: Tensor | None = None,
        level_strides: list[float] | None = None,
    ) -> AssignResult:
        """Assign ``anchors[P, 5]`` (level-major, ``num_per_level`` rows per level) to ``gt_boxes[M, 5]``.

        ``gt_ignore`` is Tensor[M] bool or None. ``level_strides`` (one per level) is required when
        the assigner has a ``reach``. IoUs and distances are computed in float32 whatever the
        autocast state. One image: :meth:`assign_batch` with a batch of one.
        """
        num_gts = gt_boxes.shape[0]
        if num_gts == 0:
            gt_boxes = gt_boxes.new_zeros((1, 5))
            valid = torch.zeros((1, 1), dtype=torch.bool, device=gt_boxes.device)
        else:
            valid = torch.ones((1, num_gts), dtype=torch.bool, device=gt_boxes.device)
        ignore = None if gt_ignore is None or num_gts == 0 else gt_ignore.to(gt_boxes.device)[None]
        result = self.assign_batch(anchors, num_per_level, gt_boxes[None], valid, ignore, level_strides)
        return AssignResult(result.gt_index[0], result.positive[0], result.ignored[0], result.gt_iou[0])

    @torch.no_grad()
    def assign_batch(
        self,
        anchors: Tensor,
        num_per_level: list[int],
        gt_boxes: Tensor,
        gt_valid: Tensor,
        gt_ignore: Tensor | None = None,
        level_strides: list[float] | None = None,
    ) -> AssignResult:
        """Assign the anchors of B images at once; every field of the result is Tensor[B, P].

        Args:
            anchors: Tensor[P, 5], shared by the images (level-major, ``num_per_level`` rows per level).
            gt_boxes: Tensor[B, M, 5], each image's ground truths padded to the batch's largest M.
            gt_valid: Tensor[B, M] bool, False on padding rows (they take part in nothing).
            gt_ignore: Tensor[B, M] bool or None.
            level_strides: one per level, required with a ``reach``.

        Why batched: the images are rows of the same tensors (B * M ground truths, one small loop
        over the levels), so a step makes the same few dozen operator calls for a batch of 8 as
        for 1, and nothing waits on the device (no data-dependent shapes, no host reads).
        """
        if self.reach is not None and (level_strides is None or len(level_strides) != len(num_per_level)):
            raise ValueError("a reach-aware assigner needs level_strides, one per level")
        device = anchors.device
        batch, num_gts = gt_boxes.shape[0], gt_boxes.shape[1]
        num_anchors = anchors.shape[0]
        if num_gts == 0 or num_anchors == 0:
            none = torch.zeros((batch, num_anchors), dtype=torch.bool, device=device)
            gt_index = torch.full((batch, num_anchors), -1, dtype=torch.long, device=device)
            return AssignResult(gt_index, none, none.clone(), torch.zeros((batch, num_anchors), device=device))
        rows = batch * num_gts  # one row per (image, ground truth)
        # (Conversions are skipped where they would be no-ops: each is an operator launch on a GPU.)
        with torch.autocast(device_type=device.type, enabled=False):
            anchors = float32(anchors)
            gt_rows = float32(gt_boxes.reshape(rows, 5))
            layout = self._layout(anchors, num_per_level)
            candidates = self._candidates(layout, gt_rows[:, :2])  # [R, K]
            num_candidates = candidates.shape[1]
            cand_anchors = anchors[candidates.reshape(-1)]  # [R*K, 5]
            gts_repeated = gt_rows.repeat_interleave(num_candidates, dim=0)  # [R*K, 5]
            ious_flat = box_iou_rotated(cand_anchors, gts_repeated, aligned=True)  # [R*K]
            ious = ious_flat.view(rows, num_candidates)
            inside = self._inside(cand_anchors[:, :2], gts_repeated).view(rows, num_candidates)
            if self.reach is None:
                if num_candidates > 1:
                    threshold = ious.mean(dim=1, keepdim=True) + ious.std(dim=1, keepdim=True)  # [R, 1], unbiased std as mmdet
                else:
                    threshold = ious[:, :1]
                is_pos = (ious >= threshold) & inside  # [R, K]
            else:
                assert level_strides is not None
                usable = self._reachable(gt_rows, self._column_strides(layout, level_strides, device))  # [R, K]
                # Rows where every level reaches take plain ATSS's threshold, to the last bit.
                plain = ious.mean(dim=1) + ious.std(dim=1) if num_candidates > 1 else ious[:, 0]
                threshold = torch.where(usable.all(dim=1), plain, self._masked_threshold(ious, usable))
                is_pos = (ious >= threshold[:, None]) & inside & usable
            is_pos &= converted(gt_valid, device).reshape(rows, 1)

            # Resolve anchors claimed by several ground truths of an image: highest IoU, then lowest
            # index. Anchors are numbered over the batch (image b's anchor p is b * P + p), so one
            # scatter covers every image; pairs that are not positive scatter values that never win.
            image_offset = layout.image_offsets.get(batch)  # [B, 1]
            if image_offset is None:
                image_offset = layout.image_offsets[batch] = torch.arange(0, batch * num_anchors, num_anchors, device=device).view(batch, 1)
            flat_anchor = (candidates.view(batch, num_gts * num_candidates) + image_offset).view(-1)  # [R*K]
            pos_flat = is_pos.view(-1)
            best_iou = torch.full((batch * num_anchors,), -1.0, device=device)
            best_iou.scatter_reduce_(0, flat_anchor, torch.where(pos_flat, ious_flat, -1.0), reduce="amax")
            is_best = pos_flat & (ious_flat >= best_iou[flat_anchor])
            # The ground-truth index of each pair, broadcast over images and candidates.
            pair_gt = torch.arange(num_gts, device=device).view(1, num_gts, 1)
            winner = torch.full((batch * num_anchors,), num_gts, dtype=torch.long, device=device)
            winner.scatter_reduce_(0, flat_anchor, torch.where(is_best.view(batch, num_gts, num_candidates), pair_gt, num_gts).view(-1), reduce="amin")
        winner = winner.view(batch, num_anchors)
        assigned = winner < num_gts
        gt_index = torch.where(assigned, winner, -1)
        gt_iou = torch.where(assigned, best_iou.view(batch, num_anchors), 0.0)
        if gt_ignore is not None:
            ignored = assigned & converted(gt_ignore, device).gather(1, winner.clamp(max=num_gts - 1))
        else:
            ignored = torch.zeros_like(assigned)
        positive = assigned & ~ignored
        return AssignResult(gt_index, positive, ignored, gt_iou)

    def _layout(self, anchors: Tensor, num_per_level: list[int]) -> "_Layout":
        """The per-level views of ``anchors``' centers and the candidate columns' offsets, kept
        while the same (unmodified) anchors tensor comes back, as the detector's cached priors do."""
        cached = self._cached_layout
        if cached is not None and cached.anchors() is anchors and cached.version == anchors._version and cached.num_per_level == num_per_level:
            return cached
        centers = anchors[:, :2]
        device = anchors.device
        level_centers, offsets, levels = [], [], []
        start = 0
        for level, count in enumerate(num_per_level):
            if count:
                k = min(self.topk, count)
                level_centers.append(centers[start : start + count])
                # Built on the device (a host tensor copied there would wait for the device).
                offsets.append(torch.full((k,), start, dtype=torch.long, device=device))
                levels.append((level, k))
            start += count
        layout = _Layout(weakref.ref(anchors), anchors._version, list(num_per_level), level_centers, torch.cat(offsets), levels)
        self._cached_layout = layout
        return layout

    def _candidates(self, layout: "_Layout", gt_centers: Tensor) -> Tensor:
        """Tensor[M, K] global anchor indices: per level the ``min(topk, P_l)`` closest centers."""
        per_level = [torch.cdist(gt_centers, centers).topk(min(self.topk, centers.shape[0]), dim=1, largest=False).indices for centers in layout.level_centers]
        return torch.cat(per_level, dim=1) + layout.column_offset

    def _column_strides(self, layout: "_Layout", level_strides: list[float], device: torch.device) -> Tensor:
        """Tensor[K] float32, the stride of each candidate column's level (kept with the layout)."""
        key = tuple(float(s) for s in level_strides)
        if layout.column_strides is None or layout.column_strides[0] != key:
            strides = torch.cat([torch.full((k,), key[level], dtype=torch.float32, device=device) for level, k in layout.column_levels])
            layout.column_strides = (key, strides)
        return layout.column_strides[1]

    def _reachable(self, gt_boxes: Tensor, strides: Tensor) -> Tensor:
        """Tensor[M, K] bool: the candidate's level (stride ``strides[K]``) reaches every side of the
        box from its center; a box no level reaches keeps the coarsest level's candidates."""
        assert self.reach is not None
        half_extent = torch.maximum(gt_boxes[:, 2], gt_boxes[:, 3]) / 2  # [M]
        usable = half_extent[:, None] <= self.reach * strides[None, :]
        coarsest = strides == strides.max()
        return torch.where(usable.any(dim=1, keepdim=True), usable, coarsest[None, :].expand_as(usable))

    @staticmethod
    def _masked_threshold(ious: Tensor, usable: Tensor) -> Tensor:
        """Tensor[M]: mean + unbiased std of each row's usable IoUs (the IoU itself if only one)."""
        count = usable.sum(dim=1).clamp(min=1).to(ious.dtype)
        values = torch.where(usable, ious, torch.zeros_like(ious))
        mean = values.sum(dim=1) / count
        squares = torch.where(usable, (ious - mean[:, None]) ** 2, torch.zeros_like(ious)).sum(dim=1)
        std = torch.sqrt(squares / (count - 1).clamp(min=1))
        return mean + std

    def _inside(self, points: Tensor, boxes: Tensor) -> Tensor:
        """Tensor[N] bool: ``points[N, 2]`` strictly inside ``boxes[N, 5]`` (tested in the box frame)."""
        offset = points - boxes[:, :2]
        theta = boxes[:, 4]
        cos, sin = torch.cos(theta), torch.sin(theta)
        # (u, v) = (cos dx + sin dy, -sin dx + cos dy), each the sum of its two products in that order.
        rotation = torch.stack([cos, sin, -sin, cos], dim=1).view(-1, 2, 2)
        uv = (rotation * offset[:, None, :]).sum(dim=2)  # [N, 2]
        margin = (boxes[:, 2:4] / 2 - uv.abs()).amin(dim=1)  # min(w/2 - |u|, h/2 - |v|)
        return margin > self.min_inside


@dataclass
class _Layout:
    """What :meth:`RotatedATSSAssigner.assign_batch` derives from the anchors alone (K candidate columns)."""

    anchors: "weakref.ref[Tensor]"
    version: int
    num_per_level: list[int]
    level_centers: list[Tensor]  # per non-empty level, Tensor[P_l, 2] views of the anchors' centers
    column_offset: Tensor  # Tensor[K] int64, the first anchor index of each column's level
    column_levels: list[tuple[int, int]]  # (level, number of columns) of each non-empty level, in column order
    column_strides: tuple[tuple[float, ...], Tensor] | None = None
    image_offsets: dict[int, Tensor] = field(default_factory=dict)  # per batch size, Tensor[B, 1] ``b * P``
