"""Running a detector over split patches, streamed to disk one source image at a time.

A full DOTA test set is tens of thousands of 1024 px patches with up to 2000 detections each;
keeping all of that in memory, or losing it to an interrupted run, is not an option. So:

1. :class:`PatchImages` lists the patches of a split folder, ordered by source image (then rate,
   y, x), and reads them in DataLoader workers as ``uint8 [3, H, W]`` RGB tensors.
2. :func:`iter_patch_detections` runs the detector over batches (autocast on GPU) and yields the
   detections of each patch, as polygons in patch pixels, in dataset order.
3. :func:`stream_patch_detections` gathers the patches of one source image and, once the last of
   them is done, writes one shard file ``<shard_dir>/<stem>.txt`` atomically. A second run skips
   the source images that already have a shard, so an interrupted run resumes where it stopped
   (at source-image granularity); a fingerprint file refuses to mix results of different
   checkpoints, data or settings.
4. :func:`shards_to_task1` concatenates the shards into patch-level ``Task1_<class>.txt`` files,
   line by line, which ``rgfl eval --dets`` and ``rgfl merge-submit --dets`` read.

Shard lines are ``<class index> <patch name> <score> x1 y1 ... x4 y4`` with the score written
unrounded (``repr``), because rounding scores creates ties that change the metric.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rgfl.dota.patches import PatchOrigin, parse_patch_name
from rgfl.errors import InputError, RgflError
from rgfl.fileio import atomic_write, atomic_write_text, remove_stale_temp_files

__all__ = [
    "IMAGE_SUFFIXES",
    "InferenceSettings",
    "PatchImages",
    "PatchDetections",
    "collate_patches",
    "iter_patch_detections",
    "stream_patch_detections",
    "shards_to_task1",
    "autocast_context",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SIZE_DIVISOR = 32  # the detector's largest FPN stride used for padding (contract of collate_batch)


@dataclass(frozen=True)
class InferenceSettings:
    """How a detector is run over patches.

    Attributes:
        batch_size: patches per forward pass.
        workers: DataLoader worker processes that decode images (0: in the main process).
        device: ``cpu``, ``cuda``, ``cuda:1``...
        amp: autocast (fp16/bf16) on CUDA; ignored on CPU, so that CPU results are float32 on
            every machine (bf16 convolutions are faster only on CPUs with bfloat16
            instructions: R50 forward at 512 px took 0.55-0.65 of its float32 time on an
            AVX512-BF16 machine; without those instructions bf16 is emulated, not measured here).
        input_size: resize each patch so that its longer side is this many pixels before the
            detector sees it (the ``data.input_size`` the model was trained with); None keeps
            patches as they are. Boxes are scaled back to patch pixels.
    """

    batch_size: int = 4
    workers: int = 2
    device: str = "cpu"
    amp: bool = False  # fp32 as the reference recipe tests; --amp opts in
    input_size: int | None = None


def autocast_context(device: torch.device, amp: bool):
    """``torch.autocast`` on CUDA when ``amp`` (bf16 where supported, else fp16); a no-op otherwise."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return torch.autocast(device_type=device.type, enabled=False)


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError("cannot decode the image (unreadable, truncated or not an image)", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_to_input(image: np.ndarray, input_size: int | None) -> tuple[np.ndarray, float]:
    """Resize ``uint8 [H, W, 3]`` so that the longer side is ``input_size``; returns it and the scale.

    The same rule as the training data pipeline (``data.input_size``): scale = input_size / max(H, W),
    sides rounded to the nearest pixel, bilinear (area when shrinking).
    """
    if input_size is None:
        return image, 1.0
    height, width = image.shape[:2]
    scale = float(input_size) / max(height, width)
    if scale == 1.0:
        return image, 1.0
    import cv2

    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR), scale


def unscale_boxes(boxes: Tensor, scale: float) -> Tensor:
    """obb ``[N, 5]`` from model-input pixels back to patch pixels (``input = patch * scale``)."""
    if scale == 1.0:
        return boxes
    boxes = boxes.clone()
    boxes[:, :4] /= scale
    return boxes


def list_patch_images(image_dir: Path) -> list[tuple[Path, PatchOrigin]]:
    """Image files of a split folder with their parsed origin, ordered by source image.

    Raises InputError when the folder is missing or empty, or a file name is not a patch name.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError("no images folder: expected <split root>/images/<patch>.png as written by `rgfl split`", image_dir)
    entries = []
    for path in image_dir.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        try:
            origin = parse_patch_name(path.stem)
        except InputError as error:
            raise InputError(f"{error.reason}; is this a folder written by `rgfl split`?", path) from None
        entries.append((path, origin))
    if not entries:
        raise InputError("no patch images found (looked for " + ", ".join(IMAGE_SUFFIXES) + ")", image_dir)
    entries.sort(key=lambda entry: (entry[1].stem, entry[1].rate, entry[1].y, entry[1].x, entry[0].name))
    return entries


class PatchImages(torch.utils.data.Dataset):
    """Patch images of a split folder, ordered so that each source image's patches are contiguous.

    ``dataset[i] -> (image uint8 Tensor[3, H, W] RGB, patch name, scale)``: the image resized to
    ``input_size`` (longer side) when given, ``scale`` = input pixels / patch pixels.
    """

    def __init__(self, entries: Sequence[tuple[Path, PatchOrigin]], input_size: int | None = None):
        self.paths = [path for path, _ in entries]
        self.origins = [origin for _, origin in entries]
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, str, float]:
        image, scale = resize_to_input(_read_rgb(self.paths[index]), self.input_size)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(), self.paths[index].stem, scale


def collate_patches(samples: Sequence[tuple[Tensor, str, float]]) -> tuple[Tensor, list[tuple[int, int]], list[str], list[float]]:
    """Stack patches into ``uint8 [B, 3, H', W']``, zero-padded bottom/right to a multiple of 32.

    Returns:
        images, the true ``(height, width)`` of each (resized) patch, the patch names, the scales.
    """
    sizes = [(int(sample[0].shape[1]), int(sample[0].shape[2])) for sample in samples]
    height = -(-max(h for h, _ in sizes) // SIZE_DIVISOR) * SIZE_DIVISOR
    width = -(-max(w for _, w in sizes) // SIZE_DIVISOR) * SIZE_DIVISOR
    batch = torch.zeros((len(samples), 3, height, width), dtype=torch.uint8)
    for k, sample in enumerate(samples):
        image = sample[0]
        batch[k, :, : image.shape[1], : image.shape[2]] = image
    return batch, sizes, [sample[1] for sample in samples], [sample[2] if len(sample) > 2 else 1.0 for sample in samples]


@dataclass
class PatchDetections:
    """Detections of one patch in patch pixels.

    Attributes:
        name: patch name (file stem).
        polygons: float64 ``[N, 8]`` DOTA polygons.
        scores: float64 ``[N]``.
        labels: int64 ``[N]``.
    """

    name: str
    polygons: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def detections_to_numpy(boxes: Tensor, scores: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obb ``[N, 5]`` (le135) + scores ``[N]`` + labels ``[N]`` -> polygons float64 ``[N, 8]``, scores, labels."""
    from rgfl.ops import obb2poly

    boxes = boxes.detach().float().cpu()
    polygons = obb2poly(boxes.double()).reshape(-1, 8).numpy() if boxes.numel() else np.zeros((0, 8))
    return (
        np.asarray(polygons, dtype=np.float64),
        scores.detach().float().cpu().double().numpy(),
        labels.detach().cpu().long().numpy(),
    )


def _loader(dataset: PatchImages, settings: InferenceSettings, device: torch.device):
    workers = max(0, int(settings.workers))
    if len(dataset) <= 4 * settings.batch_size:
        workers = 0  # starting worker processes costs more than decoding a handful of patches
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,  # patches of a source image must arrive together and in order
        num_workers=workers,
        collate_fn=collate_patches,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )


@torch.inference_mode()
def iter_patch_detections(detector: torch.nn.Module, dataset: PatchImages, settings: InferenceSettings) -> Iterator[PatchDetections]:
    """Run ``detector.predict`` over the dataset in batches; yield each patch's detections in order."""
    device = torch.device(settings.device)
    detector.eval()
    for images, sizes, names, scales in _loader(dataset, settings, device):
        images = images.to(device, non_blocking=True)
        with autocast_context(device, settings.amp):
            results = detector.predict(images, image_sizes=sizes)
        # The whole batch to the host in one copy per field (not three per patch: each is a sync).
        counts = [len(result) for result in results]
        boxes = torch.cat([unscale_boxes(result.boxes.detach().float(), scale) for result, scale in zip(results, scales)])
        polygons, scores, labels = detections_to_numpy(boxes, torch.cat([r.scores for r in results]), torch.cat([r.labels for r in results]))
        bounds = np.cumsum([0] + counts)
        for name, start, stop in zip(names, bounds[:-1], bounds[1:]):
            yield PatchDetections(name, polygons[start:stop], scores[start:stop], labels[start:stop])


def _shard_lines(detections: Sequence[PatchDetections]) -> str:
    """Task1 lines prefixed with the class index: ``<label> <patch> <score> x1 y1 ... x4 y4``."""
    from rgfl.dota.task1 import format_task1_lines

    lines = []
    for patch in detections:
        for label in np.unique(patch.labels).tolist():
            keep = patch.labels == label
            text = format_task1_lines(patch.name, patch.scores[keep], patch.polygons[keep])
            lines.extend(f"{label} {line}\n" for line in text.splitlines())
    return "".join(lines)


FINGERPRINT_FILE = "inference.json"


def _check_fingerprint(shard_dir: Path, fingerprint: dict) -> None:
    """Refuse to resume into a folder written with another checkpoint, data set or settings."""
    path = shard_dir / FINGERPRINT_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != fingerprint:
            raise RgflError(
                f"{shard_dir} holds detections of another run (checkpoint, data or settings differ: "
                f"{_fingerprint_diff(previous, fingerprint)}); choose another --out or delete that folder"
            )
        remove_stale_temp_files(shard_dir)  # shards a killed run was writing (kill -9)
    else:
        shard_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def _fingerprint_diff(previous: dict | None, current: dict) -> str:
    if not isinstance(previous, dict):
        return "unreadable inference.json"
    keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return ", ".join(keys) or "?"


@dataclass
class StreamSummary:
    """What :func:`stream_patch_detections` did."""

    source_images: int = 0
    resumed_images: int = 0
    patches: int = 0
    detections: int = 0


def stream_patch_detections(
    detector: torch.nn.Module,
    image_dir: Path,
    shard_dir: Path,
    settings: InferenceSettings,
    fingerprint: dict | None = None,
    on_patches: Callable[[int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> StreamSummary:
    """Infer every patch under ``image_dir``, writing one shard per source image into ``shard_dir``.

    Args:
        detector: module with ``predict(images uint8 [B,3,H,W], image_sizes) -> list[Detections]``.
        image_dir: ``<split root>/images``.
        shard_dir: where ``<stem>.txt`` shards and the fingerprint go; created when missing.
        fingerprint: JSON-able description of checkpoint, data and settings (see ``_check_fingerprint``).
        on_patches: progress callback, called with the number of patches just finished.
        on_start: called once with (patches to run, patches already done) before inference starts.
    """
    shard_dir = Path(shard_dir)
    entries = list_patch_images(image_dir)
    # What changes the numbers: the weights and data (caller's fingerprint), the input resize and
    # reduced precision (autocast only acts on CUDA). Batch size and workers do not.
    numerics = {"input_size": settings.input_size, "autocast": bool(settings.amp and settings.device.startswith("cuda"))}
    _check_fingerprint(shard_dir, {**(fingerprint or {}), "settings": numerics})

    totals: dict[str, int] = {}
    for _, origin in entries:
        totals[origin.stem] = totals.get(origin.stem, 0) + 1
    done = {stem for stem in totals if (shard_dir / f"{stem}.txt").is_file()}
    todo = [entry for entry in entries if entry[1].stem not in done]
    summary = StreamSummary(source_images=len(totals), resumed_images=len(done))
    if on_start is not None:
        on_start(len(todo), len(entries) - len(todo))
    if done:
        logger.info("resuming: %d of %d source images already have detections in %s", len(done), len(totals), shard_dir)
    if not todo:
        return summary

    dataset = PatchImages(todo, settings.input_size)
    pending: list[PatchDetections] = []
    current: str | None = None
    for patch in iter_patch_detections(detector, dataset, settings):
        stem = parse_patch_name(patch.name).stem
        if current is not None and stem != current:
            raise AssertionError("patches of a source image must be contiguous")  # pragma: no cover
        current = stem
        pending.append(patch)
        summary.patches += 1
        summary.detections += len(patch.scores)
        if on_patches is not None:
            on_patches(1)
        if len(pending) == totals[stem]:
            atomic_write_text(shard_dir / f"{stem}.txt", _shard_lines(pending))
            pending, current = [], None
    assert not pending, "an incomplete source image was left over"
    return summary


def shard_stems(shard_dir: Path) -> list[str]:
    return sorted(path.stem for path in Path(shard_dir).glob("*.txt") if not path.name.startswith("."))


def shards_to_task1(shard_dir: Path, out_dir: Path, class_names: Sequence[str], stems: Sequence[str] | None = None) -> int:
    """Concatenate shards into ``out_dir/Task1_<class>.txt`` (patch-level, one file per class).

    Lines are ``<patch name> <score> x1 y1 ... x4 y4``; every class gets a file, empty when it has no
    detection. Reads one shard at a time and streams lines out, so memory stays bounded. Returns
    the number of detections written.
    """
    from rgfl.dota.task1 import task1_filename

    shard_dir, out_dir = Path(shard_dir), Path(out_dir)
    stems = shard_stems(shard_dir) if stems is None else list(stems)
    remove_stale_temp_files(out_dir)  # class files a killed run was writing (kill -9)
    count = 0
    with ExitStack() as stack:  # every class file appears complete, or none does
        handles = [stack.enter_context(atomic_write(out_dir / task1_filename(name))) for name in class_names]
        for stem in stems:
            path = shard_dir / f"{stem}.txt"
            with open(path, encoding="utf-8") as shard:
                for number, line in enumerate(shard, start=1):
                    label_text, _, rest = line.partition(" ")
                    label = int(label_text)
                    if not 0 <= label < len(class_names):
                        raise InputError(f"class index {label} outside the {len(class_names)} classes of the checkpoint", path, number)
                    handles[label].write(rest)
                    count += 1
    return count


def remove_tree_files(folder: Path) -> None:
    """Delete the files of a flat folder we created (shards), then the folder itself."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file():
            os.unlink(path)
    folder.rmdir()
