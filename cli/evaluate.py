"""``rgfl eval``: official-equivalent DOTA Task1 AP50 / AP75 / mAP of detection files.

The command is thin: it reads options, calls :func:`rgfl.evaluation.evaluate_detections`, prints
the table and writes the JSON. A later positional CHECKPOINT (run a model, merge, then score) can
be added before the options without changing ``--dets``.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from rgfl.cli.common import ClassesOption, console, handle_errors, stdout_console

# Results go to stdout (pipeable); progress and warnings go to stderr through `console`.

__all__ = ["eval_command", "print_eval_table", "write_eval_json"]


class MeanOver(str, Enum):
    present = "present"
    all = "all"


def print_eval_table(result, title: str = "DOTA Task1") -> None:
    """Rich table: class, #gt, #dets, AP50, AP75, mAP (+ any other threshold), in percent."""
    extra = [t for t in result.iou_thrs if t not in (0.5, 0.75)] if result.iou_thrs != _coco() else []
    caption = f"{title} ({result.ap_method} AP, {result.num_images} images)"
    table = Table(title=caption, min_width=len(caption))  # a title is wrapped to the table's width
    table.add_column("class")
    table.add_column("#gt", justify="right")
    table.add_column("#dets", justify="right")
    for name in ["AP50", "AP75", "mAP", *[f"AP@{t:g}" for t in extra]]:
        table.add_column(name, justify="right")
    averaged = set(result.averaged_classes)
    for name in result.class_names:
        c = result.per_class[name]
        cells = [c.ap[0.5], c.ap[0.75], result.class_map(name), *[c.ap[t] for t in extra]]
        # A class without ground truth has no AP to speak of; "-" unless the mean counts it.
        shown = [f"{100 * v:.2f}" if name in averaged else "-" for v in cells]
        table.add_row(name, str(c.num_gt), str(c.num_dets), *shown)
    totals = [result.AP50, result.AP75, result.mAP, *[result.ap(t) for t in extra]]
    table.add_section()
    table.add_row(
        f"mean of {len(averaged)}/{len(result.class_names)}" if len(averaged) != len(result.class_names) else "mean",
        str(sum(c.num_gt for c in result.per_class.values())),
        str(sum(c.num_dets for c in result.per_class.values())),
        *[f"{100 * v:.2f}" for v in totals],
        style="bold",
    )
    stdout_console.print(table)


def _coco() -> tuple[float, ...]:
    from rgfl.evaluation import COCO_IOU_THRS

    return COCO_IOU_THRS


def write_eval_json(path: Path, result) -> None:
    from rgfl.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")


@handle_errors
def eval_command(
    checkpoint: Annotated[
        Optional[Path],
        typer.Argument(
            help="Run this checkpoint over --data (split val set) first, instead of reading --dets. "
            "See 'Running a checkpoint' above.",
            show_default=False,
        ),
    ] = None,
    dets: Annotated[
        Optional[Path],
        typer.Option("--dets", help="Folder of full-image Task1_<class>.txt detection files.", show_default=False),
    ] = None,
    gt: Annotated[
        Optional[Path],
        typer.Option("--gt", help="Folder of DOTA label files <image>.txt (or a root with labelTxt/).", show_default=False),
    ] = None,
    classes: ClassesOption = None,
    ap_method: Annotated[
        str, typer.Option("--ap-method", help="voc07 (official 11-point) or area (all-point).")
    ] = "voc07",
    iou_thrs: Annotated[
        str,
        typer.Option("--iou-thrs", help="Thresholds averaged into mAP: START:STOP:STEP or a list like 0.5,0.75."),
    ] = "0.5:0.95:0.05",
    images: Annotated[
        Optional[Path],
        typer.Option("--images", help="Evaluate only the images listed in this file, one name per line (the official image-set file).", show_default=False),
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the results as JSON to this file.", show_default=False)
    ] = None,
    mean_over: Annotated[
        MeanOver,
        typer.Option(
            "--mean-over",
            help="Classes averaged into AP50/AP75/mAP: present = those with (non-difficult) ground truth in the "
            "evaluated images (mmdet/mmrotate); all = every class of the class set, absent ones as 0 (the official "
            "DOTA devkit script, which divides by its 15 classes). Equal when every class is present.",
        ),
    ] = MeanOver.present,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed line instead of skipping it.")] = False,
    # Options of the CHECKPOINT path (issue 7; implemented in rgfl.cli.run_model).
    data: Annotated[Optional[Path], typer.Option("--data", help="With CHECKPOINT: split val set (rgfl split output).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="With CHECKPOINT: output folder.", show_default=False)] = None,
    merged: Annotated[bool, typer.Option("--merged", help="With CHECKPOINT: merge to full images, score against --gt.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="With CHECKPOINT: patches per forward pass.")] = 4,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="With CHECKPOINT: image-reading workers (default: 0 on CPU, cores-1 up to 8 on CUDA).", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="With CHECKPOINT: auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="With CHECKPOINT: autocast on CUDA.")] = False,
) -> None:
    """Score DOTA Task1 detection files like the official evaluation (AP50, AP75, mAP@0.5:0.95).

    Running a checkpoint: rgfl eval CHECKPOINT --data SPLIT_VAL_ROOT --out DIR runs the model over the patches (batched, DataLoader workers, autocast on GPU), writes the patch detections (DIR/patch_dets/Task1_<class>.txt) and scores them against SPLIT_VAL_ROOT/labelTxt (patch level, the protocol of the reference results). With --merged --gt ORIGINAL_LABEL_DIR the patch detections are first merged to full images (as rgfl merge-submit does, into DIR/merged_dets) and scored at image level. The metric JSON goes to DIR/metrics.json.

    Examples:

      rgfl eval --dets results/ --gt DOTA/val/labelTxt --json metrics.json

      rgfl eval --dets results/ --gt DOTA/val --ap-method area --iou-thrs 0.5,0.75 --mean-over all

      rgfl eval runs/r50 --data split/val --out runs/r50/val

      rgfl eval runs/r50 --data split/val --merged --gt DOTA/val/labelTxt --out runs/r50/val_merged
    """
    from rgfl.dota.classes import resolve_classes
    from rgfl.errors import InputError, ProblemLog
    from rgfl.evaluation import evaluate_detections, parse_iou_thresholds, read_image_list

    if checkpoint is not None:
        from rgfl.cli.run_model import eval_checkpoint_command

        return eval_checkpoint_command(
            checkpoint, dets, data, out, merged, gt, classes, ap_method, iou_thrs, json_path, strict, batch_size, workers, device, amp, images,
            mean_over=mean_over.value,
        )
    if data is not None or out is not None or merged:
        raise InputError("--data, --out and --merged run a model: give the CHECKPOINT first (rgfl eval CHECKPOINT --data SPLIT_VAL_ROOT --out DIR)")

    if dets is None or gt is None:
        raise InputError("rgfl eval needs --dets DETS_DIR and --gt LABEL_DIR (or a CHECKPOINT with --data SPLIT_VAL_ROOT --out DIR)")
    if ap_method not in ("voc07", "area"):
        raise InputError(f"--ap-method must be voc07 or area, got {ap_method!r}")
    class_names = resolve_classes(classes)
    thresholds = parse_iou_thresholds(iou_thrs)
    problems = ProblemLog(strict=strict)
    image_list = read_image_list(images) if images is not None else None
    start = time.perf_counter()
    with console.status("evaluating"):
        result = evaluate_detections(dets, gt, class_names, thresholds, ap_method, problems, image_list, mean_over.value)
    seconds = time.perf_counter() - start
    print_eval_table(result)
    summary = f"{result.num_images} images, {sum(c.num_dets for c in result.per_class.values())} detections, {seconds:.1f} s"
    if len(problems):
        summary += f", {len(problems)} malformed lines skipped"
    if result.unlabelled_dets:
        summary += f", {result.unlabelled_dets} detections on unlabelled images (false positives)"
    console.print(summary, highlight=False)
    if json_path is not None:
        write_eval_json(json_path, result)
        console.print(f"wrote {json_path}", highlight=False)
        from rgfl.cli.plot import report_pr_curves

        report_pr_curves(result, json_path.parent / "pr_curves.png")
