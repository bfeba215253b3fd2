"""Validation during training (``eval.interval > 0``): AP50 / AP75 / mAP on a labelled split folder.

The detector predicts on every patch of ``eval.data`` (no augmentation); the detections and the
patch labels go to the evaluator of ``rgfl eval`` (``rgfl.evaluation``), which is the only place
the DOTA metric is implemented. :func:`check_validation_available` runs at start-up so that a run
configured for validation fails before training rather than after the first epoch.

HOOK: the function of ``rgfl.evaluation`` scoring in-memory detections is looked up by name
(:data:`EVALUATOR_NAMES`); until the evaluation package provides one, enabling validation stops
with a message saying so (see docs/training.md, "Validation").
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from rgfl.engine.config import Config
from rgfl.errors import InputError, RgflError

__all__ = ["validate", "check_validation_available", "EVALUATOR_NAMES"]

logger = logging.getLogger(__name__)

# evaluate(detections: list[Detections] (polygons in extras), targets: list[(polygons[M,8], labels[M], difficult[M])],
#          class_names) -> {"AP50": float, "AP75": float, "mAP": float, ...}
EVALUATOR_NAMES = ("evaluate_detections",)


def _find_evaluator() -> Callable[..., dict[str, float]] | None:
    try:
        module = importlib.import_module("rgfl.evaluation")
    except ImportError:
        return None
    for name in EVALUATOR_NAMES:
        function = getattr(module, name, None)
        if callable(function):
            return function
    return None


def check_validation_available(cfg: Config) -> None:
    """Fail early when validation is configured but cannot run."""
    if cfg.eval.interval <= 0:
        return
    if cfg.eval.data is None:
        raise InputError("eval.interval is set but eval.data is not: give the split folder of the validation set (--set eval.data=PATH) or set eval.interval=0")
    if not (Path(cfg.eval.data) / "labelTxt").is_dir():
        raise InputError("validation data needs images/ and labelTxt/ (rgfl split output of a labelled set)", cfg.eval.data)
    if _find_evaluator() is None:
        raise RgflError(
            "validation during training needs the DOTA evaluator of `rgfl eval` (rgfl.evaluation."
            f"{EVALUATOR_NAMES[0]}), which this build does not provide yet; set eval.interval=0 and run `rgfl eval` on the checkpoints"
        )


@torch.no_grad()
def validate(detector: nn.Module, cfg: Config, class_names: tuple[str, ...], device: torch.device) -> dict[str, Any]:
    """Predict on ``cfg.eval.data`` and score with the evaluator; returns its metrics."""
    from rgfl.data import DotaDataset, collate_batch
    from rgfl.data.transforms import build_transforms

    evaluator = _find_evaluator()
    assert evaluator is not None, "check_validation_available() runs at start-up"
    transforms = build_transforms(hflip=0.0, resize=cfg.data.input_size)
    dataset = DotaDataset(Path(cfg.eval.data), class_names, transforms=transforms, difficult="keep", truncated="keep")
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=collate_batch, num_workers=0)
    detections, targets = [], []
    for images, batch_targets in loader:
        detections += [d.to("cpu") for d in detector.predict(images.to(device))]
        targets += batch_targets
    return dict(evaluator(detections, targets, class_names))
