from __future__ import annotations

import random

import numpy as np
import torch

from rgfl.engine.sampler import EpochBatchSampler, SeededSamples


def test_order_depends_on_seed_and_epoch_only():
    a, b = EpochBatchSampler(10, 3, seed=5), EpochBatchSampler(10, 3, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert sorted(i for batch in a for _, i in batch) == list(range(10))
    assert len(a) == 4 and [len(batch) for batch in a] == [3, 3, 3, 1]


def test_resume_skips_consumed_batches():
    sampler = EpochBatchSampler(11, 2, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    sampler.set_epoch(1, start_batch=3)
    assert list(sampler) == full[3:]
    assert all(epoch == 1 for batch in full for epoch, _ in batch)


def test_ranks_split_the_epoch_evenly():
    ranks = [EpochBatchSampler(7, 2, seed=1, rank=r, world_size=3) for r in range(3)]
    per_rank = [[i for batch in s for _, i in batch] for s in ranks]
    assert all(len(indices) == 3 for indices in per_rank)  # ceil(7 / 3), padded
    assert set().union(*map(set, per_rank)) == set(range(7))
    assert len({len(s) for s in ranks}) == 1  # same number of steps on every rank


class RandomSamples(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return (random.random(), float(np.random.rand()), torch.rand(1).item())


def test_seeded_samples_are_reproducible_and_leave_global_rngs_alone():
    dataset = SeededSamples(RandomSamples(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = dataset[(3, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    dataset[(3, 1)]
    assert dataset[(3, 2)] == first
    assert dataset[(4, 2)] != first
