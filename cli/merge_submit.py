"""``rgfl merge-submit``: patch detections -> full-image DOTA Task1 files (and the server zip).

Thin layer over :mod:`rgfl.dota.merge`. A later positional CHECKPOINT (run a model on split
patches first) can be added before the options without changing ``--dets``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from rgfl.cli.common import console, handle_errors

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
    dets: Annotated[
        Optional[Path],
        typer.Option("--dets", help="Folder of patch-level Task1_<class>.txt files (image names = patch names).", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder for full-image Task1 files.", show_default=False)] = None,
    manifest: Annotated[
        Optional[Path],
        typer.Option(help="split_manifest.json of `rgfl split` (or its folder) instead of parsing patch names.", show_default=False),
    ] = None,
    classes: Annotated[
        str, typer.Option(help="Class set: dota1.0, dota1.5, dota2.0, or a file with one class per line.")
    ] = "dota1.0",
    iou_thr: Annotated[float, typer.Option("--iou-thr", help="Rotated NMS: suppress when IoU > this (strictly).")] = 0.1,
    score_thr: Annotated[float, typer.Option("--score-thr", help="Drop detections with a lower score before NMS.")] = 0.0,
    max_per_img: Annotated[int, typer.Option("--max-per-img", help="Keep at most this many per image (0: all).")] = 2000,
    make_zip: Annotated[bool, typer.Option("--zip", help="Also write OUT/<OUT name>.zip for the DOTA server.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed line or unknown patch name.")] = False,
) -> None:
    """Merge patch detections into full-image DOTA Task1 files (rotated NMS per class and image)."""
    from rgfl.dota.classes import resolve_classes
    from rgfl.dota.merge import PatchDetections, load_split_manifest
    from rgfl.errors import InputError, ProblemLog

    if dets is None or out is None:
        raise InputError("rgfl merge-submit needs --dets PATCH_DETS_DIR and --out OUT_DIR")
    if not 0.0 <= iou_thr <= 1.0:
        raise InputError(f"--iou-thr must be in [0, 1], got {iou_thr}")
    if max_per_img < 0:
        raise InputError(f"--max-per-img must be >= 0, got {max_per_img}")
    if out.resolve() == dets.resolve():
        raise InputError("--out must differ from --dets (the merged files would replace the patch files)")
    class_names = resolve_classes(classes)
    problems = ProblemLog(strict=strict)
    origins = load_split_manifest(manifest) if manifest is not None else None
    with console.status("indexing patch detections"):
        source = PatchDetections(dets, class_names, origins, problems)
    run_merge(source, out, class_names, iou_thr, score_thr, max_per_img, make_zip)
