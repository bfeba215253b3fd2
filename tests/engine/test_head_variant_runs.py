"""A gflv2 run through the engine: training, its checkpoint, loading it for inference, refusing another head."""

from __future__ import annotations

import pytest
import torch

from rgfl.engine.build import load_detector
from rgfl.engine.checkpoint import CheckpointError, load_checkpoint
from rgfl.engine.train import train
from rgfl.model.heads.gflv2 import GFLv2Head
from tests.engine.helpers import requires_pipeline, tiny_config, train_records


@requires_pipeline
def test_a_gflv2_run_trains_checkpoints_and_predicts(tiny_split, tmp_path):
    result = train(tiny_config(tiny_split, **{"model.head": "gflv2", "schedule.max_iters": 2}), tmp_path)
    assert result.status == "max_iters"
    records = train_records(tmp_path)
    assert records and {"loss_qfl", "loss_bbox", "loss_dfl"} <= set(records[-1])
    state = load_checkpoint(result.checkpoint)
    assert state["model_signature"]["head"] == "gflv2"
    assert any(key.startswith("head.dgqp.") for key in state["model"])
    detector, cfg = load_detector(result.checkpoint)
    assert isinstance(detector.head, GFLv2Head) and cfg.model.head == "gflv2"
    detector.score_thr = 0.0
    detections = detector.predict(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert len(detections[0]) > 0 and bool((detections[0].scores <= 1).all())
    with pytest.raises(CheckpointError, match=r"head is 'gflv2' in the checkpoint but 'gfl' in the config"):
        train(tiny_config(tiny_split), tmp_path, resume=True)
