"""Optional dispatch of rotated IoU and NMS to mmcv's compiled kernels.

Opt in with ``backend="mmcv"`` or ``RGFL_GEOMETRY_BACKEND=mmcv``; rgfl never picks it by itself.
Known differences from rgfl's exact ops (reference notes section 8): mmcv's IoU is wrong for the
same rectangle given in another parametrisation (about 0.63 instead of 1) and can be off for
near-identical boxes; its CPU NMS suppresses at IoU >= threshold (rgfl: >) and orders tied scores
arbitrarily; its CPU NMS ignores labels, so class-aware NMS here loops over classes.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor


def _mmcv_ops() -> ModuleType:
    try:
        import mmcv.ops as ops  # type: ignore[import-not-found]

        ops.box_iou_rotated, ops.nms_rotated  # noqa: B018 - fails early when the compiled ops are missing
    except Exception as error:  # ImportError, or mmcv-lite without the compiled extension
        raise RuntimeError(
            "geometry backend 'mmcv' was requested (argument or RGFL_GEOMETRY_BACKEND) but mmcv.ops with "
            f"compiled ops is not importable ({error}); install the optional extra `pip install rgfl[mmcv]` "
            "with a full mmcv build, or use the default backend"
        ) from error
    return ops


def box_iou_rotated_mmcv(boxes1: Tensor, boxes2: Tensor, mode: str, aligned: bool) -> Tensor:
    """mmcv's rotated IoU; boxes [N, 5] / [M, 5] obb with rgfl's (clockwise on screen) angle."""
    ops = _mmcv_ops()
    return ops.box_iou_rotated(boxes1.float(), boxes2.float(), mode=mode, aligned=aligned, clockwise=True).to(boxes1.dtype)


def nms_rotated_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float, labels: Tensor | None = None) -> Tensor:
    """mmcv's rotated NMS; returns kept indices sorted by decreasing score."""
    ops = _mmcv_ops()
    if labels is None:
        _, keep = ops.nms_rotated(boxes.float(), scores.float(), iou_threshold, clockwise=True)
        return keep if keep is not None else torch.zeros(0, dtype=torch.long, device=boxes.device)
    kept = []
    for label in torch.unique(labels):
        index = torch.nonzero(labels == label).squeeze(1)
        _, keep = ops.nms_rotated(boxes[index].float(), scores[index].float(), iou_threshold, clockwise=True)
        if keep is not None:
            kept.append(index[keep])
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    keep = torch.cat(kept)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]
