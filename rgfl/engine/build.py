"""Config sections -> objects: the detector, the training dataset, the optimizer.

Each ``build_*`` maps typed config fields onto plain keyword arguments of the library classes, so
an IDE can follow every key from the YAML file to the code that uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rgfl.dota.classes import resolve_classes
from rgfl.engine.config import Config, DataConfig, ModelConfig, OptimizerConfig, config_from_dict
from rgfl.errors import InputError, RgflError
from rgfl.model.fuse import fold_batchnorms

__all__ = ["class_names", "build_model", "model_signature", "build_train_dataset", "build_optimizer", "load_detector"]

logger = logging.getLogger(__name__)


def class_names(cfg: DataConfig) -> tuple[str, ...]:
    return resolve_classes(cfg.classes)


def model_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of :class:`rgfl.model.RotatedGFL` for a model config (None = its default)."""
    kwargs: dict[str, Any] = {
        "head": cfg.head,
        "depth": int(cfg.backbone.removeprefix("resnet")),
        "pretrained": cfg.pretrained,
        "frozen_stages": cfg.frozen_stages,
        "norm_eval": cfg.norm_eval,
        "norm_affine": cfg.norm_affine,
        "prior_offset": cfg.prior_offset,
        "feat_channels": cfg.feat_channels,
        "stacked_convs": cfg.stacked_convs,
        "fpn_channels": cfg.fpn_channels,
        "fpn_min_level": cfg.fpn_min_level,
        "topk": cfg.topk,
        "reach_aware": cfg.reach_aware,
        "quality_weight_floor": cfg.quality_weight_floor,
        "angle_coding": cfg.angle_coding,
        "nms_pre": cfg.nms_pre,
        "score_thr": cfg.score_thr,
        "nms_iou": cfg.nms_iou,
        "max_per_img": cfg.max_per_img,
    }
    if cfg.reg_max is not None:
        kwargs["reg_max"] = cfg.reg_max
    if cfg.octave_base_scale is not None:
        kwargs["octave_base_scale"] = cfg.octave_base_scale
    return kwargs


def build_model(cfg: ModelConfig, num_classes: int, pretrained: str | None = None) -> nn.Module:
    """The detector; ``pretrained`` overrides ``cfg.pretrained`` (e.g. "none" when a checkpoint follows)."""
    from rgfl.model.detector import RotatedGFL

    kwargs = model_kwargs(cfg)
    if pretrained is not None:
        kwargs["pretrained"] = pretrained
    try:
        return RotatedGFL(num_classes, **kwargs)
    except FileNotFoundError as error:
        raise InputError(str(error)) from None
    except (ValueError, TypeError) as error:
        raise RgflError(f"cannot build the detector from the model config: {error}") from None


def model_signature(cfg: Config) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into the model this config describes."""
    return {
        "head": cfg.model.head,
        "backbone": cfg.model.backbone,
        "classes": list(class_names(cfg.data)),
        "reg_max": cfg.model.reg_max,
        "feat_channels": cfg.model.feat_channels,
        "stacked_convs": cfg.model.stacked_convs,
        "fpn_channels": cfg.model.fpn_channels,
        "fpn_min_level": cfg.model.fpn_min_level,
        "angle_coding": cfg.model.angle_coding,
    }


def build_train_dataset(cfg: DataConfig, names: tuple[str, ...]) -> Any:
    """The training set over ``cfg.root`` (``rgfl split`` output: ``images/`` + ``labelTxt/``)."""
    if cfg.root is None:
        raise InputError("no training data given: pass --data SPLIT_ROOT (a folder written by rgfl split)")
    root = Path(cfg.root)
    if not root.is_dir():
        raise InputError("training data folder not found (expected the output folder of rgfl split)", root)
    if not (root / "images").is_dir():
        raise InputError("no images/ folder inside the training data folder (expected rgfl split output: images/ and labelTxt/)", root)
    if not (root / "labelTxt").is_dir():
        raise InputError("no labelTxt/ folder inside the training data folder: training needs labels", root)
    from rgfl.data import DotaDataset
    from rgfl.data.transforms import build_transforms

    if cfg.scale_range is not None and len(cfg.scale_range) != 2:
        raise InputError(f"data.scale_range must be [min, max], got {cfg.scale_range}")
    try:
        transforms = build_transforms(
            hflip=cfg.hflip,
            vflip=cfg.vflip,
            diagonal_flip=cfg.dflip,
            rotate90=cfg.rotate90,
            rotate=cfg.rotate,
            max_angle=cfg.max_angle,
            resize=cfg.input_size,
            scale_range=tuple(cfg.scale_range) if cfg.scale_range is not None else None,  # type: ignore[arg-type]
        )
    except ValueError as error:
        raise InputError(f"bad augmentation settings in the data section: {error}") from None
    # No dataset seed: the engine seeds every sample from (seed, epoch, index) itself
    # (rgfl.engine.sampler.SeededSamples), which also holds with persistent workers.
    dataset = DotaDataset(
        root, names, transforms=transforms, filter_empty=cfg.skip_empty, difficult=cfg.difficult, truncated=cfg.truncated,
        box_from=cfg.box_from, min_edge=cfg.min_edge,
    )
    if len(dataset) == 0:
        hint = " (all patches are empty; set data.skip_empty=false to train on them)" if cfg.skip_empty else ""
        raise InputError(f"no training patches found{hint}", root)
    return dataset


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (or AdamW) over the trainable parameters, weight decay on all of them (as the reference does)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.type == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def load_detector(checkpoint: str | Path, device: str | torch.device = "cpu", fold_norms: bool = True) -> tuple[nn.Module, Config]:
    """Rebuild the detector of a training checkpoint for inference (``rgfl eval``); eval mode.

    With ``fold_norms`` (default) the backbone's BatchNorms are folded into their convolutions
    (``rgfl.model.fuse``): same outputs, less work; such a model is for inference only.

    Returns:
        (detector, config): the config is the resolved training config stored in the checkpoint;
        ``class_names(config.data)`` gives the class list.
    """
    from rgfl.engine.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"], source=checkpoint)  # a key it predates takes its default
    model = build_model(cfg.model, len(class_names(cfg.data)), pretrained="none")
    load_model_state(model, state["model"], checkpoint)
    model.eval()
    if fold_norms:
        fold_batchnorms(model)
    return model.to(device), cfg


def load_model_state(model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` with a one-line error naming what does not fit."""
    from rgfl.engine.checkpoint import CheckpointError

    missing, unexpected = [], []
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong_shape = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            key = wrong_shape[0]
            parts.append(f"{len(wrong_shape)} of another shape (e.g. {key}: {tuple(weights[key].shape)} vs {tuple(own[key].shape)})")
        raise CheckpointError("checkpoint is from another model: its weights do not fit (" + "; ".join(parts) + ")", path)
    model.load_state_dict(weights)
