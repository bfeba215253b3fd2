from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real DOTA sample lives beside the project (../shared), never inside the repo.
SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "dota-sample"

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")])]


@pytest.fixture(scope="session")
def dota_sample() -> Path:
    if not (SAMPLE_DIR / "labelTxt").is_dir():
        pytest.skip(f"DOTA sample not found at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(autouse=True)
def _restore_rgfl_logger():
    """CLI tests set up rich logging on the "rgfl" logger (propagate off); undo it after each test."""
    import logging

    logger = logging.getLogger("rgfl")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
