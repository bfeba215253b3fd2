"""``train.compile``: torch.compile of the detector's forward and of its loss terms, with an eager fallback.

What compiles: the backbone + FPN and the head (``nn.Module.compile``: the parameters and the
state-dict keys stay those of the eager modules, so checkpoints do not change), and the loss terms
after the assignment (``RotatedGFL.loss_terms``: fixed shapes over the B * P anchors of a batch).
The assignment stays eager: its shapes follow the number of objects, which changes every batch
and would recompile every step.

Where compilation cannot work the step runs eagerly with a warning: on Windows, on the CPU without
a C++ compiler, on CUDA without Triton, or when the first compiled step raises (the step is then
run again eagerly, so no batch is lost).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

import torch
from torch import nn

__all__ = ["compile_unavailable_reason", "enable_compile", "disable_compile"]

logger = logging.getLogger(__name__)


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None when it should."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if sys.platform == "win32":
        return "torch.compile's default backend is not supported on Windows"
    if device.type == "cpu":
        compiler = os.environ.get("CXX")
        if not (compiler and shutil.which(compiler)) and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return "no C++ compiler found (g++, c++, clang++ or $CXX); the CPU backend needs one"
    elif device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed; the CUDA backend needs it"
    else:
        return f"no torch.compile backend is set up for device {device.type!r}"
    return None


def enable_compile(detector: nn.Module, device: torch.device) -> bool:
    """Compile ``detector``'s backbone, head and loss terms in place; False (with a warning) when
    compilation is unavailable here. Compilation itself happens on the first step."""
    reason = compile_unavailable_reason(device)
    if reason is not None:
        logger.warning("train.compile=true ignored: %s; training eagerly", reason)
        return False
    detector.backbone.compile()
    detector.head.compile()
    detector.loss_terms = torch.compile(detector.loss_terms)
    return True


def disable_compile(detector: nn.Module) -> None:
    """Undo :func:`enable_compile` (back to the eager modules and loss terms)."""
    for module in (detector.backbone, detector.head):
        module._compiled_call_impl = None
    detector.__dict__.pop("loss_terms", None)  # the compiled wrapper shadowed the method
