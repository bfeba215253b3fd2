"""Running a checkpoint from the command line: shared by `rgfl eval`, `rgfl merge-submit` and `rgfl predict`.

This module holds the option types, device choice, checkpoint loading, the progress bar and the
inference-then-evaluate / inference-then-merge paths that `rgfl eval CHECKPOINT` and
`rgfl merge-submit CHECKPOINT` take. The metric, the merge and the Task1 files are those of
`rgfl eval --dets` and `rgfl merge-submit --dets` (rgfl.evaluation, rgfl.dota.merge,
rgfl.dota.task1); nothing here re-implements them.

Output layout of a checkpoint run in ``--out DIR``::

    DIR/patch_dets/Task1_<class>.txt     patch-level detections (input of `--dets` commands)
    DIR/patch_dets/shards/<image>.txt    one file per source image, written as inference goes;
                                         a rerun skips the images that have one (resume)
    DIR/merged_dets/Task1_<class>.txt    (eval --merged) image-level detections
    DIR/metrics.json                     (eval) the metric JSON
    DIR/Task1_<class>.txt, DIR.zip       (merge-submit) the submission
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from rgfl.cli.common import console
from rgfl.errors import InputError, RgflError

logger = logging.getLogger("rgfl.cli")

BatchSizeOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Patches (or windows) per forward pass.")]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", "-j", min=0, help="DataLoader workers that read images (default: 0 on CPU, cores-1 up to 8 on CUDA).", show_default=False),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
AmpOption = Annotated[bool, typer.Option("--amp/--no-amp", help="Autocast (bf16/fp16) on CUDA; ignored on CPU.")]

PATCH_DETS = "patch_dets"
SHARDS = "shards"
MERGED_DETS = "merged_dets"


def resolve_device(text: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; refuses CUDA when there is none."""
    import torch

    text = text.strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RgflError(f"--device {text}: no CUDA device is available here (use --device cpu)")
        if ":" in text and int(text[5:]) >= torch.cuda.device_count():
            raise RgflError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
        return text
    raise RgflError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def default_workers(device: str) -> int:
    """0 on CPU (decoding a patch costs ~2% of its forward pass there; a worker would only take a
    core from the model), cores - 1 up to 8 on CUDA, where decoding must keep up with the GPU."""
    import os

    if not device.startswith("cuda"):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


@dataclass
class LoadedDetector:
    """A detector rebuilt from a checkpoint, ready for inference."""

    model: Any
    class_names: tuple[str, ...]
    checkpoint: Path
    config: Any
    fingerprint: dict


def load_detector(checkpoint: Path, device: str) -> LoadedDetector:
    """Rebuild the detector from the config stored in ``checkpoint`` and load its weights (eval mode).

    The fingerprint (path, size and modification time of the checkpoint) tells a resumed run
    whether the shards already on disk came from the same weights.
    """
    from rgfl.engine.build import class_names
    from rgfl.engine.build import load_detector as detector_from_checkpoint

    if checkpoint.is_dir():
        from rgfl.engine.checkpoint import find_latest_checkpoint

        latest = find_latest_checkpoint(checkpoint)
        if latest is None:
            raise InputError("no checkpoint in this folder (expected a work dir with checkpoints/*.pt, or a .pt file)", checkpoint)
        checkpoint = latest
    if not checkpoint.is_file():
        raise InputError("checkpoint not found", checkpoint)
    model, config = detector_from_checkpoint(checkpoint, device)
    stat = checkpoint.stat()
    fingerprint = {"checkpoint": str(checkpoint.resolve()), "checkpoint_bytes": stat.st_size, "checkpoint_mtime_ns": stat.st_mtime_ns}
    return LoadedDetector(model, tuple(class_names(config.data)), checkpoint, config, fingerprint)


def model_input_size(detector: LoadedDetector) -> int | None:
    """The ``data.input_size`` the model was trained with (patches are resized to it), or None."""
    data = getattr(detector.config, "data", None)
    return getattr(data, "input_size", None)


def progress_bar():
    """A rich progress bar on stderr with count, rate and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}", markup=False),  # image names are user text
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def infer_split(detector: LoadedDetector, data_root: Path, out: Path, settings, label: str = "inference") -> Path:
    """Run the detector over ``data_root/images`` into ``out/patch_dets`` (resumable); returns that folder."""
    import time

    from rgfl.engine.inference import shards_to_task1, stream_patch_detections

    if not data_root.is_dir():
        raise InputError("data folder not found (expected a folder written by `rgfl split` with images/)", data_root)
    import dataclasses

    settings = dataclasses.replace(settings, input_size=model_input_size(detector))
    patch_dets = out / PATCH_DETS
    shard_dir = patch_dets / SHARDS
    fingerprint = {**detector.fingerprint, "data": str(data_root.resolve())}
    start = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task(label, total=None, rate="")

        def on_start(todo: int, done: int) -> None:
            progress.update(task, total=todo + done, completed=done)

        def on_patches(count: int) -> None:
            progress.advance(task, count)
            elapsed = time.perf_counter() - start
            finished = progress.tasks[0].completed - resumed[0]
            progress.update(task, rate=f"{finished / max(elapsed, 1e-9):.2f} patch/s")

        resumed = [0]

        def on_start_wrapper(todo: int, done: int) -> None:
            resumed[0] = done
            on_start(todo, done)

        summary = stream_patch_detections(
            detector.model, data_root / "images", shard_dir, settings, fingerprint, on_patches=on_patches, on_start=on_start_wrapper
        )
    count = shards_to_task1(shard_dir, patch_dets, detector.class_names)
    seconds = time.perf_counter() - start
    resumed_text = f" ({summary.resumed_images} resumed from an earlier run)" if summary.resumed_images else ""
    console.print(
        f"{label}: {summary.source_images} source images{resumed_text}, {summary.patches} patches run, "
        f"{count} patch detections, {seconds:.1f} s -> {patch_dets}",
        highlight=False,
    )
    return patch_dets


def inference_settings(batch_size: int, workers: int | None, device: str, amp: bool):
    from rgfl.engine.inference import InferenceSettings

    device = resolve_device(device)
    return InferenceSettings(batch_size=batch_size, workers=default_workers(device) if workers is None else workers, device=device, amp=amp)


def read_image_detections(dets: Path, image_id: str, class_names: list[str]):
    """Detections of one image from a Task1 folder: polygons [N, 8], scores [N], labels [N]."""
    import numpy as np

    from rgfl.dota.task1 import TASK1_PREFIX, read_task1_file
    from rgfl.errors import ProblemLog

    polygons, scores, labels = [np.zeros((0, 8))], [np.zeros((0,))], [np.zeros((0,), dtype=np.int64)]
    found = False
    problems = ProblemLog()
    for path in sorted(Path(dets).glob(f"{TASK1_PREFIX}*.txt")):
        name = path.name[len(TASK1_PREFIX) : -len(".txt")]
        found = True
        if name not in class_names:
            class_names.append(name)
        detections = read_task1_file(path, problems)
        keep = np.array([image == image_id for image in detections.image_ids], dtype=bool)
        if keep.any():
            polygons.append(detections.polygons[keep])
            scores.append(detections.scores[keep])
            labels.append(np.full(int(keep.sum()), class_names.index(name), dtype=np.int64))
    if not found:
        raise InputError("no Task1_<class>.txt file in the detection folder", dets)
    return np.concatenate(polygons), np.concatenate(scores), np.concatenate(labels)


def print_paths(paths: Sequence[tuple[str, Path]]) -> None:
    for what, path in paths:
        console.print(f"{what}: {path}", highlight=False)


def help_text(text: str) -> str:
    """Join the wrapped lines of each paragraph so the terminal can re-wrap them; keep indented lines."""
    paragraphs = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if all(line.startswith("  ") for line in lines):
            paragraphs.append("\n".join(lines))
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def print_metrics_table(metrics: dict, title: str) -> None:
    """The AP table of a metric JSON document (schema of `rgfl eval --json`), percentages."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", min_width=len(title))
    for column in ("class", "#gt", "#dets", "AP50", "AP75", "mAP"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, str(row["num_gt"]), str(row["num_dets"]), *(f"{100 * row[k]:.2f}" for k in ("AP50", "AP75", "mAP")))
    table.add_row("mean", "", "", *(f"{100 * metrics[k]:.2f}" for k in ("AP50", "AP75", "mAP")), style="bold")
    console.print(table)


def eval_checkpoint(
    checkpoint: Path,
    data: Path,
    out: Path,
    merged: bool,
    gt: Path | None,
    settings,
    class_names: Sequence[str] | None = None,
    iou_thrs: Sequence[float] | None = None,
    ap_method: str = "voc07",
    strict: bool = False,
    merge_options: dict | None = None,
    image_list: Sequence[str] | None = None,
    mean_over: str = "present",
):
    """`rgfl eval CHECKPOINT`: infer the split val set, then score it (patch level, or merged).

    Patch level (default, the protocol of the reference results): detections on patches against
    ``data/labelTxt``. ``merged``: patch detections merged to full images by the merge of
    `rgfl merge-submit`, scored against the original labels in ``gt``. Writes
    ``out/metrics.json`` (the `rgfl eval --json` schema) and returns the EvalResult.
    """
    from rgfl.cli.evaluate import print_eval_table, write_eval_json
    from rgfl.errors import ProblemLog
    from rgfl.evaluation.dota_map import COCO_IOU_THRS, evaluate_detections

    if merged and gt is None:
        raise RgflError("--merged needs --gt ORIGINAL_LABEL_DIR (the label files of the full images before splitting)")
    if gt is not None and not merged:
        raise RgflError("with a CHECKPOINT, --gt is used with --merged only (at patch level the ground truth is DATA/labelTxt)")
    if merged and not Path(gt).is_dir():
        raise InputError("ground-truth folder not found (expected the labelTxt/ of the full images)", gt)
    if not data.is_dir():
        raise InputError("data folder not found (expected a folder written by `rgfl split` with images/ and labelTxt/)", data)
    if not merged and not (data / "labelTxt").is_dir():
        raise InputError("no labelTxt/ in the data folder: patch-level evaluation needs the split labels (or use --merged --gt DIR)", data)
    detector = load_detector(checkpoint, settings.device)
    names = tuple(class_names) if class_names else detector.class_names
    patch_dets = infer_split(detector, data, out, settings)
    if merged:
        dets_dir = out / MERGED_DETS
        merge_patch_detections(patch_dets, dets_dir, detector.class_names, data, strict=strict, device=settings.device, **(merge_options or {}))
        gt_dir, level = Path(gt), "merged to full images"
        image_list = _split_images_only(gt_dir, data, image_list)
    else:
        dets_dir, gt_dir, level = patch_dets, data / "labelTxt", "patch level"
    problems = ProblemLog(strict=strict)
    result = evaluate_detections(
        dets_dir, gt_dir, names, COCO_IOU_THRS if iou_thrs is None else iou_thrs, ap_method, problems, image_list, mean_over
    )
    write_eval_json(out / "metrics.json", result)
    print_eval_table(result, title=f"{checkpoint.name}, {level}")
    print_paths([("detections", dets_dir), ("metrics", out / "metrics.json")])
    from rgfl.cli.plot import report_pr_curves

    report_pr_curves(result, out / "pr_curves.png")
    return result


def _split_images_only(gt_dir: Path, data: Path, image_list: Sequence[str] | None) -> list[str] | None:
    """The images of a merged evaluation: those of ``gt_dir`` (or ``image_list``) that ``data`` has patches of.

    A label file of an image that was never split (no patch in DATA) would count all its objects
    as misses; such images are left out with one warning naming how many and a few of them.
    """
    from rgfl.dota.merge import load_split_manifest
    from rgfl.dota.patches import parse_patch_name

    if (data / "split_manifest.json").is_file():
        split = {origin.stem for origin in load_split_manifest(data).values()}
    else:
        split = set()
        for path in (data / "images").iterdir() if (data / "images").is_dir() else ():
            try:
                split.add(parse_patch_name(path.stem).stem)
            except InputError:
                continue
    if not any(gt_dir.glob("*.txt")) and (gt_dir / "labelTxt").is_dir():
        gt_dir = gt_dir / "labelTxt"
    wanted = list(image_list) if image_list is not None else sorted(p.stem for p in gt_dir.glob("*.txt") if p.is_file())
    kept = [stem for stem in wanted if stem in split]
    left_out = [stem for stem in wanted if stem not in split]
    if left_out:
        logger.warning(
            "%d of %d label files in %s have no patches in %s (never split) and are left out of the evaluation: %s%s",
            len(left_out), len(wanted), gt_dir, data, ", ".join(left_out[:5]), ", ..." if len(left_out) > 5 else "",
        )
    if not kept:
        raise InputError(f"none of the label files in {gt_dir} belongs to an image split into {data}", gt_dir)
    return kept if left_out or image_list is not None else None


def eval_checkpoint_command(
    checkpoint: Path, dets, data, out, merged, gt, classes, ap_method, iou_thrs, json_path, strict, batch_size, workers, device, amp, images=None,
    mean_over: str = "present",
) -> None:
    """The CHECKPOINT path of `rgfl eval` (options checked here, work in :func:`eval_checkpoint`)."""
    from rgfl.cli.evaluate import write_eval_json
    from rgfl.dota.classes import resolve_classes
    from rgfl.evaluation import parse_iou_thresholds, read_image_list

    if dets is not None:
        raise RgflError("give either a CHECKPOINT (to run a model) or --dets (to score detection files), not both")
    if data is None or out is None:
        raise RgflError("rgfl eval CHECKPOINT needs --data SPLIT_VAL_ROOT and --out DIR")
    if ap_method not in ("voc07", "area"):
        raise InputError(f"--ap-method must be voc07 or area, got {ap_method!r}")
    thresholds = parse_iou_thresholds(iou_thrs)
    names = resolve_classes(classes) if classes is not None else None
    settings = inference_settings(batch_size, workers, device, amp)
    image_list = read_image_list(images) if images is not None else None
    result = eval_checkpoint(checkpoint, data, out, merged, gt, settings, names, thresholds, ap_method, strict, image_list=image_list, mean_over=mean_over)
    if json_path is not None:
        write_eval_json(json_path, result)
        console.print(f"wrote {json_path}", highlight=False)


def merge_patch_detections(
    patch_dets: Path,
    out: Path,
    class_names: Sequence[str],
    data: Path | None = None,
    make_zip: bool = False,
    iou_thr: float = 0.1,
    score_thr: float = 0.0,
    max_per_img: int = 0,
    manifest: Path | None = None,
    strict: bool = False,
    device: str = "cpu",
):
    """Patch-level Task1 folder -> image-level Task1 folder, with the merge of `rgfl merge-submit`.

    The origin of each patch comes from ``manifest``, else from ``data/split_manifest.json`` when
    the split wrote one, else from the patch names. Prints the merge summary; returns it.
    """
    from rgfl.cli.merge_submit import run_merge
    from rgfl.dota.merge import PatchDetections, load_split_manifest
    from rgfl.errors import ProblemLog

    if manifest is None and data is not None and (Path(data) / "split_manifest.json").is_file():
        manifest = Path(data) / "split_manifest.json"
    origins = load_split_manifest(manifest) if manifest is not None else None
    source = PatchDetections(patch_dets, class_names, origins, ProblemLog(strict=strict))
    return run_merge(source, out, class_names, iou_thr, score_thr, max_per_img, make_zip, device=device.split(":")[0] if device.startswith("cuda") else "cpu")


def merge_submit_checkpoint_command(
    checkpoint: Path, dets, data, out, manifest, classes, iou_thr, score_thr, max_per_img, make_zip, strict, batch_size, workers, device, amp
) -> None:
    """The CHECKPOINT path of `rgfl merge-submit`: infer the split test set (streamed, resumable), merge, write, zip."""
    from rgfl.dota.classes import resolve_classes

    if dets is not None:
        raise RgflError("give either a CHECKPOINT (to run a model) or --dets (to merge detection files), not both")
    if data is None or out is None:
        raise RgflError("rgfl merge-submit CHECKPOINT needs --data SPLIT_TEST_ROOT and --out DIR")
    if not data.is_dir():
        raise InputError("data folder not found (expected a folder written by `rgfl split` with images/)", data)
    settings = inference_settings(batch_size, workers, device, amp)
    detector = load_detector(checkpoint, settings.device)
    names = resolve_classes(classes) if classes is not None else detector.class_names
    patch_dets = infer_split(detector, data, out, settings)
    merge_patch_detections(patch_dets, out, names, data, make_zip, iou_thr, score_thr, max_per_img, manifest, strict, settings.device)
