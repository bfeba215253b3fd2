"""Read and write DOTA Task1 detection files (``Task1_<class>.txt``).

Format (one file per class, the class spelled exactly as in the class list)::

    <image_id> <score> x1 y1 x2 y2 x3 y3 x4 y4

``image_id`` is an image stem (a full image for submissions, a patch name before merging), the
score a float, and the polygon in that image's pixels. CRLF line endings, repeated spaces or tabs,
and blank lines are accepted. A line with another number of fields, a field that is not a finite
number, is reported to a :class:`~rgfl.errors.ProblemLog` with file and line (skipped with one
warning by default, fatal with ``strict=True``).

Scores are written unrounded (shortest text that reads back to the same float): rounding them to
two decimals creates ties and lowers the server's mAP. Coordinates are written with 10 significant
digits (a hundred-thousandth of a pixel at DOTA image sizes).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from rgfl.errors import InputError, ProblemLog
from rgfl.fileio import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "Task1Detections",
    "task1_filename",
    "parse_task1_text",
    "parse_task1_bytes",
    "read_task1_file",
    "read_task1_dir",
    "format_task1_lines",
    "write_task1_file",
    "Task1Writer",
]

TASK1_PREFIX = "Task1_"
_FIELDS = 10


@dataclass
class Task1Detections:
    """The detections of one class, in file order.

    Attributes:
        image_ids: N image (or patch) names.
        scores: float64 array [N].
        polygons: float64 array [N, 8], ``x1 y1 ... x4 y4`` in the pixels of ``image_ids[i]``.
        line_numbers: int64 array [N], 1-based line in the file (0 for detections not from a file).
    """

    image_ids: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.float64))
    polygons: np.ndarray = field(default_factory=lambda: np.zeros((0, 8), dtype=np.float64))
    line_numbers: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.polygons = np.asarray(self.polygons, dtype=np.float64).reshape(-1, 8)
        if self.line_numbers is None or len(self.line_numbers) != len(self.scores):
            self.line_numbers = np.zeros(len(self.scores), dtype=np.int64)
        self.line_numbers = np.asarray(self.line_numbers, dtype=np.int64)
        if not (len(self.image_ids) == len(self.scores) == len(self.polygons)):
            raise ValueError(
                f"Task1Detections needs as many image ids ({len(self.image_ids)}), scores "
                f"({len(self.scores)}) and polygons ({len(self.polygons)})"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def select(self, keep: np.ndarray) -> "Task1Detections":
        """A new Task1Detections with the rows that boolean mask or index array ``keep`` selects."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return Task1Detections(
            [self.image_ids[i] for i in keep.tolist()],
            self.scores[keep],
            self.polygons[keep],
            self.line_numbers[keep],
        )

    @staticmethod
    def concatenate(parts: Sequence["Task1Detections"]) -> "Task1Detections":
        if not parts:
            return Task1Detections()
        return Task1Detections(
            [name for part in parts for name in part.image_ids],
            np.concatenate([part.scores for part in parts]),
            np.concatenate([part.polygons for part in parts]),
            np.concatenate([part.line_numbers for part in parts]),
        )


def task1_filename(class_name: str) -> str:
    return f"{TASK1_PREFIX}{class_name}.txt"


def parse_task1_text(
    text: str, path: str | Path | None = None, problems: ProblemLog | None = None, first_line: int = 1
) -> Task1Detections:
    """Parse the text of a Task1 file (or a run of its lines starting at line ``first_line``).

    A fast path converts well-formed text in bulk; when any line is malformed, the text is parsed
    line by line so that each bad line is reported with its number.
    """
    problems = problems if problems is not None else ProblemLog()
    lines = text.splitlines()
    fast = _parse_well_formed(text, lines, first_line)
    if fast is not None:
        return fast
    rows = [line.split() for line in lines]
    numbers = [i for i, row in enumerate(rows) if row]
    return _parse_rows_slowly([rows[i] for i in numbers], numbers, path, problems, first_line)


def parse_task1_bytes(
    data: bytes, path: str | Path | None = None, problems: ProblemLog | None = None, first_line: int = 1
) -> Task1Detections:
    """:func:`parse_task1_text` on raw bytes, through the exact numba scanner.

    The scanner parses every well-formed line; only the lines it sets aside go through the
    line-by-line path, which reports each with its number (or keeps it when Python's ``float``
    reads it), so one bad line no longer sends the whole file down the slow path.
    """
    from rgfl.dota.task1_scan import scan_task1_bytes

    problems = problems if problems is not None else ProblemLog()
    image_ids, values, line_numbers, set_aside = scan_task1_bytes(data)
    scanned = Task1Detections(image_ids, values[:, 0].copy(), values[:, 1:].copy(), line_numbers + (first_line - 1))
    if not len(set_aside):
        return scanned
    rows = [data[start:stop].decode("utf-8", errors="replace").split() for _, start, stop in set_aside.tolist()]
    kept = _parse_rows_slowly(rows, (set_aside[:, 0] - 1).tolist(), path, problems, first_line)
    if not len(kept):
        return scanned
    # Back into file order (ties in score are broken by file order).
    merged = Task1Detections.concatenate([scanned, kept])
    return merged.select(np.argsort(merged.line_numbers, kind="stable"))


def _parse_well_formed(text: str, lines: list[str], first_line: int) -> Task1Detections | None:
    """Bulk parse when every non-blank line is exactly 10 fields separated by single spaces.

    Returns None when the text needs the line-by-line path (odd spacing, a bad field, NaN).
    """
    if "\t" in text or "  " in text or "\n " in text or " \n" in text or " \r" in text:
        return None
    if text[:1] == " " or text[-1:] == " ":
        return None
    if "" in lines:  # blank lines: keep the line numbers of the others
        numbers = [i for i, line in enumerate(lines) if line]
        lines = [lines[i] for i in numbers]
    else:
        numbers = range(len(lines))
    if set(map(str.count, lines, itertools.repeat(" "))) - {_FIELDS - 1}:
        return None
    tokens = text.split()
    if len(tokens) != _FIELDS * len(lines):
        return None
    image_ids = tokens[0::_FIELDS]
    del tokens[0::_FIELDS]
    try:
        values = np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens)).reshape(-1, _FIELDS - 1)
    except ValueError:
        return None
    if not np.isfinite(values).all():
        return None
    return Task1Detections(
        image_ids, values[:, 0].copy(), values[:, 1:].copy(), np.asarray(numbers, dtype=np.int64) + first_line
    )


def _parse_rows_slowly(
    rows: list[list[str]], numbers: list[int], path: str | Path | None, problems: ProblemLog, first_line: int
) -> Task1Detections:
    image_ids: list[str] = []
    values: list[list[float]] = []
    line_numbers: list[int] = []
    for row, index in zip(rows, numbers):
        line_number = index + first_line
        if len(row) != _FIELDS:
            problems.report(
                f"expected 'image_id score x1 y1 x2 y2 x3 y3 x4 y4' (10 fields), got {len(row)}", path, line_number
            )
            continue
        try:
            numbers_in_row = [float(token) for token in row[1:]]
        except ValueError:
            bad = next(token for token in row[1:] if not _is_float(token))
            problems.report(f"{bad!r} is not a number", path, line_number)
            continue
        if not all(math.isfinite(value) for value in numbers_in_row):
            problems.report("score and coordinates must be finite numbers (found NaN or infinity)", path, line_number)
            continue
        image_ids.append(row[0])
        values.append(numbers_in_row)
        line_numbers.append(line_number)
    array = np.array(values, dtype=np.float64).reshape(-1, 9)
    return Task1Detections(image_ids, array[:, 0].copy(), array[:, 1:].copy(), np.array(line_numbers, dtype=np.int64))


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_task1_file(path: str | Path, problems: ProblemLog | None = None) -> Task1Detections:
    """Read one ``Task1_<class>.txt``; an empty file gives no detections.

    Raises:
        InputError: the file cannot be read, or (strict problems) it has a malformed line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("detection file not found", path) from None
    except OSError as error:
        raise InputError(f"cannot read detection file ({error.strerror})", path) from None
    return parse_task1_bytes(data, path, problems)


def read_task1_dir(
    folder: str | Path, class_names: Sequence[str], problems: ProblemLog | None = None
) -> dict[str, Task1Detections]:
    """Read ``Task1_<class>.txt`` for every class of ``class_names`` from ``folder``.

    A missing class file means that class has no detections (logged). Files of other classes are
    ignored with a warning. A folder without any Task1 file is an error (most likely the wrong
    folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("detection folder not found (expected a folder of Task1_<class>.txt files)", folder)
    present = {p.name[len(TASK1_PREFIX) : -4]: p for p in folder.glob(f"{TASK1_PREFIX}*.txt") if p.is_file()}
    if not present:
        raise InputError("no Task1_<class>.txt file in the detection folder", folder)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        logger.warning("ignored detection files of classes outside the class list: %s", ", ".join(unknown))
    result: dict[str, Task1Detections] = {}
    missing = []
    for name in class_names:
        if name in present:
            result[name] = read_task1_file(present[name], problems)
        else:
            missing.append(name)
            result[name] = Task1Detections()
    if missing:
        logger.warning(
            "%s: no Task1_<class>.txt for %d of %d classes, they have no detections: %s",
            folder, len(missing), len(class_names), ", ".join(missing),
        )
    return result


def format_task1_lines(image_ids: Sequence[str] | str, scores: np.ndarray, polygons: np.ndarray) -> str:
    """Task1 lines (each ending in a newline) for N detections; one image id or N of them."""
    scores_list = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
    polygon_rows = np.asarray(polygons, dtype=np.float64).reshape(-1, 8).tolist()
    if isinstance(image_ids, str):
        image_ids = [image_ids] * len(scores_list)
    template = "%s %r " + " ".join(["%.10g"] * 8) + "\n"
    return "".join(template % (name, score, *row) for name, score, row in zip(image_ids, scores_list, polygon_rows))


def write_task1_file(path: str | Path, detections: Task1Detections) -> None:
    """Write one class file atomically."""
    with atomic_write(path) as handle:
        handle.write(format_task1_lines(detections.image_ids, detections.scores, detections.polygons))


class Task1Writer:
    """Streams detections into ``Task1_<class>.txt`` for every class, written atomically.

    Every class file is created (empty when the class gets no detection, as the DOTA server
    expects). Files appear only when the ``with`` block ends without an error::

        with Task1Writer(out_dir, class_names) as writer:
            writer.add("plane", "P0001", scores, polygons)
    """

    def __init__(self, folder: str | Path, class_names: Sequence[str]):
        self.folder = Path(folder)
        self.class_names = tuple(class_names)
        self.counts = dict.fromkeys(self.class_names, 0)
        self._stack = contextlib.ExitStack()
        self._handles: dict[str, IO] = {}

    def __enter__(self) -> "Task1Writer":
        self._stack.__enter__()
        for name in self.class_names:
            self._handles[name] = self._stack.enter_context(atomic_write(self.folder / task1_filename(name)))
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self._stack.__exit__(*exc_info)

    def add(self, class_name: str, image_id: str, scores: np.ndarray, polygons: np.ndarray) -> None:
        """Append N detections of one image; scores [N], polygons [N, 8] in image pixels."""
        if len(scores) == 0:
            return
        self._handles[class_name].write(format_task1_lines(image_id, scores, polygons))
        self.counts[class_name] += len(scores)

    @property
    def paths(self) -> list[Path]:
        return [self.folder / task1_filename(name) for name in self.class_names]
