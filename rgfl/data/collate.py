"""Batching: stack images of different sizes into one zero-padded tensor."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from rgfl.structures import Target

__all__ = ["collate_batch"]


def collate_batch(
    samples: Sequence[tuple[Tensor, Target]], size_divisor: int = 32
) -> tuple[Tensor, list[Target]]:
    """Stack images into one zero-padded batch.

    Args:
        samples: ``(image uint8 Tensor[3, H_i, W_i], Target)`` pairs.
        size_divisor: the padded height and width are multiples of this (32: the detector's
            largest feature stride that must divide the input).

    Returns:
        images: uint8 Tensor[B, 3, H', W'], each image at the top-left, zeros bottom/right;
            ``H' = ceil(max H_i / size_divisor) * size_divisor``, same for ``W'``.
        targets: the B targets unchanged (boxes stay valid: padding adds no offset).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    images = [image for image, _ in samples]
    height = math.ceil(max(image.shape[1] for image in images) / size_divisor) * size_divisor
    width = math.ceil(max(image.shape[2] for image in images) / size_divisor) * size_divisor
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        batch[i, :, : image.shape[1], : image.shape[2]].copy_(image)
    return batch, [target for _, target in samples]
