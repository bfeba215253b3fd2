"""Deterministic, resumable, distributed batch order for training.

Exact resume needs two things from the data side:

1. The order of samples in an epoch must depend only on ``(seed, epoch)``, and a resumed run must
   be able to start in the middle of it. :class:`EpochBatchSampler` draws a permutation from
   ``seed + epoch`` (as ``DistributedSampler`` does), pads it to a multiple of the world size,
   gives every ``world_size``-th index to each rank, and can skip the batches already consumed.
2. Random augmentations must not depend on which worker process loads a sample or on how many
   samples that worker loaded before. :class:`SeededSamples` reseeds python/numpy/torch before
   every sample from ``(seed, epoch, index)``; the batch sampler therefore yields
   ``(epoch, index)`` keys instead of bare indices.
"""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochBatchSampler", "SeededSamples", "sample_seed", "worker_init"]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` keys for one rank, for the epoch set by :meth:`set_epoch`.

    Args:
        dataset_size: number of samples in the dataset.
        batch_size: samples per batch on this rank.
        shuffle: a new random order every epoch (else the dataset order).
        seed: the run's seed; all ranks must pass the same one.
        rank, world_size: this process and the number of processes. Every rank gets
            ``ceil(dataset_size / world_size)`` samples (the permutation is padded with its own
            first indices, like ``DistributedSampler``), so all ranks run the same number of steps.
    """

    def __init__(self, dataset_size: int, batch_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if dataset_size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.samples_per_rank = math.ceil(dataset_size / world_size)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and skip its first ``start_batch`` batches (already trained on)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def indices(self, epoch: int) -> list[int]:
        """This rank's sample indices in epoch ``epoch``, in order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.samples_per_rank * self.world_size
        while len(order) < total:  # pad so every rank has the same number of samples
            order += order[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __len__(self) -> int:
        """Batches per epoch on this rank (a full epoch, independent of ``start_batch``)."""
        return math.ceil(self.samples_per_rank / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = self.indices(self.epoch)
        for start in range(self.start_batch * self.batch_size, len(indices), self.batch_size):
            yield [(self.epoch, index) for index in indices[start : start + self.batch_size]]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "start_batch": self.start_batch, "seed": self.seed, "shuffle": self.shuffle}


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed unique to (run seed, epoch, sample index)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63)


class SeededSamples(Dataset):
    """Wraps a dataset so ``wrapper[(epoch, index)]`` runs ``dataset[index]`` under fixed RNG seeds.

    The global python/numpy/torch RNG states are restored afterwards, so loading in the main
    process (``workers=0``) does not disturb the training process's own random streams.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        seed = sample_seed(self.seed, epoch, index)
        python_state = random.getstate()
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)


def worker_init(worker_id: int) -> None:
    """DataLoader worker set-up: Ctrl-C is handled by the main process, which saves a checkpoint
    and then shuts the workers down; a worker dying on SIGINT first would abort that.

    OpenCV's thread count is left alone here: ``cv2.setNumThreads`` in a forked worker whose
    parent already ran OpenCV's thread pool deadlocks (seen in the test suite: the worker hung
    inside the call), so one OpenCV thread per worker would need a spawned worker instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
