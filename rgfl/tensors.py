"""Tensor conversions that skip the operator call where it would change nothing.

Even a no-op ``.float()`` or ``.to(device)`` is an operator call, and a training step on a GPU is
bound by operator launches (issue 20), so the training path converts only where needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["float32", "converted"]


def float32(tensor: Tensor) -> Tensor:
    """``tensor.float()``, without the call where the tensor is float32 already."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def converted(tensor: Tensor, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``tensor.to(device, dtype)``, without the call where it would change nothing."""
    if tensor.device == device and (dtype is None or tensor.dtype == dtype):
        return tensor
    return tensor.to(device=device, dtype=dtype)
