"""Data passed between the dataset, the detector, the losses and inference.

Shape legend used in docstrings across rgfl: B images, N boxes, M ground-truth boxes, P prior
points over all levels (sum of H_l * W_l), C classes, K = reg_max + 1 bins.

Box format ``obb``: ``(cx, cy, w, h, theta)`` in pixels and radians, ``theta`` in the le135 range
``[-pi/4, 3pi/4)`` unless stated otherwise (see ``rgfl.geometry.boxes``). Polygons ``poly``:
``(x1, y1, ..., x4, y4)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Target", "Detections"]


@dataclass
class Target:
    """Ground truth of one image.

    Attributes:
        boxes: Tensor[M, 5] obb, le135, in the pixels of the (possibly resized) input image.
        labels: Tensor[M] int64 class indices in ``[0, C)``.
        ignore: Tensor[M] bool; ignored objects (e.g. ``difficult``) are neither positive nor
            negative during assignment.
        image_id: the patch or image name, for bookkeeping.
        scale: factor from original patch pixels to input pixels (``input = original * scale``).
    """

    boxes: Tensor
    labels: Tensor
    ignore: Tensor | None = None
    image_id: str = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.ignore is None:
            self.ignore = torch.zeros(self.labels.shape[0], dtype=torch.bool, device=self.labels.device)

    def to(self, device: torch.device | str) -> "Target":
        assert self.ignore is not None
        return Target(self.boxes.to(device), self.labels.to(device), self.ignore.to(device), self.image_id, self.scale)


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: Tensor[N, 5] obb, le135, in input-image pixels.
        scores: Tensor[N] in ``[0, 1]``, sorted in decreasing order.
        labels: Tensor[N] int64 class indices.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image_id: str = ""
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), self.image_id, self.extras)
