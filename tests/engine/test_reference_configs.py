"""The reference configs resolve to the reference recipe, setting by setting (docs/reproduce.md).

The fork (Xuyihaoby/rotate_detection) sets these in configs/rgfl/gfl_r50_fpn_1x.py (Fcfg),
mmdet/datasets/dotav1.py (Fds), mmdet/core/bbox/rtransforms.py (poly2obb_np v2) and its DOTA
devkit split (DOTA_devkit/ImgSplit_multi_process.py); the column "where" of docs/reproduce.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from rgfl.engine.build import build_model
from rgfl.engine.config import config_to_dict, load_config
from rgfl.engine.dry_run import derived_values
from rgfl.model.coder import make_priors
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
# (vanilla config, gfl config, split step) per row of the results table.
ROWS = {
    "train_1024_512": ("rgfl_vanilla_r50_fpn_1x_dota_le135.yaml", "rgfl_r50_fpn_1x_dota_le135.yaml", 512),
    "trainval_1024_824": ("rgfl_vanilla_r50_fpn_1x_dota_trainval_le135.yaml", "rgfl_r50_fpn_1x_dota_trainval_le135.yaml", 824),
}

# dotted config key -> the reference value (both rows; the split step is per row).
REFERENCE = {
    # split (DOTA devkit, ImgSplit_multi_process): 1024 windows, clip + IoF 0.7, black padding
    "expected_split.size": 1024,
    "expected_split.rates": [1.0],
    "expected_split.truncation": "clip-int",
    "expected_split.iof_thr": 0.7,
    "expected_split.pad_value": [0, 0, 0],
    "expected_split.check": "error",
    # loader (Fds): difficulty <= 1 trained, 2 left out; poly2obb_np v2 boxes, edges >= 2 px
    "data.classes": "dota1.0",
    "data.difficult": "keep",
    "data.truncated": "drop",
    "data.box_from": "edges",
    "data.min_edge": 2.0,
    "data.skip_empty": True,
    # pipeline (Fcfg): RResize 1024 on 1024 patches (identity), RRandomFlip 0.5 horizontal only
    "data.input_size": None,
    "data.scale_range": None,
    "data.hflip": 0.5,
    "data.vflip": 0.0,
    "data.dflip": 0.0,
    "data.rotate90": 0.0,
    "data.rotate": 0.0,
    "data.batch_size": 2,
    # model (Fcfg): ResNet-50 ImageNet, stage 1 frozen, BN statistics frozen, BN affine trained
    "model.backbone": "resnet50",
    "model.pretrained": "imagenet",
    "model.frozen_stages": 1,
    "model.norm_eval": True,
    "model.norm_affine": "trainable",
    "model.fpn_min_level": 3,
    "model.fpn_channels": 256,
    "model.feat_channels": 256,
    "model.stacked_convs": 4,
    "model.octave_base_scale": 4.0,
    "model.prior_offset": 0.0,
    "model.topk": 9,
    "model.reach_aware": False,
    # test_cfg (Fcfg)
    "model.nms_pre": 2000,
    "model.score_thr": 0.05,
    "model.nms_iou": 0.1,
    "model.max_per_img": 2000,
    # optimizer and schedule (Fcfg)
    "optimizer.type": "sgd",
    "optimizer.base_lr": 0.0025,
    "optimizer.base_batch_size": 2,
    "optimizer.lr": None,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 0.0001,
    "optimizer.nesterov": False,
    "optimizer.grad_clip": 35.0,
    "schedule.epochs": 12,
    "schedule.milestones": [8, 11],
    "schedule.gamma": 0.1,
    "schedule.warmup": "linear",
    "schedule.warmup_iters": 500,
    "schedule.warmup_ratio": 0.001,
    "schedule.max_iters": None,
    # precision: fp32
    "train.amp": "off",
}
# Vanilla head of the reference (Fhead RGFLHeadVanilla, reg_max 8); the gfl configs differ here only.
METHOD_KEYS = {"model.head", "model.reg_max"}


def flat(cfg) -> dict:
    return {f"{section}.{key}": value for section, values in config_to_dict(cfg).items() for key, value in values.items()}


@pytest.mark.parametrize("row", ROWS)
def test_vanilla_config_is_the_reference_recipe(row):
    vanilla_name, _, step = ROWS[row]
    values = flat(load_config(CONFIGS / vanilla_name))
    expected = dict(REFERENCE, **{"expected_split.step": step, "model.head": "vanilla", "model.reg_max": 8})
    wrong = {key: (values[key], value) for key, value in expected.items() if values[key] != value}
    assert not wrong, f"{vanilla_name}: (found, reference) {wrong}"


@pytest.mark.parametrize("row", ROWS)
def test_gfl_config_differs_only_in_the_method(row):
    vanilla_name, gfl_name, _ = ROWS[row]
    vanilla, gfl = flat(load_config(CONFIGS / vanilla_name)), flat(load_config(CONFIGS / gfl_name))
    differing = {key for key in vanilla if vanilla[key] != gfl[key]}
    assert differing == METHOD_KEYS, differing
    assert gfl["model.head"] == "gfl"


@pytest.mark.parametrize("gpus", [1, 8])
def test_per_image_lr_is_the_reference_at_any_world_size(gpus):
    for vanilla_name, gfl_name, _ in ROWS.values():
        for name in (vanilla_name, gfl_name):
            derived = derived_values(load_config(CONFIGS / name), num_patches=1000, world_size=gpus)
            assert derived["total_batch"] == 2 * gpus
            assert derived["lr"] == pytest.approx(0.0025 * gpus)  # 0.0025 per 2 images
            assert derived["milestone_iters"] == [8 * derived["iters_per_epoch"], 11 * derived["iters_per_epoch"]]


def test_reference_backbone_trains_bn_affine_in_stages_2_to_4_with_frozen_statistics():
    torch.manual_seed(0)
    cfg = load_config(CONFIGS / ROWS["train_1024_512"][0], ["model.pretrained=none"])
    model = build_model(cfg.model, 15).train()
    body = model.backbone.body
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    for stage in ("stem", "layer1", "layer2", "layer3", "layer4"):
        norms = [m for m in body[stage].modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(not m.training for m in norms)  # statistics frozen in train mode
        trainable = {p.requires_grad for m in norms for p in (m.weight, m.bias)}
        assert trainable == ({False} if stage in ("stem", "layer1") else {True}), stage
    norm = body["layer2"][0].bn1
    before = (norm.running_mean.clone(), norm.weight.detach().clone())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    features = model.backbone(torch.randn(1, 3, 64, 64))
    sum(f.square().mean() for f in features).backward()
    optimizer.step()
    assert torch.equal(norm.running_mean, before[0])  # statistics unchanged by a training step
    assert not torch.equal(norm.weight.detach(), before[1])  # affine parameters learn
    # The default (and the tiny config) keep FrozenBatchNorm2d.
    frozen = build_model(load_config(CONFIGS / ROWS["train_1024_512"][0], ["model.pretrained=none", "model.norm_affine=frozen"]).model, 15)
    assert all(not isinstance(m, nn.BatchNorm2d) for m in frozen.backbone.body.modules())


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_prior_centres_and_the_inside_image_rule(offset):
    priors = make_priors([(4, 5), (2, 3)], [8, 16], octave_base_scale=4, offset=offset)
    first = priors.centers[: 4 * 5].view(4, 5, 2)
    assert first[0, 0].tolist() == [offset * 8, offset * 8]
    assert first[2, 3].tolist() == [(3 + offset) * 8, (2 + offset) * 8]
    if offset == 0.0:
        # Centres < image size keep ceil(size / stride) cells per axis: mmdet's valid flags.
        height, width = 27, 33
        inside = (priors.centers[: 20, 1] < height) & (priors.centers[: 20, 0] < width)
        assert int(inside.sum()) == min(4, math.ceil(height / 8)) * min(5, math.ceil(width / 8))


def test_detector_uses_the_configured_prior_offset():
    cfg = load_config(CONFIGS / ROWS["train_1024_512"][0], ["model.pretrained=none", "model.backbone=resnet18"])
    model = build_model(cfg.model, 15).eval()
    outputs = model(torch.zeros(1, 3, 64, 64))
    assert model.priors(outputs, torch.device("cpu")).centers[0].tolist() == [0.0, 0.0]
    with pytest.raises(Exception, match="prior_offset"):
        build_model(load_config(CONFIGS / ROWS["train_1024_512"][0], ["model.pretrained=none", "model.prior_offset=1.5"]).model, 15)


def test_reference_model_weights_reload_and_fold_for_inference():
    # What `rgfl eval` does with a checkpoint of a reference config: rebuild from the stored config,
    # load the weights (trainable-affine BatchNorms carry num_batches_tracked), fold the norms.
    from rgfl.engine.build import load_model_state
    from rgfl.model.fuse import fold_batchnorms

    torch.manual_seed(0)
    cfg = load_config(CONFIGS / ROWS["train_1024_512"][0], ["model.pretrained=none", "model.backbone=resnet18"])
    trained = build_model(cfg.model, 15).train()
    with torch.no_grad():
        for module in trained.backbone.body.modules():
            if isinstance(module, nn.BatchNorm2d):  # as if training had moved them
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    reloaded = build_model(cfg.model, 15)
    load_model_state(reloaded, trained.state_dict(), "checkpoint.pt")
    images = torch.rand(1, 3, 64, 64) * 255
    expected = trained.eval()(images).cls_logits
    fold_batchnorms(reloaded.eval())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in reloaded.backbone.body.modules())
    assert torch.allclose(reloaded(images).cls_logits, expected, atol=1e-4)
