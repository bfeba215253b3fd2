from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The suite's models are tiny: one intra-op thread is faster than two for them, and it keeps the
# run time steady on a shared 2-core machine (OpenMP threads spin when a core is taken).
torch.set_num_threads(1)
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
    # A module-scoped fixture that ran the CLI leaves its set-up behind before this runs: start
    # every test from the library's own state, so that caplog sees rgfl's records.
    logger.handlers[:], logger.level, logger.propagate = [], logging.NOTSET, True
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(autouse=True)
def _remove_checkpoints(request):
    """Delete the ``*.pt`` files a test wrote under its ``tmp_path`` (a tiny model's checkpoint is
    ~140 MB, and pytest keeps the temporary folders of the last three sessions)."""
    yield
    tmp_path = request.node.funcargs.get("tmp_path")
    if tmp_path is not None:
        for path in Path(tmp_path).rglob("*.pt"):
            path.unlink(missing_ok=True)


def pytest_sessionfinish(session, exitstatus):
    """Delete the large files (checkpoints, ONNX files, weights) that module- and session-scoped
    fixtures wrote under this session's temporary folder: ``_remove_checkpoints`` only sees each
    test's own ``tmp_path``, and pytest keeps the folders of the last three sessions."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    for pattern in ("*.pt", "*.pth", "*.onnx"):
        for path in base.rglob(pattern):
            path.unlink(missing_ok=True)
