"""Kept for imports of the time before the head variants had modules of their own: the heads now
live in :mod:`rgfl.model.heads` (one module per variant)."""

from rgfl.model.heads import HEAD_VARIANTS, HeadOutputs
from rgfl.model.heads.base import Scale

__all__ = ["HeadOutputs", "HEAD_VARIANTS", "Scale"]
