"""`rgfl predict CHECKPOINT PATH... --out DIR`: detect objects in full-size images of any size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rgfl.cli.common import console, handle_errors
from rgfl.cli.run_model import AmpOption, BatchSizeOption, DeviceOption, help_text

PREDICT_HELP = """Detect objects in full-size images of any size with a trained checkpoint.

Each image is covered by sliding windows cut in memory (the window grid of `rgfl split`, with the
same --size/--overlap/--rates; nothing is written to disk), the detector runs on batches of
windows, and the detections of all windows are mapped back to the image and merged with
class-wise rotated NMS (suppress IoU > --nms-iou), as `rgfl merge-submit` does.

Writes DIR/Task1_<class>.txt (one file per class, lines 'image score x1 y1 ... x4 y4') and, with
--draw, DIR/<image>.png with the rotated boxes, class names and scores drawn.

PATH may be image files or folders of images (PNG, JPEG, TIFF, BMP).

Examples:

  rgfl predict runs/r50/checkpoints/epoch_0012.pt scene.png --out preds --draw

  rgfl predict runs/r50 data/test/images --out preds --rates 0.5,1.0,1.5 --overlap 500
"""


def _parse_rates(text: str) -> tuple[float, ...]:
    from rgfl.errors import RgflError

    try:
        rates = tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise RgflError(f"--rates {text!r}: expected numbers separated by commas, e.g. 1.0 or 0.5,1.0,1.5") from None
    if not rates or any(not rate > 0 for rate in rates):
        raise RgflError(f"--rates {text!r}: rates must be positive numbers")
    return rates


def collect_images(paths: list[Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in folders; unique stems required."""
    from rgfl.engine.inference import IMAGE_SUFFIXES
    from rgfl.errors import InputError

    images: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise InputError("no image files in this folder (looked for " + ", ".join(IMAGE_SUFFIXES) + ")", path)
            images.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError("not an image file (expected " + ", ".join(IMAGE_SUFFIXES) + ")", path)
            images.append(path)
        else:
            raise InputError("no such file or folder", path)
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems and stems[image.stem] != image:
            raise InputError(f"two images share the name {image.stem!r} ({stems[image.stem]}); Task1 files identify images by name", image)
        stems[image.stem] = image
    return list(stems.values())


@handle_errors
def predict_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (.pt) or a training work dir (its latest checkpoint).", show_default=False)],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for Task1 files and drawings.", show_default=False)],
    draw: Annotated[bool, typer.Option("--draw", help="Also write <image>.png with the detections drawn.")] = False,
    no_text: Annotated[bool, typer.Option("--no-text", help="With --draw: boxes only, no class names and scores next to them.")] = False,
    size: Annotated[int, typer.Option("--size", min=32, help="Window side in pixels.")] = 1024,
    overlap: Annotated[
        int | None, typer.Option("--overlap", min=0, help="Pixels shared by neighbouring windows. \\[default: 200]", show_default=False)
    ] = None,
    step: Annotated[int | None, typer.Option("--step", min=1, help="Distance between windows (size - overlap); instead of --overlap.", show_default=False)] = None,
    rates: Annotated[str, typer.Option("--rates", help="Resize factors, comma separated (multi-scale testing), e.g. 0.5,1.0,1.5.")] = "1.0",
    nms_iou: Annotated[float, typer.Option("--nms-iou", min=0.0, max=1.0, help="Rotated NMS threshold of the merge (suppress IoU > this).")] = 0.1,
    max_per_img: Annotated[int, typer.Option("--max-per-img", min=0, help="Detections kept per image after the merge (0: all).")] = 0,
    score_thr: Annotated[float, typer.Option("--score-thr", min=0.0, max=1.0, help="Write detections with at least this score to the Task1 files (drawing uses --draw-thr).")] = 0.05,
    draw_thr: Annotated[float, typer.Option("--draw-thr", min=0.0, max=1.0, help="With --draw: draw detections with at least this score (and at least --score-thr).")] = 0.3,
    batch_size: BatchSizeOption = 4,
    device: DeviceOption = "auto",
    amp: AmpOption = False,
) -> None:
    import time

    import numpy as np
    from rich.table import Table

    from rgfl.api import Detector
    from rgfl.cli.run_model import progress_bar, resolve_device
    from rgfl.dota.task1 import Task1Writer
    from rgfl.engine.predict import SlidingWindowSettings, plan_windows
    from rgfl.errors import RgflError
    from rgfl.visualize import draw_scene, read_image_rgb, write_image_rgb

    if overlap is not None and step is not None:
        raise RgflError("give either --overlap or --step, not both")
    overlap = size - step if step is not None else (200 if overlap is None else overlap)
    if not 0 <= overlap < size:
        raise RgflError(f"--overlap must be in [0, --size) = [0, {size}), got {overlap} (step = size - overlap must be positive)")
    rate_list = _parse_rates(rates)
    images = collect_images(paths)
    device = resolve_device(device)
    detector = Detector.from_checkpoint(checkpoint, device)  # a .pt, a work dir, or an ONNX export (CPU)
    settings = SlidingWindowSettings(
        size=size, overlap=overlap, rates=rate_list, nms_iou=nms_iou, max_per_img=max_per_img, batch_size=batch_size, amp=amp,
        input_size=detector.input_size,
    )
    names = detector.class_names
    out.mkdir(parents=True, exist_ok=True)

    table = Table(title="rgfl predict", title_justify="left")
    for column in ("image", "size", "windows", "detections", "seconds"):
        table.add_column(column, justify="left" if column == "image" else "right")
    total_dets = 0
    drawn: list[Path] = []
    with Task1Writer(out, names) as writer, progress_bar() as progress:
        task = progress.add_task("predict", total=None, rate="")
        for image_path in images:
            start = time.perf_counter()
            picture = read_image_rgb(image_path)
            windows = len(plan_windows(picture.shape[0], picture.shape[1], settings))
            progress.update(task, description=f"predict {image_path.name}", total=windows, completed=0)
            result = detector.predict(picture, settings=settings, image_id=image_path.stem, on_windows=lambda n: progress.advance(task, n))
            polygons, scores, labels = result.polygons, result.scores, result.labels
            keep = scores >= score_thr
            polygons, scores, labels = polygons[keep], scores[keep], labels[keep]
            for label in np.unique(labels).tolist():
                mask = labels == label
                writer.add(names[label], image_path.stem, scores[mask], polygons[mask])
            if draw:
                shown = scores >= draw_thr
                canvas = draw_scene(
                    picture, names, det_polygons=polygons[shown], det_labels=labels[shown], det_scores=scores[shown], text=not no_text
                )
                drawn.append(out / f"{image_path.stem}.png")
                write_image_rgb(drawn[-1], canvas)
            seconds = time.perf_counter() - start
            total_dets += len(scores)
            table.add_row(image_path.name, f"{picture.shape[1]}x{picture.shape[0]}", str(windows), str(len(scores)), f"{seconds:.1f}")
    console.print(table)
    console.print(f"{len(images)} images, {total_dets} detections -> {out}/Task1_<class>.txt", highlight=False)
    for path in drawn:
        console.print(f"drawing: {path}", highlight=False)


predict_command.__doc__ = help_text(PREDICT_HELP)
