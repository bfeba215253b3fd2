"""Atomic file writes: nothing a command writes is ever left half-written.

Every output file is first written to a temporary file in the same folder and then renamed over
the destination (``os.replace`` is atomic on POSIX and Windows). An interrupted run therefore
leaves either the old file or the complete new file. Only a hard kill (``kill -9``, power loss)
can leave a temporary file behind: :func:`remove_stale_temp_files` removes those by their exact name
pattern (``.<name>.<8 hex digits>.tmp``) when the next run writes into the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "remove_stale_temp_files"]

# The names atomic_write gives its temporary files, and nothing else.
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{8}\.tmp$")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", newline: str | None = "\n") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the file exists, so an interruption at any point (SIGTERM turned
    # into SystemExit, Ctrl-C) finds it and removes it: no stray temp file is ever left behind.
    tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except OSError as error:
            raise _about(error, path) from None
        if "b" in mode:
            handle = os.fdopen(fd, mode)
        else:
            handle = os.fdopen(fd, mode, encoding="utf-8", newline=newline)
        with handle:
            yield handle
        try:
            os.replace(tmp_name, path)
        except OSError as error:
            raise _about(error, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _about(error: OSError, path: Path) -> OSError:
    """The same error about the user's ``path``: the temporary name means nothing to them
    (``Is a directory: D/.files.489404cb.tmp`` was printed for an output path that is a folder)."""
    return type(error)(error.errno, error.strerror, str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``folder`` when a process was
    killed mid-write; returns what was removed.

    Only names of exactly that pattern (``.<name>.<8 hex digits>.tmp``) are touched, never other
    files, and not in subfolders. Call it only where no other process is writing at the time.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if TEMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
