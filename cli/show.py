"""`rgfl show IMAGE`: draw ground truth and/or detections on an image, for checking by eye."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rgfl.cli.common import console, handle_errors

SHOW_HELP = """Draw ground truth and/or detections on IMAGE into a PNG.

Ground truth (a DOTA label file) is drawn with dashed outlines, detections (Task1_<class>.txt files
whose image name is IMAGE's file stem) with solid outlines and 'class score' tags; each class has
its own colour and a legend lists the classes with their counts. A dot marks each polygon's first
vertex.

When neither --labels nor --dets is given, the label file next to the image
(<root>/labelTxt/<stem>.txt for <root>/images/<stem>.png) is used if it exists.

Examples:

  rgfl show data/val/images/P0003.png --labels data/val/labelTxt/P0003.txt

  rgfl show split/val/images/P0003__1024__0___0.png --dets runs/eval/patch_dets

  rgfl show data/test/images/P0006.png --dets runs/submit --score-thr 0.5 --out P0006.png
"""


def _default_labels(image: Path) -> Path | None:
    if image.parent.name != "images":
        return None
    candidate = image.parent.parent / "labelTxt" / f"{image.stem}.txt"
    return candidate if candidate.is_file() else None


@handle_errors
def show_command(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, TIFF...).", show_default=False)],
    labels: Annotated[Path | None, typer.Option("--labels", help="DOTA label file with the ground truth to draw.", show_default=False)] = None,
    dets: Annotated[
        Path | None, typer.Option("--dets", help="Folder of Task1_<class>.txt detection files (patch- or image-level).", show_default=False)
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output PNG (default: ./<image stem>_show.png).", show_default=False)] = None,
    score_thr: Annotated[float, typer.Option("--score-thr", min=0.0, max=1.0, help="Draw detections with at least this score.")] = 0.3,
    classes: Annotated[str, typer.Option("--classes", help="Class set giving the colours: dota1.0, dota1.5, dota2.0, a comma list or a file.")] = "dota1.0",
    no_text: Annotated[bool, typer.Option("--no-text", help="Do not write class names and scores next to detections.")] = False,
) -> None:
    import numpy as np

    from rgfl.dota.annotations import read_label_file
    from rgfl.dota.classes import resolve_classes
    from rgfl.errors import InputError, ProblemLog
    from rgfl.visualize import draw_scene, read_image_rgb, write_image_rgb

    if not image.is_file():
        raise InputError("image not found", image)
    if dets is not None and not dets.is_dir():
        raise InputError("detections folder not found (expected a folder of Task1_<class>.txt files)", dets)
    if labels is None and dets is None:
        labels = _default_labels(image)
        if labels is None:
            raise InputError("nothing to draw: give --labels FILE and/or --dets DIR (no labelTxt/ file found next to the image)", image)
        console.print(f"ground truth: {labels}", highlight=False)
    class_names = list(resolve_classes(classes))
    picture = read_image_rgb(image)

    gt_polygons = gt_labels = None
    if labels is not None:
        ground_truth = read_label_file(labels, None, ProblemLog(), drop_degenerate=False)
        for name in ground_truth.classes:  # classes outside the set still get a colour of their own
            if name not in class_names:
                class_names.append(name)
        gt_polygons, gt_labels = ground_truth.polygons, ground_truth.labels(class_names)

    det_polygons = det_labels = det_scores = None
    if dets is not None:
        from rgfl.cli.run_model import read_image_detections

        det_polygons, det_scores, det_labels = read_image_detections(dets, image.stem, class_names)
        keep = det_scores >= score_thr
        det_polygons, det_scores, det_labels = det_polygons[keep], det_scores[keep], det_labels[keep]

    canvas = draw_scene(picture, class_names, gt_polygons, gt_labels, det_polygons, det_labels, det_scores, text=not no_text)
    out = out if out is not None else Path(f"{image.stem}_show.png")
    write_image_rgb(out, canvas)
    n_gt = 0 if gt_labels is None else len(gt_labels)
    n_det = 0 if det_labels is None else int(np.asarray(det_labels).shape[0])
    console.print(f"drew {n_gt} ground-truth objects and {n_det} detections -> {out}", highlight=False)


from rgfl.cli.run_model import help_text  # noqa: E402

show_command.__doc__ = help_text(SHOW_HELP)
