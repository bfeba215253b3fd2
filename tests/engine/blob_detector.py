"""A tiny exact detector for white rotated rectangles on a dark background, for inference tests.

It satisfies the detector contract (``predict(images uint8 [B,3,H,W], image_sizes) ->
list[Detections]``) with classical image processing, so sliding-window and streaming tests check
the geometry of windows, offsets, rates and merging against known objects without training a
network. Components that touch the border of the valid area are cut by the window and are not
reported (a trained detector would give them low scores or partial boxes; the merge must still
find the whole object in another window).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from rgfl.structures import Detections


class BlobDetector(torch.nn.Module):
    def __init__(self, label_from_green: bool = True):
        super().__init__()
        self.label_from_green = label_from_green
        self.calls = 0

    def predict(self, images: torch.Tensor, image_sizes=None) -> list[Detections]:
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.calls += 1
        results = []
        for k in range(images.shape[0]):
            height, width = image_sizes[k] if image_sizes is not None else images.shape[-2:]
            array = images[k, :, :height, :width].permute(1, 2, 0).cpu().numpy()
            mask = (array[..., 0] > 128).astype(np.uint8)
            count, components, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            boxes, scores, labels = [], [], []
            for c in range(1, count):
                x, y, w, h, area = stats[c]
                if x == 0 or y == 0 or x + w >= width or y + h >= height or area < 20:
                    continue
                ys, xs = np.nonzero(components == c)
                (cx, cy), (bw, bh), angle = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
                # pixel centres span one pixel less than the painted area
                boxes.append([cx, cy, bw + 1, bh + 1, math.radians(angle)])
                scores.append(0.5 + 0.5 * min(1.0, area / 5000.0))
                green = int(np.median(array[..., 1][components == c]))
                labels.append(green // 64 if self.label_from_green else 0)
            order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
            results.append(
                Detections(
                    torch.tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 5)[order]),
                    torch.tensor(np.asarray(scores, dtype=np.float32)[order]),
                    torch.tensor(np.asarray(labels, dtype=np.int64)[order]),
                )
            )
        return results


def paint_rectangles(height: int, width: int, boxes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB, dark background, rectangle i white-red with green = 64 * label + 32."""
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    for (cx, cy, w, h, theta), label in zip(boxes, labels):
        corners = cv2.boxPoints(((cx, cy), (w, h), math.degrees(theta)))
        cv2.fillPoly(image, [np.round(corners).astype(np.int32)], (255, 64 * int(label) + 32, 40))
    return image


def random_scene(rng: np.random.Generator, height: int, width: int, count: int, margin: int = 60):
    """Non-overlapping rectangles (sides 20..150) away from the image border; obb [N, 5], labels [N]."""
    boxes, labels = [], []
    tries = 0
    while len(boxes) < count and tries < count * 200:
        tries += 1
        w, h = rng.uniform(20, 150), rng.uniform(20, 80)
        radius = math.hypot(w, h) / 2
        cx, cy = rng.uniform(margin + radius, width - margin - radius), rng.uniform(margin + radius, height - margin - radius)
        if any(math.hypot(cx - b[0], cy - b[1]) < radius + math.hypot(b[2], b[3]) / 2 + 6 for b in boxes):
            continue
        boxes.append([cx, cy, w, h, rng.uniform(0, math.pi)])
        labels.append(int(rng.integers(0, 4)))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 5), np.asarray(labels, dtype=np.int64)


def polygon_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of polygons [N, 8] x [M, 8] with shapely (an independent check of our geometry)."""
    from shapely.geometry import Polygon

    pa = [Polygon(p.reshape(4, 2)) for p in a]
    pb = [Polygon(p.reshape(4, 2)) for p in b]
    out = np.zeros((len(pa), len(pb)))
    for i, p in enumerate(pa):
        for j, q in enumerate(pb):
            inter = p.intersection(q).area
            out[i, j] = inter / max(p.area + q.area - inter, 1e-9)
    return out


def obb_to_polygons(boxes: np.ndarray) -> np.ndarray:
    return np.stack([cv2.boxPoints(((b[0], b[1]), (b[2], b[3]), math.degrees(b[4]))).reshape(8) for b in boxes]) if len(boxes) else np.zeros((0, 8))
