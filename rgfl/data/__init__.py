"""Training data: the DOTA-format dataset, box-consistent augmentations and batch collation."""

from rgfl.data.dataset import DotaDataset, collate_batch, read_image
from rgfl.data.transforms import Compose, Sample, build_transforms

__all__ = ["DotaDataset", "collate_batch", "read_image", "Compose", "Sample", "build_transforms"]
