"""Head variants of the detector, one module each (see :mod:`rgfl.model.heads.base` for the interface).

``model.head`` names one of :data:`HEADS`: ``gfl`` (rotated GFL, the design), ``vanilla`` (the
reference results' head) or ``gflv2`` (``gfl`` plus GFocalV2's distribution-guided quality).
"""

from __future__ import annotations

from rgfl.model.heads.base import AnchorTargets, DenseHead, HeadOptions, HeadOutputs
from rgfl.model.heads.gfl import GFLHead
from rgfl.model.heads.gflv2 import GFLv2Head
from rgfl.model.heads.vanilla import VanillaHead

__all__ = ["HEADS", "HEAD_VARIANTS", "build_head", "DenseHead", "HeadOptions", "HeadOutputs", "AnchorTargets"]

HEADS: dict[str, type[DenseHead]] = {cls.name: cls for cls in (GFLHead, VanillaHead, GFLv2Head)}
HEAD_VARIANTS = tuple(HEADS)


def head_class(name: str) -> type[DenseHead]:
    """The head class of a ``model.head`` name (ValueError naming the choices otherwise)."""
    if name not in HEADS:
        raise ValueError(f"head must be one of {HEAD_VARIANTS}, got {name!r}")
    return HEADS[name]


def build_head(name: str, num_classes: int, reg_max: int | None, options: HeadOptions, **shape) -> DenseHead:
    """The head ``name`` with ``reg_max`` bins - 1 (None: the variant's default) and tower ``shape``
    (``in_channels``, ``feat_channels``, ``stacked_convs``, ``num_levels``)."""
    cls = head_class(name)
    return cls(num_classes, cls.default_reg_max if reg_max is None else reg_max, options, **shape)
