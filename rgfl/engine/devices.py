"""The ``--device`` / ``train.device`` / ``device=`` text -> a torch device name, checked against this machine.

One rule for the CLI, the Python API and training, so that a device that is not there gives the
same clear InputError everywhere instead of a raw torch error later.
"""

from __future__ import annotations

import re

import torch

from rgfl.errors import InputError

_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(spec: str, what: str = "device", cuda_index: int | None = None, hint: str = "") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Args:
        spec: the user's text (case and surrounding spaces ignored).
        what: how the message names the setting, e.g. ``--device`` or ``train.device``.
        cuda_index: the index plain ``cuda`` (and ``auto`` on a GPU) stands for, e.g. the local rank
            of a distributed process; None keeps plain ``cuda``.
        hint: appended to every message, e.g. where the setting can be changed.

    Raises:
        InputError: the text is not one of those, CUDA is asked for and there is none, or ``cuda:N``
            names a device this machine does not have.
    """
    text = spec.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if not _DEVICE.fullmatch(text):
        raise InputError(f"{what} is {spec!r}: expected auto, cpu, cuda or cuda:N{hint}")
    if text == "cpu":
        return text
    if not torch.cuda.is_available():
        raise InputError(f"{what} is {spec!r} but no CUDA device is available here (use cpu){hint}")
    if text == "cuda":
        if cuda_index is None:
            return text
        text = f"cuda:{cuda_index}"
    count = torch.cuda.device_count()
    if int(text[5:]) >= count:
        raise InputError(f"{what} is {spec!r} but there are only {count} CUDA device(s) (cuda:0 to cuda:{count - 1}){hint}")
    return text
