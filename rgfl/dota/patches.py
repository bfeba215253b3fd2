"""Patch names: the only place that encodes and decodes where a patch came from.

A patch cut by ``rgfl split`` is named::

    <stem>__<size>__<x>___<y>            rate 1 (same as mmrotate and ultralytics)
    <stem>__<size>__<x>___<y>__r<rate>   any other rate, e.g. P0001__1024__0___512__r0.5

``size`` is the window side in pixels of the image the window was cut from, and ``x``, ``y`` the
window's top-left corner in that image. For a rate other than 1 the image was first resized by
``rate``, so a point ``p`` of the patch lies at ``(p + (x, y)) / rate`` in the original image.

:func:`parse_patch_name` also reads the DOTA development kit's names ``<stem>__<rate>__<x>___<y>``
(e.g. ``P0001__1__0___0``, ``P0001__0.5__0___512``): the field after the stem is taken as a rate
when it contains a dot or is below 16 (no real window is that small), as a window size otherwise.
Stems may themselves contain ``__``; the name is parsed from the right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rgfl.errors import InputError

__all__ = ["PatchOrigin", "patch_name", "parse_patch_name", "format_rate"]

_PATCH_RE = re.compile(r"^(?P<stem>.+)__(?P<field>[0-9.]+)__(?P<x>\d+)___(?P<y>\d+)(?:__r(?P<rate>[0-9.]+))?$")
_MIN_WINDOW = 16


@dataclass(frozen=True)
class PatchOrigin:
    """Where a patch lies in its source image.

    Attributes:
        stem: name of the source image without extension.
        x, y: top-left corner of the window in the resized image (pixels).
        rate: resize factor applied to the source image before cutting.
        size: window side in resized pixels, or ``None`` when the name does not carry it.
    """

    stem: str
    x: int
    y: int
    rate: float = 1.0
    size: int | None = None

    def to_source(self, px: float, py: float) -> tuple[float, float]:
        """Map a point from patch pixels to source-image pixels."""
        return (px + self.x) / self.rate, (py + self.y) / self.rate


def format_rate(rate: float) -> str:
    """Shortest exact text for a rate: 1.0 -> '1', 0.5 -> '0.5', 1.5 -> '1.5'."""
    rate = float(rate)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if rate.is_integer():
        return str(int(rate))
    return repr(rate)


def patch_name(stem: str, x: int, y: int, size: int, rate: float = 1.0) -> str:
    """Name of the patch whose window starts at (x, y) in the image resized by ``rate``."""
    name = f"{stem}__{int(size)}__{int(x)}___{int(y)}"
    if float(rate) != 1.0:
        name += f"__r{format_rate(rate)}"
    return name


def parse_patch_name(name: str) -> PatchOrigin:
    """Inverse of :func:`patch_name`; also accepts DOTA devkit names. Raises InputError."""
    match = _PATCH_RE.match(name)
    if match is None:
        raise InputError(
            f"{name!r} is not a patch name: expected <image>__<size>__<x>___<y> as written by `rgfl split`"
        )
    field_text = match["field"]
    x, y = int(match["x"]), int(match["y"])
    if match["rate"] is not None:
        return PatchOrigin(match["stem"], x, y, float(match["rate"]), int(float(field_text)))
    value = float(field_text)
    if "." in field_text or value < _MIN_WINDOW:
        if value <= 0:
            raise InputError(f"{name!r}: rate must be positive")
        return PatchOrigin(match["stem"], x, y, value, None)
    return PatchOrigin(match["stem"], x, y, 1.0, int(value))
