"""Pixels of one ``rgfl split`` patch: a crop of the source, or for a rate other than 1 a
bicubic resample of just the source pixels the patch covers (the resized image is never built)."""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["cut_patch", "resample_region"]


def cut_patch(
    image: np.ndarray,
    window: np.ndarray,
    rate: float,
    resized: tuple[int, int],
    size: int,
    pad_value: tuple[int, int, int] | None,
) -> np.ndarray:
    """Pixels of ``window`` as a BGR array (a view when possible).

    Args:
        image: uint8 [H, W, 3] BGR source image (not resized).
        window: int [4] ``x1 y1 x2 y2`` in pixels of the image resized by ``rate``.
        resized: (width, height) of the resized image.
        size, pad_value: a patch smaller than ``size`` (image smaller than a window) is padded
            bottom/right with ``pad_value`` (B, G, R); None leaves it smaller.

    Returns:
        uint8 [h, w, 3] patch.
    """
    x1, y1 = int(window[0]), int(window[1])
    x2, y2 = min(int(window[2]), resized[0]), min(int(window[3]), resized[1])
    if rate == 1.0:
        patch = image[y1:y2, x1:x2]
    else:
        patch = resample_region(image, x1, y1, x2, y2, rate)
    height, width = patch.shape[:2]
    if pad_value is not None and (width < size or height < size):
        padded = np.empty((size, size, 3), dtype=np.uint8)
        padded[...] = np.asarray(pad_value, dtype=np.uint8)
        padded[:height, :width] = patch
        patch = padded
    return patch


def resample_region(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, rate: float) -> np.ndarray:
    """Pixels [y1:y2, x1:x2] of ``image`` resized by ``rate`` (bicubic, pixel-centre aligned like
    ``cv2.resize(fx=rate)``), computed from the source pixels they need only."""
    src_h, src_w = image.shape[:2]
    # Destination pixel u samples source (u + 0.5) / rate - 0.5; bicubic reads 2 more on each side.
    margin = 3
    sx1 = max(int(math.floor((x1 + 0.5) / rate - 0.5)) - margin, 0)
    sy1 = max(int(math.floor((y1 + 0.5) / rate - 0.5)) - margin, 0)
    sx2 = min(int(math.ceil((x2 - 0.5) / rate - 0.5)) + margin + 1, src_w)
    sy2 = min(int(math.ceil((y2 - 0.5) / rate - 0.5)) + margin + 1, src_h)
    source = image[sy1:sy2, sx1:sx2]
    # Forward map, source-crop pixel s -> destination-patch pixel: u = rate (s + s0 + 0.5) - 0.5 - x1.
    matrix = np.array(
        [
            [rate, 0.0, rate * (sx1 + 0.5) - 0.5 - x1],
            [0.0, rate, rate * (sy1 + 0.5) - 0.5 - y1],
        ]
    )
    return cv2.warpAffine(
        source, matrix, (x2 - x1, y2 - y1), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
