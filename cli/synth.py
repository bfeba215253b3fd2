"""``rgfl synth OUT``: write a synthetic DOTA-format dataset with known ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rgfl.cli.common import console, handle_errors


@handle_errors
def synth_command(
    out: Annotated[Path, typer.Argument(help="Output folder; receives images/ and labelTxt/.", show_default=False)],
    images: Annotated[int, typer.Option("--images", "-n", min=0, help="Number of images.")] = 8,
    size: Annotated[int, typer.Option("--size", min=32, help="Image side in pixels.")] = 2048,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical files.")] = 0,
    classes: Annotated[
        str,
        typer.Option(
            "--classes",
            help="Comma-separated DOTA class names to draw, or 'all'. Drawable: plane, baseball-diamond, "
            "ground-track-field, small-vehicle, large-vehicle, ship, tennis-court, basketball-court, "
            "storage-tank, soccer-ball-field, roundabout, swimming-pool, helicopter.",
        ),
    ] = "plane,small-vehicle,large-vehicle,ship,storage-tank,tennis-court",
    objects: Annotated[
        int | None,
        typer.Option("--objects", min=0, help="Objects per image (about); default ~24 per megapixel."),
    ] = None,
    empty_fraction: Annotated[
        float, typer.Option("--empty-fraction", min=0.0, max=1.0, help="Fraction of images without objects.")
    ] = 0.1,
    ext: Annotated[str, typer.Option("--ext", help="Image format: png (lossless) or jpg.")] = "png",
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Parallel processes (the output does not depend on it).")
    ] = 1,
) -> None:
    """Write a synthetic DOTA-format dataset: textured aerial-like images with objects of
    several classes at all angles (12-300 px), dense clusters, objects across split-patch
    borders and some empty images. Labels are exact rotated rectangles (difficult 0).

    Examples:

      rgfl synth synth/train --images 8 --size 2048 --seed 0

      rgfl synth synth/val --images 3 --size 1024 --objects 100 --seed 1 --classes all
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from rgfl.dota.synth import SYNTH_CLASSES, generate_synthetic_dataset

    names = SYNTH_CLASSES if classes.strip().lower() == "all" else tuple(n.strip() for n in classes.split(",") if n.strip())
    with Progress(
        TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("images", total=images)
        summary = generate_synthetic_dataset(
            out,
            num_images=images,
            image_size=size,
            seed=seed,
            class_names=names,
            empty_fraction=empty_fraction,
            num_objects=objects,
            ext=ext,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
        )
    table = Table(title="rgfl synth", show_header=True)
    table.add_column("class")
    table.add_column("objects", justify="right")
    for name, count in summary.objects_per_class.items():
        table.add_row(name, str(count))
    table.add_row("total", str(summary.objects), style="bold")
    console.print(table)
    console.print(
        f"{summary.images} images of {size}x{size} ({summary.empty_images} empty), seed {seed}, "
        f"{summary.seconds:.1f} s -> {out}",
        highlight=False,
    )
