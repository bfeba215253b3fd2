"""``rgfl split SRC OUT``: cut DOTA images into patches (thin layer over rgfl.dota.split)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rgfl.cli.common import console, handle_errors, stdout_console

PRESET_HELP = (
    "dota-1024-824: size 1024, STEP 824 (= overlap 200, the standard single-scale DOTA protocol); "
    "dota-1024-512: size 1024, STEP 512 (= overlap 512). The number after the size is the step."
)


class Preset(str, Enum):
    dota_1024_512 = "dota-1024-512"
    dota_1024_824 = "dota-1024-824"


class ImageExt(str, Enum):
    png = "png"
    jpg = "jpg"


def _parse_numbers(text: str, option: str, kind: type = float) -> list:
    try:
        values = [kind(part) for part in text.replace(" ", ",").split(",") if part]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None
    if not values:
        raise typer.BadParameter("expected at least one number", param_hint=option)
    return values


@handle_errors
def split_command(
    src: Annotated[Path, typer.Argument(help="DOTA folder with images/ and optionally labelTxt/ (none: test set).")],
    out: Annotated[Path, typer.Argument(help="Output folder: images/, labelTxt/ and split_manifest.json.")],
    size: Annotated[int | None, typer.Option(min=1, help="Patch (window) side in pixels. \\[default: 1024]")] = None,
    overlap: Annotated[
        int | None,
        typer.Option(min=0, help="Pixels shared by neighbouring windows (step = size - overlap). \\[default: 200]"),
    ] = None,
    step: Annotated[int | None, typer.Option(min=1, help="Distance between window starts; give --step or --overlap.")] = None,
    preset: Annotated[Preset | None, typer.Option(help=PRESET_HELP)] = None,
    rates: Annotated[
        str,
        typer.Option(help="Comma-separated resize factors, e.g. 0.5,1.0,1.5: each one resizes the image and cuts the same grid."),
    ] = "1.0",
    iof_thr: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0,
            help="Object goes into a window when IoF >= this (with --clip: difficulty 2 when IoF <= this).",
        ),
    ] = 0.7,
    img_rate_thr: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Drop windows with less than this fraction of their area on the image.")
    ] = 0.6,
    pad_value: Annotated[
        str, typer.Option(help="B,G,R fill for patches of images smaller than a window (OpenCV/mmrotate order).")
    ] = "104,116,124",
    no_pad: Annotated[bool, typer.Option("--no-pad", help="Write such patches at their smaller size instead.")] = False,
    ext: Annotated[ImageExt, typer.Option(help="Patch image format.")] = ImageExt.png,
    png_compression: Annotated[int, typer.Option(min=0, max=9, help="zlib level of PNG patches (1: fast).")] = 1,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes. \\[default: all cores]")] = None,
    classes: Annotated[
        str,
        typer.Option(help="Accepted classes: dota1.0, dota1.5, dota2.0, a comma list, a file, or 'any'."),
    ] = "dota2.0",
    clip: Annotated[
        bool,
        typer.Option(
            "--clip",
            help="DOTA devkit truncation (ImgSplit_multi_process): label coordinates truncated to integers "
            "when read, cut objects clipped to the window (4 points, clamped into [1, size]), every output "
            "coordinate truncated to an integer, difficulty 2 only at IoF <= --iof-thr. Default (mmrotate): "
            "float coordinates, the full polygon, difficulty 2 for every cut object, drop IoF < --iof-thr.",
        ),
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input instead of skipping it.")] = False,
) -> None:
    """Cut large DOTA images into SIZE x SIZE patches with their labels.

    A second run on the same OUT skips the images already done and gives byte-identical files.
    Patch names: <image>__<size>__<x>___<y> (rate 1), <image>__<size>__<x>___<y>__r<rate> otherwise.

    Examples:

      rgfl split DOTA/train split/train --preset dota-1024-512

      rgfl split DOTA/test split/test --preset dota-1024-824      (no labelTxt/: patches only)

      rgfl split DOTA/val split/val_ms --size 1024 --overlap 500 --rates 0.5,1.0,1.5 --workers 8
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from rgfl.dota.classes import resolve_classes
    from rgfl.dota.split import PRESETS, SplitConfig, split_dataset

    if preset is not None:
        if size is not None or overlap is not None or step is not None:
            raise typer.BadParameter("give either --preset or --size/--overlap/--step", param_hint="--preset")
        size, step = PRESETS[preset.value]
    else:
        size = 1024 if size is None else size
        if overlap is not None and step is not None:
            raise typer.BadParameter("give --overlap or --step, not both (step = size - overlap)", param_hint="--step")
        if step is None:
            overlap = 200 if overlap is None else overlap
            if overlap >= size:
                raise typer.BadParameter(f"must be smaller than --size ({size})", param_hint="--overlap")
            step = size - overlap
        elif step > size:
            raise typer.BadParameter(f"must be at most --size ({size})", param_hint="--step")
    pad = None
    if not no_pad:
        values = _parse_numbers(pad_value, "--pad-value", int)
        if len(values) == 1:
            values = values * 3
        if len(values) != 3 or not all(0 <= v <= 255 for v in values):
            raise typer.BadParameter("expected one or three integers 0..255 (B,G,R)", param_hint="--pad-value")
        pad = tuple(values)
    rate_values = _parse_numbers(rates, "--rates")
    class_names = None if classes.strip().lower() == "any" else resolve_classes(classes)
    if not src.is_dir():
        raise typer.BadParameter(f"{src} is not a folder", param_hint="SRC")
    config = SplitConfig(
        size=size,
        step=step,
        rates=tuple(rate_values),
        iof_thr=iof_thr,
        img_rate_thr=img_rate_thr,
        pad_value=pad,
        ext=ext.value,
        clip=clip,
        classes=class_names,
        png_compression=png_compression,
    )
    console.print(
        f"split {src} -> {out}: size {config.size}, step {config.step} (overlap {config.overlap}), "
        f"rates {','.join(f'{r:g}' for r in config.rates)}, truncation {'clip (devkit)' if clip else 'keep (mmrotate)'}",
        highlight=False,
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task_id = bar.add_task("images", total=None)

        def advance(result, total: int) -> None:
            bar.update(task_id, total=total, advance=1)

        started = time.perf_counter()
        summary = split_dataset(src, out, config, workers=workers, strict=strict, progress=advance)
        summary.seconds = time.perf_counter() - started

    table = Table(title="rgfl split", show_header=True)
    table.add_column("images", justify="right")
    table.add_column("patches", justify="right")
    table.add_column("objects kept", justify="right")
    table.add_column("truncated", justify="right")
    table.add_column("dropped", justify="right")
    table.add_column("skipped bad input", justify="right")
    table.add_column("seconds", justify="right")
    images = f"{summary.images}" + (f" ({summary.resumed} already done)" if summary.resumed else "")
    table.add_row(
        images,
        str(summary.patches),
        str(summary.objects),
        str(summary.truncated),
        str(summary.dropped),
        str(summary.bad_input) + (f" ({summary.skipped_images} images)" if summary.skipped_images else ""),
        f"{summary.seconds:.1f}",
    )
    stdout_console.print(table)
    # Outside the title: a table wraps its title to the table's width.
    stdout_console.print(f"output: {out}", highlight=False)
