"""``rgfl train --dry-run``: everything a training run would resolve, without training.

The resolved config (after ``--set``), the numbers derived from it at this world size (total
batch, learning rate, iterations, warmup, milestones in iterations) and a summary of the training
data as the training set would load it (patches, patches used, objects trained as positives,
ignored, dropped by reason). The data summary builds the real training dataset, which reads the
label files but decodes no image; no model is built, so nothing is downloaded and no GPU is needed.
"""

from __future__ import annotations

import math
import os
from typing import Any

from rgfl.engine.config import Config, config_to_dict
from rgfl.engine.schedule import scaled_lr

__all__ = ["derived_values", "data_summary", "dry_run"]


def derived_values(cfg: Config, num_patches: int, world_size: int) -> dict[str, Any]:
    """What the trainer computes from the config for ``num_patches`` training patches.

    Iterations per epoch follow :class:`rgfl.engine.sampler.EpochBatchSampler`: every process
    gets ``ceil(patches / world_size)`` samples in batches of ``data.batch_size``.
    """
    total_batch = cfg.data.batch_size * world_size
    per_rank = math.ceil(num_patches / world_size) if num_patches else 0
    iters_per_epoch = math.ceil(per_rank / cfg.data.batch_size) if per_rank else 0
    total_iters = iters_per_epoch * cfg.schedule.epochs
    if cfg.schedule.max_iters is not None:
        total_iters = min(total_iters, cfg.schedule.max_iters)
    # As the schedule applies it: over warmup_iters iterations, even when the run is shorter.
    warmup_iters = 0 if cfg.schedule.warmup == "none" else cfg.schedule.warmup_iters
    return {
        "world_size": world_size,
        "total_batch": total_batch,
        "lr": scaled_lr(cfg.optimizer, total_batch),
        "lr_per_image": scaled_lr(cfg.optimizer, total_batch) / total_batch,
        "iters_per_epoch": iters_per_epoch,
        "total_iters": total_iters,
        "warmup_iters": warmup_iters,
        "milestone_iters": [m * iters_per_epoch for m in sorted(cfg.schedule.milestones)],
    }


def data_summary(cfg: Config) -> dict[str, Any]:
    """Patches and objects of the training set as ``rgfl train`` would load it (raises InputError)."""
    from rgfl.engine.build import build_train_dataset, class_names

    dataset = build_train_dataset(cfg.data, class_names(cfg.data))
    counts = dataset.object_counts
    return {
        "root": str(cfg.data.root),
        "patches": dataset.num_images,
        "patches_used": len(dataset),
        "patches_skipped_empty": dataset.num_filtered,
        "objects": {
            "positive": counts["positive"],
            "ignored": counts["ignored"],
            "dropped": dict(counts["dropped"]),
        },
        "bad_label_lines": len(dataset.problems),
    }


def dry_run(cfg: Config, world_size: int | None = None) -> dict[str, Any]:
    """``{"config", "derived", "data", "split_check"}`` for ``cfg`` (see the module docstring).

    ``world_size`` defaults to ``$WORLD_SIZE`` (set by torchrun), else 1.
    """
    from rgfl.engine.split_check import compare_split

    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    data = data_summary(cfg)
    result: dict[str, Any] = {
        "config": config_to_dict(cfg),
        "derived": derived_values(cfg, data["patches_used"], world_size),
        "data": data,
    }
    expected = cfg.expected_split
    if expected.check != "ignore" and any(
        getattr(expected, key) is not None for key in ("size", "step", "rates", "truncation", "iof_thr", "pad_value")
    ):
        check = compare_split(expected, cfg.data.root)
        result["split_check"] = {
            "manifest_found": check.manifest_found,
            "rule_mismatches": check.rule_mismatches,
            "data_mismatches": check.data_mismatches,
            "command": check.command,
            "refused": bool(check.rule_mismatches) and expected.check == "error",
        }
    return result
