"""Detection on full-size images of any size: sliding windows cut in memory, merged with rotated NMS.

``rgfl predict`` does in one pass what ``rgfl split`` + inference + ``rgfl merge-submit`` do
through files: for each rate the image is resized, the same window grid as ``rgfl split`` is laid
over it (so a model sees the patches it was trained on, padded the same way), windows are cut one
batch at a time (nothing is written to disk, and at most ``batch_size`` windows exist at once), the
detector runs on each batch, boxes are mapped back to the original image and all windows'
detections are merged with class-wise rotated NMS (the same rule as the merge of
``rgfl merge-submit``: suppress when IoU is strictly greater than ``nms_iou``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rgfl.engine.inference import SIZE_DIVISOR, autocast_context, resize_to_input, unscale_boxes
from rgfl.structures import Detections

__all__ = ["SlidingWindowSettings", "Window", "plan_windows", "predict_image"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlidingWindowSettings:
    """Windows and merge settings; the defaults are the standard single-scale DOTA protocol.

    Attributes:
        size: window side in pixels (of the resized image).
        overlap: pixels shared by neighbouring windows (step = size - overlap).
        rates: resize factors; each one is a full pass over the image (multi-scale testing).
        pad_value: RGB fill for windows that stick out of the image, as ``rgfl split`` pads.
        pad: pad windows at the border to ``size`` (as ``rgfl split`` does by default).
        img_rate_thr: drop windows with less than this fraction of their area on the image.
        nms_iou: class-wise rotated NMS threshold of the merge (suppress IoU > nms_iou).
        max_per_img: detections kept per image after the merge (highest scores); 0 keeps all.
        batch_size: windows per forward pass.
        amp: autocast on CUDA.
        input_size: resize each window so its longer side is this before the detector sees it
            (the ``data.input_size`` the model was trained with); None: windows as cut.
    """

    size: int = 1024
    overlap: int = 200
    rates: tuple[float, ...] = (1.0,)
    pad_value: tuple[int, int, int] = (124, 116, 104)
    pad: bool = True
    img_rate_thr: float = 0.6
    nms_iou: float = 0.1
    max_per_img: int = 0
    batch_size: int = 4
    amp: bool = False
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.size < SIZE_DIVISOR:
            raise ValueError(f"window size must be at least {SIZE_DIVISOR}, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"overlap must satisfy 0 <= overlap < size ({self.size}), got {self.overlap}")
        if not self.rates or any(rate <= 0 for rate in self.rates):
            raise ValueError(f"rates must be positive, got {self.rates}")


@dataclass(frozen=True)
class Window:
    """A window ``[x, x + size) x [y, y + size)`` of the image resized by ``rate``."""

    x: int
    y: int
    size: int
    rate: float


def plan_windows(height: int, width: int, settings: SlidingWindowSettings) -> list[Window]:
    """All windows over an image of ``height x width`` original pixels, rate by rate.

    The grid of ``rgfl split`` (:func:`rgfl.dota.split.sliding_windows`: last window snapped to
    the border, windows mostly off the image dropped by ``img_rate_thr``), in its x-major order.
    """
    from rgfl.dota.split import resized_size, sliding_windows

    windows = []
    step = settings.size - settings.overlap
    for rate in settings.rates:
        scaled_w, scaled_h = resized_size(width, height, rate)
        for x1, y1, _, _ in sliding_windows(scaled_w, scaled_h, settings.size, step, settings.img_rate_thr).tolist():
            windows.append(Window(int(x1), int(y1), settings.size, float(rate)))
    return windows


def _cut(image: np.ndarray, window: Window, settings: SlidingWindowSettings) -> tuple[Tensor, tuple[int, int], float]:
    """Cut a window of the image resized by ``window.rate``, pad it to ``size`` when it sticks out,
    and resize it to the model input.

    For rates other than 1 only the window's pixels are resampled, from the source pixels they
    need (the same bicubic resampling as ``rgfl split``), so no resized copy of a huge image is
    ever made. Returns ``uint8 [3, S', S']``, the valid (h, w) in input pixels and the scale
    input / window.
    """
    from rgfl.dota.split_grid import resized_size
    from rgfl.dota.split_pixels import resample_region

    height, width = image.shape[:2]
    scaled_w, scaled_h = resized_size(width, height, window.rate)
    x2, y2 = min(window.x + window.size, scaled_w), min(window.y + window.size, scaled_h)
    if window.rate == 1.0:
        crop = image[window.y : y2, window.x : x2]
    else:
        crop = resample_region(image, window.x, window.y, x2, y2, window.rate)
    valid = (int(crop.shape[0]), int(crop.shape[1]))
    if settings.pad and valid != (window.size, window.size):
        padded = np.empty((window.size, window.size, 3), dtype=np.uint8)
        padded[:] = np.asarray(settings.pad_value, dtype=np.uint8)
        padded[: valid[0], : valid[1]] = crop
        crop = padded
    crop, scale = resize_to_input(crop, settings.input_size)
    if scale != 1.0:
        valid = (min(crop.shape[0], int(round(valid[0] * scale))), min(crop.shape[1], int(round(valid[1] * scale))))
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1), valid, scale


def _batches(
    image: np.ndarray, windows: Sequence[Window], settings: SlidingWindowSettings
) -> Iterator[tuple[list[Window], Tensor, list[tuple[int, int]], list[float]]]:
    """Cut windows batch by batch (never more than ``batch_size`` windows in memory)."""
    for start in range(0, len(windows), settings.batch_size):
        batch = list(windows[start : start + settings.batch_size])
        cuts = [_cut(image, w, settings) for w in batch]
        height = -(-max(c.shape[1] for c, _, _ in cuts) // SIZE_DIVISOR) * SIZE_DIVISOR
        width = -(-max(c.shape[2] for c, _, _ in cuts) // SIZE_DIVISOR) * SIZE_DIVISOR
        images = torch.zeros((len(cuts), 3, height, width), dtype=torch.uint8)
        for k, (cut, _, _) in enumerate(cuts):
            images[k, :, : cut.shape[1], : cut.shape[2]] = cut
        yield batch, images, [valid for _, valid, _ in cuts], [scale for _, _, scale in cuts]


def window_to_image(boxes: Tensor, window: Window) -> Tensor:
    """Map obb ``[N, 5]`` from window pixels to original-image pixels (shift, then undo the rate)."""
    mapped = boxes.clone()
    mapped[:, 0] += window.x
    mapped[:, 1] += window.y
    if window.rate != 1.0:
        mapped[:, :4] /= window.rate
    return mapped


@torch.inference_mode()
def predict_image(
    detector: torch.nn.Module,
    image: np.ndarray,
    settings: SlidingWindowSettings,
    device: str | torch.device = "cpu",
    image_id: str = "",
    on_windows: Callable[[int], None] | None = None,
) -> Detections:
    """Detect objects in a full-size image.

    Args:
        detector: module with ``predict(images uint8 [B,3,H,W], image_sizes) -> list[Detections]``
            (boxes obb le135 in window pixels).
        image: ``uint8 [H, W, 3]`` RGB, any size.
        on_windows: progress callback, called with the number of windows just processed.

    Returns:
        Detections on CPU with ``boxes`` obb ``[N, 5]`` (float32, original-image pixels),
        ``scores [N]`` sorted decreasing, ``labels [N]``; at most ``settings.max_per_img``.
    """
    from rgfl.dota.merge import merge_image_detections
    from rgfl.ops import obb2poly

    device = torch.device(device)
    detector.eval()
    height, width = image.shape[:2]
    windows = plan_windows(height, width, settings)
    all_boxes, all_scores, all_labels = [], [], []
    for batch, images, valid, scales in _batches(image, windows, settings):
        with autocast_context(device, settings.amp):
            results = detector.predict(images.to(device), image_sizes=valid)
        for window, result, scale in zip(batch, results, scales):
            if len(result.scores):
                all_boxes.append(window_to_image(unscale_boxes(result.boxes.detach().float().cpu(), scale), window))
                all_scores.append(result.scores.detach().float().cpu())
                all_labels.append(result.labels.detach().cpu().long())
        if on_windows is not None:
            on_windows(len(batch))
    if not all_boxes:
        return Detections(torch.zeros((0, 5)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.long), image_id)
    boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    # The merge rule of `rgfl merge-submit` (class-wise rotated NMS, IoU > nms_iou suppressed, cap).
    keep = merge_image_detections(
        labels.numpy(), scores.double().numpy(), obb2poly(boxes.double()).numpy(), settings.nms_iou, 0.0, settings.max_per_img
    )
    keep = torch.as_tensor(keep, dtype=torch.long)
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    logger.info("%s: %d windows, %d detections before merge, %d after", image_id, len(windows), len(scores), len(keep))
    return Detections(boxes[keep], scores[keep], labels[keep], image_id)
