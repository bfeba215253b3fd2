"""Training metrics: windowed averages, the JSON-lines log, optional TensorBoard scalars.

The engine never prints. Every ``log_interval`` iterations it builds one record (a flat dict:
epoch, iteration, each loss term, lr, images/s, data-wait fraction, memory, ETA) and hands it to
its sinks: :class:`JsonLinesLog` (``<work_dir>/log.jsonl``), :class:`TensorBoardLog` when
tensorboard is installed, and the caller's callback (the CLI's progress display).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["JsonLinesLog", "TensorBoardLog", "format_eta"]

logger = logging.getLogger(__name__)


class JsonLinesLog:
    """Appends one JSON object per line to a file (flushed at every record, so `tail -f` works).

    Resuming appends to the same file; records carry ``iteration`` so duplicates after a resume
    can be recognized.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # An append-only log is the one output not written through atomic_write: it grows while
        # training runs, and each line is complete when flushed.
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, allow_nan=True, default=str) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class TensorBoardLog:
    """TensorBoard scalars under ``<work_dir>/tensorboard``; a no-op when tensorboard is missing."""

    def __init__(self, folder: str | Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed (an optional dependency: pip install rgfl[tensorboard])
            logger.info("tensorboard is not installed; skipping TensorBoard scalars")
            return
        self.writer = SummaryWriter(log_dir=os.fspath(folder))

    def write(self, record: dict[str, Any], step: int, prefix: str = "train") -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "iteration"):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text
