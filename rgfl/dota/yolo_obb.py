"""DOTA labelTxt <-> YOLO-OBB labels (the format of ultralytics' oriented-box models).

YOLO-OBB layout, as ultralytics reads it::

    OUT/images/<image>.png            (or images/<split>/ with --split)
    OUT/labels/<image>.txt            one object per line: class x1 y1 x2 y2 x3 y3 x4 y4
    OUT/dataset.yaml                  path, train/val/test folders, names: {0: plane, ...}
    OUT/dota_extras.json              what YOLO-OBB has no field for (rgfl's sidecar)

Corner coordinates are divided by the image width (x) and height (y), so they lie in [0, 1] for
points on the image; DOTA corners slightly outside the image give values just outside [0, 1],
which are kept (exact round trip) unless ``clip`` is set (ultralytics refuses label files with
coordinates outside [0, 1]). The class index is the position in the class list written to the
yaml. Numbers are written with 10 significant digits, so DOTA -> YOLO-OBB -> DOTA returns the
coordinates within 1e-9 of the image size (integers come back as integers).

The sidecar keeps per image the ``difficult`` flag of each line (only for images with a nonzero
flag) and the ``imagesource``/``gsd`` header lines, in ``{"images": {stem: {...}}}``. Without a
sidecar (files from another tool) every object is read back as difficult 0.

Image sizes come from the image headers (Pillow opens a file lazily and decodes no pixels), and
images are hard-linked into the output when the file system allows it, copied otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgfl.dota.annotations import ImageLabels, format_number, read_label_file
from rgfl.dota.classes import resolve_classes
from rgfl.dota.images import IMAGE_EXTENSIONS
from rgfl.errors import InputError, ProblemLog, RgflError
from rgfl.fileio import atomic_write_text

__all__ = ["FORMATS", "ConvertSummary", "image_size", "dota_to_yolo_obb", "yolo_obb_to_dota", "convert", "read_dataset_yaml"]

logger = logging.getLogger(__name__)

FORMATS = ("yolo-obb", "dota")
DATASET_YAML = "dataset.yaml"
EXTRAS_JSON = "dota_extras.json"
SPLIT_KEYS = ("train", "val", "test")


@dataclass
class ConvertSummary:
    """What a conversion did."""

    images: int = 0
    objects: int = 0
    skipped_lines: int = 0
    outside: int = 0  # objects with a corner outside the image (clipped when asked)
    unlabelled: int = 0  # images without a label file (written with an empty one)
    labels_without_image: int = 0  # DOTA label files not converted (no image to normalise by)
    class_names: tuple[str, ...] = ()
    out: Path | None = None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # DOTA images reach 20000 x 20000; nothing is decoded here
    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"cannot read the image size ({error.__class__.__name__}: not an image or unreadable)", path) from None


def _images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            if path.stem in found:
                raise InputError(f"two images share the name {path.stem!r} ({found[path.stem].name}); labels are matched to images by name", path)
            found[path.stem] = path
    return found


def _place_image(src: Path, dst: Path) -> None:
    """Hard link (no copy of the bytes) when possible, else copy; an existing same-size file is kept."""
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


def _format(value: float) -> str:
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def read_dataset_yaml(path: str | Path) -> dict:
    """A YOLO dataset yaml as a dict; ``names`` normalised to a list in index order."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise InputError(f"not a valid YAML file ({getattr(error, 'problem', error)})", path, mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError("a dataset yaml must be a mapping with a 'names' key", path)
    names = data.get("names")
    if isinstance(names, dict):
        try:
            order = sorted((int(k), str(v)) for k, v in names.items())
        except (TypeError, ValueError):
            raise InputError("'names' must map class indices 0, 1, ... to names", path) from None
        if [k for k, _ in order] != list(range(len(order))):
            raise InputError(f"'names' must have the indices 0..{len(order) - 1} without gaps", path)
        data["names"] = [v for _, v in order]
    elif isinstance(names, list):
        data["names"] = [str(v) for v in names]
    elif names is not None:
        raise InputError("'names' must be a list or a mapping of index to name", path)
    return data


def _write_dataset_yaml(out: Path, names: Sequence[str], split: str | None, source: Path) -> Path:
    """Write (or update, for another split) ``OUT/dataset.yaml``; refuses a different class list."""
    import yaml

    path = out / DATASET_YAML
    folder = "images" if split is None else f"images/{split}"
    data: dict = {}
    if path.is_file():
        data = read_dataset_yaml(path)
        if data.get("names") and list(data["names"]) != list(names):
            raise InputError(f"holds other class names ({data['names'][:3]}...); convert into another folder or give the same --classes", path)
    data["path"] = str(out.resolve())
    key = split if split in SPLIT_KEYS else "train" if split is None else split
    data[key] = folder
    if split is None:
        data.setdefault("val", folder)  # one folder: used for both, as ultralytics needs a val set
    data["names"] = {index: name for index, name in enumerate(names)}
    header = f"# YOLO-OBB dataset written by rgfl convert from {source}\n"
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _read_extras(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data.get("images", {}))
    except (json.JSONDecodeError, AttributeError, TypeError) as error:
        raise InputError(f"not a readable rgfl sidecar ({error})", path) from None


def dota_to_yolo_obb(
    src: str | Path,
    out: str | Path,
    classes: str | Sequence[str] | None = None,
    split: str | None = None,
    clip: bool = False,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ConvertSummary:
    """DOTA folder (``images/`` + ``labelTxt/``) -> YOLO-OBB folder.

    Args:
        classes: the class list (index = position); default DOTA-v1.0. Objects of other classes
            are reported (file and line) and skipped.
        split: write into ``images/<split>``/``labels/<split>`` and register it in the yaml
            (``train``, ``val`` or ``test``), so several DOTA folders make one dataset.
        clip: clamp normalised coordinates into [0, 1] (what ultralytics accepts).
        strict: stop at the first bad label line instead of skipping it.
        progress: called with (done, total) after each image.
    """
    src, out = Path(src), Path(out)
    names = resolve_classes(list(classes) if isinstance(classes, (list, tuple)) else classes)
    if not (src / "images").is_dir():
        raise InputError("no images/ folder (expected a DOTA folder with images/ and labelTxt/)", src)
    if not (src / "labelTxt").is_dir():
        raise InputError("no labelTxt/ folder: a DOTA folder without labels has nothing to convert", src)
    images = _images(src / "images")
    if not images:
        raise InputError("no image files in images/", src / "images")
    orphans = sorted(p.name for p in (src / "labelTxt").glob("*.txt") if p.stem not in images)
    if orphans:
        logger.warning(
            "%s: %d label files have no image (e.g. %s) and are not converted: normalising needs the image size",
            src / "labelTxt", len(orphans), orphans[0],
        )
    image_dir = out / "images" if split is None else out / "images" / split
    label_dir = out / "labels" if split is None else out / "labels" / split
    label_dir.mkdir(parents=True, exist_ok=True)
    problems = ProblemLog(strict=strict)
    index = {name: i for i, name in enumerate(names)}
    summary = ConvertSummary(class_names=names, out=out, labels_without_image=len(orphans))
    extras_path = out / EXTRAS_JSON
    extras = _read_extras(extras_path)
    for done, (stem, image_path) in enumerate(images.items(), start=1):
        width, height = image_size(image_path)
        label_path = src / "labelTxt" / f"{stem}.txt"
        if label_path.is_file():
            labels = read_label_file(label_path, names, problems, drop_degenerate=False)
        else:
            labels = ImageLabels()
            summary.unlabelled += 1
        normalised = labels.polygons.reshape(-1, 4, 2) / np.array([width, height], dtype=np.float64)
        outside = np.any((normalised < 0) | (normalised > 1), axis=(1, 2))
        summary.outside += int(outside.sum())
        if clip:
            normalised = np.clip(normalised, 0.0, 1.0)
        lines = [
            f"{index[name]} " + " ".join(_format(v) for v in points.reshape(-1)) + "\n"
            for name, points in zip(labels.classes, normalised)
        ]
        atomic_write_text(label_dir / f"{stem}.txt", "".join(lines))
        _place_image(image_path, image_dir / image_path.name)
        entry = {}
        if np.any(labels.difficult != 0):
            entry["difficult"] = labels.difficult.tolist()
        if labels.imagesource is not None:
            entry["imagesource"] = labels.imagesource
        if labels.gsd is not None:
            entry["gsd"] = labels.gsd
        key = stem if split is None else f"{split}/{stem}"
        if entry:
            extras[key] = entry
        else:
            extras.pop(key, None)
        summary.images += 1
        summary.objects += len(lines)
        if progress is not None:
            progress(done, len(images))
    summary.skipped_lines = len(problems)
    sidecar = {
        "format": "rgfl-yolo-obb-extras",
        "about": "DOTA fields YOLO-OBB has no place for: per image (key: stem, or split/stem) the difficult flag of each label line in order, and the imagesource/gsd header lines",
        "images": dict(sorted(extras.items())),
    }
    atomic_write_text(extras_path, _sidecar_text(sidecar))
    _write_dataset_yaml(out, names, split, src)
    if summary.outside and not clip:
        logger.warning(
            "%d objects have corners outside their image: their coordinates are outside [0, 1], which ultralytics "
            "refuses (it drops such label files); convert with --clip to clamp them",
            summary.outside,
        )
    return summary


def _sidecar_text(sidecar: dict) -> str:
    """JSON with one line per image: readable, and diffs stay small."""
    head = {key: value for key, value in sidecar.items() if key != "images"}
    lines = [json.dumps(key) + ": " + json.dumps(value, separators=(",", ":")) for key, value in sidecar["images"].items()]
    body = ",\n  ".join(lines)
    text = json.dumps(head, indent=1)[:-2] + ',\n "images": {' + ("\n  " + body + "\n " if lines else "") + "}\n}\n"
    json.loads(text)  # always valid JSON
    return text


def _parse_yolo_line(line: str, num_classes: int, path: Path, number: int, problems: ProblemLog) -> tuple[int, list[float]] | None:
    tokens = line.split()
    if len(tokens) != 9:
        problems.report(f"expected 'class x1 y1 x2 y2 x3 y3 x4 y4' (9 fields), got {len(tokens)}", path, number)
        return None
    try:
        label = int(tokens[0])
    except ValueError:
        problems.report(f"class index {tokens[0]!r} is not an integer", path, number)
        return None
    if not 0 <= label < num_classes:
        problems.report(f"class index {label} outside the {num_classes} classes of the class list", path, number)
        return None
    try:
        coords = [float(t) for t in tokens[1:]]
    except ValueError:
        bad = next(t for t in tokens[1:] if not _is_number(t))
        problems.report(f"coordinate {bad!r} is not a number", path, number)
        return None
    if not all(math.isfinite(v) for v in coords):
        problems.report("coordinates must be finite numbers", path, number)
        return None
    return label, coords


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _yolo_splits(src: Path) -> list[tuple[str | None, Path, Path]]:
    """(split name or None, images folder, labels folder) of a flat or a split YOLO dataset."""
    images, labels = src / "images", src / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError("expected a YOLO-OBB folder with images/ and labels/", src)
    subfolders = sorted(p for p in images.iterdir() if p.is_dir() and (labels / p.name).is_dir())
    if subfolders and not any(p.is_file() for p in labels.glob("*.txt")):
        return [(p.name, p, labels / p.name) for p in subfolders]
    return [(None, images, labels)]


def yolo_obb_to_dota(
    src: str | Path,
    out: str | Path,
    classes: str | Sequence[str] | None = None,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ConvertSummary:
    """YOLO-OBB folder -> DOTA folder(s) (``images/`` + ``labelTxt/``).

    The class names come from ``classes`` or else from the dataset yaml in ``src`` (the first
    ``*.yaml`` with ``names``). A split dataset (``images/train``, ``images/val`` ...) gives one
    DOTA folder per split, ``out/<split>/``. Difficult flags and headers come back from the
    sidecar when there is one.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError("YOLO-OBB folder not found", src)
    if classes is not None:
        names = resolve_classes(list(classes) if isinstance(classes, (list, tuple)) else classes)
    else:
        names = None
        for yaml_path in sorted(src.glob("*.yaml")) + sorted(src.glob("*.yml")):
            data = read_dataset_yaml(yaml_path)
            if data.get("names"):
                names = resolve_classes(list(data["names"]))
                break
        if names is None:
            raise InputError("no dataset yaml with 'names' in this folder: give the class list with --classes", src)
    splits = _yolo_splits(src)
    extras = _read_extras(src / EXTRAS_JSON)
    problems = ProblemLog(strict=strict)
    summary = ConvertSummary(class_names=names, out=out)
    work = [(split, stem, image, labels) for split, images_dir, labels in splits for stem, image in _images(images_dir).items()]
    if not work:
        raise InputError("no image files in images/", src / "images")
    for done, (split, stem, image_path, label_dir) in enumerate(work, start=1):
        target = out if split is None else out / split
        width, height = image_size(image_path)
        label_path = label_dir / f"{stem}.txt"
        polygons, class_list, line_numbers = [], [], []
        if label_path.is_file():
            text = label_path.read_bytes().decode("utf-8", errors="replace")
            for number, raw in enumerate(text.splitlines(), start=1):
                if not raw.strip():
                    continue
                parsed = _parse_yolo_line(raw, len(names), label_path, number, problems)
                if parsed is None:
                    continue
                label, coords = parsed
                points = np.asarray(coords, dtype=np.float64).reshape(4, 2) * np.array([width, height], dtype=np.float64)
                polygons.append(points.reshape(-1))
                class_list.append(names[label])
                line_numbers.append(number)
        else:
            summary.unlabelled += 1
        entry = extras.get(stem if split is None else f"{split}/{stem}", {})
        difficult = np.zeros(len(polygons), dtype=np.int64)
        flags = entry.get("difficult")
        if flags is not None:
            if len(flags) != len(polygons):
                raise InputError(
                    f"the sidecar lists {len(flags)} difficult flags for {stem} but its label file has {len(polygons)} objects "
                    "(the labels were edited after conversion: delete the sidecar to read every object as difficult 0)",
                    src / EXTRAS_JSON,
                )
            difficult = np.asarray(flags, dtype=np.int64)
        labels = ImageLabels(
            np.asarray(polygons, dtype=np.float64).reshape(-1, 8), class_list, difficult, np.asarray(line_numbers, dtype=np.int64),
            entry.get("imagesource"), entry.get("gsd"),
        )
        _write_dota_labels(target / "labelTxt" / f"{stem}.txt", labels)
        _place_image(image_path, target / "images" / image_path.name)
        summary.images += 1
        summary.objects += len(polygons)
        if progress is not None:
            progress(done, len(work))
    summary.skipped_lines = len(problems)
    return summary


def _write_dota_labels(path: Path, labels: ImageLabels) -> None:
    # 6 decimals: 1e-6 px, far below the 1e-9 relative error of the normalised numbers on a
    # 20000 px image, and integers (most DOTA labels) come back without a decimal point.
    lines = []
    if labels.imagesource is not None:
        lines.append(f"imagesource:{labels.imagesource}")
    if labels.gsd is not None:
        lines.append(f"gsd:{labels.gsd!r}")
    for polygon, name, flag in zip(labels.polygons, labels.classes, labels.difficult):
        lines.append(" ".join(format_number(v, decimals=6) for v in polygon) + f" {name} {int(flag)}")
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def convert(
    src: str | Path,
    out: str | Path,
    to: str,
    classes: str | Sequence[str] | None = None,
    split: str | None = None,
    clip: bool = False,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ConvertSummary:
    """``to="yolo-obb"``: :func:`dota_to_yolo_obb`; ``to="dota"``: :func:`yolo_obb_to_dota`."""
    if to not in FORMATS:
        raise RgflError(f"unknown target format {to!r}: use yolo-obb or dota")
    if Path(src).resolve() == Path(out).resolve():
        raise RgflError("SRC and OUT must be different folders")
    if to == "yolo-obb":
        return dota_to_yolo_obb(src, out, classes, split, clip, strict, progress)
    if split is not None or clip:
        raise RgflError("--split and --clip are for --to yolo-obb (a YOLO dataset's splits become OUT/<split>/ by themselves)")
    return yolo_obb_to_dota(src, out, classes, strict, progress)
