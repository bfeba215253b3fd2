"""The experiment configs shipped with rgfl (installed as ``rgfl.configs``; YAML files only)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR", "packaged_config"]

CONFIG_DIR = Path(__file__).resolve().parent


def packaged_config(name: str) -> Path | None:
    """Path of a shipped config by file name (``rgfl_r18_tiny_cpu.yaml``), or None."""
    path = CONFIG_DIR / name
    return path if path.is_file() else None
