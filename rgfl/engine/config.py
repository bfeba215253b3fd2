"""Experiment configs: flat YAML files validated into typed dataclasses.

A config file has one mapping per section (``model``, ``data``, ``expected_split``, ``optimizer``,
``schedule``, ``train``, ``eval``) and plain ``key: value`` pairs inside each; the keys are exactly the fields of
the dataclasses below, nothing else. A section left out keeps its defaults. Validation happens on
load: an unknown key, a value of the wrong type, a number out of its range (:data:`RANGES`) or a
choice that does not exist raises
:class:`~rgfl.errors.InputError` naming the file, the line, the key, the value and what is allowed
(with a "did you mean" suggestion for misspellings).

Command-line overrides ``section.key=value`` (``rgfl train --set optimizer.lr=0.02``) are parsed
as YAML scalars and typed by the field they set.

Example::

    cfg = load_config("configs/rgfl_r18_tiny_cpu.yaml", overrides=["train.seed=3"])
    cfg.optimizer.momentum      # 0.9
    config_to_dict(cfg)         # plain dict, stored in checkpoints and the work dir
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rgfl.errors import InputError

__all__ = [
    "ModelConfig",
    "DataConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "EvalConfig",
    "ExpectedSplitConfig",
    "Config",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "apply_overrides",
]


@dataclass
class ModelConfig:
    """The detector (:class:`rgfl.model.RotatedGFL`); the keys are passed to it as keyword arguments."""

    head: Literal["gfl", "vanilla", "gflv2"] = "gfl"  # gfl: QFL + DFL (the design); vanilla: the reference results' head; gflv2: gfl + GFocalV2's distribution-guided quality
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    pretrained: str = "imagenet"  # imagenet | none | path to a saved torchvision state dict
    frozen_stages: int = 1  # stem + stage 1 frozen, as in the reference
    norm_eval: bool = True  # BatchNorm statistics frozen (batch 2 per GPU is too small to estimate them)
    # BatchNorm weight and bias of the stages frozen_stages leaves trainable: "trainable" (the reference,
    # mmdet's requires_grad=True) or "frozen" (FrozenBatchNorm2d; only with norm_eval: true).
    norm_affine: Literal["frozen", "trainable"] = "frozen"
    reg_max: int | None = None  # bins - 1 of the distributions; None: the head's default (16 gfl/gflv2, 8 vanilla)
    octave_base_scale: float | None = None  # anchor side = scale * stride; None: the head's default (4)
    angle_coding: Literal["sigmoid", "linear"] = "sigmoid"  # gfl head's angle: squashed into le135, or pi/4 * (1 + a)
    feat_channels: int = 256  # head tower width (a multiple of 32: GroupNorm(32))
    stacked_convs: int = 4  # conv + GN + ReLU blocks per head tower
    fpn_channels: int = 256  # FPN width
    fpn_min_level: Literal[2, 3] = 3  # first pyramid level: 3 = P3-P7 (reference), 2 adds a stride-4 P2
    topk: int = 9  # ATSS candidates per level and object
    prior_offset: float = 0.5  # prior centres at (j + offset) * stride; the reference (mmdet anchors) uses 0.0
    quality_weight_floor: float = 0.0  # gfl: lower bound of the box-loss weight (the positive's score); 0 = reference
    reach_aware: bool = False  # gfl: ATSS skips levels whose bins cannot reach the box's sides (not in the reference)
    # Test-time settings (validation and `rgfl eval`), as in the reference (notes 7.1).
    nms_pre: int = 2000  # best priors per level kept before NMS
    score_thr: float = 0.05
    nms_iou: float = 0.1  # class-aware rotated NMS
    max_per_img: int = 2000


@dataclass
class DataConfig:
    """The training set: patches written by ``rgfl split`` (or any DOTA-format folder)."""

    root: str | None = None  # SPLIT_ROOT with images/ and labelTxt/; `rgfl train --data` sets it
    classes: str = "dota1.0"  # dota1.0 | dota1.5 | dota2.0 | comma list | file with one name per line
    skip_empty: bool = True  # leave out patches without any trainable object (as mmrotate does)
    difficult: Literal["keep", "ignore", "drop"] = "keep"  # objects marked difficult 1
    truncated: Literal["keep", "ignore", "drop"] = "ignore"  # objects marked 2 (cut by the split)
    # Ground-truth box of a label quad: "edges" = the reference's le135 rule (first two edges, vertex order
    # matters; rgfl.geometry.poly2obb_edges), "min_area_rect" = the minimum-area rectangle around the 4 points.
    box_from: Literal["min_area_rect", "edges"] = "min_area_rect"
    min_edge: float = 0.0  # drop objects whose edge p1p2 or p2p3 is shorter (px, label file); the reference: 2
    # Augmentation (rgfl.data.transforms.build_transforms); the reference uses hflip 0.5 only.
    input_size: int | None = None  # resize so the longer side is this; None: keep the patch size
    scale_range: list[float] | None = None  # random rescale factor range, e.g. [0.5, 1.5]
    hflip: float = 0.5  # probability of a horizontal flip; at most one flip per sample
    vflip: float = 0.0
    dflip: float = 0.0  # diagonal flip (half turn)
    rotate90: float = 0.0  # probability of 1-3 quarter turns
    rotate: float = 0.0  # probability of a rotation by a uniform angle in [-max_angle, max_angle]
    max_angle: float = 180.0
    batch_size: int = 2  # images per process (per GPU); total batch = batch_size * world size
    workers: int | None = None  # DataLoader workers per process; None: CUDA min(8, cores per process - 1), CPU 0
    pin_memory: bool | None = None  # None: on when training on CUDA
    persistent_workers: bool = True
    prefetch_factor: int = 2
    # Images with a longer side above this, in a folder without split_manifest.json, are taken for
    # unsplit full-size images (e.g. --data DOTA/train) and refused; null turns the check off.
    max_image_side: int | None = 2048


@dataclass
class OptimizerConfig:
    """SGD with momentum (the reference) or AdamW; the learning rate is scaled linearly with the
    total batch size.

    ``lr = base_lr * total_batch / base_batch_size`` unless ``lr`` is given explicitly.
    """

    type: Literal["sgd", "adamw"] = "sgd"  # adamw: faster start from random weights (tiny CPU config)
    base_lr: float = 0.01  # the reference learning rate ...
    base_batch_size: int = 16  # ... for this total batch size (GFL: 0.01 at 8 GPUs x 2 images)
    lr: float | None = None  # explicit learning rate: disables the scaling rule
    momentum: float = 0.9  # SGD momentum; AdamW's beta1
    weight_decay: float = 1e-4
    nesterov: bool = False  # SGD only
    grad_clip: float | None = None  # max L2 norm of all gradients; None: no clipping


@dataclass
class ScheduleConfig:
    """Linear warmup over iterations, then step decay at epoch milestones (the mmdet 1x schedule)."""

    epochs: int = 12
    milestones: list[int] = field(default_factory=lambda: [8, 11])  # lr *= gamma when these epochs start
    gamma: float = 0.1
    warmup: Literal["linear", "constant", "none"] = "linear"
    warmup_iters: int = 500
    warmup_ratio: float = 0.001  # lr at iteration 0 = ratio * lr
    max_iters: int | None = None  # stop after this many iterations in total (smoke runs, benchmarks)


@dataclass
class TrainConfig:
    """How the loop runs: devices, precision, logging, checkpoints, failure handling."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun each process takes its local GPU)
    amp: Literal["off", "bf16", "fp16"] = "off"  # mixed precision on CUDA; fp16 uses a GradScaler
    channels_last: bool = False
    compile: bool = False  # torch.compile the backbone, head and loss terms (not the assignment); eager with a warning where unavailable
    sync_bn: bool = False  # SyncBatchNorm across processes (only matters with norm_eval false)
    find_unused_parameters: bool = False
    log_interval: int = 20  # iterations between log lines
    checkpoint_interval: int = 1  # epochs between checkpoints (the last epoch is always saved)
    keep_checkpoints: int = 3  # keep the newest N epoch checkpoints (the last is the final one) + the best by validation; 0 keeps all
    nonfinite_loss: Literal["stop", "skip"] = "stop"  # what a NaN/inf loss does
    max_skipped: int = 50  # with "skip": stop after this many skipped batches in a row
    tensorboard: bool = True  # write TensorBoard scalars when tensorboard is installed
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)


@dataclass
class EvalConfig:
    """Validation during training through the evaluator of ``rgfl eval``."""

    interval: int = 0  # epochs between validations; 0 turns validation off
    data: str | None = None  # split folder of the validation set (patches with labelTxt)
    batch_size: int = 2
    best_metric: Literal["AP50", "AP75", "mAP"] = "AP50"  # decides the best checkpoint kept by train.keep_checkpoints


@dataclass
class ExpectedSplitConfig:
    """The ``rgfl split`` output a config is meant for; ``rgfl train`` compares it with the split's
    manifest (``SPLIT/split_manifest.json``, :mod:`rgfl.engine.split_check`). A key left at null is
    not checked. A different truncation or IoF threshold changes which objects are trained as
    positives, so it stops training (``check: error``); a different size, step, rate or pad value
    changes the data but not the rules, and only warns.
    """

    size: int | None = None  # window side
    step: int | None = None  # distance between windows (size - overlap)
    rates: list[float] | None = None
    truncation: Literal["clip-int", "keep"] | None = None  # clip-int: `rgfl split --clip` (DOTA devkit)
    iof_thr: float | None = None
    pad_value: list[int] | None = None  # B, G, R fill of patches of images smaller than a window
    check: Literal["error", "warn", "ignore"] = "error"  # what a truncation / IoF mismatch does


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    expected_split: ExpectedSplitConfig = field(default_factory=ExpectedSplitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, validate it and apply ``section.key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found (see configs/ for the provided ones)", path)
    text = path.read_text(encoding="utf-8")
    try:
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise InputError(f"not valid YAML: {getattr(error, 'problem', error)}", path, line) from None
    lines = _key_lines(root_node)
    cfg = config_from_dict(data if data is not None else {}, source=path, lines=lines)
    return apply_overrides(cfg, overrides)


def config_from_dict(data: Any, source: str | Path | None = None, lines: dict[str, int] | None = None) -> Config:
    """Validate a nested ``{section: {key: value}}`` mapping into a :class:`Config`."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise InputError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}", source)
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise InputError(_unknown_key_message(str(name), values, list(SECTIONS), "sections"), source, lines.get(str(name)))
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise InputError(f"section '{name}' must be a mapping of key: value, got {values!r}", source, lines.get(name))
        sections[name] = _build_section(name, values, source, lines)
    return Config(**sections)


def _build_section(section: str, values: dict, source: str | Path | None, lines: dict[str, int]) -> Any:
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        if key not in allowed:
            raise InputError(_unknown_key_message(dotted, value, [f"{section}.{name}" for name in allowed], f"keys in '{section}'"), source, lines.get(dotted))
        try:
            kwargs[key] = coerce(value, hints[key])
        except ValueError as error:
            raise InputError(f"{dotted}: {error}", source, lines.get(dotted)) from None
        if kwargs[key] is not None and dotted in RANGES:
            _check_range(dotted, kwargs[key], source, lines.get(dotted))
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Ranges: a value of the right type can still be one the code divides by or loops over
# (batch_size 0, epochs -1); such a value stops at load time, naming the key and the range.
# (low, high, low_open, high_open); None = unbounded. A list value is checked item by item.

_INF = None
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "model.frozen_stages": (-1, 4, False, False),
    "model.reg_max": (1, _INF, False, False),
    "model.octave_base_scale": (0, _INF, True, False),
    "model.feat_channels": (1, _INF, False, False),
    "model.stacked_convs": (0, _INF, False, False),
    "model.fpn_channels": (1, _INF, False, False),
    "model.topk": (1, _INF, False, False),
    "model.prior_offset": (0, 1, False, True),
    "model.quality_weight_floor": (0, 1, False, False),
    "model.nms_pre": (1, _INF, False, False),
    "model.score_thr": (0, 1, False, False),
    "model.nms_iou": (0, 1, False, False),
    "model.max_per_img": (1, _INF, False, False),
    "data.min_edge": (0, _INF, False, False),
    "data.input_size": (1, _INF, False, False),
    "data.scale_range": (0, _INF, True, False),
    "data.hflip": (0, 1, False, False),
    "data.vflip": (0, 1, False, False),
    "data.dflip": (0, 1, False, False),
    "data.rotate90": (0, 1, False, False),
    "data.rotate": (0, 1, False, False),
    "data.max_angle": (0, 180, False, False),
    "data.batch_size": (1, _INF, False, False),
    "data.workers": (0, _INF, False, False),
    "data.prefetch_factor": (1, _INF, False, False),
    "data.max_image_side": (1, _INF, False, False),
    "expected_split.size": (1, _INF, False, False),
    "expected_split.step": (1, _INF, False, False),
    "expected_split.rates": (0, _INF, True, False),
    "expected_split.iof_thr": (0, 1, True, False),
    "expected_split.pad_value": (0, 255, False, False),
    "optimizer.base_lr": (0, _INF, True, False),
    "optimizer.base_batch_size": (1, _INF, False, False),
    "optimizer.lr": (0, _INF, True, False),
    "optimizer.momentum": (0, 1, False, True),
    "optimizer.weight_decay": (0, _INF, False, False),
    "optimizer.grad_clip": (0, _INF, True, False),
    "schedule.epochs": (1, _INF, False, False),
    # No upper bound: a milestone past schedule.epochs is never reached, which is what a shortened
    # run of a 1x config (--epochs 2 with milestones [8, 11]) means.
    "schedule.milestones": (1, _INF, False, False),
    "schedule.gamma": (0, _INF, True, False),
    "schedule.warmup_iters": (0, _INF, False, False),
    "schedule.warmup_ratio": (0, 1, False, False),
    "schedule.max_iters": (1, _INF, False, False),
    "train.seed": (0, _INF, False, False),
    "train.log_interval": (1, _INF, False, False),
    "train.checkpoint_interval": (1, _INF, False, False),
    "train.keep_checkpoints": (0, _INF, False, False),
    "train.max_skipped": (1, _INF, False, False),
    "eval.interval": (0, _INF, False, False),
    "eval.batch_size": (1, _INF, False, False),
}


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _check_range(dotted: str, value: Any, source: str | Path | None, line: int | None) -> None:
    low, high, low_open, high_open = RANGES[dotted]
    for item in value if isinstance(value, list) else [value]:
        below = low is not None and (item <= low if low_open else item < low)
        above = high is not None and (item >= high if high_open else item > high)
        if below or above or item != item:  # item != item: NaN
            what = "every item " if isinstance(value, list) else ""
            raise InputError(f"{dotted}: {what}must be {_range_text(low, high, low_open, high_open)}, got {value!r}", source, line)


def _unknown_key_message(key: str, value: Any, allowed: list[str], what: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown config key '{key}' (value {value!r}){hint} Allowed {what}: {', '.join(allowed)}"


def _key_lines(node: Any) -> dict[str, int]:
    """Map ``section`` and ``section.key`` to 1-based line numbers in the YAML file."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        section = str(key_node.value)
        lines[section] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                lines[f"{section}.{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


# ----------------------------------------------------------------------------------------------
# Types


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float).

    Raises:
        ValueError: with a message saying what was expected and what arrived.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "~")):
            return None
        for arg in args:
            try:
                return coerce(value, arg)
            except ValueError:
                continue
        raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("off" if value is False else "on") in choices:
            # YAML 1.1 reads a bare off/on (also no/yes) as a boolean: `amp: off`, `--set train.amp=off`.
            return "off" if value is False else "on"
        for choice in choices:  # same value and type: 2.0 or True is not the choice 2 or 1
            if value == choice and type(value) is type(choice):
                return choice
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"expected {_type_name(tp)}, got {value!r}{hint}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [coerce(item, item_type) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    raise AssertionError(f"unsupported config field type {tp}")


# ----------------------------------------------------------------------------------------------
# Overrides and output


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Return a copy of ``cfg`` with ``section.key=value`` overrides applied and validated."""
    data = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects section.key=value, got {item!r} (example: --set optimizer.lr=0.02)")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or not key:
            every_key = [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(SECTIONS[s])]
            close = difflib.get_close_matches(dotted, every_key, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise InputError(f"unknown --set key '{dotted}' (value {raw!r}){hint} Keys are section.key with section one of: {', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        hints = typing.get_type_hints(SECTIONS[section])
        if key in hints and _accepts_str(hints[key]) and not isinstance(value, (str, type(None))):
            value = raw  # a str field keeps the text as typed (e.g. pretrained=0001.pt)
        data[section][key] = value
    try:
        return config_from_dict(data, source="--set")
    except InputError as error:
        raise InputError(error.reason.replace("config key", "--set key"), None) from None


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config, header: str = "") -> str:
    body = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    return (header + "\n" if header else "") + body
