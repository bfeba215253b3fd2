"""DOTA class lists in their official order; a class index is the position in the list."""

from __future__ import annotations

from pathlib import Path

from rgfl.errors import InputError

__all__ = ["DOTA_V1_0", "DOTA_V1_5", "DOTA_V2_0", "CLASS_SETS", "resolve_classes"]

DOTA_V1_0: tuple[str, ...] = (
    "plane",
    "baseball-diamond",
    "bridge",
    "ground-track-field",
    "small-vehicle",
    "large-vehicle",
    "ship",
    "tennis-court",
    "basketball-court",
    "storage-tank",
    "soccer-ball-field",
    "roundabout",
    "harbor",
    "swimming-pool",
    "helicopter",
)
DOTA_V1_5: tuple[str, ...] = DOTA_V1_0 + ("container-crane",)
DOTA_V2_0: tuple[str, ...] = DOTA_V1_5 + ("airport", "helipad")

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "dota1.0": DOTA_V1_0,
    "dota1.5": DOTA_V1_5,
    "dota2.0": DOTA_V2_0,
}


def resolve_classes(spec: str | Path | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Turn a class-set name, a file with one class per line, a comma list or a list into names.

    ``None`` means DOTA-v1.0. Accepted names: ``dota1.0``, ``dota1.5``, ``dota2.0`` (also
    ``dota``, ``v1.0`` style spellings). A comma-separated string gives an explicit list, and a
    single word that is no set name or file (``plane``) a list of one class.
    """
    if spec is None:
        return DOTA_V1_0
    if isinstance(spec, (list, tuple)):
        names = tuple(str(name).strip() for name in spec)
    else:
        text = str(spec).strip()
        raw_key = text.lower().replace("_", "").replace("-", "")
        key = raw_key.replace("v", "")
        aliases = {"dota": "dota1.0", "dota1": "dota1.0", "1.0": "dota1.0", "1.5": "dota1.5", "2.0": "dota2.0"}
        key = aliases.get(key, key if key.startswith("dota") else "dota" + key)
        if key in CLASS_SETS:
            return CLASS_SETS[key]
        path = Path(text)
        if path.is_file():
            names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            if not names:
                raise InputError("the class file lists no class (expected one name per line)", path)
        elif "," in text:
            names = tuple(name.strip() for name in text.split(",") if name.strip())
        elif text and not raw_key.startswith("dota") and not raw_key[:1].isdigit() and "/" not in text and " " not in text:
            # One class name, e.g. --classes plane (a misspelt set name like dota3 is refused below).
            names = (text,)
        else:
            raise InputError(
                f"unknown class set {text!r}: use dota1.0, dota1.5, dota2.0, a comma-separated list "
                "or a file with one class name per line"
            )
    if len(set(names)) != len(names):
        raise InputError(f"class list has duplicate names: {list(names)}")
    if not names or any(not name or " " in name for name in names):
        raise InputError(f"class names must be non-empty and contain no spaces: {list(names)}")
    return names
