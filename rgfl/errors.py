"""Errors that describe bad user input, and a collector for input problems.

Library code raises :class:`RgflError` (or a subclass) for anything the user can fix: a missing
folder, a malformed label line, a bad option. The CLI turns these into a one-line message and a
non-zero exit code; it never shows a traceback for them. Internal invariants use ``assert``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RgflError", "InputError", "Problem", "ProblemLog"]


class RgflError(Exception):
    """An error the user can fix; its message says what is wrong and how to fix it."""


class InputError(RgflError, ValueError):
    """Bad user data, located by file and (when known) 1-based line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        self.reason = message
        super().__init__(_locate(message, self.path, line))


def _locate(message: str, path: Path | None, line: int | None) -> str:
    if path is None:
        return message
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"{where}: {message}"


@dataclass
class Problem:
    """One skipped piece of user input (an object line, an image, a detection line)."""

    message: str
    path: Path | None = None
    line: int | None = None

    def __str__(self) -> str:
        return _locate(self.message, self.path, self.line)


@dataclass
class ProblemLog:
    """Collects problems found in user data.

    With ``strict=True`` the first problem raises :class:`InputError`; otherwise each problem is
    logged once as a warning (naming file and line), kept in ``problems`` and counted in the
    summaries the commands print.
    """

    strict: bool = False
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("rgfl"))
    problems: list[Problem] = field(default_factory=list)

    def report(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        problem = Problem(message, None if path is None else Path(path), line)
        if self.strict:
            raise InputError(message, path, line)
        self.problems.append(problem)
        self.logger.warning("skipped: %s", problem)

    def extend(self, other: "ProblemLog") -> None:
        self.problems.extend(other.problems)

    def __len__(self) -> int:
        return len(self.problems)
