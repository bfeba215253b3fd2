"""`rgfl convert SRC OUT --to yolo-obb|dota`: DOTA labels <-> YOLO-OBB (rgfl.dota.yolo_obb does the work)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from rgfl.cli.common import console, handle_errors
from rgfl.cli.run_model import help_text

CONVERT_HELP = """Convert a DOTA folder to the YOLO-OBB format of ultralytics, or back.

--to yolo-obb: SRC is a DOTA folder (images/ + labelTxt/). Writes OUT/images/ (hard links, or
copies), OUT/labels/<image>.txt with one object per line 'class x1 y1 x2 y2 x3 y3 x4 y4' (class
index in --classes, corners divided by the image width and height), OUT/dataset.yaml with the
class names (train with ultralytics: yolo obb train data=OUT/dataset.yaml), and
OUT/dota_extras.json, a sidecar with what YOLO-OBB has no field for: the difficult flags and the
imagesource/gsd lines. With --split train|val|test the files go to images/<split>/ and
labels/<split>/ and the yaml lists that split, so several DOTA folders make one dataset.

--to dota: SRC is a YOLO-OBB folder (images/ + labels/, flat or with split subfolders) with a
dataset yaml (or give --classes). Writes OUT/images/ and OUT/labelTxt/ (OUT/<split>/... for a
split dataset); difficult flags come back from the sidecar, else 0.

DOTA -> YOLO-OBB -> DOTA gives back the coordinates within 1e-9 of the image size. Corners
outside the image give coordinates outside [0, 1], kept as they are unless --clip (ultralytics
drops label files with such values).

Examples:

  rgfl convert DOTA/train yolo_dota --to yolo-obb --split train

  rgfl convert DOTA/val yolo_dota --to yolo-obb --split val

  rgfl convert yolo_dota dota_again --to dota
"""


class Target(str, Enum):
    yolo_obb = "yolo-obb"
    dota = "dota"


@handle_errors
def convert_command(
    src: Annotated[Path, typer.Argument(help="Folder to read: DOTA (images/ + labelTxt/) or YOLO-OBB (images/ + labels/).", show_default=False)],
    out: Annotated[Path, typer.Argument(help="Output folder (created).", show_default=False)],
    to: Annotated[Target, typer.Option("--to", help="Format to write.", show_default=False)],
    classes: Annotated[
        Optional[str],
        typer.Option(
            "--classes",
            help="Class list, index = position: dota1.0, dota1.5, dota2.0, a file with one class per line, or names like plane,ship "
            "(default: dota1.0 for --to yolo-obb; for --to dota, the names of the dataset yaml in SRC).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="With --to yolo-obb: put the files under images/SPLIT and labels/SPLIT (train, val or test).", show_default=False)] = None,
    clip: Annotated[bool, typer.Option("--clip", help="With --to yolo-obb: clamp coordinates into [0, 1].")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed label line instead of skipping it.")] = False,
) -> None:
    from rgfl.api import convert
    from rgfl.errors import RgflError

    if split is not None and split not in ("train", "val", "test"):
        raise RgflError(f"--split {split!r}: use train, val or test (the keys of a YOLO dataset yaml)")
    with console.status("converting"):
        summary = convert(src, out, to.value, classes, split=split, clip=clip, strict=strict)
    parts = [f"{summary.images} images", f"{summary.objects} objects", f"{len(summary.class_names)} classes"]
    if summary.skipped_lines:
        parts.append(f"{summary.skipped_lines} bad label lines skipped")
    if summary.unlabelled:
        parts.append(f"{summary.unlabelled} images without a label file")
    if summary.labels_without_image:
        parts.append(f"{summary.labels_without_image} label files without an image not converted")
    if summary.outside:
        parts.append(f"{summary.outside} objects reaching outside their image" + (" (clipped)" if clip else ""))
    console.print(f"converted {src} -> {out} ({to.value}): " + ", ".join(parts), highlight=False)
    if to is Target.yolo_obb:
        console.print(f"dataset yaml: {out / 'dataset.yaml'}", highlight=False)


convert_command.__doc__ = help_text(CONVERT_HELP)
