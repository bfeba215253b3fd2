"""The work dir of a training run: whether it holds a run, starting over, tidying before a resume.

A work dir "holds a run" once a run has written its log or a checkpoint there. ``rgfl train``
refuses such a folder unless told what to do with it: ``--resume`` continues the run,
``--overwrite`` removes the old run's files (only the names a run writes, see :data:`RUN_FILES`)
and starts over.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from rgfl.engine.checkpoint import LAST_POINTER, checkpoint_dir
from rgfl.errors import InputError
from rgfl.fileio import atomic_write_text, remove_stale_temp_files

__all__ = ["RUN_FILES", "describe_run", "check_work_dir", "clear_run", "remove_stale_run_temp_files", "trim_log"]

logger = logging.getLogger(__name__)

# What a run writes into its work dir (checkpoints/ holds the names of CHECKPOINT_NAME and the
# pointer files); --overwrite removes exactly these and nothing else the folder may hold.
RUN_FILES = ("log.jsonl", "config.yaml", "curves.png", "curves.json")  # curves.*: rgfl.plots, after each epoch
CHECKPOINT_NAME = re.compile(r"^(epoch_\d{4,}|iter_\d{7,})\.pt$")
POINTER_FILES = (LAST_POINTER, "best.json")
TENSORBOARD_EVENTS = "events.out.tfevents.*"


def _checkpoints(work_dir: Path) -> list[Path]:
    folder = checkpoint_dir(work_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_NAME.match(p.name) and p.is_file())


def describe_run(work_dir: str | Path) -> str | None:
    """What run the folder holds ("3 checkpoints, log.jsonl"), or None when it holds none."""
    work_dir = Path(work_dir)
    parts = []
    checkpoints = _checkpoints(work_dir)
    if checkpoints:
        parts.append(f"{len(checkpoints)} checkpoint{'s' if len(checkpoints) != 1 else ''} (newest {checkpoints[-1].name})")
    if (work_dir / "log.jsonl").is_file():
        parts.append("log.jsonl")
    return ", ".join(parts) or None


def check_work_dir(work_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an old one without ``resume`` or ``overwrite``.

    Raises:
        InputError: the folder holds a run and neither is set, or both are set.
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other: continue the run in the work dir, or start it over")
    held = describe_run(work_dir)
    if held and not resume and not overwrite:
        raise InputError(
            f"the work dir already holds a training run ({held}); continue it with --resume, "
            "start it over with --overwrite (deletes its checkpoints and log), or choose another --work-dir",
            work_dir,
        )


def clear_run(work_dir: str | Path) -> list[Path]:
    """Remove the files of the run in ``work_dir`` (``--overwrite``); returns what was removed.

    Only what a run writes goes: checkpoints named ``epoch_NNNN.pt`` / ``iter_NNNNNNN.pt``, the
    pointer files beside them, ``log.jsonl``, ``config.yaml``, ``curves.png``/``curves.json``,
    TensorBoard event files and stale temporary files. Anything else the user keeps there stays, and so do the folders.
    """
    work_dir = Path(work_dir)
    folder = checkpoint_dir(work_dir)
    removed: list[Path] = []
    # The pointer first: a crash halfway never leaves it naming a file that is gone.
    candidates = [folder / name for name in POINTER_FILES] + _checkpoints(work_dir) + [work_dir / name for name in RUN_FILES]
    tensorboard = work_dir / "tensorboard"
    if tensorboard.is_dir():
        candidates += sorted(p for p in tensorboard.glob(TENSORBOARD_EVENTS) if p.is_file())
    for path in candidates:
        if path.is_file():
            path.unlink()
            removed.append(path)
    removed += remove_stale_run_temp_files(work_dir)
    if removed:
        logger.warning("--overwrite: removed the previous run in %s (%d files)", work_dir, len(removed))
    return removed


def remove_stale_run_temp_files(work_dir: str | Path) -> list[Path]:
    """Temporary files of checkpoint, config and pointer writes that a killed run left behind."""
    work_dir = Path(work_dir)
    removed = remove_stale_temp_files(work_dir) + remove_stale_temp_files(checkpoint_dir(work_dir))
    if removed:
        logger.info("removed %d temporary files of an interrupted run in %s", len(removed), work_dir)
    return removed


def trim_log(work_dir: str | Path, iteration: int) -> int:
    """Drop the records of ``log.jsonl`` past ``iteration`` (written after the checkpoint a run
    resumes from, so the resumed run would log them again) and any torn last line; returns how
    many lines were dropped. The file is rewritten atomically, and only when something goes."""
    path = Path(work_dir) / "log.jsonl"
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record.get("iteration", 0)) <= iteration
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        logger.info("log.jsonl: dropped %d records after iteration %d (the run continues from there)", dropped, iteration)
    return dropped
