"""Restart state of an ``rgfl split`` output folder.

``OUT/.rgfl-split/parameters.json`` holds the parameters of the run that made the folder; a run
with other parameters is refused. ``OUT/.rgfl-split/done/<image>.json`` marks an image as done
(written after all its patches) with its manifest record, counts and the size and modification
time of its sources; a marker whose parameters or sources differ is ignored, so the image is redone.
"""

from __future__ import annotations

import json
from pathlib import Path

from rgfl.errors import InputError
from rgfl.fileio import atomic_write_text, remove_stale_temp_files

__all__ = ["STATE_DIR", "source_stamp", "read_done_marker", "write_done_marker", "prepare_out"]

STATE_DIR = ".rgfl-split"  # per-image done markers and the parameters of the run


def source_stamp(path: Path) -> list[int]:
    """[size in bytes, modification time in ns] of a source file."""
    stat = path.stat()
    return [int(stat.st_size), int(stat.st_mtime_ns)]


def _marker_path(out: Path, stem: str) -> Path:
    return out / STATE_DIR / "done" / f"{stem}.json"


def read_done_marker(
    out: Path, stem: str, image_path: Path | None, label_path: Path | None, parameters: dict
) -> dict | None:
    """The done marker of image ``stem`` if it is valid for these sources and parameters, else None."""
    try:
        marker = json.loads(_marker_path(out, stem).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stamps = {
        "image": source_stamp(image_path) if image_path else None,
        "labels": source_stamp(label_path) if label_path else None,
    }
    if marker.get("parameters") != parameters or marker.get("sources") != stamps:
        return None
    return marker


def write_done_marker(out: Path, stem: str, marker: dict) -> None:
    """Mark image ``stem`` as done (atomically; call after all its patches are written)."""
    atomic_write_text(_marker_path(out, stem), json.dumps(marker, sort_keys=True) + "\n")


def prepare_out(out: Path, parameters: dict, src: Path, labels: bool = True) -> None:
    """Create or reopen ``out`` for a split with ``parameters``; raises InputError for a folder of
    another split or one that is not a split folder. Removes temporary files of killed runs.
    ``labels=False`` (a source without labelTxt/): no labelTxt/ folder is made."""
    state = out / STATE_DIR
    params_path = state / "parameters.json"
    if params_path.is_file():
        try:
            previous = json.loads(params_path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous is not None and previous != parameters:
            changed = sorted(k for k in set(previous) | set(parameters) if previous.get(k) != parameters.get(k))
            raise InputError(
                f"{out} holds a split made with other parameters ({', '.join(changed)} differ); "
                "use an empty output folder or the same options"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and is not an rgfl split folder; choose an empty or new folder")
    if out.resolve() == src.resolve():
        raise InputError("the output folder must differ from the source folder")
    for sub in ("images", "labelTxt", f"{STATE_DIR}/done"):
        if sub != "labelTxt" or labels:
            (out / sub).mkdir(parents=True, exist_ok=True)
    # Temporary files of a run killed before it could clean up (atomic writes never leave more).
    for sub in ("images", "labelTxt", f"{STATE_DIR}/done", STATE_DIR, ""):
        remove_stale_temp_files(out / sub)
    atomic_write_text(params_path, json.dumps(parameters, sort_keys=True, indent=1) + "\n")
