"""Validation during training (``eval.interval > 0``): AP50 / AP75 / mAP on a labelled split folder.

The detector predicts on every patch of ``eval.data`` (no augmentation) and the detections are
scored per patch, against the patch labels, by the evaluator of ``rgfl eval``
(:func:`rgfl.evaluation.evaluate_detections`, the official DOTA Task1 protocol). This is a
patch-level number for following training; the number to report comes from ``rgfl eval`` on
merged full-image detections. :func:`check_validation_available` runs at start-up so that a bad
validation setting fails before training rather than after the first epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rgfl.engine.config import Config
from rgfl.errors import InputError

__all__ = ["validate", "check_validation_available", "EVALUATOR_NAMES"]

logger = logging.getLogger(__name__)

__all__ = ["validate", "check_validation_available"]

logger = logging.getLogger(__name__)


def check_validation_available(cfg: Config) -> None:
    """Fail early when validation is configured but cannot run."""
    if cfg.eval.interval <= 0:
        return
    if cfg.eval.data is None:
        raise InputError("eval.interval is set but eval.data is not: give the split folder of the validation set (--set eval.data=PATH) or set eval.interval=0")
    if not (Path(cfg.eval.data) / "images").is_dir() or not (Path(cfg.eval.data) / "labelTxt").is_dir():
        raise InputError("validation data needs images/ and labelTxt/ (rgfl split output of a labelled set)", cfg.eval.data)


def _collate_with_sizes(samples: list) -> tuple[Tensor, list, list[tuple[int, int]]]:
    from rgfl.data import collate_batch

    images, targets = collate_batch(samples)
    return images, targets, [(int(image.shape[1]), int(image.shape[2])) for image, _ in samples]


@torch.no_grad()
def validate(detector: nn.Module, cfg: Config, class_names: tuple[str, ...], device: torch.device, amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Predict on ``cfg.eval.data`` and score with the DOTA evaluator.

    Returns:
        ``{"AP50", "AP75", "mAP", "num_images", "num_detections"}`` (fractions in [0, 1]).
    """
    from rgfl.data import DotaDataset
    from rgfl.data.transforms import build_transforms
    from rgfl.dota.task1 import Task1Detections
    from rgfl.evaluation import evaluate_detections, load_ground_truth

    root = Path(cfg.eval.data)  # type: ignore[arg-type]
    transforms = build_transforms(hflip=0.0, resize=cfg.data.input_size)
    dataset = DotaDataset(root, class_names, transforms=transforms, difficult="keep", truncated="keep")
    workers = min(2, cfg.data.workers if cfg.data.workers is not None else 2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.eval.batch_size, collate_fn=_collate_with_sizes, num_workers=workers)
    per_class: dict[int, tuple[list[str], list[np.ndarray], list[np.ndarray]]] = {i: ([], [], []) for i in range(len(class_names))}
    count = 0
    for images, targets, sizes in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            detections = detector.predict(images.to(device, non_blocking=True), sizes)
        for det, target in zip(detections, targets):
            polygons = det.extras["polygons"].float().cpu().numpy().astype(np.float64) / target.scale  # back to patch pixels
            scores = det.scores.float().cpu().numpy().astype(np.float64)
            labels = det.labels.cpu().numpy()
            count += len(scores)
            for label in np.unique(labels):
                keep = labels == label
                ids, score_list, polygon_list = per_class[int(label)]
                ids.extend([target.image_id] * int(keep.sum()))
                score_list.append(scores[keep])
                polygon_list.append(polygons[keep])
    task1 = {
        class_names[i]: Task1Detections(ids, np.concatenate(scores) if scores else np.zeros(0), np.concatenate(polygons) if polygons else np.zeros((0, 8)))
        for i, (ids, scores, polygons) in per_class.items()
    }
    ground_truth = load_ground_truth(root / "labelTxt")
    ground_truth = {stem: ground_truth[stem] for stem in dataset.image_ids if stem in ground_truth}
    result = evaluate_detections(task1, ground_truth, class_names)
    return {"AP50": result.AP50, "AP75": result.AP75, "mAP": result.mAP, "num_images": len(dataset), "num_detections": count}
