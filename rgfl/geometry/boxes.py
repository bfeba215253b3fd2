"""The rotated-box convention of rgfl, and conversions between boxes and polygons.

This module is the one owner of the box convention; everything else in rgfl refers here.

Box ``obb``: ``(cx, cy, w, h, theta)`` in pixels and radians, stored in the last dimension of a
tensor ``[..., 5]``. The image frame has x to the right and y downward. The corners are the local
points ``(+-w/2, +-h/2)`` rotated by ``R(theta) = [[cos, -sin], [sin, cos]]`` and shifted by the
center, so the ``w`` side runs along ``(cos theta, sin theta)``; with y pointing down a positive
``theta`` turns the box clockwise on screen (mmcv's default). Example, ``(0, 0, 4, 2, pi/2)``::

    theta = 0                     theta = pi/2 (w side now points down, +y)
    p4 (-2, 1) ---- p3 (2, 1)         p2 (1, 2) . p3 (-1, 2)
     |                  |              |          |
    p1 (-2,-1) ---- p2 (2,-1)         p1 (1,-2) . p4 (-1,-2)

A rectangle has many parametrisations: ``theta + k*pi``, and ``(h, w, theta + pi/2)``. Every op in
``rgfl.geometry`` accepts any real ``theta`` and any of these; a *version* only picks one
representative (:func:`regularize`):

- ``le135`` (rgfl default): ``w >= h``, ``theta`` in ``[-pi/4, 3pi/4)``.
- ``le90``: ``w >= h``, ``theta`` in ``[-pi/2, pi/2)``.
- ``oc`` (mmrotate 0.x): ``theta`` in ``(0, pi/2]``, ``w`` is the side along ``theta`` and is not
  necessarily the longer one.

Squares (``w == h`` up to a few float ulps) have two representatives in le90/le135; rgfl picks the
one with ``theta`` in ``[-pi/4, pi/4)`` so an axis-aligned square always has ``theta == 0``
(mmrotate 0.x gives ``pi/2`` there, 1.x gives ``0`` or ``pi/2`` depending on OpenCV).

Polygon ``poly``: ``(x1, y1, x2, y2, x3, y3, x4, y4)`` in ``[..., 8]``. :func:`obb2poly` emits the
corners ``(-w/2,-h/2), (w/2,-h/2), (w/2,h/2), (-w/2,h/2)`` in the box frame (mmrotate 0.x order).
:func:`poly2obb` ignores vertex order: it returns the minimum-area rectangle around the 4 points.
:func:`poly2obb_edges` is the reference recipe's rule instead (mmrotate 0.x ``poly2obb_np`` le135, the
fork's ``v2``): it trusts the vertex order and reads the box off the first two edges.

All functions accept torch tensors (any device, float32/float64) or numpy arrays (computed in torch
on the CPU and returned as numpy of the same dtype).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["ANGLE_VERSIONS", "norm_angle", "regularize", "poly2obb", "poly2obb_edges", "quad_edge_lengths", "obb2poly", "obb2hbb"]

ANGLE_VERSIONS = ("oc", "le90", "le135")

# Relative tolerance (in machine epsilons) under which w and h count as equal (a square).
_SQUARE_ULPS = 16.0


def _check_version(version: str) -> None:
    if version not in ANGLE_VERSIONS:
        raise ValueError(f"unknown angle version {version!r}; expected one of {', '.join(ANGLE_VERSIONS)}")


def _as_float_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x if x.is_floating_point() else x.double()
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(array))


def _numpy_compatible(function: Callable[..., Tensor]) -> Callable[..., Any]:
    """Let a torch function take numpy arrays/lists and give back numpy of the input dtype."""

    def wrapper(x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, Tensor):
            return function(x, *args, **kwargs)
        result = function(_as_float_tensor(x), *args, **kwargs)
        if isinstance(x, (float, int)):
            return float(result)
        return result.numpy()

    wrapper.__name__ = function.__name__
    wrapper.__qualname__ = function.__qualname__
    wrapper.__doc__ = function.__doc__
    return wrapper


def _wrap(theta: Tensor, low: float) -> Tensor:
    """``theta`` into ``[low, low + pi)`` by floor-mod, robust to rounding at both ends."""
    out = torch.remainder(theta - low, math.pi) + low
    # remainder(-tiny, pi) rounds to pi, and (pi - ulp) + low can round up to low + pi: fold back.
    out = torch.where(out >= low + math.pi, out - math.pi, out)
    return torch.where(out < low, torch.full_like(out, low), out)


@_numpy_compatible
def norm_angle(theta: Tensor, version: str = "le135") -> Tensor:
    """Normalize angles (radians) into the range of ``version`` by floor-mod (period pi).

    ``le135`` -> ``[-pi/4, 3pi/4)``, ``le90`` -> ``[-pi/2, pi/2)``. ``oc`` returns ``theta``
    unchanged (as mmrotate 0.x): its range depends on swapping ``w`` and ``h``, so use
    :func:`regularize` for whole boxes. A Python float gives back a Python float.
    """
    _check_version(version)
    if version == "oc":
        return theta.clone()
    low = -math.pi / 4 if version == "le135" else -math.pi / 2
    return _wrap(theta, low)


@_numpy_compatible
def regularize(boxes: Tensor, version: str = "le135") -> Tensor:
    """Pick the representative of each rectangle that ``version`` prescribes.

    Args:
        boxes: Tensor[..., 5] obb with any real theta and ``w, h >= 0``.
        version: ``le135``, ``le90`` or ``oc`` (see the module docstring).

    Returns:
        Tensor[..., 5] describing the same rectangles. NaN rows stay NaN.
    """
    _check_version(version)
    cx, cy, w, h, theta = boxes.unbind(-1)
    if version == "oc":
        t = _wrap(theta, 0.0)  # [0, pi)
        swap = t > math.pi / 2
        t = torch.where(swap, t - math.pi / 2, t)
        # theta == 0 is represented as pi/2 with the sides swapped: the range is (0, pi/2].
        zero = t <= 0
        t = torch.where(zero, torch.full_like(t, math.pi / 2), t)
        swap = swap ^ zero
        new_w, new_h = torch.where(swap, h, w), torch.where(swap, w, h)
        return torch.stack([cx, cy, new_w, new_h, t], dim=-1)

    low = -math.pi / 4 if version == "le135" else -math.pi / 2
    eps = torch.finfo(boxes.dtype).eps
    long_side, short_side = torch.maximum(w, h), torch.minimum(w, h)
    square = (long_side - short_side) <= _SQUARE_ULPS * eps * long_side
    swap = h > w
    t = torch.where(swap, theta + math.pi / 2, theta)
    t_general = _wrap(t, low)
    # A square looks the same every pi/2: choose theta in [-pi/4, pi/4).
    t_square = torch.remainder(theta + math.pi / 4, math.pi / 2) - math.pi / 4
    t_square = torch.where(t_square >= math.pi / 4, t_square - math.pi / 2, t_square)
    t = torch.where(square, t_square, t_general)
    return torch.stack([cx, cy, long_side, short_side, t], dim=-1)


@_numpy_compatible
def obb2poly(boxes: Tensor) -> Tensor:
    """Corners of rotated boxes.

    Args:
        boxes: Tensor[..., 5] obb (any theta).

    Returns:
        Tensor[..., 8] polygon ``x1 y1 .. x4 y4`` with corners ``(-w/2,-h/2), (w/2,-h/2),
        (w/2,h/2), (-w/2,h/2)`` of the box frame, i.e. clockwise on screen (y down).
    """
    cx, cy, w, h, theta = boxes.unbind(-1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Half side vectors along the w side and along the h side.
    ux, uy = 0.5 * w * cos, 0.5 * w * sin
    vx, vy = -0.5 * h * sin, 0.5 * h * cos
    corners = [
        (cx - ux - vx, cy - uy - vy),
        (cx + ux - vx, cy + uy - vy),
        (cx + ux + vx, cy + uy + vy),
        (cx - ux + vx, cy - uy + vy),
    ]
    return torch.stack([c for corner in corners for c in corner], dim=-1)


@_numpy_compatible
def obb2hbb(boxes: Tensor) -> Tensor:
    """Enclosing horizontal boxes of rotated boxes.

    Args:
        boxes: Tensor[..., 5] obb (any theta).

    Returns:
        Tensor[..., 4] ``(xmin, ymin, xmax, ymax)``.
    """
    cx, cy, w, h, theta = boxes.unbind(-1)
    cos, sin = torch.cos(theta).abs(), torch.sin(theta).abs()
    half_x = 0.5 * (w * cos + h * sin)
    half_y = 0.5 * (w * sin + h * cos)
    return torch.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], dim=-1)


@_numpy_compatible
def poly2obb(polys: Tensor, version: str = "le135") -> Tensor:
    """Minimum-area rotated rectangle around each 4-point polygon.

    Works for any quadrilateral (DOTA labels are free quads), any vertex order and orientation,
    and gives back exactly the rectangle for rectangular input, which is then regularized to
    ``version``. The rectangle is found by trying each of the 6 point-pair directions as a side
    direction (every hull edge is among them, and the minimum-area enclosing rectangle has a side
    along a hull edge); ties between equally small rectangles are broken by the lowest pair index.

    Degenerate input has a defined result: repeated points are ignored (a triangle gives its
    minimum rectangle), collinear points give a box of height 0 along the line, four equal points
    give ``(x, y, 0, 0, 0)``. Non-finite coordinates raise ``ValueError``.

    Args:
        polys: Tensor[..., 8] ``x1 y1 .. x4 y4``.
        version: ``le135`` (default), ``le90`` or ``oc``.

    Returns:
        Tensor[..., 5] obb.
    """
    _check_version(version)
    if polys.shape[-1] != 8:
        raise ValueError(f"poly2obb expects polygons [..., 8], got shape {tuple(polys.shape)}")
    finite = torch.isfinite(polys).all(-1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite.reshape(-1))[0].item()
        raise ValueError(f"poly2obb got a polygon with NaN or infinite coordinates (flat index {bad})")
    batch_shape = polys.shape[:-1]
    points = polys.reshape(-1, 4, 2)
    # Work around the mean so large image coordinates keep their precision.
    origin = points.mean(dim=1, keepdim=True)  # [P, 1, 2]
    local = points - origin  # [P, 4, 2]

    first, second = zip(*[(i, j) for i in range(4) for j in range(i + 1, 4)])
    direction = local[:, list(second)] - local[:, list(first)]  # [P, 6, 2]
    length = torch.linalg.vector_norm(direction, dim=-1)  # [P, 6]
    valid = length > 0
    unit = direction / torch.where(valid, length, torch.ones_like(length)).unsqueeze(-1)
    ux, uy = unit.unbind(-1)  # [P, 6]
    px, py = local[..., 0].unsqueeze(1), local[..., 1].unsqueeze(1)  # [P, 1, 4]
    along = px * ux.unsqueeze(-1) + py * uy.unsqueeze(-1)  # [P, 6, 4]
    across = -px * uy.unsqueeze(-1) + py * ux.unsqueeze(-1)
    # amin/amax, not min(-1): the latter also computes indices and is far slower on small inputs.
    a_min, a_max = along.amin(-1), along.amax(-1)
    c_min, c_max = across.amin(-1), across.amax(-1)
    area = (a_max - a_min) * (c_max - c_min)
    area = torch.where(valid, area, torch.full_like(area, math.inf))
    best = area.argmin(dim=1, keepdim=True)  # first minimum: lowest pair index

    def pick(x: Tensor) -> Tensor:
        return x.gather(1, best).squeeze(1)

    ux_b, uy_b = pick(ux), pick(uy)
    mid_along = 0.5 * (pick(a_min) + pick(a_max))
    mid_across = 0.5 * (pick(c_min) + pick(c_max))
    w = pick(a_max) - pick(a_min)
    h = pick(c_max) - pick(c_min)
    cx = origin[:, 0, 0] + mid_along * ux_b - mid_across * uy_b
    cy = origin[:, 0, 1] + mid_along * uy_b + mid_across * ux_b
    theta = torch.atan2(uy_b, ux_b)
    # Four equal points: no direction at all.
    no_direction = ~valid.any(dim=1)
    zero = torch.zeros_like(w)
    w = torch.where(no_direction, zero, w)
    h = torch.where(no_direction, zero, h)
    theta = torch.where(no_direction, zero, theta)
    boxes = torch.stack([cx, cy, w, h, theta], dim=-1)
    return regularize(boxes, version).reshape(*batch_shape, 5)


@_numpy_compatible
def quad_edge_lengths(polys: Tensor) -> Tensor:
    """Lengths of the first two edges ``|p1 p2|`` and ``|p2 p3|`` of each quad.

    Args:
        polys: Tensor[..., 8] ``x1 y1 .. x4 y4``.

    Returns:
        Tensor[..., 2] ``(e1, e2)``. The reference loader rejects a label when either is under 2 px.
    """
    if polys.shape[-1] != 8:
        raise ValueError(f"quad_edge_lengths expects polygons [..., 8], got shape {tuple(polys.shape)}")
    p = polys.reshape(*polys.shape[:-1], 4, 2)
    e1 = torch.linalg.vector_norm(p[..., 1, :] - p[..., 0, :], dim=-1)
    e2 = torch.linalg.vector_norm(p[..., 2, :] - p[..., 1, :], dim=-1)
    return torch.stack([e1, e2], dim=-1)


@_numpy_compatible
def poly2obb_edges(polys: Tensor) -> Tensor:
    """le135 box read off the first two edges of each quad, as the reference recipe builds its targets.

    The rule of mmrotate 0.x's ``poly2obb_np`` (le135) and the reference fork's ``v2``: with
    ``e1 = |p1 p2|`` and ``e2 = |p2 p3|``, ``w = max(e1, e2)``, ``h = min(e1, e2)``; the angle is the
    direction of ``p1 -> p2`` when ``e1 > e2`` and of ``p1 -> p4`` otherwise (ties included), wrapped
    into ``[-pi/4, 3pi/4)``; the centre is the midpoint of the diagonal ``p1 p3``. For a rectangle
    this is the rectangle itself (squares keep the ``p1 -> p4`` angle, e.g. ``pi/2`` for an
    axis-aligned square listed clockwise from its top-left corner); for a free quadrilateral it is
    not the minimum-area rectangle: ``w`` and ``h`` come from two edges only. No size check here:
    the caller drops boxes with an edge under 2 px (:func:`quad_edge_lengths`).

    Args:
        polys: Tensor[..., 8] ``x1 y1 .. x4 y4`` in label vertex order.

    Returns:
        Tensor[..., 5] obb, ``theta`` in ``[-pi/4, 3pi/4)``, ``w >= h``.
    """
    if polys.shape[-1] != 8:
        raise ValueError(f"poly2obb_edges expects polygons [..., 8], got shape {tuple(polys.shape)}")
    p = polys.reshape(*polys.shape[:-1], 4, 2)
    e1, e2 = quad_edge_lengths(polys).unbind(-1)
    along_first = e1 > e2
    direction = torch.where(along_first.unsqueeze(-1), p[..., 1, :] - p[..., 0, :], p[..., 3, :] - p[..., 0, :])
    theta = _wrap(torch.atan2(direction[..., 1], direction[..., 0]), -math.pi / 4)
    centre = 0.5 * (p[..., 0, :] + p[..., 2, :])
    return torch.stack([centre[..., 0], centre[..., 1], torch.maximum(e1, e2), torch.minimum(e1, e2), theta], dim=-1)
