from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rgfl.engine.config import Config, config_from_dict, config_to_dict, config_to_yaml, load_config
from rgfl.errors import InputError
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_provided_configs_load_and_state_their_split(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert "Expects:" in path.read_text(), "every config says which split setting it expects"
    # The resolved form reads back to the same config.
    assert config_from_dict(yaml.safe_load(config_to_yaml(cfg))) == cfg


def test_expected_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {
        "rgfl_r50_fpn_1x_dota_le135.yaml",
        "rgfl_r50_fpn_1x_dota_trainval_le135.yaml",
        "rgfl_vanilla_r50_fpn_1x_dota_le135.yaml",
        "rgfl_vanilla_r50_fpn_1x_dota_trainval_le135.yaml",
        "rgfl_r18_tiny_cpu.yaml",
    } <= names


def test_reference_recipes():
    gfl = load_config(REPO_ROOT / "configs" / "rgfl_r50_fpn_1x_dota_le135.yaml")
    vanilla = load_config(REPO_ROOT / "configs" / "rgfl_vanilla_r50_fpn_1x_dota_le135.yaml")
    # the same per-image lr as the reference (0.0025 per 2 images); the full table: test_reference_configs.py
    assert (gfl.optimizer.base_lr, gfl.optimizer.base_batch_size) == (0.0025, 2)
    assert (vanilla.optimizer.base_lr, vanilla.optimizer.base_batch_size) == (0.0025, 2)
    for cfg in (gfl, vanilla):
        assert cfg.schedule.milestones == [8, 11] and cfg.schedule.epochs == 12
        assert (cfg.schedule.warmup_iters, cfg.schedule.warmup_ratio) == (500, 0.001)
        assert cfg.model.backbone == "resnet50" and cfg.data.hflip == 0.5
    assert vanilla.model.head == "vanilla" and vanilla.model.reg_max == 8


def test_missing_sections_keep_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "optimizer:\n  momentum: 0.8\n"))
    assert cfg.optimizer.momentum == 0.8
    assert cfg.schedule == Config().schedule


def test_unknown_key_names_key_value_line_and_suggestion(tmp_path):
    path = write(tmp_path, "model:\n  head: gfl\noptimizer:\n  momentum: 0.9\n  weight_decy: 0.0001\n")
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:5" in message
    assert "optimizer.weight_decy" in message and "0.0001" in message
    assert "did you mean 'optimizer.weight_decay'" in message
    assert "optimizer.momentum" in message  # the allowed keys are listed


def test_unknown_section(tmp_path):
    with pytest.raises(InputError, match=r"unknown config key 'optimiser'.*did you mean 'optimizer'"):
        load_config(write(tmp_path, "optimiser:\n  lr: 0.01\n"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  head: gfll\n", r"model.head: expected one of gfl, vanilla, gflv2, got 'gfll'; did you mean 'gfl'"),
        ("optimizer:\n  momentum: fast\n", r"optimizer.momentum: expected a number, got 'fast'"),
        ("schedule:\n  epochs: 1.5\n", r"schedule.epochs: expected an integer, got 1.5"),
        ("schedule:\n  milestones: 8\n", r"schedule.milestones: expected a list of an integer"),
        ("train:\n  amp: yes\n", r"train.amp: expected one of off, bf16, fp16, got True"),
        ("optimizer:\n  type: adam\n", r"optimizer.type: expected one of sgd, adamw, got 'adam'"),
        ("model: [1, 2]\n", r"section 'model' must be a mapping"),
        ("model:\n  head: [gfl\n", r"not valid YAML"),
    ],
)
def test_bad_values(tmp_path, text, expected):
    with pytest.raises(InputError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_typed_by_the_field(tmp_path):
    path = write(tmp_path, "")
    cfg = load_config(
        path,
        [
            "optimizer.base_lr=0.02",
            "schedule.milestones=[16, 22]",
            "optimizer.grad_clip=null",
            "model.pretrained=0001",  # a str field keeps the text as typed
            "train.amp=bf16",
            "data.scale_range=[0.5, 1.5]",
            "optimizer.weight_decay=1e-4",
            "model.fpn_min_level=2",
        ],
    )
    assert cfg.optimizer.base_lr == 0.02 and isinstance(cfg.optimizer.base_lr, float)
    assert cfg.schedule.milestones == [16, 22]
    assert cfg.optimizer.grad_clip is None
    assert cfg.model.pretrained == "0001"
    assert cfg.train.amp == "bf16"
    assert cfg.data.scale_range == [0.5, 1.5]
    assert cfg.optimizer.weight_decay == 1e-4
    assert cfg.model.fpn_min_level == 2 and type(cfg.model.fpn_min_level) is int


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lrr=0.1", r"unknown --set key 'optimizer.lrr'.*did you mean 'optimizer.lr'"),
        ("schedule.epochs=many", r"schedule.epochs: expected an integer, got 'many'"),
        ("model.fpn_min_level=4", r"model.fpn_min_level: expected one of 2, 3, got 4"),
        ("model.fpn_min_level=2.0", r"model.fpn_min_level: expected one of 2, 3, got 2.0"),
        ("epochs", r"--set expects section.key=value"),
        ("sched.epochs=3", r"unknown --set key 'sched.epochs'.*did you mean 'schedule.epochs'"),
    ],
)
def test_bad_overrides(tmp_path, override, expected):
    with pytest.raises(InputError, match=expected):
        load_config(write(tmp_path, ""), [override])


def test_dict_round_trip():
    cfg = Config()
    cfg.optimizer.lr = 0.5
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_type_builds_that_optimizer_over_trainable_parameters(tmp_path, kind):
    import torch

    from rgfl.engine.build import build_optimizer

    cfg = load_config(write(tmp_path, f"optimizer:\n  type: {kind}\n  momentum: 0.85\n  weight_decay: 0.05\n"))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    optimizer = build_optimizer(model, cfg.optimizer, lr=0.003)
    assert type(optimizer) is {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[kind]
    (group,) = optimizer.param_groups
    assert len(group["params"]) == 3 and group["lr"] == 0.003 and group["weight_decay"] == 0.05
    assert (group["betas"][0] if kind == "adamw" else group["momentum"]) == 0.85


def test_model_keys_reach_the_detector(tmp_path):
    from rgfl.engine.build import build_model

    cfg = load_config(REPO_ROOT / "configs" / "rgfl_r18_tiny_cpu.yaml", ["model.reach_aware=true", "model.reg_max=12"])
    model = build_model(cfg.model, 3)
    assert model.assigner.reach == 12.0
    assert model.strides == [4, 8, 16, 32, 64, 128] and model.backbone.fpn.layer_blocks[0][0].out_channels == 96
    assert model.head.cls_tower[0].out_channels == 64
    plain = build_model(load_config(REPO_ROOT / "configs" / "rgfl_r18_tiny_cpu.yaml", ["model.fpn_min_level=3"]).model, 3)
    assert plain.assigner.reach is None and plain.strides == [8, 16, 32, 64, 128]


def test_a_bare_off_is_the_choice_off_not_a_boolean(tmp_path):
    # YAML reads `off` as false; train.amp's choices are the strings off/bf16/fp16.
    from rgfl.engine.config import apply_overrides, load_config

    base = Path(__file__).resolve().parents[2] / "configs" / "rgfl_r18_tiny_cpu.yaml"
    cfg = load_config(base, ["train.amp=bf16"])
    assert apply_overrides(cfg, ["train.amp=off"]).train.amp == "off"
    text = base.read_text() + "\n"
    written = tmp_path / "amp_off.yaml"
    written.write_text(text.replace("train:\n", "train:\n  amp: off\n", 1) if "train:\n" in text else text + "train:\n  amp: off\n")
    assert load_config(written).train.amp == "off"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=0", r"data.batch_size: must be >= 1, got 0"),
        ("optimizer.base_batch_size=0", r"optimizer.base_batch_size: must be >= 1, got 0"),
        ("schedule.epochs=-1", r"schedule.epochs: must be >= 1, got -1"),
        ("schedule.milestones=[0, 8]", r"schedule.milestones: every item must be >= 1, got \[0, 8\]"),
        ("data.workers=-1", r"data.workers: must be >= 0, got -1"),
        ("optimizer.lr=0", r"optimizer.lr: must be > 0, got 0.0"),
        ("optimizer.base_lr=nan", r"optimizer.base_lr: must be > 0, got nan"),
        ("schedule.warmup_iters=-5", r"schedule.warmup_iters: must be >= 0, got -5"),
        ("train.keep_checkpoints=-1", r"train.keep_checkpoints: must be >= 0, got -1"),
        ("data.hflip=1.5", r"data.hflip: must be in \[0, 1\], got 1.5"),
        ("data.input_size=0", r"data.input_size: must be >= 1, got 0"),
        ("optimizer.momentum=1", r"optimizer.momentum: must be in \[0, 1\), got 1.0"),
        ("expected_split.iof_thr=0", r"expected_split.iof_thr: must be in \(0, 1\], got 0.0"),
        ("eval.batch_size=0", r"eval.batch_size: must be >= 1, got 0"),
    ],
)
def test_out_of_range_overrides_name_key_and_range(tmp_path, override, expected):
    with pytest.raises(InputError, match=expected) as info:
        load_config(write(tmp_path, ""), [override])
    assert "\n" not in str(info.value)


def test_out_of_range_value_in_a_file_names_file_and_line(tmp_path):
    path = write(tmp_path, "data:\n  hflip: 0.5\n  batch_size: 0\n")
    with pytest.raises(InputError, match=r"data.batch_size: must be >= 1, got 0") as info:
        load_config(path)
    assert f"{path}:3" in str(info.value)


def test_range_bounds_and_null_are_accepted(tmp_path):
    cfg = load_config(
        write(tmp_path, ""),
        ["data.batch_size=1", "data.workers=0", "schedule.warmup_iters=0", "train.keep_checkpoints=0", "data.hflip=1",
         "data.input_size=null", "optimizer.lr=null", "schedule.milestones=[]", "schedule.epochs=1", "model.frozen_stages=-1"],
    )  # fmt: skip
    assert (cfg.data.batch_size, cfg.schedule.epochs, cfg.schedule.milestones) == (1, 1, [])
    # A milestone past the last epoch is never reached: a shortened run of a 1x config keeps its milestones.
    assert load_config(write(tmp_path, ""), ["schedule.epochs=2"]).schedule.milestones == [8, 11]


def test_every_range_names_a_numeric_config_key():
    from rgfl.engine.config import RANGES, SECTIONS

    for dotted in RANGES:
        section, key = dotted.split(".")
        assert key in {f.name for f in dataclasses.fields(SECTIONS[section])}, dotted
