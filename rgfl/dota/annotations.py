"""Read and write DOTA label files (``labelTxt/<image>.txt``).

Format: optional header lines ``imagesource:<text>`` and ``gsd:<float or null>``, then one object
per line: ``x1 y1 x2 y2 x3 y3 x4 y4 <class> [<difficult>]``. ``difficult`` is 0 or 1 in original
DOTA files and 2 for objects truncated by a split; a missing value means 0. CRLF line endings,
trailing spaces, blank lines and float coordinates are accepted.

Bad object lines (wrong number of fields, a coordinate that is not a finite number, an unknown
class, a bad difficulty, a polygon of zero area) are reported to a :class:`~rgfl.errors.ProblemLog`
with file and line number: skipped with one warning by default, fatal with ``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rgfl.errors import InputError, ProblemLog
from rgfl.fileio import atomic_write

__all__ = ["ImageLabels", "read_label_file", "write_label_file", "format_number", "polygon_areas"]

# A polygon with less area than this (square pixels) has no extent to detect or to match.
MIN_POLYGON_AREA = 1e-6


@dataclass
class ImageLabels:
    """The objects of one label file.

    Attributes:
        polygons: float64 array [N, 8], ``x1 y1 ... x4 y4`` in image pixels, in file order.
        classes: N class names.
        difficult: int64 array [N] (0, 1, or 2 for split-truncated objects).
        line_numbers: 1-based line of each object in the file (0 for objects not from a file).
        imagesource, gsd: header values, when present (``gsd`` is None when absent or null).
    """

    polygons: np.ndarray = field(default_factory=lambda: np.zeros((0, 8), dtype=np.float64))
    classes: list[str] = field(default_factory=list)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    line_numbers: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    imagesource: str | None = None
    gsd: float | None = None

    def __len__(self) -> int:
        return int(self.polygons.shape[0])

    def labels(self, class_names: Sequence[str]) -> np.ndarray:
        """Class indices [N] (int64) in ``class_names``; raises InputError for unknown names."""
        index = {name: i for i, name in enumerate(class_names)}
        try:
            return np.array([index[name] for name in self.classes], dtype=np.int64)
        except KeyError as error:
            raise InputError(f"class {error.args[0]!r} is not in the class list {list(class_names)}") from None

    def select(self, keep: np.ndarray) -> "ImageLabels":
        """A new ImageLabels with the objects where boolean mask/index ``keep`` selects."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return ImageLabels(
            self.polygons[keep].copy(),
            [self.classes[i] for i in keep],
            self.difficult[keep].copy(),
            self.line_numbers[keep].copy(),
            self.imagesource,
            self.gsd,
        )


def polygon_areas(polygons: np.ndarray) -> np.ndarray:
    """Unsigned shoelace areas of polygons [N, 2K] -> [N] (float64)."""
    polygons = np.asarray(polygons, dtype=np.float64)
    xs, ys = polygons[:, 0::2], polygons[:, 1::2]
    return 0.5 * np.abs(np.sum(xs * np.roll(ys, -1, axis=1) - np.roll(xs, -1, axis=1) * ys, axis=1))


def _parse_header(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    key = key.strip().lower()
    if sep and key in ("imagesource", "gsd") and " " not in key:
        return key, value.strip()
    return None


def read_label_file(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    problems: ProblemLog | None = None,
    drop_degenerate: bool = True,
) -> ImageLabels:
    """Parse one DOTA label file.

    Args:
        path: the ``.txt`` file.
        class_names: when given, objects of other classes are reported and skipped.
        problems: where bad lines are reported; a fresh non-strict log when None.
        drop_degenerate: report and skip polygons of zero area. The official evaluation keeps
            them (they can never be matched), so the evaluator passes False.

    Raises:
        InputError: the file cannot be read, or a bad line was found with a strict ProblemLog.
    """
    path = Path(path)
    problems = problems if problems is not None else ProblemLog()
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError("label file not found", path) from None
    except OSError as error:
        raise InputError(f"cannot read label file ({error.strerror})", path) from None
    known = None if class_names is None else set(class_names)

    polygons: list[list[float]] = []
    classes: list[str] = []
    difficult: list[int] = []
    line_numbers: list[int] = []
    imagesource: str | None = None
    gsd: float | None = None
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _parse_header(line)
        if header is not None:
            key, value = header
            if key == "imagesource":
                imagesource = value
            else:
                try:
                    gsd = float(value)
                    gsd = gsd if math.isfinite(gsd) else None
                except ValueError:
                    gsd = None
            continue
        tokens = line.split()
        if len(tokens) not in (9, 10):
            problems.report(
                f"expected 'x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]' (9 or 10 fields), got {len(tokens)}",
                path,
                line_number,
            )
            continue
        try:
            coords = [float(token) for token in tokens[:8]]
        except ValueError:
            bad = next(t for t in tokens[:8] if not _is_float(t))
            problems.report(f"coordinate {bad!r} is not a number", path, line_number)
            continue
        if not all(math.isfinite(value) for value in coords):
            problems.report("coordinates must be finite numbers (found NaN or infinity)", path, line_number)
            continue
        name = tokens[8]
        if known is not None and name not in known:
            problems.report(f"unknown class {name!r}", path, line_number)
            continue
        flag = 0
        if len(tokens) == 10:
            try:
                flag = int(tokens[9])
            except ValueError:
                flag = -1
            if flag not in (0, 1, 2):
                problems.report(f"difficult must be 0, 1 or 2, got {tokens[9]!r}", path, line_number)
                continue
        if drop_degenerate and polygon_areas(np.array([coords]))[0] < MIN_POLYGON_AREA:
            problems.report("polygon has zero area", path, line_number)
            continue
        polygons.append(coords)
        classes.append(name)
        difficult.append(flag)
        line_numbers.append(line_number)

    return ImageLabels(
        np.array(polygons, dtype=np.float64).reshape(-1, 8),
        classes,
        np.array(difficult, dtype=np.int64),
        np.array(line_numbers, dtype=np.int64),
        imagesource,
        gsd,
    )


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def format_number(value: float, decimals: int = 3) -> str:
    """Coordinate text: integers without a decimal point, others with up to ``decimals`` decimals."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def write_label_file(path: str | Path, labels: ImageLabels, header: bool = False) -> None:
    """Write ``labels`` atomically in DOTA format (always with the difficult field).

    With ``header=True`` the ``imagesource``/``gsd`` lines are written first when known.
    """
    lines: list[str] = []
    if header:
        if labels.imagesource is not None:
            lines.append(f"imagesource:{labels.imagesource}")
        if labels.gsd is not None:
            lines.append(f"gsd:{labels.gsd!r}")
    for polygon, name, flag in zip(labels.polygons, labels.classes, labels.difficult):
        coords = " ".join(format_number(v) for v in polygon)
        lines.append(f"{coords} {name} {int(flag)}")
    with atomic_write(path) as handle:
        handle.write("".join(line + "\n" for line in lines))
