from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import make_split


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory) -> "Path":  # noqa: F821
    return make_split(tmp_path_factory.mktemp("tiny_split"))


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions gain nothing from intra-op threads, and on a busy 2-core machine
    # OpenMP threads fighting for cores make them 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
