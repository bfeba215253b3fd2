"""The JSON manifest of an ``rgfl split`` output folder (``OUT/split_manifest.json``): the
parameters, every source image's size and gsd, every patch's name, rate and window, and the images
that were skipped; merge reads it to map detections back."""

from __future__ import annotations

import json
from pathlib import Path

from rgfl.errors import InputError
from rgfl.fileio import atomic_write_text

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "write_manifest", "read_manifest"]

MANIFEST_NAME = "split_manifest.json"
MANIFEST_FORMAT = "rgfl-split/1"


def write_manifest(out: Path, manifest: dict) -> None:
    """Write ``manifest`` (keys format, parameters, source, skipped, images) atomically."""
    atomic_write_text(Path(out) / MANIFEST_NAME, _manifest_text(manifest))


def _manifest_text(manifest: dict) -> str:
    """JSON with one patch per line: readable, diffable, and a fraction of the size of full indent."""

    def dump(value) -> str:
        return json.dumps(value, sort_keys=True)

    lines = ["{"]
    for key in ("format", "parameters", "source", "skipped"):
        lines.append(f" {dump(key)}: {dump(manifest[key])},")
    lines.append(' "images": [')
    for i, image in enumerate(manifest["images"]):
        head = {k: v for k, v in image.items() if k != "patches"}
        lines.append(f"  {dump(head)[:-1]}, \"patches\": [")
        patches = image["patches"]
        lines.extend(f"   {dump(p)}{',' if j + 1 < len(patches) else ''}" for j, p in enumerate(patches))
        lines.append("  ]}" + ("," if i + 1 < len(manifest["images"]) else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def read_manifest(out: str | Path) -> dict:
    """The manifest of a split folder (see :func:`split_dataset`); raises InputError."""
    path = Path(out) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no split manifest: was this folder written by `rgfl split`?", path) from None
    except ValueError as error:
        raise InputError(f"manifest is not valid JSON ({error})", path) from None
    if not isinstance(manifest, dict):
        raise InputError(f"not an rgfl split manifest: expected a JSON object, got {type(manifest).__name__}", path)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"unknown manifest format {manifest.get('format')!r}", path)
    problem = _structure_problem(manifest)
    if problem is not None:
        raise InputError(f"not a valid rgfl split manifest: {problem}", path)
    return manifest


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def _structure_problem(manifest: dict) -> str | None:
    """What is wrong with the fields readers rely on (None: nothing); a hand-edited or foreign
    file must not reach them as a traceback."""
    parameters = manifest.get("parameters", {})
    if not isinstance(parameters, dict):
        return f"'parameters' must be an object, got {parameters!r}"
    checks = {
        "size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
        "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
        "rates": (lambda v: isinstance(v, list) and bool(v) and all(_is_number(r) and r > 0 for r in v), "a list of positive numbers"),
        "truncation": (lambda v: isinstance(v, str), "a string"),
        "iof_thr": (lambda v: _is_number(v), "a number"),
        "pad_value": (lambda v: v is None or (isinstance(v, list) and all(_is_number(c) for c in v)), "null or a list of numbers"),
    }
    for key, (valid, what) in checks.items():
        if key in parameters and not valid(parameters[key]):
            return f"parameters.{key} must be {what}, got {parameters[key]!r}"
    source = manifest.get("source")
    if source is not None and not isinstance(source, str):
        return f"'source' must be a path, got {source!r}"
    for key in ("images", "skipped"):
        if not isinstance(manifest.get(key, []), list):
            return f"'{key}' must be a list, got {manifest[key]!r}"
    return None
