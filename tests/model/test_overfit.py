"""One-image overfit on CPU: both head variants must learn a synthetic scene and then detect it.

The scene is a 64 x 64 noisy gray image with four filled rotated rectangles of three colours (one
colour per class). ResNet-18 from random weights (nothing downloads), AdamW, 100 steps. The head
towers are 64 channels wide instead of 256 to keep the test within the CI budget (the head at 256
channels costs 16x more on CPU and learns the same scene); all losses, the assigner and the decoding
are the ones of the default model.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rgfl.model.detector import RotatedGFL
from rgfl.ops import box_iou_rotated, obb2poly
from rgfl.structures import Target

SIZE = 64
BOXES = torch.tensor(
    [
        [20.0, 20.0, 26.0, 12.0, 0.3],
        [46.0, 18.0, 22.0, 10.0, 1.9],
        [22.0, 46.0, 16.0, 16.0, 0.0],
        [46.0, 46.0, 30.0, 9.0, -0.5],
    ]
)
LABELS = torch.tensor([0, 1, 2, 0])
COLOURS = [(230, 40, 40), (40, 220, 40), (40, 40, 230)]


def _scene() -> torch.Tensor:
    rng = np.random.default_rng(0)
    image = rng.normal(110, 10, (SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
    for box, label in zip(BOXES, LABELS):
        corners = obb2poly(box[None])[0].view(4, 2).numpy()
        cv2.fillPoly(image, [np.round(corners).astype(np.int32)], COLOURS[int(label)])
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_one_image_overfit(head):
    torch.manual_seed(0)
    image = _scene()
    target = [Target(BOXES, LABELS)]
    model = RotatedGFL(3, head=head, depth=18, pretrained="none", feat_channels=64)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.0)
    history = []
    for _ in range(ITERATIONS):
        losses = model.compute_losses(image, target)
        total = sum(v for k, v in losses.items() if k.startswith("loss"))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())})
    first, last = history[0], history[-1]
    if head == "vanilla":
        assert first["total"] >= 5 * last["total"], (first, last)  # seen here: 2.56 -> 0.26
    else:
        # GFL's total starts artificially low (quality targets ~0 and box terms weighted by ~0.01
        # scores), and DFL cannot go below the entropy of its two-bin targets; the box fit itself,
        # 1 - mean IoU of the positives, must fall 5x, and the total must fall 5x from its peak
        # (reached after a few steps, once the quality targets have grown), by 4x: 100 AdamW steps
        # amplify rounding-level differences, and total peak / last measured 4.7 to 7.0 over the
        # seeds 0-3 of torch.manual_seed (and moved within that range when the towers were paired).
        assert 1 - first["pos_iou"] >= 5 * (1 - last["pos_iou"]), (first, last)
        assert max(h["total"] for h in history) >= 4 * last["total"], (first, last)

    model.eval()
    detections = model.predict(image)[0]
    ious = box_iou_rotated(BOXES, detections.boxes)  # [4, N]
    for index in range(len(BOXES)):
        same_class = detections.labels == LABELS[index]
        matches = (ious[index] >= 0.5) & same_class & (detections.scores >= 0.3)
        assert bool(matches.any()), (index, ious[index], detections.scores, detections.labels)


ITERATIONS = 100
