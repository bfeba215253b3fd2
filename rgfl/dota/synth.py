"""Synthetic DOTA-format data with known ground truth, for demos, tests and learning benchmarks.

Each image is a textured background (low-frequency colour variation, fields, roads and pixel
noise) with objects drawn at every angle. Every class has its own shape and colour scheme so that a
detector can tell the classes apart (a plane is a light cross, a storage tank a ringed disc, a
tennis court a green rectangle with white lines, ...). The label of an object is the rotated
rectangle the drawing fills exactly, written as a DOTA polygon.

Layout of an image:
- objects at random positions, angles and sizes (12 to 300 pixels depending on the class), with
  little overlap (bounding circles may overlap by at most ``MAX_CIRCLE_OVERLAP``);
- dense clusters of small objects (parking lots: rows of small vehicles; tank farms);
- a few objects centred on the borders of the default 1024/824 split windows, so that they are
  cut by patches;
- a deterministic fraction of images with no object at all.

Pixel convention (the same in :mod:`rgfl.data`): pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``
in label coordinates, so a label point ``(x, y)`` is drawn at OpenCV position ``(x-0.5, y-0.5)``.

Output is byte-identical for a given seed and parameters: image ``k`` draws its randomness from
``numpy.random.default_rng([seed, k])`` only, and PNGs are encoded with fixed settings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rgfl.dota.annotations import ImageLabels, write_label_file
from rgfl.errors import InputError
from rgfl.fileio import atomic_write_bytes

__all__ = [
    "SYNTH_CLASSES",
    "DEFAULT_SYNTH_CLASSES",
    "SynthImage",
    "SynthSummary",
    "synth_image",
    "iter_synthetic_images",
    "generate_synthetic_dataset",
    "obb_corners",
]

logger = logging.getLogger(__name__)

# Classes the generator can draw, with (min, max) of the long side in pixels and the short/long
# aspect range. Sizes span 12 to 300 pixels over the classes. Small vehicles follow the DOTA-v1.0
# sample labels (long side 19 / 35 / 42 px at the 10th / 50th / 90th percentile); at 10 to 22 px
# they were a third of that.
_CLASS_SPECS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "plane": ((28.0, 110.0), (0.85, 1.0)),
    "baseball-diamond": ((70.0, 160.0), (1.0, 1.0)),
    "ground-track-field": ((180.0, 300.0), (0.45, 0.55)),
    "small-vehicle": ((14.0, 40.0), (0.42, 0.55)),
    "large-vehicle": ((26.0, 64.0), (0.25, 0.35)),
    "ship": ((16.0, 180.0), (0.2, 0.32)),
    "tennis-court": ((50.0, 110.0), (0.45, 0.5)),
    "basketball-court": ((40.0, 80.0), (0.55, 0.6)),
    "storage-tank": ((12.0, 110.0), (1.0, 1.0)),
    "soccer-ball-field": ((130.0, 260.0), (0.62, 0.7)),
    "roundabout": ((60.0, 160.0), (1.0, 1.0)),
    "swimming-pool": ((16.0, 70.0), (0.4, 0.7)),
    "helicopter": ((24.0, 56.0), (0.8, 1.0)),
}
SYNTH_CLASSES: tuple[str, ...] = tuple(_CLASS_SPECS)
DEFAULT_SYNTH_CLASSES: tuple[str, ...] = (
    "plane",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "storage-tank",
    "tennis-court",
)
# Round shapes have no orientation; they are labelled axis-aligned, as DOTA annotators do.
_ROUND_CLASSES = {"storage-tank", "roundabout"}
_MAX_PLACEMENT_TRIES = 30
# Bounding circles (radius R = half diagonal) may overlap by 2 * MAX_CIRCLE_OVERLAP * min(R1, R2).
MAX_CIRCLE_OVERLAP = 0.25
# Object sizes are roughly those of real objects at this ground sample distance (m / pixel).
NOMINAL_GSD = 0.3
PNG_COMPRESSION = 1  # fast to write; the images are inputs for tests and benchmarks, not archives
_SHIFT = 4  # sub-pixel precision of OpenCV drawing (coordinates in 1/16 pixel)
_LINE = cv2.LINE_8  # anti-aliased fills bleed a further pixel out of the labelled box
_FILL_SPREAD = 0.5


@dataclass
class SynthImage:
    """One generated image.

    Attributes:
        name: file stem (``synth_00000``).
        image: uint8 array [H, W, 3] in **BGR** order (OpenCV), ready to encode.
        labels: the objects as DOTA polygons (float64 [N, 8]), class names, difficult 0.
        boxes: float64 [N, 5] ``(cx, cy, w, h, theta)`` the generator drew (w along theta).
    """

    name: str
    image: np.ndarray
    labels: ImageLabels
    boxes: np.ndarray


@dataclass
class SynthSummary:
    """What :func:`generate_synthetic_dataset` wrote."""

    out: Path
    images: int = 0
    empty_images: int = 0
    objects: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    image_size: int = 0
    seed: int = 0
    seconds: float = 0.0


def obb_corners(boxes: np.ndarray) -> np.ndarray:
    """Corners of rotated boxes [N, 5] ``(cx, cy, w, h, theta)`` -> polygons [N, 8] (float64).

    Corner order: local ``(-w/2,-h/2), (+w/2,-h/2), (+w/2,+h/2), (-w/2,+h/2)`` rotated by theta,
    i.e. clockwise on screen (y down), as in reference notes section 1.2.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h, theta = boxes.T
    cos, sin = np.cos(theta), np.sin(theta)
    local = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    dx = local[None, :, 0] * w[:, None]
    dy = local[None, :, 1] * h[:, None]
    xs = cx[:, None] + dx * cos[:, None] - dy * sin[:, None]
    ys = cy[:, None] + dx * sin[:, None] + dy * cos[:, None]
    return np.stack([xs, ys], axis=2).reshape(-1, 8)


# --------------------------------------------------------------------------------------------
# Drawing. Every painter draws one object filling the box (cx, cy, w, h, theta) exactly, with
# shapes given in the box frame: u along w, v along h, both in [-0.5, 0.5].


class _Painter:
    def __init__(self, canvas: np.ndarray, box: np.ndarray, rng: np.random.Generator):
        self.canvas = canvas
        self.cx, self.cy, self.w, self.h, self.theta = (float(v) for v in box)
        self.rng = rng
        self.cos, self.sin = math.cos(self.theta), math.sin(self.theta)
        # OpenCV fills every pixel a shape touches, about half a pixel beyond the outline; the
        # drawing frame is shrunk by that much so the filled pixels fit the labelled box.
        self.draw_w, self.draw_h = max(self.w - 2 * _FILL_SPREAD, 1.0), max(self.h - 2 * _FILL_SPREAD, 1.0)

    def points(self, uv: Sequence[tuple[float, float]]) -> np.ndarray:
        """Box-frame points -> OpenCV fixed-point pixel coordinates [K, 2] int32."""
        uv = np.asarray(uv, dtype=np.float64)
        du, dv = uv[:, 0] * self.draw_w, uv[:, 1] * self.draw_h
        x = self.cx + du * self.cos - dv * self.sin - 0.5
        y = self.cy + du * self.sin + dv * self.cos - 0.5
        return np.round(np.stack([x, y], axis=1) * (1 << _SHIFT)).astype(np.int32)

    def polygon(self, uv: Sequence[tuple[float, float]], color: Sequence[int]) -> None:
        cv2.fillPoly(self.canvas, [self.points(uv)], _bgr(color), _LINE, _SHIFT)

    def rect(self, u0: float, v0: float, u1: float, v1: float, color: Sequence[int]) -> None:
        self.polygon([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], color)

    def line(self, a: tuple[float, float], b: tuple[float, float], color: Sequence[int], width: float) -> None:
        pa, pb = self.points([a, b])
        thickness = max(1, int(round(width)))
        cv2.line(self.canvas, tuple(int(v) for v in pa), tuple(int(v) for v in pb), _bgr(color), thickness, _LINE, _SHIFT)

    def ellipse(self, u: float, v: float, ru: float, rv: float, color: Sequence[int], thickness: int = -1) -> None:
        center = self.points([(u, v)])[0]
        axes = (int(round(ru * self.draw_w * (1 << _SHIFT))), int(round(rv * self.draw_h * (1 << _SHIFT))))
        angle = math.degrees(self.theta)
        cv2.ellipse(self.canvas, (int(center[0]), int(center[1])), axes, angle, 0, 360, _bgr(color), thickness, _LINE, _SHIFT)

    def jitter(self, color: Sequence[int], amount: int = 18) -> tuple[int, int, int]:
        delta = self.rng.integers(-amount, amount + 1, size=3)
        return tuple(int(c) for c in np.clip(np.asarray(color) + delta, 0, 255))


def _bgr(rgb: Sequence[int]) -> tuple[int, int, int]:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def _draw_plane(p: _Painter) -> None:
    body = p.jitter((228, 228, 232), 12)
    # fuselage along u, wings along v (span = h), tailplane at the back
    p.polygon([(-0.5, -0.06), (0.38, -0.06), (0.5, 0.0), (0.38, 0.06), (-0.5, 0.06)], body)
    p.polygon([(0.02, -0.5), (0.16, -0.5), (0.2, 0.0), (0.16, 0.5), (0.02, 0.5), (-0.12, 0.0)], body)
    p.polygon([(-0.5, -0.2), (-0.4, -0.2), (-0.34, 0.0), (-0.4, 0.2), (-0.5, 0.2)], body)
    p.rect(0.3, -0.03, 0.42, 0.03, (60, 70, 90))


def _draw_helicopter(p: _Painter) -> None:
    p.polygon([(-0.5, -0.04), (0.0, -0.05), (0.0, 0.05), (-0.5, 0.04)], (50, 60, 40))
    p.ellipse(0.18, 0.0, 0.3, 0.2, p.jitter((55, 68, 42), 8))
    p.rect(0.155, -0.5, 0.205, 0.5, (40, 40, 40))  # rotor blades
    p.rect(-0.12, -0.025, 0.48, 0.025, (40, 40, 40))


def _draw_small_vehicle(p: _Painter) -> None:
    colors = [(200, 30, 30), (30, 60, 200), (240, 240, 240), (20, 20, 20), (200, 200, 40), (195, 198, 210)]
    body = p.jitter(colors[int(p.rng.integers(len(colors)))], 15)
    p.rect(-0.5, -0.5, 0.5, 0.5, body)
    p.rect(0.12, -0.38, 0.3, 0.38, (35, 45, 60))  # windscreen
    p.rect(-0.4, -0.36, -0.28, 0.36, (50, 55, 65))  # rear window


def _draw_large_vehicle(p: _Painter) -> None:
    cargo = p.jitter((235, 225, 200), 15)
    p.rect(-0.5, -0.5, 0.28, 0.5, cargo)
    p.rect(0.32, -0.45, 0.5, 0.45, p.jitter((190, 60, 40), 20))  # cab
    for u in (-0.3, -0.05, 0.2):
        p.line((u, -0.45), (u, 0.45), (170, 160, 140), max(1.0, 0.02 * p.w))


def _draw_ship(p: _Painter) -> None:
    # Hull colours far from the terrain's mid greys, so the whole hull (the label) is visible.
    hulls = [(40, 45, 55), (35, 45, 100), (130, 45, 35), (232, 232, 228)]
    choice = int(p.rng.integers(len(hulls)))
    p.polygon([(-0.5, -0.4), (0.22, -0.5), (0.5, 0.0), (0.22, 0.5), (-0.5, 0.4)], p.jitter(hulls[choice], 10))
    deck = (70, 75, 85) if choice == 3 else (225, 225, 215)
    p.rect(-0.38, -0.22, 0.05, 0.22, p.jitter(deck, 10))  # superstructure
    p.rect(0.12, -0.06, 0.3, 0.06, p.jitter(deck, 10))


def _draw_storage_tank(p: _Painter) -> None:
    p.ellipse(0.0, 0.0, 0.5, 0.5, p.jitter((236, 236, 230), 10))
    p.ellipse(0.0, 0.0, 0.36, 0.36, (175, 175, 170), max(1, int(round(0.04 * p.w))))
    p.ellipse(0.08, -0.06, 0.08, 0.08, (140, 140, 135))


def _draw_roundabout(p: _Painter) -> None:
    p.ellipse(0.0, 0.0, 0.5, 0.5, (58, 58, 62))
    p.ellipse(0.0, 0.0, 0.32, 0.32, p.jitter((70, 140, 60), 12))
    p.ellipse(0.0, 0.0, 0.41, 0.41, (220, 220, 220), 1)


def _draw_tennis_court(p: _Painter) -> None:
    p.rect(-0.5, -0.5, 0.5, 0.5, p.jitter((60, 130, 80), 12))
    white, width = (245, 245, 245), max(1.0, 0.012 * p.w)
    p.rect(-0.4, -0.36, 0.4, 0.36, p.jitter((40, 110, 150), 12))
    for a, b in [((-0.4, -0.36), (0.4, -0.36)), ((-0.4, 0.36), (0.4, 0.36)), ((-0.4, -0.36), (-0.4, 0.36)),
                 ((0.4, -0.36), (0.4, 0.36)), ((0.0, -0.42), (0.0, 0.42)), ((-0.22, 0.0), (0.22, 0.0)),
                 ((-0.22, -0.36), (-0.22, 0.36)), ((0.22, -0.36), (0.22, 0.36))]:
        p.line(a, b, white, width)


def _draw_basketball_court(p: _Painter) -> None:
    p.rect(-0.5, -0.5, 0.5, 0.5, p.jitter((190, 120, 70), 15))
    white, width = (245, 245, 240), max(1.0, 0.015 * p.w)
    p.line((0.0, -0.5), (0.0, 0.5), white, width)
    p.ellipse(0.0, 0.0, 0.09, 0.15, white, 1)
    p.rect(-0.5, -0.16, -0.3, 0.16, p.jitter((160, 90, 60), 8))  # keys
    p.rect(0.3, -0.16, 0.5, 0.16, p.jitter((160, 90, 60), 8))


def _draw_soccer_field(p: _Painter) -> None:
    p.rect(-0.5, -0.5, 0.5, 0.5, p.jitter((70, 150, 60), 10))
    for k in range(-4, 5, 2):  # mowing stripes
        p.rect(k / 10, -0.5, k / 10 + 0.1, 0.5, p.jitter((85, 165, 70), 4))
    white, width = (240, 240, 240), max(1.0, 0.008 * p.w)
    for a, b in [((-0.46, -0.44), (0.46, -0.44)), ((-0.46, 0.44), (0.46, 0.44)), ((-0.46, -0.44), (-0.46, 0.44)),
                 ((0.46, -0.44), (0.46, 0.44)), ((0.0, -0.44), (0.0, 0.44))]:
        p.line(a, b, white, width)
    p.ellipse(0.0, 0.0, 0.08, 0.13, white, 1)


def _draw_track_field(p: _Painter) -> None:
    track = p.jitter((185, 80, 60), 12)
    p.rect(-0.25, -0.5, 0.25, 0.5, track)
    p.ellipse(-0.25, 0.0, 0.25, 0.5, track)
    p.ellipse(0.25, 0.0, 0.25, 0.5, track)
    grass = p.jitter((75, 150, 65), 10)
    p.rect(-0.25, -0.36, 0.25, 0.36, grass)
    p.ellipse(-0.25, 0.0, 0.18, 0.36, grass)
    p.ellipse(0.25, 0.0, 0.18, 0.36, grass)


def _draw_baseball_diamond(p: _Painter) -> None:
    # A quarter disc (the outfield) whose right-angle corner sits in the box corner (-0.5, 0.5).
    steps = np.linspace(0.0, math.pi / 2, 16)
    arc = [(-0.5 + math.cos(a), 0.5 - math.sin(a)) for a in steps]
    p.polygon([(-0.5, 0.5)] + arc, p.jitter((90, 160, 70), 10))
    p.polygon([(-0.5, 0.5), (-0.1, 0.5), (-0.1, 0.1), (-0.5, 0.1)], p.jitter((200, 150, 100), 10))


def _draw_swimming_pool(p: _Painter) -> None:
    p.rect(-0.5, -0.5, 0.5, 0.5, (235, 235, 235))
    p.rect(-0.42, -0.36, 0.42, 0.36, p.jitter((40, 170, 225), 15))


_PAINTERS: dict[str, Callable[[_Painter], None]] = {
    "plane": _draw_plane,
    "baseball-diamond": _draw_baseball_diamond,
    "ground-track-field": _draw_track_field,
    "small-vehicle": _draw_small_vehicle,
    "large-vehicle": _draw_large_vehicle,
    "ship": _draw_ship,
    "tennis-court": _draw_tennis_court,
    "basketball-court": _draw_basketball_court,
    "storage-tank": _draw_storage_tank,
    "soccer-ball-field": _draw_soccer_field,
    "roundabout": _draw_roundabout,
    "swimming-pool": _draw_swimming_pool,
    "helicopter": _draw_helicopter,
}


# --------------------------------------------------------------------------------------------
# Background


def _background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Textured terrain [H, W, 3] uint8 BGR: colour blobs, fields, roads and fine noise."""
    height, width = size
    base = np.array([[110, 112, 96], [128, 118, 98], [96, 108, 92], [122, 124, 118]][int(rng.integers(4))], np.float32)
    # Low-frequency colour variation: a coarse random grid upsampled smoothly.
    grid = (max(2, height // 128), max(2, width // 128))
    coarse = rng.normal(0.0, 14.0, size=grid + (1,)) + rng.normal(0.0, 4.0, size=grid + (3,))  # mostly brightness
    coarse = np.clip(coarse + base[::-1], 0, 255).astype(np.uint8)
    # Upsampling in uint8 (saturating) keeps full-resolution float arrays out of the hot path.
    canvas = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # Fields: large irregular quadrilaterals of slightly different tone.
    area = height * width
    for _ in range(int(rng.integers(2, 6 + area // 1_000_000))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(80, 500)
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=5))
        pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        tone = np.clip(base + rng.normal(0, 12, size=3), 0, 255)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], _bgr(tone))
    # Roads: long grey lines (unlabelled clutter, like real scenes).
    for _ in range(int(rng.integers(1, 3 + area // 2_000_000))):
        a = (int(rng.integers(0, width)), 0)
        b = (int(rng.integers(0, width)), height)
        if rng.random() < 0.5:
            a, b = (0, int(rng.integers(0, height))), (width, int(rng.integers(0, height)))
        gray = int(rng.integers(70, 110))
        cv2.line(canvas, a, b, (gray, gray, gray), int(rng.integers(6, 18)), cv2.LINE_AA)
    # Fine grain: one noise channel shared by the three colours (fast, and keeps PNGs small).
    noise = rng.integers(0, 12, size=(height, width, 1), dtype=np.uint8)
    cv2.add(canvas, np.broadcast_to(noise, canvas.shape).copy(), dst=canvas)
    return canvas


# --------------------------------------------------------------------------------------------
# Layout


@dataclass
class _Layout:
    width: int
    height: int
    boxes: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    circles: list[tuple[float, float, float]] = field(default_factory=list)  # occupied (x, y, radius)

    def free(self, x: float, y: float, radius: float, margin: float = 0.0) -> bool:
        if not (radius + margin <= x <= self.width - radius - margin and radius + margin <= y <= self.height - radius - margin):
            return False
        if not self.circles:
            return True
        occupied = np.asarray(self.circles)
        distance = np.hypot(occupied[:, 0] - x, occupied[:, 1] - y)
        # The smaller circle may reach into the other by a fraction of its own radius only, so a
        # small object never hides inside a large one.
        reach = 2.0 * MAX_CIRCLE_OVERLAP * np.minimum(occupied[:, 2], radius)
        return bool(np.all(distance >= occupied[:, 2] + radius - reach))

    def add(self, name: str, box: tuple[float, float, float, float, float], occupy: bool = True) -> None:
        self.boxes.append(box)
        self.classes.append(name)
        if occupy:
            self.circles.append((box[0], box[1], 0.5 * math.hypot(box[2], box[3])))


def _random_size(name: str, rng: np.random.Generator) -> tuple[float, float]:
    (low, high), (aspect_low, aspect_high) = _CLASS_SPECS[name]
    # Log-uniform: small objects are as common as large ones per octave, as in aerial scenes.
    length = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    aspect = float(rng.uniform(aspect_low, aspect_high))
    return length, max(length * aspect, 4.0)


def _random_angle(name: str, rng: np.random.Generator) -> float:
    if name in _ROUND_CLASSES:
        return 0.0
    return float(rng.uniform(-math.pi, math.pi))


def _split_borders(length: int, size: int = 1024, step: int = 824) -> list[int]:
    """Window edges of the default split grid (reference notes 3.1) inside ``(0, length)``."""
    if length <= size:
        return []
    count = math.ceil((length - size) / step + 1)
    starts = [i * step for i in range(count)]
    starts[-1] = length - size
    edges = {s for s in starts} | {s + size for s in starts}
    return sorted(e for e in edges if 0 < e < length)


def _place_cluster(layout: _Layout, name: str, rng: np.random.Generator, budget: int) -> int:
    """A dense block of one small class: rows of parked vehicles or a tank farm."""
    if name == "storage-tank":
        diameter = float(rng.uniform(14, 40))
        length = short = diameter
        gap_u, gap_v = diameter * rng.uniform(1.15, 1.5), diameter * rng.uniform(1.15, 1.5)
    else:
        length, short = _random_size(name, rng)
        gap_u, gap_v = length * rng.uniform(1.15, 1.4), short * rng.uniform(1.3, 1.8)
    rows = int(rng.integers(2, 6))
    cols = int(rng.integers(3, 12))
    if rows * cols > budget:
        cols = max(1, budget // rows)
        if cols < 2:
            return 0
    theta = 0.0 if name in _ROUND_CLASSES else float(rng.uniform(-math.pi, math.pi))
    # Rows run along v (cars side by side), columns along u.
    extent = 0.5 * math.hypot(rows * gap_u, cols * gap_v)
    for _ in range(_MAX_PLACEMENT_TRIES):
        x, y = rng.uniform(0, layout.width), rng.uniform(0, layout.height)
        if layout.free(x, y, extent, margin=2.0):
            break
    else:
        return 0
    cos, sin = math.cos(theta), math.sin(theta)
    placed = 0
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.12:  # empty parking spot
                continue
            du = (r - (rows - 1) / 2) * gap_u
            dv = (c - (cols - 1) / 2) * gap_v
            cx, cy = x + du * cos - dv * sin, y + du * sin + dv * cos
            jitter = 0.0 if name in _ROUND_CLASSES else float(rng.normal(0, 0.04))
            flip = math.pi if rng.random() < 0.5 and name not in _ROUND_CLASSES else 0.0
            layout.add(name, (cx, cy, length, short, theta + jitter + flip), occupy=False)
            placed += 1
    layout.circles.append((x, y, extent))
    return placed


def _place_objects(layout: _Layout, classes: Sequence[str], count: int, rng: np.random.Generator) -> None:
    cluster_classes = [name for name in classes if name in ("small-vehicle", "storage-tank")]
    # About a third of the objects sit in dense clusters when a clusterable class is present.
    clustered_target = count // 3 if cluster_classes else 0
    clustered = 0
    while clustered < clustered_target:
        name = cluster_classes[int(rng.integers(len(cluster_classes)))]
        placed = _place_cluster(layout, name, rng, clustered_target - clustered)
        if placed == 0:
            break
        clustered += placed
    # A few objects centred on split-window borders, so that patches cut them.
    borders_x, borders_y = _split_borders(layout.width), _split_borders(layout.height)
    on_border = min(count - clustered, max(1, count // 20)) if (borders_x or borders_y) else 0
    remaining = count - clustered
    for index in range(remaining):
        name = classes[int(rng.integers(len(classes)))]
        length, short = _random_size(name, rng)
        theta = _random_angle(name, rng)
        radius = 0.5 * math.hypot(length, short)
        for _ in range(_MAX_PLACEMENT_TRIES):
            x, y = rng.uniform(0, layout.width), rng.uniform(0, layout.height)
            if index < on_border:
                if borders_x and (not borders_y or rng.random() < 0.5):
                    x = float(borders_x[int(rng.integers(len(borders_x)))]) + rng.uniform(-0.2, 0.2) * length
                else:
                    y = float(borders_y[int(rng.integers(len(borders_y)))]) + rng.uniform(-0.2, 0.2) * length
            if layout.free(x, y, radius, margin=1.0):
                layout.add(name, (x, y, length, short, theta))
                break


# --------------------------------------------------------------------------------------------
# Public API


def synth_image(
    index: int,
    seed: int = 0,
    image_size: int | tuple[int, int] = 2048,
    class_names: Sequence[str] = DEFAULT_SYNTH_CLASSES,
    num_objects: int | None = None,
    objects_per_megapixel: float = 24.0,
    empty: bool = False,
) -> SynthImage:
    """Generate image number ``index`` of the dataset defined by ``seed`` (pure, in memory).

    Args:
        index: image number; the image depends only on (seed, index) and the other arguments.
        image_size: side in pixels, or ``(height, width)``.
        class_names: classes to draw; each must be in :data:`SYNTH_CLASSES`.
        num_objects: objects to aim for (fewer when the image is too crowded); by default about
            ``objects_per_megapixel`` per million pixels, varying +-30% between images.
        empty: draw no object at all.
    """
    _check_classes(class_names)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if height < 32 or width < 32:
        raise InputError(f"image size must be at least 32 pixels, got {width}x{height}")
    rng = np.random.default_rng([int(seed), int(index)])
    canvas = _background((height, width), rng)
    layout = _Layout(width, height)
    if not empty:
        if num_objects is None:
            mean = objects_per_megapixel * height * width / 1e6
            num_objects = max(1, int(round(mean * rng.uniform(0.7, 1.3))))
        # Large classes first, so that small objects fill the gaps between them.
        _place_objects(layout, list(class_names), int(num_objects), rng)
    boxes = np.asarray(layout.boxes, dtype=np.float64).reshape(-1, 5)
    order = np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")  # draw big first, small on top
    for i in order:
        _PAINTERS[layout.classes[i]](_Painter(canvas, boxes[i], rng))
    # Angles into (-pi, pi] are fine for drawing; labels only need the corner polygon.
    polygons = np.round(obb_corners(boxes), 1)
    labels = ImageLabels(
        polygons=polygons,
        classes=list(layout.classes),
        difficult=np.zeros(len(layout.classes), dtype=np.int64),
        line_numbers=np.zeros(len(layout.classes), dtype=np.int64),
        imagesource="rgfl-synth",
        gsd=NOMINAL_GSD,
    )
    return SynthImage(f"synth_{index:05d}", canvas, labels, boxes)


def _check_classes(class_names: Sequence[str]) -> None:
    if not class_names:
        raise InputError("no class to draw: give at least one class name")
    unknown = [name for name in class_names if name not in _PAINTERS]
    if unknown:
        raise InputError(f"the synthetic generator cannot draw {unknown}; it knows {list(SYNTH_CLASSES)}")


def _empty_indices(num_images: int, empty_fraction: float) -> set[int]:
    """Images without objects, spread evenly: exactly round(num_images * fraction) of them."""
    count = int(round(num_images * empty_fraction))
    if count <= 0:
        return set()
    return {int(i * num_images / count + num_images / (2 * count)) for i in range(count)}


def iter_synthetic_images(
    num_images: int,
    seed: int = 0,
    image_size: int | tuple[int, int] = 2048,
    class_names: Sequence[str] = DEFAULT_SYNTH_CLASSES,
    empty_fraction: float = 0.1,
    **kwargs,
) -> Iterator[SynthImage]:
    """Yield the images of a synthetic dataset in memory (see :func:`synth_image`)."""
    empty = _empty_indices(num_images, empty_fraction)
    for index in range(num_images):
        yield synth_image(index, seed, image_size, class_names, empty=index in empty, **kwargs)


def _write_image(job: tuple) -> list[str]:
    """Draw, encode and write one image and its labels; returns the class of each object."""
    out, index, seed, image_size, class_names, empty, num_objects, objects_per_megapixel, ext = job
    item = synth_image(index, seed, image_size, class_names, num_objects, objects_per_megapixel, empty)
    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION] if ext == "png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    ok, encoded = cv2.imencode(f".{ext}", item.image, params)
    assert ok, "OpenCV failed to encode an in-memory image"
    atomic_write_bytes(Path(out) / "images" / f"{item.name}.{ext}", encoded.tobytes())
    write_label_file(Path(out) / "labelTxt" / f"{item.name}.txt", item.labels, header=True)
    logger.info("wrote %s (%d objects)", item.name, len(item.labels))
    return list(item.labels.classes)


def _unordered(pool: ProcessPoolExecutor, jobs: list[tuple]) -> Iterator[list[str]]:
    with pool:
        futures = [pool.submit(_write_image, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def generate_synthetic_dataset(
    out: str | Path,
    num_images: int = 8,
    image_size: int | tuple[int, int] = 2048,
    seed: int = 0,
    class_names: Sequence[str] = DEFAULT_SYNTH_CLASSES,
    empty_fraction: float = 0.1,
    num_objects: int | None = None,
    objects_per_megapixel: float = 24.0,
    ext: str = "png",
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a DOTA-format dataset: ``out/images/synth_XXXXX.png`` + ``out/labelTxt/*.txt``.

    Label files start with the header lines ``imagesource:rgfl-synth`` and ``gsd:0.3`` (nominal); objects have difficult 0.
    Files are written atomically; running twice with the same arguments gives byte-identical
    files. ``progress(1)`` is called after each image (for a progress bar).

    Args:
        num_objects: objects per image (about; crowded images get fewer); default by density.
        ext: ``png`` (lossless, compression level 1) or ``jpg`` (quality 95).
        workers: processes drawing and encoding images in parallel (output is the same).

    Returns:
        A :class:`SynthSummary` with counts per class.
    """
    if num_images < 0:
        raise InputError(f"number of images must be >= 0, got {num_images}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise InputError(f"empty fraction must be in [0, 1], got {empty_fraction}")
    ext = ext.lower().lstrip(".")
    if ext not in ("png", "jpg"):
        raise InputError(f"image format must be png or jpg, got {ext!r}")
    _check_classes(class_names)
    out = Path(out)
    start = time.perf_counter()
    summary = SynthSummary(out=out, image_size=image_size if isinstance(image_size, int) else max(image_size), seed=seed)
    summary.objects_per_class = {name: 0 for name in class_names}
    empty = _empty_indices(num_images, empty_fraction)
    jobs = [
        (out, index, seed, image_size, tuple(class_names), index in empty, num_objects, objects_per_megapixel, ext)
        for index in range(num_images)
    ]
    if workers <= 1 or num_images <= 1:
        results = map(_write_image, jobs)
    else:
        # Each image depends only on (seed, index), so the files do not depend on the workers.
        pool = ProcessPoolExecutor(max_workers=min(workers, num_images))
        results = _unordered(pool, jobs)
    for classes in results:
        summary.images += 1
        summary.objects += len(classes)
        summary.empty_images += int(len(classes) == 0)
        for name in classes:
            summary.objects_per_class[name] += 1
        if progress is not None:
            progress(1)
    summary.seconds = time.perf_counter() - start
    return summary
