"""Prior points/anchors and the two box codings of the rotated GFL head.

Shape legend: P prior points over all levels (level-major, then row-major y, x), N boxes, K bins.
Box format ``obb``: ``(cx, cy, w, h, theta)`` pixels/radians, le135 (``theta`` in ``[-pi/4, 3pi/4)``,
``w >= h``), see ``rgfl.geometry``.

Two codings, one per head variant:

* :class:`DistanceAngleCoder` (``gfl``): the four distances from the prior point to the sides of the
  box, measured in the box's own rotated frame, in units of the level stride, plus the box angle.
* :class:`DeltaXYWHACoder` (``vanilla``, reference notes 7.1): mmrotate's le135 "v2" delta coder
  relative to a square anchor, ``(dx, dy, dw, dh, dtheta)``.

Each ``decode`` is the exact inverse of its ``encode`` (tests check random boxes at all angles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Priors", "make_priors", "DistanceAngleCoder", "DeltaXYWHACoder", "regularize_le135"]

_HALF_PI = math.pi / 2


def _norm_le135(theta: Tensor) -> Tensor:
    # Same rule as rgfl.geometry.norm_angle(theta, "le135"); kept local so the coder has no
    # import-time dependency and stays differentiable (floor-mod, never fmod).
    return torch.remainder(theta + math.pi / 4, math.pi) - math.pi / 4


def regularize_le135(boxes: Tensor) -> Tensor:
    """Return ``boxes[..., 5]`` with ``w >= h`` and ``theta`` in ``[-pi/4, 3pi/4)`` (same rectangle)."""
    cx, cy, w, h, theta = boxes.unbind(-1)
    swap = w < h
    w, h = torch.where(swap, h, w), torch.where(swap, w, h)
    theta = _norm_le135(torch.where(swap, theta + _HALF_PI, theta))
    return torch.stack([cx, cy, w, h, theta], dim=-1)


@dataclass
class Priors:
    """Prior points of all FPN levels of one input size (shared by every image of the batch).

    Attributes:
        centers: Tensor[P, 2] ``(x, y)`` pixel coordinates ``(j + offset) * stride`` of each feature
            cell (``offset`` 0.5: the cell centre, rgfl's default; 0: the reference's mmdet anchors).
        strides: Tensor[P] stride of the level each point belongs to.
        level_sizes: ``[(H_l, W_l)]`` per level; ``sum(H_l * W_l) == P``.
        anchor_side: side of the one square anchor per point (``octave_base_scale * stride``), Tensor[P].
    """

    centers: Tensor
    strides: Tensor
    level_sizes: list[tuple[int, int]]
    anchor_side: Tensor
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_per_level(self) -> list[int]:
        return [h * w for h, w in self.level_sizes]

    def derived(self, key: object, build: Callable[[], Tensor]) -> Tensor:
        """``build()``, made once per ``Priors`` and kept under ``key``: tensors that depend only on
        the priors (anchors, batch repeats, broadcast views). The detector keeps one ``Priors`` per
        input size and device, so a training step reuses them instead of rebuilding them (each
        rebuild is operator launches on a GPU). Callers must not modify the returned tensor."""
        value = self._derived.get(key)
        if value is None:
            value = self._derived[key] = build()
        return value

    def anchors(self) -> Tensor:
        """Tensor[P, 5] square, axis-aligned anchors ``(cx, cy, s, s, 0)`` (built once, shared: do not modify)."""

        def build() -> Tensor:
            side = self.anchor_side
            return torch.stack([self.centers[:, 0], self.centers[:, 1], side, side, torch.zeros_like(side)], dim=1)

        return self.derived("anchors", build)


def make_priors(
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    octave_base_scale: float,
    device: torch.device | str = "cpu",
    offset: float = 0.5,
) -> Priors:
    """Build the prior points of every level at ``(j + offset) * stride``.

    Args:
        level_sizes: ``[(H_l, W_l)]`` feature map sizes, one per level.
        strides: stride of each level in input pixels.
        octave_base_scale: anchor side in strides (one square anchor per point).
        offset: 0.5 puts each point at the center of its feature cell (default); 0 at the
            cell's top-left pixel, as mmdet's anchor generator (``center_offset=0``) and so the
            reference recipe do.
    """
    if len(level_sizes) != len(strides):
        raise ValueError(f"got {len(level_sizes)} feature levels but {len(strides)} strides")
    centers, point_strides = [], []
    for (height, width), stride in zip(level_sizes, strides):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + offset) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + offset) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centers.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        point_strides.append(torch.full((height * width,), float(stride), device=device))
    strides_t = torch.cat(point_strides)
    return Priors(torch.cat(centers), strides_t, list(level_sizes), strides_t * octave_base_scale)


class DistanceAngleCoder:
    """``gfl`` coding: side distances in the box frame (stride units) plus the box angle.

    For a box ``(cx, cy, w, h, theta)`` and a prior point ``p``, let ``(u, v)`` be ``p - (cx, cy)``
    rotated by ``-theta`` (the point in the box frame, ``u`` along the ``w`` side). Then
    ``left = w/2 + u``, ``top = h/2 + v``, ``right = w/2 - u``, ``bottom = h/2 - v``, all divided
    by the stride. Decoding: ``w = left + right``, ``h = top + bottom``, and the center is the prior
    moved by ``((right - left)/2, (bottom - top)/2)`` rotated by ``theta``.

    The angle is predicted as ``theta = (sigmoid(a) - 0.25) * pi`` (``sigmoid``, the default,
    squashed into the le135 range ``(-pi/4, 3pi/4)``) or ``theta = pi/4 * (1 + a)`` (``linear``,
    any angle; boxes are regularized to le135 after decoding); both give pi/4 and the same slope
    at ``a = 0``. See docs/model.md for the trade-off.
    """

    ANGLE_CODINGS = ("sigmoid", "linear")

    @staticmethod
    def angle_from_logit(logit: Tensor, coding: str = "sigmoid") -> Tensor:
        if coding == "linear":
            return (logit + 1.0) * (math.pi / 4)
        if coding == "sigmoid":
            return (torch.sigmoid(logit) - 0.25) * math.pi
        raise ValueError(f"angle coding must be one of {DistanceAngleCoder.ANGLE_CODINGS}, got {coding!r}")

    @staticmethod
    def encode(points: Tensor, strides: Tensor, boxes: Tensor) -> Tensor:
        """Distances ``Tensor[N, 4]`` (left, top, right, bottom) in strides.

        Args:
            points: Tensor[N, 2] prior centers, pixels.
            strides: Tensor[N] stride per point.
            boxes: Tensor[N, 5] obb (any angle representation; the frame is the box's own).
        """
        return DistanceAngleCoder.encode_parts(points, strides[:, None], boxes[:, :2], boxes[:, 2:4], boxes[:, 4])

    @staticmethod
    def encode_parts(points: Tensor, strides: Tensor, center: Tensor, size: Tensor, theta: Tensor) -> Tensor:
        """:meth:`encode` of a box given as ``center[N, 2]``, ``size[N, 2]`` (w, h), ``theta[N]``, with
        ``strides[N, 1]``: the same arithmetic, element by element, in fewer tensor operations."""
        offset = points - center  # [N, 2]
        cos, sin = torch.cos(theta), torch.sin(theta)
        # Rows (cos, sin) and (-sin, cos): u = cos * dx + sin * dy, v = -sin * dx + cos * dy, each
        # the sum of its two products in that order (as written out, to the last bit).
        rotation = torch.stack([cos, sin, -sin, cos], dim=1).view(-1, 2, 2)
        uv = (rotation * offset[:, None, :]).sum(dim=2)  # [N, 2]
        half = size / 2  # (w/2, h/2)
        distances = torch.cat([half + uv, half - uv], dim=1)  # left, top, right, bottom
        return distances / strides

    @staticmethod
    def decode(points: Tensor, strides: Tensor, distances: Tensor, theta: Tensor) -> Tensor:
        """Boxes ``Tensor[N, 5]`` from distances ``Tensor[N, 4]`` (strides) and angles ``Tensor[N]``
        (any leading shape that broadcasts, e.g. ``[B, P]`` with points ``[1, P, 2]`` and strides ``[1, P]``).

        The angle is returned as given (no le135 re-regularization, so that encode/decode are exact
        inverses and the IoU loss sees the raw prediction); use :func:`regularize_le135` for output.
        """
        distances = distances * strides[..., None]
        near, far = distances.unflatten(-1, (2, 2)).unbind(-2)  # (left, top), (right, bottom)
        half = (far - near) / 2  # (du, dv)
        size = near + far  # (left + right, top + bottom)
        cos, sin = torch.cos(theta), torch.sin(theta)
        # Row k of ``moves`` is half[k] times row k of the rotation, (cos, sin) for du and
        # (-sin, cos) for dv: cx = px + cos du - sin dv, cy = py + sin du + cos dv, added in that
        # order (as written out, to the last bit).
        rotation = torch.stack([cos, sin, -sin, cos], dim=-1).unflatten(-1, (2, 2))
        by_du, by_dv = (rotation * half[..., None]).unbind(-2)
        center = points + by_du + by_dv
        return torch.cat([center, size, theta[..., None]], dim=-1)


class DeltaXYWHACoder:
    """``vanilla`` coding: mmrotate's le135 delta coder "v2" (means 0, stds 1; reference notes 7.1).

    With anchor ``(xa, ya, wa, ha, ta)`` and box ``(x, y, w, h, t)``:
    ``dx = (cos ta * (x - xa) + sin ta * (y - ya)) / wa``, ``dy = (-sin ta * (x - xa) + cos ta * (y - ya)) / ha``,
    ``dw = log(w / wa)``, ``dh = log(h / ha)``, ``dt = norm_le135(t - ta) / pi`` (in ``[-0.25, 0.75)``).
    Decoding clamps ``dw, dh`` to ``|log(16 / 1000)|`` and wraps the angle back into le135; centers
    are not clamped to the image (as in the reference).
    """

    max_ratio = abs(math.log(16.0 / 1000.0))

    @staticmethod
    def encode(anchors: Tensor, boxes: Tensor) -> Tensor:
        """Deltas ``Tensor[N, 5]`` of ``boxes[N, 5]`` relative to ``anchors[N, 5]``."""
        dxy = boxes[:, :2] - anchors[:, :2]
        cos, sin = torch.cos(anchors[:, 4]), torch.sin(anchors[:, 4])
        dx = (cos * dxy[:, 0] + sin * dxy[:, 1]) / anchors[:, 2]
        dy = (-sin * dxy[:, 0] + cos * dxy[:, 1]) / anchors[:, 3]
        dw = torch.log(boxes[:, 2] / anchors[:, 2])
        dh = torch.log(boxes[:, 3] / anchors[:, 3])
        dt = _norm_le135(boxes[:, 4] - anchors[:, 4]) / math.pi
        return torch.stack([dx, dy, dw, dh, dt], dim=1)

    @classmethod
    def decode(cls, anchors: Tensor, deltas: Tensor, rotation: Tensor | None = None) -> Tensor:
        """Boxes ``Tensor[N, 5]`` (le135 angle) from ``deltas[N, 5]`` relative to ``anchors[N, 5]``
        (or any leading shapes that broadcast). ``rotation``: :meth:`anchor_rotation` of the anchors
        where the caller keeps it (fixed anchors), else computed here."""
        if rotation is None:
            rotation = cls.anchor_rotation(anchors)
        anchor_wh = anchors[..., 2:4]
        # (wa dx, ha dy) times the rows (cos, sin) and (-sin, cos) of the anchor's rotation:
        # x = xa + wa dx cos - ha dy sin, y = ya + wa dx sin + ha dy cos, added in that order.
        scaled = anchor_wh * deltas[..., :2]
        by_dx, by_dy = (rotation * scaled[..., None]).unbind(-2)
        center = anchors[..., :2] + by_dx + by_dy
        size = anchor_wh * torch.exp(deltas[..., 2:4].clamp(-cls.max_ratio, cls.max_ratio))
        theta = _norm_le135(anchors[..., 4] + math.pi * deltas[..., 4])
        return torch.cat([center, size, theta[..., None]], dim=-1)

    @staticmethod
    def anchor_rotation(anchors: Tensor) -> Tensor:
        """Tensor[..., 2, 2] rows ``(cos ta, sin ta)`` and ``(-sin ta, cos ta)`` of ``anchors[..., 5]``."""
        ta = anchors[..., 4]
        cos, sin = torch.cos(ta), torch.sin(ta)
        return torch.stack([cos, sin, -sin, cos], dim=-1).unflatten(-1, (2, 2))
