"""The Python API of rgfl: load a detector, predict, evaluate, split, export, convert.

The ``rgfl`` commands are thin layers over these functions; everything a command does with a
model or a folder can be done from Python with the same defaults::

    from rgfl.api import Detector, evaluate, split

    split("DOTA/val", "split/val", preset="dota-1024-824")
    detector = Detector.from_checkpoint("runs/r50", device="cuda")   # a .pt, a work dir or a .onnx
    result = detector.predict("P0706.png")                           # sliding windows, merged
    for name, score, polygon in zip(result.names, result.scores, result.polygons):
        print(name, score, polygon)
    metrics = evaluate("preds/", "DOTA/val/labelTxt")                # Task1 folder vs labels
    print(metrics.AP50, metrics.to_dict()["per_class"]["plane"])

Boxes are ``obb`` ``(cx, cy, w, h, theta)`` in pixels and radians, le135 (``w >= h``, ``theta``
in ``[-pi/4, 3pi/4)``, clockwise on screen); polygons are the four corners ``x1 y1 ... x4 y4``.
Errors about user input are :class:`rgfl.errors.RgflError` with a message naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rgfl.errors import InputError, RgflError

__all__ = ["Detector", "Prediction", "evaluate", "split", "export_onnx", "convert"]


@dataclass
class Prediction:
    """Detections of one image, as numpy arrays in original-image pixels.

    Attributes:
        boxes: float32 ``[N, 5]`` obb le135. polygons: float64 ``[N, 8]`` corners (computed in
            float64 from the boxes, as the Task1 files of ``rgfl predict`` are written).
        scores: float64 ``[N]`` (float32 values), decreasing. labels: int64 ``[N]`` indices
            into ``class_names``.
        class_names: the detector's classes. image_id: the image's stem (or the given id).
    """

    boxes: np.ndarray
    polygons: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    image_id: str = ""

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        """The class name of each detection."""
        return [self.class_names[label] for label in self.labels.tolist()]

    def select(self, keep: np.ndarray) -> "Prediction":
        """A subset, e.g. ``prediction.select(prediction.scores >= 0.3)``."""
        return Prediction(self.boxes[keep], self.polygons[keep], self.scores[keep], self.labels[keep], self.class_names, self.image_id)


class Detector:
    """A trained detector ready for inference: a checkpoint run by PyTorch, or an ONNX export run
    by onnxruntime on the CPU. Build one with :meth:`from_checkpoint`."""

    def __init__(self, model: Any, class_names: Sequence[str], device: str = "cpu", input_size: int | None = None, source: Path | None = None, config: Any = None):
        self.model = model
        self.class_names = tuple(class_names)
        self.device = device
        self.input_size = input_size
        self.source = source
        self.config = config

    @property
    def is_onnx(self) -> bool:
        from rgfl.export.onnx import OnnxDetector

        return isinstance(self.model, OnnxDetector)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> "Detector":
        """Load a checkpoint (``.pt``), a training work dir (its latest checkpoint) or an ONNX file.

        Args:
            device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``. ONNX files run
                on the CPU whatever the device.
        """
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            from rgfl.export.onnx import OnnxDetector

            model = OnnxDetector(path)
            return cls(model, model.class_names, "cpu", model.meta.input_size, path)
        from rgfl.engine.build import class_names, load_detector

        device = resolve_device(device)
        checkpoint = _resolve_checkpoint(path)
        model, config = load_detector(checkpoint, device)
        return cls(model, class_names(config.data), device, getattr(config.data, "input_size", None), checkpoint, config)

    def window_settings(self, size: int = 1024, overlap: int = 200, rates: Sequence[float] = (1.0,), nms_iou: float = 0.1, max_per_img: int = 2000, batch_size: int = 4, amp: bool = True):
        """The :class:`~rgfl.engine.predict.SlidingWindowSettings` of :meth:`predict` (and of ``rgfl predict``)."""
        from rgfl.engine.predict import SlidingWindowSettings

        try:
            return SlidingWindowSettings(
                size=size, overlap=overlap, rates=tuple(rates), nms_iou=nms_iou, max_per_img=max_per_img, batch_size=batch_size, amp=amp, input_size=self.input_size
            )
        except ValueError as error:
            raise RgflError(str(error)) from None

    def predict(
        self,
        image: str | Path | np.ndarray,
        *,
        size: int = 1024,
        overlap: int = 200,
        rates: Sequence[float] = (1.0,),
        nms_iou: float = 0.1,
        max_per_img: int = 2000,
        score_thr: float = 0.0,
        batch_size: int = 4,
        amp: bool = True,
        image_id: str | None = None,
        settings: Any = None,
        on_windows: Callable[[int], None] | None = None,
    ) -> Prediction:
        """Detect objects in a full-size image of any size, as ``rgfl predict`` does.

        The image is covered by ``size`` px windows (``overlap`` px shared, each of ``rates``),
        the model runs on batches of windows and the detections are merged with class-wise
        rotated NMS (suppress IoU > ``nms_iou``), keeping ``max_per_img``.

        Args:
            image: an image file, or an array ``uint8 [H, W, 3]`` in **RGB** order (``[H, W]``
                grey is accepted); OpenCV's ``cv2.imread`` gives BGR: convert it first.
            score_thr: drop detections below this score after the merge.
            settings: a ready :class:`~rgfl.engine.predict.SlidingWindowSettings` (overrides
                size ... amp).
            on_windows: progress callback, called with the number of windows just run.
        """
        from rgfl.engine.predict import predict_image
        from rgfl.engine.inference import detections_to_numpy

        picture, default_id = _as_rgb(image)
        settings = settings if settings is not None else self.window_settings(size, overlap, rates, nms_iou, max_per_img, batch_size, amp)
        image_id = default_id if image_id is None else image_id
        result = predict_image(self.model, picture, settings, self.device, image_id, on_windows=on_windows)
        polygons, scores, labels = detections_to_numpy(result.boxes, result.scores, result.labels)
        keep = scores >= score_thr
        boxes = result.boxes.detach().cpu().numpy().astype(np.float32)
        return Prediction(boxes[keep], polygons[keep], scores[keep], labels[keep], self.class_names, image_id)


def resolve_device(text: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; refuses CUDA when there is none."""
    import torch

    text = text.strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RgflError(f"device {text}: no CUDA device is available here (use cpu)")
        return text
    raise RgflError(f"device {text!r}: expected auto, cpu, cuda or cuda:N")


def _resolve_checkpoint(path: Path) -> Path:
    if path.is_dir():
        from rgfl.engine.checkpoint import find_latest_checkpoint

        latest = find_latest_checkpoint(path)
        if latest is None:
            raise InputError("no checkpoint in this folder (expected a work dir with checkpoints/*.pt, a .pt or a .onnx file)", path)
        return latest
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    return path


def _as_rgb(image: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    if isinstance(image, (str, Path)):
        from rgfl.visualize import read_image_rgb

        path = Path(image)
        if not path.is_file():
            raise InputError("image not found", path)
        return read_image_rgb(path), path.stem
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise RgflError(f"image array must be [H, W, 3] RGB (or [H, W] grey), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise RgflError(f"image array must be uint8 (0..255), got {array.dtype}")
    return np.ascontiguousarray(array), ""


def evaluate(
    detections: str | Path,
    ground_truth: str | Path,
    classes: str | Sequence[str] | None = None,
    iou_thrs: str | Sequence[float] | None = None,
    ap_method: str = "voc07",
    image_list: str | Path | Sequence[str] | None = None,
    strict: bool = False,
):
    """Score a folder of ``Task1_<class>.txt`` files against DOTA labels, as ``rgfl eval --dets``.

    Args:
        classes: a class-set name (``dota1.0`` default), a file, or a list of names.
        iou_thrs: thresholds of mAP (``"0.5:0.95:0.05"`` default, or a list).
        image_list: only these images (a file with one name per line, or the names).

    Returns: an :class:`~rgfl.evaluation.EvalResult` (``.AP50``, ``.AP75``, ``.mAP``,
    ``.per_class``, ``.to_dict()`` the JSON of ``rgfl eval --json``; :func:`rgfl.plots.plot_pr_curves`
    draws its precision-recall curves).
    """
    from rgfl.dota.classes import resolve_classes
    from rgfl.errors import ProblemLog
    from rgfl.evaluation import evaluate_detections, parse_iou_thresholds, read_image_list

    names = resolve_classes(list(classes) if isinstance(classes, (list, tuple)) else classes)
    if isinstance(image_list, (str, Path)):
        image_list = read_image_list(image_list)
    return evaluate_detections(detections, ground_truth, names, parse_iou_thresholds(iou_thrs), ap_method, ProblemLog(strict=strict), image_list)


def split(
    src: str | Path,
    out: str | Path,
    preset: str | None = None,
    size: int = 1024,
    overlap: int = 200,
    rates: Sequence[float] = (1.0,),
    classes: str | Sequence[str] | None = "dota2.0",
    workers: int | None = None,
    strict: bool = False,
    **options: Any,
):
    """Cut the images (and labels) of a DOTA folder into patches, as ``rgfl split``.

    Args:
        preset: ``dota-1024-824`` (size 1024, step 824) or ``dota-1024-512``; overrides size/overlap.
        classes: accepted classes (``any``/None: every name).
        options: the other :class:`~rgfl.dota.split.SplitConfig` fields (``iof_thr``, ``ext``, ``clip`` ...).

    Returns the :class:`~rgfl.dota.split.SplitSummary`.
    """
    from rgfl.dota.classes import resolve_classes
    from rgfl.dota.split import PRESETS, SplitConfig, split_dataset

    if preset is not None:
        if preset not in PRESETS:
            raise RgflError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
        size, step = PRESETS[preset]
    else:
        if not 0 <= overlap < size:
            raise RgflError(f"overlap must be in [0, size) = [0, {size}), got {overlap}")
        step = size - overlap
    if classes is None or (isinstance(classes, str) and classes.strip().lower() == "any"):
        names = None
    else:
        names = resolve_classes(list(classes) if isinstance(classes, (list, tuple)) else classes)
    config = SplitConfig(size=size, step=step, rates=tuple(rates), classes=names, **options)
    return split_dataset(src, out, config, workers=workers, strict=strict)


def export_onnx(checkpoint: str | Path, out: str | Path, size: int | None = None, batch: int | None = 1, device: str = "cpu"):
    """Export a checkpoint to ONNX (see :mod:`rgfl.export.onnx`); returns the file's metadata.

    Args:
        size: side of the square network input; default the model's training ``data.input_size``,
            else 1024 (the window of ``rgfl predict``).
        batch: fixed batch size, or None for a dynamic batch axis.
    """
    from rgfl.export import onnx as onnx_export

    detector = Detector.from_checkpoint(checkpoint, device)
    if detector.is_onnx:
        raise RgflError(f"{checkpoint} is already an ONNX file; export a .pt checkpoint")
    size = size if size is not None else (detector.input_size or 1024)
    if detector.input_size is not None and size != detector.input_size:
        import logging

        logging.getLogger(__name__).warning(
            "the model was trained on %d px inputs (data.input_size) but is exported for %d px: rgfl predict resizes "
            "windows to %d px and pads them to %d, which changes detections near window borders; export with --size %d",
            detector.input_size, size, detector.input_size, size, detector.input_size,
        )
    return onnx_export.export_onnx(detector.model, detector.class_names, out, size, batch, detector.input_size, source=str(detector.source))


def convert(
    src: str | Path,
    out: str | Path,
    to: str,
    classes: str | Sequence[str] | None = None,
    split: str | None = None,
    clip: bool = False,
    strict: bool = False,
):
    """Convert DOTA labels to YOLO-OBB (``to="yolo-obb"``) or back (``to="dota"``), as ``rgfl convert``.

    See :mod:`rgfl.dota.yolo_obb` for the layout, the class list and the difficult-flag sidecar.
    Returns the :class:`~rgfl.dota.yolo_obb.ConvertSummary`.
    """
    from rgfl.dota import yolo_obb

    return yolo_obb.convert(src, out, to, classes, split=split, clip=clip, strict=strict)
