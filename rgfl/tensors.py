"""Tensor conversions that skip the operator call where it would change nothing, and a small
cache for tensors that depend only on shapes and devices.

Even a no-op ``.float()`` or ``.to(device)`` is an operator call, and a training step on a GPU is
bound by operator launches (issue 20), so the training path converts only where needed and builds
shape-only tensors (priors, index vectors) once per input size.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["float32", "converted", "kept"]

T = TypeVar("T")


def float32(tensor: Tensor) -> Tensor:
    """``tensor.float()``, without the call where the tensor is float32 already."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def converted(tensor: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``tensor.to(device, dtype)``, without the call where it would change nothing."""
    if tensor.device == device and (dtype is None or tensor.dtype == dtype):
        return tensor
    return tensor.to(device=device, dtype=dtype)


def kept(cache: dict, key: Hashable, build: Callable[[], T], limit: int = 16) -> T:
    """``cache[key]``, built by ``build()`` on first use. The cache is emptied when it holds more
    than ``limit`` entries, so inputs of ever-changing sizes cannot grow it without bound."""
    if key not in cache:
        if len(cache) > limit:
            cache.clear()
        cache[key] = build()
    return cache[key]
