"""``rgfl merge-submit``: patch detections -> full-image DOTA Task1 files (and the server zip).

Thin layer over :mod:`rgfl.dota.merge`. A later positional CHECKPOINT (run a model on split
patches first) can be added before the options without changing ``--dets``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from rgfl.cli.common import ClassesOption, console, handle_errors

__all__ = ["merge_submit_command", "run_merge"]


def run_merge(source, out: Path, class_names, iou_thr: float, score_thr: float, max_per_img: int, make_zip: bool, device: str = "cpu"):
    """Merge with a progress bar, write every class file (and the zip), print the summary."""
    from tqdm import tqdm

    from rgfl.dota.merge import MergeSummary, merge_patch_detections, write_merged_task1, zip_task1_files

    start = time.perf_counter()
    summary = MergeSummary(patches=source.num_patches, skipped_lines=source.skipped_lines)
    stems = source.stems
    merged = merge_patch_detections(source, iou_thr, score_thr, max_per_img, device)
    with tqdm(total=len(stems), unit="img", desc="merging", file=console.file, disable=None) as bar:

        def advance():
            for image in merged:
                bar.update(1)
                yield image

        write_merged_task1(advance(), out, class_names, summary)
    zip_path = zip_task1_files(out, class_names) if make_zip else None
    summary.seconds = time.perf_counter() - start
    text = (
        f"{summary.patches} patches, {summary.detections_in} detections in, {summary.detections_out} out, "
        f"{summary.images} images, {summary.seconds:.1f} s"
    )
    if len(source.problems):
        text += f", {len(source.problems)} input problems (lines skipped: see warnings)"
    console.print(text, highlight=False)
    console.print(f"wrote {len(class_names)} Task1 files to {out}" + (f" and {zip_path}" if zip_path else ""), highlight=False)
    return summary


@handle_errors
def merge_submit_command(
    checkpoint: Annotated[
        Optional[Path],
        typer.Argument(
            help="Run this checkpoint over --data (split test set) first, instead of reading --dets. "
            "See 'Running a checkpoint' above.",
            show_default=False,
        ),
    ] = None,
    dets: Annotated[
        Optional[Path],
        typer.Option("--dets", help="Folder of patch-level Task1_<class>.txt files (image names = patch names).", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder for full-image Task1 files.", show_default=False)] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(help="split_manifest.json of `rgfl split` (or its folder) instead of parsing patch names.", show_default=False),
    ] = None,
    classes: ClassesOption = None,
    iou_thr: Annotated[float, typer.Option("--iou-thr", help="Rotated NMS: suppress when IoU > this (strictly).")] = 0.1,
    score_thr: Annotated[float, typer.Option("--score-thr", help="Drop detections with a lower score before NMS.")] = 0.0,
    max_per_img: Annotated[int, typer.Option("--max-per-img", help="Keep at most this many per image (0: all).")] = 0,
    make_zip: Annotated[bool, typer.Option("--zip", help="Also write OUT/<OUT name>.zip for the DOTA server.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed line or unknown patch name.")] = False,
    # Options of the CHECKPOINT path (issue 7; implemented in rgfl.cli.run_model).
    data: Annotated[Optional[Path], typer.Option("--data", help="With CHECKPOINT: split test set (rgfl split output).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="With CHECKPOINT: patches per forward pass.")] = 4,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="With CHECKPOINT: image-reading workers (default: 0 on CPU, cores-1 up to 8 on CUDA).", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="With CHECKPOINT: auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="With CHECKPOINT: autocast on CUDA.")] = False,
) -> None:
    """Merge patch detections into full-image DOTA Task1 files (rotated NMS per class and image).

    Running a checkpoint: rgfl merge-submit CHECKPOINT --data SPLIT_TEST_ROOT --out DIR [--zip] runs the model over the patches (batched, DataLoader workers, autocast on GPU), streaming the detections to DIR/patch_dets/ one source image at a time (an interrupted run resumes where it stopped when run again), then merges them into DIR/Task1_<class>.txt for every class of the checkpoint (and DIR/<DIR name>.zip with --zip).

    Examples:

      rgfl merge-submit --dets patch_dets/ --out submission --zip

      rgfl merge-submit --dets patch_dets/ --out submission --manifest split/test --iou-thr 0.1

      rgfl merge-submit runs/r50 --data split/test --out submission --zip
    """
    from rgfl.dota.classes import resolve_classes
    from rgfl.dota.merge import PatchDetections, load_split_manifest
    from rgfl.errors import InputError, ProblemLog

    if not 0.0 <= iou_thr <= 1.0:
        raise InputError(f"--iou-thr must be in [0, 1], got {iou_thr}")
    if max_per_img < 0:
        raise InputError(f"--max-per-img must be >= 0, got {max_per_img}")
    if checkpoint is not None:
        from rgfl.cli.run_model import merge_submit_checkpoint_command

        return merge_submit_checkpoint_command(
            checkpoint, dets, data, out, manifest, classes, iou_thr, score_thr, max_per_img, make_zip, strict, batch_size, workers, device, amp
        )
    if data is not None:
        raise InputError("--data runs a model: give the CHECKPOINT first (rgfl merge-submit CHECKPOINT --data SPLIT_TEST_ROOT --out DIR)")

    if dets is None or out is None:
        raise InputError("rgfl merge-submit needs --dets PATCH_DETS_DIR and --out OUT_DIR (or a CHECKPOINT with --data SPLIT_TEST_ROOT --out DIR)")
    if out.resolve() == dets.resolve():
        raise InputError("--out must differ from --dets (the merged files would replace the patch files)")
    class_names = resolve_classes(classes)
    problems = ProblemLog(strict=strict)
    origins = load_split_manifest(manifest) if manifest is not None else None
    with console.status("indexing patch detections"):
        source = PatchDetections(dets, class_names, origins, problems)
    run_merge(source, out, class_names, iou_thr, score_thr, max_per_img, make_zip)
