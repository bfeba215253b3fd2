"""TensorBoard scalars: what `rgfl train` writes under <work_dir>/tensorboard can be read back."""

from __future__ import annotations

import pytest

from rgfl.engine.metrics import TensorBoardLog


def test_scalars_are_written_and_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = TensorBoardLog(tmp_path / "tensorboard")
    assert log.writer is not None
    log.write({"loss": 1.5, "loss_qfl": 0.25, "lr": 0.01, "epoch": 1, "iteration": 3, "amp": True}, step=3)
    log.write({"loss": 0.75, "loss_qfl": 0.125, "lr": 0.01, "epoch": 1, "iteration": 4}, step=4)
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"train/loss", "train/loss_qfl", "train/lr"}  # counters and booleans are not plotted
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(3, 1.5), (4, 0.75)]
