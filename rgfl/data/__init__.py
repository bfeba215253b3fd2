"""Training data: the DOTA-format dataset, box-consistent augmentations and batch collation."""

from rgfl.data.collate import collate_batch
from rgfl.data.dataset import DotaDataset, read_image
from rgfl.data.transforms import Compose, Sample, build_transforms

__all__ = ["DotaDataset", "collate_batch", "read_image", "Compose", "Sample", "build_transforms"]
