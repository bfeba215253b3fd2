"""The distributed path on CPU: 2 processes, gloo backend, DDP + DistributedSampler-like sharding."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.engine.helpers import requires_pipeline, tiny_config, train_records

pytestmark = requires_pipeline


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data: str, work_dir: str) -> None:
    # What torchrun sets for every process.
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    from rgfl.engine import distributed
    from rgfl.engine.train import Trainer

    # Empty patches stay in: a rank whose batch has no positive anchor must still join the
    # detector's all-reduce of its loss normalizers, or the ranks hang.
    cfg = tiny_config(Path(data), **{"schedule.epochs": 1, "data.batch_size": 1, "data.skip_empty": False})
    trainer = Trainer(cfg, work_dir)
    initial = {k: v.clone() for k, v in trainer.detector.state_dict().items()}
    seen = [index for batch in trainer.sampler for _, index in batch]
    result = trainer.run()
    torch.save(
        {"weights": trainer.detector.state_dict(), "initial": initial, "seen": seen, "size": len(trainer.dataset), "iteration": result.iteration, "status": result.status},
        Path(work_dir) / f"rank{rank}.pt",
    )
    distributed.cleanup()


@pytest.mark.timeout(300)
def test_two_process_gloo_run_keeps_ranks_in_sync(tiny_split, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_split), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    half = (ranks[0]["size"] + 1) // 2  # one epoch, batch 1 per rank
    assert [r["status"] for r in ranks] == ["completed", "completed"]
    assert [r["iteration"] for r in ranks] == [half, half]
    # The scenario needs a patch without objects (the synthetic set has some).
    from rgfl.dota.annotations import read_label_file

    assert any(len(read_label_file(p)) == 0 for p in (tiny_split / "labelTxt").glob("*.txt"))
    # Each rank trained on its own half of the data (padded to equal halves) ...
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == half
    assert set(ranks[0]["seen"]) | set(ranks[1]["seen"]) == set(range(ranks[0]["size"]))
    # ... and DDP's gradient all-reduce kept the weights identical. The tiny config trains its
    # BatchNorms (no sync_bn): each rank's running statistics come from its own last batch (DDP
    # copies rank 0's at the start of every forward), so only they may differ.
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    assert any(key.endswith(statistics) for key in ranks[0]["weights"])
    for key, weight in ranks[0]["weights"].items():
        if not key.endswith(statistics):
            assert torch.equal(weight, ranks[1]["weights"][key]), key
    changed = [k for k, w in ranks[0]["weights"].items() if w.is_floating_point() and not torch.equal(w, ranks[0]["initial"][k])]
    assert changed, "the weights moved"
    # Rank 0 alone writes the log and the checkpoint; the logged batch is the total over ranks.
    records = train_records(tmp_path)
    assert [r["iteration"] for r in records] == list(range(1, half + 1))
    assert records[0]["images_per_s"] > 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "epoch_0001.pt", weights_only=True)
    assert len(checkpoint["rng"]) == 2  # every rank's RNG state
    assert all(torch.equal(w, ranks[0]["weights"][k]) for k, w in checkpoint["model"].items())
