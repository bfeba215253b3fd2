"""ONNX export of the detector: backbone, head and box decoding in the graph, NMS left to the caller.

ONNX has no rotated NMS operator (``NonMaxSuppression`` is for horizontal boxes), and an exact
rotated IoU built from generic operators would be large and slow, so the exported graph stops
before NMS and gives every prior point's decoded box and class scores:

* inputs: ``images`` ``uint8 [B, 3, S, S]`` RGB 0..255 (normalisation is in the graph), and
  ``image_sizes`` ``float32 [B, 2]`` the valid ``(height, width)`` of each image inside the
  ``S x S`` input (the rest is padding: its priors get score 0, as ``RotatedGFL.predict`` ignores
  priors in the padding). ``B`` is fixed (``--batch N``) or free (``--dynamic``).
* outputs: ``boxes`` ``float32 [B, P, 5]`` obb ``(cx, cy, w, h, theta)`` in input pixels, le135
  (``w >= h``, ``theta`` in ``[-pi/4, 3pi/4)`` radians), and ``scores`` ``float32 [B, P, C]``
  (sigmoid class scores), P the prior points of all FPN levels (level-major, row-major).

:func:`postprocess` does on these what ``RotatedGFL.postprocess`` does after its head: per level
the ``nms_pre`` priors with the best class score, every (prior, class) pair with a score above
``score_thr`` as a candidate, class-wise exact rotated NMS (:func:`rgfl.ops.batched_nms_rotated`,
suppress IoU > ``nms_iou``), at most ``max_per_img`` per image. Its settings, the class names and
the number of priors per level are stored in the ONNX metadata (key ``rgfl``, JSON; key ``names``
holds the class names alone), so a file is self-describing::

    import onnxruntime, json
    from rgfl.export.onnx import postprocess, read_metadata
    session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    boxes, scores = session.run(None, {"images": images_uint8, "image_sizes": sizes_float32})
    detections = postprocess(boxes, scores, meta)   # list of rgfl.structures.Detections

:class:`OnnxDetector` wraps a session behind the ``predict(images, image_sizes)`` method of the
PyTorch detector, so ``rgfl predict model.onnx`` runs the same sliding windows on it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rgfl.errors import InputError, RgflError
from rgfl.structures import Detections

__all__ = [
    "ONNX_MISSING",
    "OnnxMetadata",
    "PriorDecoder",
    "export_onnx",
    "postprocess",
    "read_metadata",
    "OnnxDetector",
]

logger = logging.getLogger(__name__)

# No square brackets in messages: the CLI prints errors with rich markup.
ONNX_MISSING = "ONNX export needs the onnx package: pip install onnx onnxruntime (or rgfl with its onnx extra)"
ORT_MISSING = "running an ONNX model needs onnxruntime: pip install onnxruntime (or rgfl with its onnx extra)"
METADATA_KEY = "rgfl"
OPSET = 17


@dataclass(frozen=True)
class OnnxMetadata:
    """What a caller needs besides the graph; stored as JSON under the ``rgfl`` metadata key.

    Attributes:
        class_names: C names, index = label.
        size: side S of the square input in pixels.
        batch: the fixed batch size, or None when the batch axis is dynamic.
        num_per_level: priors per FPN level (``H_l * W_l``, finest first); sums to P.
        strides: stride of each level.
        nms_pre, score_thr, nms_iou, max_per_img: the postprocess settings of the checkpoint.
        input_size: the ``data.input_size`` the model was trained with (windows are resized so
            their longer side is this before the model sees them), or None.
        angle_version: always ``le135``.
    """

    class_names: tuple[str, ...]
    size: int
    batch: int | None
    num_per_level: tuple[int, ...]
    strides: tuple[int, ...]
    nms_pre: int
    score_thr: float
    nms_iou: float
    max_per_img: int
    input_size: int | None = None
    angle_version: str = "le135"
    source: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "OnnxMetadata":
        data = json.loads(text)
        for key in ("class_names", "num_per_level", "strides"):
            data[key] = tuple(data[key])
        return cls(**data)


class PriorDecoder(nn.Module):
    """The exported computation: ``(images [B,3,S,S] uint8, image_sizes [B,2]) -> (boxes [B,P,5], scores [B,P,C])``.

    The prior points of an ``S x S`` input are fixed, so they are buffers (constants in the graph).
    Boxes are decoded for every prior by the head variant's ``decode_boxes`` (the ``gfl``/``gflv2``
    side distances and angle, or the ``vanilla`` deltas) and regularized to le135: the code of
    ``RotatedGFL.decode`` + ``regularize_le135`` on the candidates of ``RotatedGFL.postprocess``.
    """

    def __init__(self, detector: nn.Module, size: int):
        super().__init__()
        self.detector = detector.eval()
        with torch.no_grad():
            outputs = detector(torch.zeros((1, 3, size, size), dtype=torch.uint8, device=_device_of(detector)))
        # The detector's own priors (its prior offset included: the reference configs use 0).
        priors = detector.priors(outputs, torch.device("cpu"))
        self.num_per_level = tuple(priors.num_per_level)
        self.register_buffer("centers", priors.centers.clone(), persistent=False)  # [P, 2]
        self.register_buffer("point_strides", priors.strides.clone(), persistent=False)  # [P]
        self.register_buffer("anchor_side", priors.anchor_side.clone(), persistent=False)  # [P]
        self.to(_device_of(detector))

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor]:
        from rgfl.model.coder import regularize_le135

        head = self.detector.head
        outputs = self.detector(images)
        scores = head.scores(outputs.cls_logits)  # [B, P, C]
        inside = (self.centers[None, :, 1] < image_sizes[:, None, 0]) & (self.centers[None, :, 0] < image_sizes[:, None, 1])  # [B, P]
        scores = scores * inside.unsqueeze(-1).to(scores.dtype)
        # The head variant's own decoding, broadcast over the batch and all priors.
        boxes = head.decode_boxes(outputs.box_logits, outputs.angle_logits, self.centers[None], self.point_strides[None], self.anchor_side[None])
        return regularize_le135(boxes), scores


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def export_onnx(
    detector: nn.Module,
    class_names: Sequence[str],
    out: str | Path,
    size: int,
    batch: int | None = 1,
    input_size: int | None = None,
    source: str = "",
) -> OnnxMetadata:
    """Write ``detector`` (a ``RotatedGFL`` in eval mode) to ``out`` as ONNX (opset 17) with metadata.

    Args:
        size: side S of the square input; a multiple of 32 (the largest FPN stride used for padding).
        batch: fixed batch size, or None for a dynamic batch axis.
        input_size: the model's training ``data.input_size`` (recorded for ``rgfl predict``).

    The file is checked with ``onnx.checker`` and written atomically. Returns its metadata.
    """
    try:
        import onnx
    except ImportError:
        raise RgflError(ONNX_MISSING) from None
    from rgfl.fileio import atomic_write_bytes

    if size < 32 or size % 32:
        raise RgflError(f"--size {size}: the input side must be a positive multiple of 32 (the FPN's largest stride used for padding)")
    if batch is not None and batch < 1:
        raise RgflError(f"--batch {batch}: must be at least 1")
    device = _device_of(detector)
    wrapper = PriorDecoder(detector, size).eval()
    example_batch = batch or 1
    images = torch.zeros((example_batch, 3, size, size), dtype=torch.uint8, device=device)
    sizes = torch.full((example_batch, 2), float(size), device=device)
    dynamic_axes = None
    if batch is None:
        dynamic_axes = {name: {0: "batch"} for name in ("images", "image_sizes", "boxes", "scores")}
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python ints taken from shapes (level sizes): they are constants
        # of a fixed input size by design.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (images, sizes),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["images", "image_sizes"],
            output_names=["boxes", "scores"],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    meta = OnnxMetadata(
        class_names=tuple(class_names),
        size=size,
        batch=batch,
        num_per_level=wrapper.num_per_level,
        strides=tuple(int(s) for s in detector.strides),
        nms_pre=int(detector.nms_pre),
        score_thr=float(detector.score_thr),
        nms_iou=float(detector.nms_iou),
        max_per_img=int(detector.max_per_img),
        input_size=input_size,
        source=source,
    )
    for key, value in ((METADATA_KEY, meta.to_json()), ("names", json.dumps(list(class_names)))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "rgfl"
    model.doc_string = (
        "rgfl rotated GFL detector. Inputs: images uint8 [B,3,S,S] RGB, image_sizes float32 [B,2] (valid h, w). "
        "Outputs: boxes float32 [B,P,5] (cx, cy, w, h, theta) le135 in input pixels, scores float32 [B,P,C]. "
        "No NMS in the graph: see rgfl.export.onnx.postprocess and the 'rgfl' metadata."
    )
    onnx.checker.check_model(model)
    atomic_write_bytes(out, model.SerializeToString())
    return meta


def read_metadata(source: Any) -> OnnxMetadata:
    """The :class:`OnnxMetadata` of an ``onnxruntime.InferenceSession`` or an ONNX file path."""
    if isinstance(source, (str, Path)):
        session = _session(Path(source))
    else:
        session = source
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise InputError("not an ONNX file written by rgfl export (no 'rgfl' metadata)", getattr(source, "_path", None))
    return OnnxMetadata.from_json(props[METADATA_KEY])


def _session(path: Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RgflError(ORT_MISSING) from None
    if not path.is_file():
        raise InputError("ONNX file not found", path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are about its own optimizer
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise InputError(f"cannot load the ONNX model ({str(error).splitlines()[0][:200]})", path) from None
    session._path = path  # for messages
    return session


def postprocess(
    boxes: np.ndarray | Tensor,
    scores: np.ndarray | Tensor,
    meta: OnnxMetadata,
    score_thr: float | None = None,
    nms_iou: float | None = None,
    nms_pre: int | None = None,
    max_per_img: int | None = None,
) -> list[Detections]:
    """Detections from the exported outputs, as ``RotatedGFL.postprocess`` makes them.

    Args:
        boxes: ``[B, P, 5]`` obb le135 (the ``boxes`` output). scores: ``[B, P, C]``.
        meta: the file's metadata (priors per level and default settings).
        score_thr, nms_iou, nms_pre, max_per_img: override the stored settings.

    Returns: B ``Detections`` (CPU tensors): boxes ``[N, 5]`` le135 input pixels, scores ``[N]``
    decreasing, labels ``[N]``, ``extras["polygons"]`` ``[N, 8]``.
    """
    from rgfl.ops import batched_nms_rotated, obb2poly

    score_thr = meta.score_thr if score_thr is None else score_thr
    nms_iou = meta.nms_iou if nms_iou is None else nms_iou
    nms_pre = meta.nms_pre if nms_pre is None else nms_pre
    max_per_img = meta.max_per_img if max_per_img is None else max_per_img
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    scores = torch.as_tensor(scores, dtype=torch.float32)
    batch, num_priors, num_classes = scores.shape
    if boxes.shape != (batch, num_priors, 5) or num_priors != sum(meta.num_per_level):
        raise RgflError(f"outputs of shape {tuple(boxes.shape)} and {tuple(scores.shape)} do not match the model's {sum(meta.num_per_level)} priors")
    max_scores = scores.max(dim=2).values  # [B, P]; 0 for priors in the padding
    selected, start = [], 0
    for count in meta.num_per_level:
        k = min(nms_pre, count)
        selected.append(max_scores[:, start : start + count].topk(k, dim=1).indices + start)
        start += count
    prior_index = torch.cat(selected, dim=1)  # [B, S]
    batch_index = torch.arange(batch)[:, None].expand_as(prior_index)
    cand_scores = scores[batch_index, prior_index]  # [B, S, C]
    b_idx, s_idx, c_idx = (cand_scores > score_thr).nonzero(as_tuple=True)
    results = []
    if b_idx.numel() == 0:
        return [_empty() for _ in range(batch)]
    flat_prior = prior_index[b_idx, s_idx]
    cand_boxes = boxes[b_idx, flat_prior]
    det_scores = cand_scores[b_idx, s_idx, c_idx]
    keep = batched_nms_rotated(cand_boxes, det_scores, b_idx * num_classes + c_idx, nms_iou)
    keep = keep[det_scores[keep].argsort(descending=True, stable=True)]
    for b in range(batch):
        mine = keep[b_idx[keep] == b][:max_per_img]
        det_boxes = cand_boxes[mine]
        results.append(Detections(det_boxes, det_scores[mine], c_idx[mine], extras={"polygons": obb2poly(det_boxes)}))
    return results


def _empty() -> Detections:
    return Detections(torch.zeros((0, 5)), torch.zeros(0), torch.zeros(0, dtype=torch.long), extras={"polygons": torch.zeros((0, 8))})


class OnnxDetector:
    """An exported model run by onnxruntime on the CPU, with the detector's ``predict`` interface.

    ``predict(images, image_sizes)`` takes ``uint8 [B, 3, H, W]`` with ``H, W <= size``: images are
    zero-padded to ``size`` (the padding is masked by ``image_sizes``) and run in chunks of the
    file's batch size, so sliding-window prediction (:func:`rgfl.engine.predict.predict_image`)
    works on it unchanged.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.session = _session(self.path, threads)
        self.meta = read_metadata(self.session)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    def eval(self) -> "OnnxDetector":
        return self

    def predict(self, images: Tensor | np.ndarray, image_sizes: Sequence[tuple[int, int]] | None = None) -> list[Detections]:
        images_np = images.cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
        if images_np.ndim != 4 or images_np.shape[1] != 3:
            raise RgflError(f"images must be [B, 3, H, W] RGB, got shape {images_np.shape}")
        count, _, height, width = images_np.shape
        size = self.meta.size
        if height > size or width > size:
            raise RgflError(
                f"{self.path}: the model was exported for {size} x {size} px inputs but got {height} x {width}; "
                f"export it again with --size {max(height, width) + (-max(height, width)) % 32}"
            )
        sizes = np.array(image_sizes if image_sizes is not None else [(height, width)] * count, dtype=np.float32).reshape(count, 2)
        chunk = self.meta.batch or count
        results: list[Detections] = []
        for start in range(0, count, chunk):
            part = images_np[start : start + chunk]
            n = len(part)
            padded = np.zeros((chunk, 3, size, size), dtype=np.uint8)
            padded[:n, :, :height, :width] = np.clip(part, 0, 255).astype(np.uint8)
            part_sizes = np.zeros((chunk, 2), dtype=np.float32)  # filler images: every prior masked
            part_sizes[:n] = sizes[start : start + n]
            boxes, scores = self.session.run(["boxes", "scores"], {"images": padded, "image_sizes": part_sizes})
            results.extend(postprocess(boxes[:n], scores[:n], self.meta))
        return results
