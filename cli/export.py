"""`rgfl export CHECKPOINT --format onnx --out model.onnx`: the detector as an ONNX graph (rgfl.api does the work)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from rgfl.cli.common import console, handle_errors
from rgfl.cli.run_model import help_text

EXPORT_HELP = """Export a trained detector to ONNX for onnxruntime, TensorRT or OpenVINO.

The graph holds the backbone, the head and the box decoding. Inputs: images uint8 [B, 3, S, S]
RGB 0..255 (normalisation is inside) and image_sizes float32 [B, 2], the valid height and width of
each image (priors in the padding get score 0). Outputs, for every prior point P of all levels:
boxes float32 [B, P, 5] (cx, cy, w, h, angle in radians, le135: w >= h, angle in [-pi/4, 3pi/4))
in input pixels, and scores float32 [B, P, C].

ONNX has no rotated NMS operator, so NMS is left to the caller:
rgfl.export.onnx.postprocess(boxes, scores, meta) does the score threshold, the per-level top
nms_pre and the class-wise rotated NMS of rgfl (docs/export.md). The class names and those settings
are in the file's metadata (keys 'rgfl' and 'names').

`rgfl predict model.onnx IMAGE... --out DIR` runs the file with onnxruntime on the CPU, with the
same sliding windows and merge as a checkpoint. Needs onnx and onnxruntime (pip install onnx
onnxruntime).

Examples:

  rgfl export runs/r50 --out r50.onnx

  rgfl export runs/tiny/checkpoints/epoch_0012.pt --out tiny.onnx --size 256 --dynamic
"""


class ExportFormat(str, Enum):
    onnx = "onnx"


@handle_errors
def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt) or a training work dir (its latest checkpoint).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write, e.g. model.onnx.", show_default=False)],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="Export format.")] = ExportFormat.onnx,
    size: Annotated[
        Optional[int],
        typer.Option("--size", min=32, help="Side of the square input in pixels, a multiple of 32 (default: the model's data.input_size, else 1024).", show_default=False),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Fixed batch size of the graph.")] = 1,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Leave the batch axis free instead of --batch.")] = False,
) -> None:
    import time

    from rgfl.api import export_onnx
    from rgfl.errors import RgflError

    if dynamic and batch != 1:
        raise RgflError("give either --batch N or --dynamic, not both")
    if out.suffix.lower() != ".onnx":
        raise RgflError(f"--out {out}: an ONNX file name ends in .onnx")
    start = time.perf_counter()
    meta = export_onnx(checkpoint, out, size, None if dynamic else batch)
    seconds = time.perf_counter() - start
    batch_text = "dynamic batch" if meta.batch is None else f"batch {meta.batch}"
    console.print(
        f"exported {meta.source or checkpoint} -> {out} ({out.stat().st_size / 1e6:.1f} MB, {seconds:.1f} s): input {meta.size}x{meta.size}, "
        f"{batch_text}, {sum(meta.num_per_level)} priors, {len(meta.class_names)} classes; NMS left to the caller "
        f"(rgfl.export.onnx.postprocess, or rgfl predict {out} IMAGE... --out DIR)",
        highlight=False,
    )


export_command.__doc__ = help_text(EXPORT_HELP)
