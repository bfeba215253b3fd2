"""Window grid of ``rgfl split`` (reference notes 3.1 and 3.3).

``step = size - overlap``; along a side of length L there is ``1`` window if ``L <= size``, else
``1 + ceil((L - size) / step)``, starting at ``0, step, 2 step, ...``, the last one moved back to
``L - size`` when it would overrun. Windows are the product of the x and y starts, x-major.
Windows with less than ``img_rate_thr`` of their area on the image are dropped, unless none
reaches it, in which case those within 0.01 of the best are kept. For a rate other than 1 the grid
runs on the image resized by that rate (:func:`resized_size`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_starts", "sliding_windows", "resized_size"]


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of the windows along one side (reference notes 3.1)."""
    if length <= size:
        return [0]
    count = 1 + -(-(length - size) // step)  # 1 + ceil((length - size) / step), in integers
    starts = [i * step for i in range(count)]
    if starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def sliding_windows(width: int, height: int, size: int, step: int, img_rate_thr: float = 0.6) -> np.ndarray:
    """Windows on a ``width`` x ``height`` image.

    Returns:
        int64 [M, 4] windows ``x1 y1 x2 y2`` (``x2 = x1 + size``; may extend past the image when it
        is smaller than a window), x-major order (all y for the first x, then the next x).
    """
    xs = window_starts(width, size, step)
    ys = window_starts(height, size, step)
    windows = np.array([(x, y, x + size, y + size) for x in xs for y in ys], dtype=np.int64)
    on_image_w = np.minimum(windows[:, 2], width) - windows[:, 0]
    on_image_h = np.minimum(windows[:, 3], height) - windows[:, 1]
    rates = (on_image_w * on_image_h) / float(size * size)
    keep = rates > img_rate_thr
    if not keep.any():
        keep = np.abs(rates - rates.max()) < 0.01
    return windows[keep]


def resized_size(width: int, height: int, rate: float) -> tuple[int, int]:
    """Size of the image resized by ``rate`` (rounded like ``cv2.resize(fx=rate, fy=rate)``)."""
    if rate == 1.0:
        return width, height
    return max(int(round(width * rate)), 1), max(int(round(height * rate)), 1)
