"""Cut large DOTA images into fixed-size patches with their labels (``rgfl split``).

Pipeline per image: read labels and image -> for each rate: window grid on the image resized by
that rate (:mod:`rgfl.dota.split_grid`) -> which objects each window receives and how they are
written, in one of two truncation modes (:mod:`rgfl.dota.split_objects`) -> cut, pad, encode and
write each patch (:mod:`rgfl.dota.split_pixels`) and its label file -> write a done marker.
:func:`split_dataset` runs that over a folder with a pool of worker processes and writes a JSON
manifest that lets merge map detections back.

Multi-scale: for a rate other than 1 the image is resized by that rate (bicubic) and the same grid
is run on the resized image; patch names carry the rate (see :mod:`rgfl.dota.patches`), label
coordinates are in resized pixels, so a patch point ``p`` is ``(p + (x, y)) / rate`` in the source.

The grid and object functions are re-exported here, so ``from rgfl.dota.split import
assign_objects`` keeps working.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rgfl.dota.annotations import ImageLabels, format_number, read_label_file
from rgfl.dota.classes import DOTA_V2_0
from rgfl.dota.images import IMAGE_EXTENSIONS, encode_image, png_encoder_name, read_image
from rgfl.dota.patches import patch_name
from rgfl.dota.split_grid import resized_size, sliding_windows, window_starts
from rgfl.dota.split_manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_manifest, write_manifest
from rgfl.dota.split_objects import WindowLabels, assign_objects, devkit_label_polygons
from rgfl.dota.split_pixels import cut_patch
from rgfl.dota.split_state import prepare_out, read_done_marker, source_stamp, write_done_marker
from rgfl.errors import InputError, Problem, ProblemLog
from rgfl.fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "PRESETS",
    "MANIFEST_NAME",
    "SplitConfig",
    "SplitSummary",
    "ImageResult",
    "window_starts",
    "sliding_windows",
    "resized_size",
    "WindowLabels",
    "assign_objects",
    "devkit_label_polygons",
    "split_image",
    "split_dataset",
    "find_split_inputs",
    "read_manifest",
]

logger = logging.getLogger(__name__)

# name -> (size, step). The number after the size is the STEP: 1024/824 is overlap 200.
PRESETS: dict[str, tuple[int, int]] = {"dota-1024-512": (1024, 512), "dota-1024-824": (1024, 824)}


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
        # "clip-int": the devkit's integer coordinates; earlier versions wrote "clip" with float
        # coordinates, so resuming such an OUT is refused instead of mixing the two.
        data["truncation"] = "clip-int" if self.clip else "keep"
        del data["clip"]
        # The PNG bytes depend on the encoder (both decode to the same pixels).
        data["png_encoder"] = png_encoder_name(self.png_compression) if self.ext == "png" else None
        return data


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageTask:
    stem: str
    image_path: Path | None
    label_path: Path | None
    write_labels: bool = True  # False for a source without labelTxt/ (a test set): patches only


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
    marker = read_done_marker(out, task.stem, task.image_path, task.label_path, parameters)
    if marker is not None:
        problems = [Problem(text) for text in marker.get("problems", [])]
        return ImageResult(task.stem, marker["record"], resumed=True, problems=problems, **marker["counts"])
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
        height, width = image.shape[:2]
        too_small = _rates_too_small(width, height, config.rates)
        if too_small:
            # A bad option, not bad data: stop whatever --strict says (the parent raises it).
            result.error = _too_small_message(task.image_path, width, height, too_small)
            return result
        labels = _drop_objects_outside(labels, width, height, task.label_path, problems)
    except InputError as error:
        if strict:
            result.error = str(error)
            return result
        problems.problems.append(Problem(error.reason, error.path, error.line))
        result.problems = problems.problems
        return result

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
        polygons = devkit_label_polygons(labels.polygons, rate) if config.clip else labels.polygons * rate
        per_window = assign_objects(
            polygons,
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
            patch = cut_patch(image, window, rate, resized, config.size, config.pad_value)
            data = encode_image(patch, config.ext, config.png_compression, config.jpeg_quality)
            atomic_write_bytes(out / "images" / f"{name}.{config.ext}", data)
            if task.write_labels:
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
            "image": source_stamp(task.image_path),
            "labels": source_stamp(task.label_path) if task.label_path else None,
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
    write_done_marker(out, task.stem, marker)
    return result


def _rates_too_small(width: int, height: int, rates: tuple[float, ...]) -> list[float]:
    """The rates that resize a ``width`` x ``height`` image below 1 pixel on a side."""
    return [rate for rate in rates if round(width * rate) < 1 or round(height * rate) < 1]


def _too_small_message(path: Path, width: int, height: int, rates: list[float]) -> str:
    smallest = 0.5 / min(width, height)
    return (
        f"{path}: --rates {','.join(f'{r:g}' for r in rates)} would resize this {width}x{height} image to less than "
        f"1 pixel on a side; use rates of at least {smallest:.3g} for it"
    )


def _drop_objects_outside(
    labels: ImageLabels, width: int, height: int, label_path: Path | None, problems: ProblemLog
) -> ImageLabels:
    """Drop (and report, with file and line) objects that lie wholly outside the image.

    Such objects come from the label file of another, larger image; written as they were, they
    would land on padding or in no window at all without a word.
    """
    if not len(labels):
        return labels
    xs, ys = labels.polygons[:, 0::2], labels.polygons[:, 1::2]
    outside = (xs.max(1) <= 0) | (ys.max(1) <= 0) | (xs.min(1) >= width) | (ys.min(1) >= height)
    if not outside.any():
        return labels
    for row in np.flatnonzero(outside).tolist():
        line = int(labels.line_numbers[row]) or None
        x1, y1, x2, y2 = xs[row].min(), ys[row].min(), xs[row].max(), ys[row].max()
        problems.report(
            f"object lies wholly outside the {width}x{height} image (box {x1:g},{y1:g} to {x2:g},{y2:g}): "
            "labels of another image?",
            label_path,
            line,
        )
    return labels.select(~outside)


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
        tasks.append(ImageTask(stem, images.get(stem), label_path, write_labels=has_labels))
    return tasks, problems


def check_rates_fit(tasks: list[ImageTask], rates: tuple[float, ...]) -> None:
    """Refuse, before anything is written, rates that shrink an image below 1 pixel.

    Reads only the image headers (Pillow), and only when some rate is below 1. An image whose
    header cannot be read is left to the worker, which reports it (or refuses the rate itself).
    """
    if min(rates) >= 1:
        return
    from PIL import Image

    for task in tasks:
        if task.image_path is None:
            continue
        try:
            with Image.open(task.image_path) as image:
                width, height = image.size
        except Exception:  # noqa: BLE001 - any unreadable header: the worker reports the file
            continue
        too_small = _rates_too_small(width, height, rates)
        if too_small:
            raise InputError(_too_small_message(task.image_path, width, height, too_small))


def _worker_init() -> None:
    # One worker per core: OpenCV's own thread pool would only compete with the other workers.
    cv2.setNumThreads(1)
    # Ctrl-C is the parent's to handle (it stops the pool); the SIGTERM it then sends unwinds the
    # worker through the atomic writes' cleanup instead of killing it mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """End this worker when the process that made the pool dies (kill -9 of ``rgfl split``).

    Pool workers hold both ends of the task queue's pipe, so they never see EOF and would wait
    for tasks forever. The parent's sentinel becomes readable when the parent is gone; the
    SIGTERM sent to ourselves then unwinds through the atomic writes' cleanup (a temp file that
    still remains is removed by the next run).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="rgfl-split-parent-watch", daemon=True).start()


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
    check_rates_fit(tasks, config.rates)
    parameters = config.to_json()
    prepare_out(out, parameters, src, labels=(src / "labelTxt").is_dir())
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
    finished = False
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
        finished = True
    finally:
        if pool is not None:
            _stop_pool(pool, finished)

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
    write_manifest(out, manifest)
    summary.seconds = time.perf_counter() - start
    return summary


def _stop_pool(pool, finished: bool) -> None:
    """Let the workers exit on their own after a finished run; stop them only on error or Ctrl-C.

    ``Pool.terminate`` takes the task queue's read lock and never releases it, so a worker that
    has not yet read its end-of-work sentinel can wait on that lock while the parent waits in
    ``join`` for it: a hang seen about once in a hundred reruns of a finished split. After
    ``close`` every idle worker reads its sentinel and exits normally.
    """
    if finished:
        pool.close()
    else:
        pool.terminate()
    pool.join()


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
