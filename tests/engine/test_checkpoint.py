from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from rgfl.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_model_signature,
    find_latest_checkpoint,
    find_resume_point,
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


def _flip_middle(path, length=4096):
    """Damage as on a disk: the bytes change, the modification time does not."""
    times = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + length] = bytes(b ^ 0xFF for b in data[middle : middle + length])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_flipped_bytes_in_a_checkpoint_are_detected(tmp_path):
    # 4 KiB flipped in the middle lands in tensor data, which torch.load alone reads without complaint.
    path = save_checkpoint({"model": {"w": torch.randn(400_000)}, "epoch": 3}, tmp_path / "c.pt")
    _flip_middle(path)
    assert torch.load(path, weights_only=True)["format"] == "rgfl-checkpoint"  # what went unnoticed
    with pytest.raises(CheckpointError, match=r"c.pt: not a readable rgfl checkpoint \(corrupt file: record '.*/data/\d+' does not match its checksum"):
        load_checkpoint(path)


def test_checkpoint_written_without_checksums_still_loads(tmp_path):
    # Compatibility: torch can be told not to write CRCs; such a file cannot be verified but loads.
    set_crc32 = getattr(torch.serialization, "set_crc32_options", None)
    if set_crc32 is None:
        pytest.skip("this torch always writes CRC-32s")
    path = tmp_path / "no_crc.pt"
    set_crc32(False)
    try:
        torch.save({"format": "rgfl-checkpoint", "format_version": 1, "model": {"w": torch.arange(5.0)}}, path)
    finally:
        set_crc32(True)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(5.0))
    # save_checkpoint writes them even when they are switched off globally.
    set_crc32(False)
    try:
        saved = save_checkpoint({"model": {"w": torch.arange(100_000.0)}}, tmp_path / "with_crc.pt")
    finally:
        set_crc32(True)
    _flip_middle(saved, length=8)
    with pytest.raises(CheckpointError, match="does not match its checksum|not a readable"):
        load_checkpoint(saved)


def test_resume_point_falls_back_to_the_newest_intact_checkpoint(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    for epoch in (1, 2, 3):
        save_checkpoint({"model": {"w": torch.full((50_000,), float(epoch))}, "epoch": epoch}, folder / f"epoch_{epoch:04d}.pt")
    newest = folder / "epoch_0003.pt"
    with open(newest, "r+b") as handle:  # truncated (disk full, kill -9 of a copy)
        handle.truncate(newest.stat().st_size // 2)
    _flip_middle(folder / "epoch_0002.pt")
    with caplog.at_level("WARNING", logger="rgfl"):
        point = find_resume_point(tmp_path, True)
    assert point.path == folder / "epoch_0001.pt" and point.state["epoch"] == 1
    text = caplog.text
    assert "skipping" in text and "epoch_0003.pt" in text and "epoch_0002.pt" in text
    assert "continuing from" in text and "epoch_0001.pt, the newest intact checkpoint (skipped: epoch_0003.pt, epoch_0002.pt)" in text
    # A checkpoint named explicitly is used or refused, never replaced by another.
    with pytest.raises(CheckpointError, match="epoch_0003.pt: not a readable rgfl checkpoint"):
        find_resume_point(tmp_path, newest)
    # Nothing intact at all: one error naming the folder and the files.
    _flip_middle(folder / "epoch_0001.pt")
    with pytest.raises(CheckpointError, match=r"checkpoints: --resume: no intact checkpoint to continue from \(3 corrupt: epoch_0003.pt, epoch_0002.pt, epoch_0001.pt\)"):
        find_resume_point(tmp_path, True)
    assert find_resume_point(tmp_path / "empty", True) is None
