"""Training augmentations that move rotated boxes exactly with the pixels.

Every geometric transform here is an affine map ``A`` (2 x 3) of the image plane. The pixels are
moved with ``A`` (by exact array flips/rotations, or ``cv2.warpAffine``/``cv2.resize``) and the
objects' **polygons** are moved with the same ``A``; the dataset converts polygons to le135 boxes
only after the last transform (:func:`rgfl.geometry.poly2obb`, minimum-area rectangle). No angle
arithmetic is needed, so flips, which reverse the vertex order and the sense of rotation, cannot
get the angle sign wrong.

Coordinates: pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)`` (label coordinates are continuous).
A horizontal flip maps ``x -> W - x`` (not ``W - 1 - x`` as in mmrotate, whose boxes live on pixel
centres). OpenCV works on pixel centres, so the matrices handed to it are shifted by half a pixel
(:func:`_to_pixel_centres`).

Objects leaving the image (arbitrary rotation only; the other transforms keep the whole image):
the fraction of each polygon's area that stays inside the image is measured exactly (shapely);
an object keeps its full, unclipped box if that fraction is at least ``visible_thr`` (0.7 by
default, the same rule as the split's IoF threshold), is kept but marked ``ignore`` if some of
it is visible, and is dropped if none is. Ignored objects are neither positives nor negatives.

Randomness: every random choice is drawn from ``torch`` (``torch.rand(..., generator=g)``),
never from Python's ``random`` or numpy's global state. Pass a ``torch.Generator`` to make a
sample's augmentation reproducible (the dataset does this per sample when given a seed), or
``None`` to use torch's global RNG (which DataLoader seeds per worker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

__all__ = [
    "Sample",
    "Compose",
    "RandomFlip",
    "RandomRotate90",
    "RandomRotate",
    "Resize",
    "RandomResize",
    "build_transforms",
    "hflip",
    "vflip",
    "diagonal_flip",
    "rotate90",
    "rotate",
    "resize",
    "affine_polygons",
]

# ImageNet mean in RGB 0..255: padding that the detector's normalization turns into ~0, and the
# same colour as ``rgfl split``'s default pad value (104, 116, 124 in BGR).
DEFAULT_PAD_RGB = (124, 116, 104)


@dataclass
class Sample:
    """One image with its objects, as the transforms see it.

    Attributes:
        image: uint8 array [H, W, 3], RGB, C-contiguous.
        polygons: float64 array [M, 8], ``x1 y1 ... x4 y4`` in pixels of ``image``.
        labels: int64 array [M] class indices.
        ignore: bool array [M]; ignored objects are neither positives nor negatives.
        image_id: image or patch name.
        scale: factor from the original image pixels to ``image`` pixels.
    """

    image: np.ndarray
    polygons: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    image_id: str = ""
    scale: float = 1.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def select(self, keep: np.ndarray) -> "Sample":
        return replace(self, polygons=self.polygons[keep], labels=self.labels[keep], ignore=self.ignore[keep])


Transform = Callable[[Sample, "torch.Generator | None"], Sample]


# --------------------------------------------------------------------------------------------
# Deterministic transforms


def affine_polygons(polygons: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine map to polygons [M, 2K] (float64) -> [M, 2K]."""
    points = polygons.reshape(polygons.shape[0], polygons.shape[1] // 2, 2)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    return moved.reshape(polygons.shape)


def _with(sample: Sample, image: np.ndarray, matrix: np.ndarray, scale: float | None = None) -> Sample:
    return replace(
        sample,
        image=np.ascontiguousarray(image),
        polygons=affine_polygons(sample.polygons, matrix),
        scale=sample.scale if scale is None else scale,
    )


def hflip(sample: Sample) -> Sample:
    """Mirror left-right: ``x -> W - x``."""
    matrix = np.array([[-1.0, 0.0, sample.width], [0.0, 1.0, 0.0]])
    return _with(sample, sample.image[:, ::-1], matrix)


def vflip(sample: Sample) -> Sample:
    """Mirror top-bottom: ``y -> H - y``."""
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, sample.height]])
    return _with(sample, sample.image[::-1], matrix)


def diagonal_flip(sample: Sample) -> Sample:
    """Both mirrors at once (a half turn), mmrotate's 'diagonal' flip."""
    matrix = np.array([[-1.0, 0.0, sample.width], [0.0, -1.0, sample.height]])
    return _with(sample, sample.image[::-1, ::-1], matrix)


def rotate90(sample: Sample, k: int) -> Sample:
    """Turn the image by ``k`` quarter turns counter-clockwise as seen on screen.

    One turn maps ``(x, y) -> (y, W - x)`` and swaps the image's width and height.
    """
    k %= 4
    matrix = np.eye(3)
    width, height = sample.width, sample.height
    for _ in range(k):
        quarter = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width], [0.0, 0.0, 1.0]])
        matrix = quarter @ matrix
        width, height = height, width
    return _with(sample, np.rot90(sample.image, k), matrix[:2])


def _to_pixel_centres(matrix: np.ndarray) -> np.ndarray:
    """Affine map on continuous coordinates -> the same map on OpenCV's pixel-centre coordinates.

    Pixel index p has continuous centre p + 0.5, so ``p' = A (p + 0.5) - 0.5``.
    """
    linear, offset = matrix[:, :2], matrix[:, 2]
    return np.concatenate([linear, (offset + linear @ np.array([0.5, 0.5]) - 0.5)[:, None]], axis=1)


def _visible_fraction(polygons: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction [M] of each polygon's area inside the image rectangle (exact, float64)."""
    import shapely

    if polygons.shape[0] == 0:
        return np.zeros(0)
    shapes = shapely.polygons(polygons.reshape(-1, 4, 2))
    inside = shapely.intersection(shapes, shapely.box(0.0, 0.0, width, height))
    area = shapely.area(shapes)
    return np.where(area > 0, shapely.area(inside) / np.maximum(area, 1e-12), 0.0)


def rotate(
    sample: Sample,
    angle: float,
    visible_thr: float = 0.7,
    pad_value: Sequence[int] = DEFAULT_PAD_RGB,
    interpolation: int = cv2.INTER_LINEAR,
) -> Sample:
    """Rotate by ``angle`` degrees counter-clockwise on screen about the image centre.

    The canvas keeps its size; uncovered corners are filled with ``pad_value`` (RGB). Objects
    partly pushed out follow the module's rule (keep if at least ``visible_thr`` of the area
    stays inside, ignore if some does, drop otherwise).
    """
    cx, cy = sample.width / 2.0, sample.height / 2.0
    radians = math.radians(angle)
    cos, sin = math.cos(radians), math.sin(radians)
    # y points down, so a counter-clockwise turn on screen is the matrix [[c, s], [-s, c]].
    linear = np.array([[cos, sin], [-sin, cos]])
    matrix = np.concatenate([linear, (np.array([cx, cy]) - linear @ np.array([cx, cy]))[:, None]], axis=1)
    image = cv2.warpAffine(
        sample.image,
        _to_pixel_centres(matrix),
        (sample.width, sample.height),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in pad_value),
    )
    moved = _with(sample, image, matrix)
    fraction = _visible_fraction(moved.polygons, moved.width, moved.height)
    moved.ignore = moved.ignore | (fraction < visible_thr)
    return moved.select(fraction > 0.0)


def resize(sample: Sample, scale: float, interpolation: int | None = None) -> Sample:
    """Scale the image by ``scale`` (same factor on both axes); ``Sample.scale`` is multiplied.

    The output size is ``round(W * scale) x round(H * scale)`` and points map exactly by
    ``p -> p * scale`` (OpenCV's resize keeps the given factor and pixel-corner alignment).
    """
    if scale <= 0:
        raise ValueError(f"resize scale must be positive, got {scale}")
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if scale == 1.0:
        return sample
    # With dsize (0, 0) OpenCV maps with exactly fx, fy (not with the rounded size ratio).
    image = cv2.resize(sample.image, (0, 0), fx=scale, fy=scale, interpolation=interpolation)
    matrix = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    return _with(sample, image, matrix, scale=sample.scale * scale)


# --------------------------------------------------------------------------------------------
# Random transforms (callables taking (sample, generator))


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, generator)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@dataclass
class RandomFlip:
    """Apply at most one flip: horizontal with probability ``horizontal``, else vertical with
    ``vertical``, else diagonal (half turn) with ``diagonal`` (probabilities sum to at most 1,
    as in mmrotate's RRandomFlip with a list of directions)."""

    horizontal: float = 0.5
    vertical: float = 0.0
    diagonal: float = 0.0

    def __post_init__(self) -> None:
        probabilities = (self.horizontal, self.vertical, self.diagonal)
        if min(probabilities) < 0 or sum(probabilities) > 1 + 1e-9:
            raise ValueError(f"flip probabilities must be >= 0 and sum to at most 1, got {probabilities}")

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        draw = _uniform(generator)
        if draw < self.horizontal:
            return hflip(sample)
        if draw < self.horizontal + self.vertical:
            return vflip(sample)
        if draw < self.horizontal + self.vertical + self.diagonal:
            return diagonal_flip(sample)
        return sample


@dataclass
class RandomRotate90:
    """With probability ``p``, turn by 1, 2 or 3 quarter turns (equally likely)."""

    p: float = 0.5

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if _uniform(generator) >= self.p:
            return sample
        k = 1 + int(torch.randint(0, 3, (), generator=generator))
        return rotate90(sample, k)


@dataclass
class RandomRotate:
    """With probability ``p``, rotate by an angle uniform in ``[-max_angle, max_angle]`` degrees.

    See :func:`rotate` for the canvas and the rule for objects leaving the image.
    """

    p: float = 0.5
    max_angle: float = 180.0
    visible_thr: float = 0.7
    pad_value: tuple[int, int, int] = DEFAULT_PAD_RGB

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        if _uniform(generator) >= self.p:
            return sample
        angle = _uniform(generator, -self.max_angle, self.max_angle)
        return rotate(sample, angle, self.visible_thr, self.pad_value)


@dataclass
class Resize:
    """Scale so that the longer side becomes ``size`` (keeps the aspect ratio)."""

    size: int

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return resize(sample, self.size / max(sample.width, sample.height))


@dataclass
class RandomResize:
    """Scale by a factor drawn log-uniformly from ``[min_scale, max_scale]``."""

    min_scale: float = 0.5
    max_scale: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        factor = math.exp(_uniform(generator, math.log(self.min_scale), math.log(self.max_scale)))
        return resize(sample, factor)


def build_transforms(
    hflip: float = 0.5,
    vflip: float = 0.0,
    diagonal_flip: float = 0.0,
    rotate90: float = 0.0,
    rotate: float = 0.0,
    max_angle: float = 180.0,
    visible_thr: float = 0.7,
    resize: int | None = None,
    scale_range: tuple[float, float] | None = None,
    pad_value: tuple[int, int, int] = DEFAULT_PAD_RGB,
) -> Compose:
    """The training pipeline from plain options (probabilities in [0, 1]).

    Order: resize to ``resize`` (longer side) and/or random scale in ``scale_range``, then one
    flip, then quarter turns, then an arbitrary rotation. The defaults are the reference
    recipe's: horizontal flip with probability 0.5, nothing else (reference notes 7.1).
    """
    transforms: list[Transform] = []
    if resize is not None:
        transforms.append(Resize(resize))
    if scale_range is not None:
        transforms.append(RandomResize(*scale_range))
    if hflip or vflip or diagonal_flip:
        transforms.append(RandomFlip(hflip, vflip, diagonal_flip))
    if rotate90:
        transforms.append(RandomRotate90(rotate90))
    if rotate:
        transforms.append(RandomRotate(rotate, max_angle, visible_thr, pad_value))
    return Compose(transforms)
