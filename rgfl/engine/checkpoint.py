"""Training checkpoints: atomic save, validated load, finding the latest one, RNG capture.

A checkpoint is one ``torch.save`` file (a dict of tensors and plain Python values, loadable with
``weights_only=True``) holding:

- ``format`` (``"rgfl-checkpoint"``), ``format_version``, ``rgfl_version``;
- ``model_signature``: head, backbone, class names, bins, head and FPN shape, angle coding: what a
  checkpoint must match to be loaded;
- ``model``: the detector's state dict (unwrapped from DDP / torch.compile);
- ``optimizer``, ``scheduler``, ``scaler`` (GradScaler, or None);
- ``epoch`` (0-based epoch in progress), ``batch_in_epoch`` (batches of it already trained),
  ``iteration`` (global), ``complete`` (True when the epoch ended);
- ``rng``: python/numpy/torch/cuda RNG states of every rank; ``sampler``: the batch order state;
- ``config``: the resolved config as a dict; ``metrics``: last logged values.

Files live in ``<work_dir>/checkpoints/``: ``epoch_0003.pt`` at epoch ends, ``iter_0012345.pt``
when a run is interrupted, and a text file ``last_checkpoint`` naming the newest one.

Integrity: the file is torch's zip container, in which every record (the pickled dict, each
tensor's bytes) carries a CRC-32 checksum that ``torch.save`` computes. ``torch.load`` never checks
them; :func:`load_checkpoint` does, for every record, before unpickling, so a flipped byte or a
truncated file is reported as a corrupt checkpoint instead of loading wrong weights or optimizer
state. No extra file or field is needed, so checkpoints of every rgfl version are verified the
same way and stay loadable with plain ``torch.load``. (Records whose stored CRC is 0, as written
with ``torch.serialization.set_crc32_options(False)``, cannot be checked and are skipped.)
"""

from __future__ import annotations

import io
import logging
import pickle
import random
import zipfile
from zlib import error as zlib_error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rgfl import __version__
from rgfl.errors import InputError
from rgfl.fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "find_latest_checkpoint",
    "checkpoint_candidates",
    "find_resume_point",
    "ResumePoint",
    "verify_checkpoint_file",
    "checkpoint_dir",
    "capture_rng_state",
    "restore_rng_state",
    "check_model_signature",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "rgfl-checkpoint"
FORMAT_VERSION = 1
LAST_POINTER = "last_checkpoint"


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, corrupt, or from another model."""


def checkpoint_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / "checkpoints"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (plus format fields) atomically to ``path`` and point ``last_checkpoint`` at it.

    The file is serialized in memory first and then written through a temporary file + rename, so
    a crash or a second Ctrl-C leaves either the previous checkpoint or the complete new one.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "rgfl_version": __version__, **state}
    buffer = io.BytesIO()
    get_crc32, set_crc32 = (getattr(torch.serialization, name, None) for name in ("get_crc32_options", "set_crc32_options"))
    crc_was_off = get_crc32 is not None and set_crc32 is not None and not get_crc32()
    if crc_was_off:
        set_crc32(True)  # the checksums load_checkpoint verifies
    try:
        torch.save(payload, buffer)
    finally:
        if crc_was_off:
            set_crc32(False)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_text(path.parent / LAST_POINTER, path.name + "\n")
    logger.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or not an rgfl checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path)
    verify_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError, AttributeError, IndexError, TypeError):
        # torch's own messages here are long and about pickling internals; the user needs to know
        # that this file cannot be used.
        raise CheckpointError("not a readable rgfl checkpoint (corrupt or truncated file, or saved by another program)", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            "not an rgfl training checkpoint (no 'format: rgfl-checkpoint' field); "
            "to start from other weights use model.pretrained or convert them first",
            path,
        )
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {state['format_version']} is newer than this rgfl understands ({FORMAT_VERSION}); upgrade rgfl", path)
    return state


UNREADABLE = "not a readable rgfl checkpoint (corrupt or truncated file, or saved by another program)"


def verify_checkpoint_file(path: str | Path) -> None:
    """Check the CRC-32 of every record of a checkpoint file (see the module docstring).

    Raises:
        CheckpointError: the file is not a complete zip container, or a record's bytes do not
            match its checksum.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue  # written without checksums: nothing to compare with
                try:
                    with archive.open(info) as member:  # raises BadZipFile at the end on a CRC mismatch
                        while member.read(1 << 24):
                            pass
                except (zipfile.BadZipFile, EOFError, zlib_error) as error:
                    raise CheckpointError(
                        f"not a readable rgfl checkpoint (corrupt file: record '{info.filename}' does not match its checksum; {error}); "
                        "it was damaged on disk or in a copy, use another checkpoint",
                        path,
                    ) from None
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise CheckpointError(UNREADABLE, path) from None


@dataclass
class ResumePoint:
    """The checkpoint a run continues from: its path and its loaded (verified) state."""

    path: Path
    state: dict[str, Any]


def checkpoint_candidates(work_dir: str | Path) -> list[Path]:
    """The checkpoints of a work dir, newest first: the one ``last_checkpoint`` names, then the
    other ``*.pt`` files by modification time."""
    folder = checkpoint_dir(work_dir)
    files = sorted(folder.glob("*.pt"), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    pointer = folder / LAST_POINTER
    if pointer.is_file():
        named = folder / pointer.read_text(encoding="utf-8").strip()
        if named in files:
            files.remove(named)
            files.insert(0, named)
    return files


def find_resume_point(work_dir: str | Path, resume: str | Path | bool | None) -> ResumePoint | None:
    """Load the checkpoint to resume from.

    ``resume`` is ``True`` (or ``"latest"``): the newest intact checkpoint of ``work_dir``; a
    corrupt newer one is skipped with a warning naming it (None when the folder has no checkpoint
    yet). A path: exactly that checkpoint. ``None``/``False``: no resume (returns None).

    Raises:
        CheckpointError: the named checkpoint is missing or corrupt, or every checkpoint of the work
            dir is.
    """
    if resume is None or resume is False:
        return None
    if resume is not True and str(resume) != "latest":
        path = Path(resume)
        if not path.is_file():
            raise CheckpointError("checkpoint to resume from not found", path)
        return ResumePoint(path, load_checkpoint(path))
    skipped: list[CheckpointError] = []
    for path in checkpoint_candidates(work_dir):
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            logger.warning("--resume: skipping %s: %s", path, error.reason)
            skipped.append(error)
            continue
        if skipped:
            logger.warning("--resume: continuing from %s, the newest intact checkpoint (skipped: %s)", path, ", ".join(e.path.name for e in skipped if e.path))
        return ResumePoint(path, state)
    if skipped:
        raise CheckpointError(f"--resume: no intact checkpoint to continue from ({len(skipped)} corrupt: {', '.join(e.path.name for e in skipped if e.path)})", checkpoint_dir(work_dir))
    return None


def find_latest_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest checkpoint of a work dir: the one ``last_checkpoint`` names, else the newest file."""
    folder = checkpoint_dir(work_dir)
    pointer = folder / LAST_POINTER
    if pointer.is_file():
        candidate = folder / pointer.read_text(encoding="utf-8").strip()
        if candidate.is_file():
            return candidate
    files = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


# Signature keys added later, with the value every checkpoint saved before them was made with.
SIGNATURE_BEFORE = {"angle_coding": "sigmoid", "fpn_channels": 256, "fpn_min_level": 3}


def check_model_signature(state: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint of another model (any key of ``model_signature`` differs)."""
    found = state.get("model_signature", {})
    if found:
        found = {**{k: v for k, v in SIGNATURE_BEFORE.items() if k in expected}, **found}
    for key, value in expected.items():
        if key in found and found[key] != value:
            hint = f" (set model.{key}={found[key]} to use it)" if key in SIGNATURE_BEFORE else ""
            raise CheckpointError(f"checkpoint is from another model: {_difference(key, found[key], value)}{hint}", path)


def _difference(key: str, found: Any, expected: Any) -> str:
    """What differs, shown where it differs: two long class lists cut at 80 characters hid it."""
    if isinstance(found, (list, tuple)) and isinstance(expected, (list, tuple)):
        found, expected = list(found), list(expected)
        only_found = [v for v in found if v not in expected]
        only_expected = [v for v in expected if v not in found]
        parts = [f"{key} has {len(found)} entries in the checkpoint, {len(expected)} in the config"]
        if only_found:
            parts.append(f"only in the checkpoint: {_short(only_found)}")
        if only_expected:
            parts.append(f"only in the config: {_short(only_expected)}")
        if not only_found and not only_expected:
            index = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b) if len(found) == len(expected) else None
            if index is not None:
                parts.append(f"same entries in another order, first at position {index + 1}: {found[index]!r} in the checkpoint, {expected[index]!r} in the config")
            else:
                parts.append("the same names repeated differently")
        return "; ".join(parts)
    return f"{key} is {_short(found)} in the checkpoint but {_short(expected)} in the config"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# ----------------------------------------------------------------------------------------------
# RNG state (stored as tensors/lists so that weights_only loading accepts it)


def capture_rng_state() -> dict[str, Any]:
    version, python_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(python_state), gauss],
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
