from __future__ import annotations

import pytest
import torch

from rgfl.data import collate_batch
from rgfl.structures import Target


def test_collate_pads_to_multiple_of_32():
    def sample(h, w, value):
        target = Target(torch.zeros(1, 5), torch.zeros(1, dtype=torch.int64), image_id=f"{h}x{w}")
        return torch.full((3, h, w), value, dtype=torch.uint8), target

    images, targets = collate_batch([sample(50, 70, 7), sample(64, 33, 9)])
    assert images.shape == (2, 3, 64, 96) and images.dtype == torch.uint8
    assert (images[0, :, :50, :70] == 7).all() and images[0, :, 50:].sum() == 0 and images[0, :, :, 70:].sum() == 0
    assert (images[1, :, :64, :33] == 9).all() and images[1, :, :, 33:].sum() == 0
    assert [t.image_id for t in targets] == ["50x70", "64x33"]
    images, _ = collate_batch([sample(64, 32, 1)])
    assert images.shape == (1, 3, 64, 32)


def test_collate_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        collate_batch([])
