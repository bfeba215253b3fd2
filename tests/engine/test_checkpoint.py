from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rgfl.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_model_signature,
    find_latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def test_save_load_round_trip_and_latest(tmp_path):
    folder = tmp_path / "checkpoints"
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint({"model": weights, "epoch": 0, "config": {"model": {"head": "gfl"}}}, folder / "epoch_0001.pt")
    save_checkpoint({"model": weights, "epoch": 1}, folder / "iter_0000042.pt")
    assert find_latest_checkpoint(tmp_path) == folder / "iter_0000042.pt"
    state = load_checkpoint(folder / "epoch_0001.pt")
    assert state["format"] == "rgfl-checkpoint" and "rgfl_version" in state
    assert torch.equal(state["model"]["w"], weights["w"])
    assert not list(folder.glob(".*.tmp")), "no temporary files left behind"


def test_no_checkpoint_yet(tmp_path):
    assert find_latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", None])
def test_corrupt_checkpoint_gives_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # a real checkpoint cut in half (e.g. disk full on another tool)
        save_checkpoint({"model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad.pt: not a readable rgfl checkpoint \(corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an rgfl training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_model_signature_mismatch(tmp_path):
    state = {"model_signature": {"head": "gfl", "backbone": "resnet50", "classes": ["plane"]}}
    check_model_signature(state, {"head": "gfl", "backbone": "resnet50", "classes": ["plane"]}, tmp_path)
    with pytest.raises(CheckpointError, match="another model: backbone is 'resnet50' in the checkpoint but 'resnet18'"):
        check_model_signature(state, {"head": "gfl", "backbone": "resnet18"}, tmp_path)


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint({"rng": [capture_rng_state()]}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"][0])  # weights_only load
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
