"""Cut large DOTA images into fixed-size patches with their labels (``rgfl split``).

Pipeline per image: read labels and image -> for each rate: window grid on the image resized by
that rate -> IoF of every object against every window -> cut, pad, encode and write each patch and
its label file -> write a done marker. :func:`split_dataset` runs that over a folder with a pool of
worker processes and writes a JSON manifest that lets merge map detections back.

Window grid (reference notes 3.1): ``step = size - overlap``; along a side of length L there are
``1`` windows if ``L <= size``, else ``1 + ceil((L - size) / step)``, starting at ``0, step, 2 step,
...``, the last one moved back to ``L - size`` when it would overrun. Windows are the product of
the x and y starts, x-major. Windows with less than ``img_rate_thr`` of their area on the image are
dropped, unless none reaches it, in which case those within 0.01 of the best are kept (3.3).

Truncation, two modes (reference notes 3.2 and 3.3):

* default (as mmrotate): an object goes into a window when IoF >= ``iof_thr``; its full polygon is
  written (coordinates may leave the patch) and, when IoF < 1, its difficulty becomes 2.
* ``clip=True`` (as the DOTA development kit): an object wholly inside the window is written as is;
  one partly inside (0 < IoF < 1) is clipped to the window, a 5-vertex result is reduced to 4 points
  by collapsing its shortest edge, results with fewer than 4 or more than 5 vertices are dropped,
  the start vertex is chosen to best match the original, coordinates are clamped into
  ``[1, size]``, and the difficulty is kept when IoF > ``iof_thr``, else 2. As in the kit, the
  clip window ends at ``min(x + size, W - 1)``.

Multi-scale: for a rate other than 1 the image is resized by that rate (bicubic) and the same grid
is run on the resized image; patch names carry the rate (see :mod:`rgfl.dota.patches`), label
coordinates are in resized pixels, so a patch point ``p`` is ``(p + (x, y)) / rate`` in the source.
The resized image is never built whole: each patch is resampled straight from the source pixels
it covers (``cv2.warpAffine``), so memory stays at one decoded source image per worker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rgfl.dota.annotations import ImageLabels, format_number, read_label_file
from rgfl.dota.classes import DOTA_V2_0
from rgfl.dota.images import IMAGE_EXTENSIONS, encode_image, png_encoder_name, read_image
from rgfl.dota.patches import patch_name
from rgfl.errors import InputError, Problem, ProblemLog
from rgfl.fileio import atomic_write_bytes, atomic_write_text
from rgfl.geometry.window_iof import poly_window_iof

__all__ = [
    "PRESETS",
    "MANIFEST_NAME",
    "SplitConfig",
    "SplitSummary",
    "ImageResult",
    "window_starts",
    "sliding_windows",
    "assign_objects",
    "split_image",
    "split_dataset",
    "find_split_inputs",
    "read_manifest",
]

logger = logging.getLogger(__name__)

# name -> (size, step). The number after the size is the STEP: 1024/824 is overlap 200.
PRESETS: dict[str, tuple[int, int]] = {"dota-1024-512": (1024, 512), "dota-1024-824": (1024, 824)}
MANIFEST_NAME = "split_manifest.json"
STATE_DIR = ".rgfl-split"  # per-image done markers and the parameters of the run
MANIFEST_FORMAT = "rgfl-split/1"


@dataclass(frozen=True)
class SplitConfig:
    """Parameters of a split; everything that changes the output bytes is here.

    Attributes:
        size: window side in pixels (of the resized image for rates other than 1).
        step: distance between window starts; ``overlap = size - step``.
        rates: resize factors; each one gives its own set of patches.
        iof_thr: IoF threshold (keep at >= in the default mode; difficulty 2 at <= with ``clip``).
        img_rate_thr: minimum fraction of a window's area that must lie on the image.
        pad_value: B, G, R fill for patches smaller than ``size`` (only when the image is smaller
            than a window); None writes such patches at their smaller size.
        ext: ``png`` or ``jpg``.
        clip: DOTA devkit truncation (clip + conditional difficulty) instead of mmrotate's.
        classes: accepted class names; None accepts any name.
        png_compression: zlib level for PNG output (0-9).
        jpeg_quality: JPEG quality (0-100).
    """

    size: int = 1024
    step: int = 824
    rates: tuple[float, ...] = (1.0,)
    iof_thr: float = 0.7
    img_rate_thr: float = 0.6
    pad_value: tuple[int, int, int] | None = (104, 116, 124)
    ext: str = "png"
    clip: bool = False
    classes: tuple[str, ...] | None = DOTA_V2_0
    png_compression: int = 1
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise InputError(f"size must be a positive number of pixels, got {self.size}")
        if not isinstance(self.step, int) or not 0 < self.step <= self.size:
            raise InputError(
                f"step must be in 1..size ({self.size}), i.e. overlap in 0..{self.size - 1}; got step {self.step}"
            )
        if not self.rates or any(not (math.isfinite(r) and r > 0) for r in self.rates):
            raise InputError(f"rates must be positive numbers, got {list(self.rates)}")
        if len(set(self.rates)) != len(self.rates):
            raise InputError(f"rates must not repeat, got {list(self.rates)}")
        if not 0 < self.iof_thr <= 1:
            raise InputError(f"iof threshold must be in (0, 1], got {self.iof_thr}")
        if not 0 <= self.img_rate_thr <= 1:
            raise InputError(f"image-rate threshold must be in [0, 1], got {self.img_rate_thr}")
        if self.pad_value is not None and (
            len(self.pad_value) != 3 or any(not 0 <= int(v) <= 255 for v in self.pad_value)
        ):
            raise InputError(f"pad value must be three numbers 0..255 (B,G,R), got {self.pad_value}")
        if self.ext not in ("png", "jpg"):
            raise InputError(f"image extension must be png or jpg, got {self.ext!r}")
        if not 0 <= self.png_compression <= 9:
            raise InputError(f"PNG compression must be 0..9, got {self.png_compression}")
        if not 0 <= self.jpeg_quality <= 100:
            raise InputError(f"JPEG quality must be 0..100, got {self.jpeg_quality}")

    @property
    def overlap(self) -> int:
        return self.size - self.step

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["overlap"] = self.overlap
        data["rates"] = [float(r) for r in self.rates]
        data["pad_value"] = None if self.pad_value is None else [int(v) for v in self.pad_value]
        data["classes"] = None if self.classes is None else list(self.classes)
        data["truncation"] = "clip" if self.clip else "keep"
        del data["clip"]
        # The PNG bytes depend on the encoder (both decode to the same pixels).
        data["png_encoder"] = png_encoder_name(self.png_compression) if self.ext == "png" else None
        return data


# ---------------------------------------------------------------------------------------------
# Window grid
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Objects per window
# ---------------------------------------------------------------------------------------------


@dataclass
class WindowLabels:
    """Objects of one patch, in patch pixels, and what happened to the others."""

    polygons: np.ndarray  # float64 [K, 8]
    classes: list[str]
    difficult: np.ndarray  # int64 [K]
    truncated: int = 0  # written objects cut by the window border
    dropped: int = 0  # objects overlapping the window that were not written


def assign_objects(
    polygons: np.ndarray,
    classes: Sequence[str],
    difficult: np.ndarray,
    windows: np.ndarray,
    image_size: tuple[int, int],
    iof_thr: float = 0.7,
    clip: bool = False,
    size: int | None = None,
) -> list[WindowLabels]:
    """Decide which objects each window receives and how they are written.

    Args:
        polygons: float64 [N, 8] object polygons in the (resized) image's pixels.
        classes, difficult: [N] class names and difficulty flags.
        windows: int [M, 4] windows ``x1 y1 x2 y2`` from :func:`sliding_windows`.
        image_size: (width, height) of the (resized) image; used by the clip mode's window.
        iof_thr: see the module docstring for the two modes.
        clip: devkit truncation instead of mmrotate's.
        size: window side (clip mode clamps coordinates into ``[1, size]``); defaults to the
            first window's width.

    Returns:
        One :class:`WindowLabels` per window, objects in input order.
    """
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    difficult = np.asarray(difficult, dtype=np.int64)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    width, height = image_size
    if size is None:
        size = int(windows[0, 2] - windows[0, 0]) if len(windows) else 0
    if clip:
        # The devkit's window polygon ends at the last pixel index, not at the image border.
        iof_windows = windows.astype(np.float64)
        iof_windows[:, 2] = np.minimum(windows[:, 2], width - 1)
        iof_windows[:, 3] = np.minimum(windows[:, 3], height - 1)
    else:
        iof_windows = windows.astype(np.float64)
    iof = poly_window_iof(polygons, iof_windows)  # [N, M]

    results = []
    for m, (x1, y1, _, _) in enumerate(windows):
        column = iof[:, m]
        offset = np.array([x1, y1] * 4, dtype=np.float64)
        if not clip:
            keep = np.flatnonzero(column >= iof_thr)
            cut = column[keep] < 1.0
            flags = np.where(cut, 2, difficult[keep])
            results.append(
                WindowLabels(
                    polygons[keep] - offset,
                    [classes[i] for i in keep],
                    flags.astype(np.int64),
                    truncated=int(cut.sum()),
                    dropped=int(((column > 0) & (column < iof_thr)).sum()),
                )
            )
            continue
        out_polys, out_classes, out_flags = [], [], []
        truncated = dropped = 0
        window_box = iof_windows[m]
        for i in np.flatnonzero(column > 0):
            if column[i] >= 1.0:
                out_polys.append(polygons[i] - offset)
                out_flags.append(int(difficult[i]))
            else:
                clipped = _clip_like_devkit(polygons[i], window_box)
                if clipped is None:
                    dropped += 1
                    continue
                local = np.clip(clipped - offset, 1.0, float(size))
                out_polys.append(local)
                out_flags.append(int(difficult[i]) if column[i] > iof_thr else 2)
                truncated += 1
            out_classes.append(classes[i])
        results.append(
            WindowLabels(
                np.array(out_polys, dtype=np.float64).reshape(-1, 8),
                out_classes,
                np.array(out_flags, dtype=np.int64),
                truncated=truncated,
                dropped=dropped,
            )
        )
    return results


def _clip_like_devkit(polygon: np.ndarray, window: np.ndarray) -> np.ndarray | None:
    """Polygon [8] clipped to window ``x1 y1 x2 y2`` and brought to 4 points, or None.

    The intersection is oriented with positive shoelace area (clockwise on screen, DOTA's order);
    5 vertices -> the shortest edge collapses to its midpoint; fewer than 4 or more than 5 -> None;
    then the cyclic start that is closest to the original polygon is chosen.
    """
    import shapely

    shape = shapely.Polygon(polygon.reshape(4, 2))
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    piece = shapely.intersection(shape, shapely.box(*window))
    if not isinstance(piece, shapely.Polygon) or piece.is_empty:
        return None
    points = np.asarray(piece.exterior.coords)[:-1]
    if _shoelace(points) < 0:
        points = points[::-1]
    if len(points) == 5:
        points = _collapse_shortest_edge(points)
    if len(points) != 4:
        return None
    original = polygon.reshape(4, 2)
    errors = [np.sum((np.roll(points, -k, axis=0) - original) ** 2) for k in range(4)]
    return np.roll(points, -int(np.argmin(errors)), axis=0).reshape(8)


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _collapse_shortest_edge(points: np.ndarray) -> np.ndarray:
    """5 points -> 4: the shortest edge (first one on ties) is replaced by its midpoint."""
    lengths = np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)
    k = int(np.argmin(lengths))
    nxt = (k + 1) % 5
    merged = points.copy()
    merged[k] = (points[k] + points[nxt]) / 2
    return np.delete(merged, nxt, axis=0)


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageTask:
    stem: str
    image_path: Path | None
    label_path: Path | None


@dataclass
class ImageResult:
    """What splitting one image did; returned from the workers to the parent."""

    stem: str
    record: dict | None = None  # manifest entry; None when the image was skipped
    patches: int = 0
    objects: int = 0
    truncated: int = 0
    dropped: int = 0
    problems: list[Problem] = field(default_factory=list)
    resumed: bool = False
    error: str | None = None  # strict mode: the first problem, as the message to stop with
    cpu_seconds: float = 0.0  # CPU time the worker spent on this image


def _source_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [int(stat.st_size), int(stat.st_mtime_ns)]


def _marker_path(out: Path, stem: str) -> Path:
    return out / STATE_DIR / "done" / f"{stem}.json"


def _load_marker(out: Path, task: ImageTask, parameters: dict) -> ImageResult | None:
    path = _marker_path(out, task.stem)
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stamps = {
        "image": _source_stamp(task.image_path) if task.image_path else None,
        "labels": _source_stamp(task.label_path) if task.label_path else None,
    }
    if marker.get("parameters") != parameters or marker.get("sources") != stamps:
        return None
    counts = marker["counts"]
    problems = [Problem(text) for text in marker.get("problems", [])]
    return ImageResult(task.stem, marker["record"], resumed=True, problems=problems, **counts)


def _cut_patch(image: np.ndarray, window: np.ndarray, rate: float, resized: tuple[int, int], config: SplitConfig):
    """Pixels of ``window`` (x1 y1 x2 y2, resized pixels) as a BGR array (a view when possible)."""
    x1, y1 = int(window[0]), int(window[1])
    x2, y2 = min(int(window[2]), resized[0]), min(int(window[3]), resized[1])
    if rate == 1.0:
        patch = image[y1:y2, x1:x2]
    else:
        patch = _resample_region(image, x1, y1, x2, y2, rate)
    height, width = patch.shape[:2]
    if config.pad_value is not None and (width < config.size or height < config.size):
        padded = np.empty((config.size, config.size, 3), dtype=np.uint8)
        padded[...] = np.asarray(config.pad_value, dtype=np.uint8)
        padded[:height, :width] = patch
        patch = padded
    return patch


def _resample_region(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, rate: float) -> np.ndarray:
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


def resized_size(width: int, height: int, rate: float) -> tuple[int, int]:
    """Size of the image resized by ``rate`` (rounded like ``cv2.resize(fx=rate, fy=rate)``)."""
    if rate == 1.0:
        return width, height
    return max(int(round(width * rate)), 1), max(int(round(height * rate)), 1)


def _label_text(labels: WindowLabels, decimals: int) -> str:
    lines = []
    for polygon, name, flag in zip(labels.polygons, labels.classes, labels.difficult):
        coords = " ".join(format_number(v, decimals) for v in polygon)
        lines.append(f"{coords} {name} {int(flag)}\n")
    return "".join(lines)


def split_image(task: ImageTask, out: Path, config: SplitConfig, strict: bool = False) -> ImageResult:
    """Split one image into ``out/images`` and ``out/labelTxt``; skip it if already done.

    Bad input is reported in the result (``problems``; with ``strict`` as ``error``), never raised.
    """
    cpu_start = time.process_time()
    result = _split_image(task, out, config, strict)
    result.cpu_seconds = time.process_time() - cpu_start
    return result


def _split_image(task: ImageTask, out: Path, config: SplitConfig, strict: bool) -> ImageResult:
    parameters = config.to_json()
    done = _load_marker(out, task, parameters)
    if done is not None:
        return done
    problems = ProblemLog(strict=strict, logger=_SILENT)
    result = ImageResult(task.stem)
    try:
        if task.image_path is None:
            problems.report("label file has no image in images/", task.label_path)
            result.problems = problems.problems
            return result
        labels = ImageLabels()
        if task.label_path is not None:
            labels = read_label_file(task.label_path, config.classes, problems)
        image = read_image(task.image_path)
    except InputError as error:
        if strict:
            result.error = str(error)
            return result
        problems.problems.append(Problem(error.reason, error.path, error.line))
        result.problems = problems.problems
        return result

    height, width = image.shape[:2]
    record: dict = {
        "stem": task.stem,
        "file": task.image_path.name,
        "width": width,
        "height": height,
        "gsd": labels.gsd,
        "patches": [],
    }
    for rate in config.rates:
        resized = resized_size(width, height, rate)
        windows = sliding_windows(resized[0], resized[1], config.size, config.step, config.img_rate_thr)
        per_window = assign_objects(
            labels.polygons * rate,
            labels.classes,
            labels.difficult,
            windows,
            resized,
            config.iof_thr,
            config.clip,
            config.size,
        )
        decimals = 3 if rate == 1.0 else 6
        for window, objects in zip(windows, per_window):
            x, y = int(window[0]), int(window[1])
            name = patch_name(task.stem, x, y, config.size, rate)
            patch = _cut_patch(image, window, rate, resized, config)
            data = encode_image(patch, config.ext, config.png_compression, config.jpeg_quality)
            atomic_write_bytes(out / "images" / f"{name}.{config.ext}", data)
            atomic_write_text(out / "labelTxt" / f"{name}.txt", _label_text(objects, decimals))
            record["patches"].append(
                {
                    "name": name,
                    "rate": float(rate),
                    "x": x,
                    "y": y,
                    "width": int(patch.shape[1]),
                    "height": int(patch.shape[0]),
                    "window": [x, y, min(int(window[2]), resized[0]), min(int(window[3]), resized[1])],
                }
            )
            result.patches += 1
            result.objects += len(objects.classes)
            result.truncated += objects.truncated
            result.dropped += objects.dropped
    del image
    result.record = record
    result.problems = problems.problems
    marker = {
        "parameters": parameters,
        "sources": {
            "image": _source_stamp(task.image_path),
            "labels": _source_stamp(task.label_path) if task.label_path else None,
        },
        "record": record,
        "counts": {
            "patches": result.patches,
            "objects": result.objects,
            "truncated": result.truncated,
            "dropped": result.dropped,
        },
        "problems": [str(p) for p in result.problems],
    }
    atomic_write_text(_marker_path(out, task.stem), json.dumps(marker, sort_keys=True) + "\n")
    return result


class _SilentLogger(logging.Logger):
    """Workers return their problems to the parent, which logs them once, in order."""

    def __init__(self) -> None:
        super().__init__("rgfl.split.worker", logging.CRITICAL + 1)


_SILENT = _SilentLogger()


# ---------------------------------------------------------------------------------------------
# A folder
# ---------------------------------------------------------------------------------------------


@dataclass
class SplitSummary:
    """Totals of a :func:`split_dataset` run (``resumed`` images count in every total)."""

    images: int = 0
    resumed: int = 0
    skipped_images: int = 0
    patches: int = 0
    objects: int = 0
    truncated: int = 0
    dropped: int = 0
    bad_input: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # summed over the images (workers' CPU time, start-up excluded)
    problems: list[Problem] = field(default_factory=list)

    def add(self, result: ImageResult) -> None:
        if result.record is None:
            self.skipped_images += 1
        else:
            self.images += 1
            self.resumed += int(result.resumed)
        self.patches += result.patches
        self.objects += result.objects
        self.truncated += result.truncated
        self.dropped += result.dropped
        self.bad_input += len(result.problems)
        self.cpu_seconds += result.cpu_seconds
        self.problems.extend(result.problems)


def find_split_inputs(src: Path) -> tuple[list[ImageTask], list[Problem]]:
    """Pair ``src/images/<stem>.<ext>`` with ``src/labelTxt/<stem>.txt``, sorted by stem.

    Label files without an image become tasks without an image (reported as skipped by the
    worker); a second image with the same stem is a problem. Without ``labelTxt/`` (a test set)
    every image gets no labels.
    """
    image_dir, label_dir = src / "images", src / "labelTxt"
    if not image_dir.is_dir():
        raise InputError(f"no images/ folder in {src}; expected {src}/images/<name>.png (and labelTxt/<name>.txt)")
    problems: list[Problem] = []
    images: dict[str, Path] = {}
    for path in sorted(image_dir.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if path.stem in images:
            problems.append(Problem(f"two images with the same name; using {images[path.stem].name}", path))
            continue
        images[path.stem] = path
    labels: dict[str, Path] = {}
    has_labels = label_dir.is_dir()
    if has_labels:
        labels = {p.stem: p for p in sorted(label_dir.glob("*.txt")) if not p.name.startswith(".")}
    tasks = []
    for stem in sorted(set(images) | set(labels)):
        label_path = labels.get(stem)
        if has_labels and label_path is None:
            problems.append(Problem("no label file in labelTxt/; image split with no objects", images[stem]))
        tasks.append(ImageTask(stem, images.get(stem), label_path))
    return tasks, problems


def _prepare_out(out: Path, parameters: dict, src: Path) -> None:
    state = out / STATE_DIR
    params_path = state / "parameters.json"
    if params_path.is_file():
        try:
            previous = json.loads(params_path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous is not None and previous != parameters:
            changed = sorted(k for k in set(previous) | set(parameters) if previous.get(k) != parameters.get(k))
            raise InputError(
                f"{out} holds a split made with other parameters ({', '.join(changed)} differ); "
                "use an empty output folder or the same options"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and is not an rgfl split folder; choose an empty or new folder")
    if out.resolve() == src.resolve():
        raise InputError("the output folder must differ from the source folder")
    for sub in ("images", "labelTxt", f"{STATE_DIR}/done"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Temporary files of a run killed before it could clean up (atomic writes never leave more).
    for sub in ("images", "labelTxt", f"{STATE_DIR}/done", STATE_DIR, ""):
        for stale in (out / sub).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    atomic_write_text(params_path, json.dumps(parameters, sort_keys=True, indent=1) + "\n")


def _worker_init() -> None:
    # One worker per core: OpenCV's own thread pool would only compete with the other workers.
    cv2.setNumThreads(1)
    # Ctrl-C is the parent's to handle (it stops the pool); the SIGTERM it then sends unwinds the
    # worker through the atomic writes' cleanup instead of killing it mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _run_task(args: tuple[ImageTask, Path, SplitConfig, bool]) -> ImageResult:
    return split_image(*args)


def split_dataset(
    src: str | Path,
    out: str | Path,
    config: SplitConfig,
    workers: int | None = None,
    strict: bool = False,
    progress: Callable[[ImageResult, int], None] | None = None,
) -> SplitSummary:
    """Split every image of ``src`` into ``out`` and write ``out/split_manifest.json``.

    Args:
        src: folder with ``images/`` and optionally ``labelTxt/``.
        out: output folder (created); a folder from an interrupted run with the same parameters
            is resumed: finished images are skipped, the result is byte-identical.
        workers: processes (default: all cores); 1 runs in this process.
        strict: stop at the first bad input (InputError) instead of skipping it.
        progress: called in this process as ``progress(result, total_images)`` after each image.

    Raises:
        InputError: missing ``images/``, an output folder of another split, or with ``strict``
            the first bad input.
    """
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    tasks, listing_problems = find_split_inputs(src)
    summary = SplitSummary()
    for problem in listing_problems:
        if strict:
            raise InputError(problem.message, problem.path, problem.line)
        logger.warning("skipped: %s", problem)
        summary.bad_input += 1
        summary.problems.append(problem)
    parameters = config.to_json()
    _prepare_out(out, parameters, src)
    workers = _default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, max(len(tasks), 1))

    results: dict[str, ImageResult] = {}
    jobs = [(task, out, config, strict) for task in tasks]
    if workers == 1:
        outcomes = map(_run_task, jobs)
        pool = None
    else:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            context.set_forkserver_preload(["rgfl.dota.split"])
        pool = context.Pool(workers, initializer=_worker_init)
        outcomes = pool.imap_unordered(_run_task, jobs, chunksize=1)
    try:
        for result in outcomes:
            if result.error is not None:
                raise InputError(result.error)
            if not result.resumed:
                for problem in result.problems:
                    logger.warning("skipped: %s", problem)
            results[result.stem] = result
            if progress is not None:
                progress(result, len(tasks))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    for stem in sorted(results):
        summary.add(results[stem])
    manifest = {
        "format": MANIFEST_FORMAT,
        "parameters": parameters,
        "source": str(src.resolve()),
        "images": [results[s].record for s in sorted(results) if results[s].record is not None],
        "skipped": [
            {"stem": s, "problems": [str(p) for p in results[s].problems]}
            for s in sorted(results)
            if results[s].record is None
        ],
    }
    atomic_write_text(out / MANIFEST_NAME, _manifest_text(manifest))
    summary.seconds = time.perf_counter() - start
    return summary


def _manifest_text(manifest: dict) -> str:
    """JSON with one patch per line: readable, diffable, and a fraction of the size of full indent."""

    def dump(value) -> str:
        return json.dumps(value, sort_keys=True)

    lines = ["{"]
    for key in ("format", "parameters", "source", "skipped"):
        lines.append(f" {dump(key)}: {dump(manifest[key])},")
    lines.append(' "images": [')
    for i, image in enumerate(manifest["images"]):
        head = {k: v for k, v in image.items() if k != "patches"}
        lines.append(f"  {dump(head)[:-1]}, \"patches\": [")
        patches = image["patches"]
        lines.extend(f"   {dump(p)}{',' if j + 1 < len(patches) else ''}" for j, p in enumerate(patches))
        lines.append("  ]}" + ("," if i + 1 < len(manifest["images"]) else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def read_manifest(out: str | Path) -> dict:
    """The manifest of a split folder (see :func:`split_dataset`); raises InputError."""
    path = Path(out) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no split manifest: was this folder written by `rgfl split`?", path) from None
    except ValueError as error:
        raise InputError(f"manifest is not valid JSON ({error})", path) from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"unknown manifest format {manifest.get('format')!r}", path)
    return manifest


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
