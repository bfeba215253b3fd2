"""Head variants: old checkpoints, the layout contract, and the gflv2 distribution-guided quality."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rgfl.losses.gfl import quality_focal_loss
from rgfl.model.detector import RotatedGFL
from rgfl.model.heads import HEAD_VARIANTS, HEADS, HeadOptions, build_head
from rgfl.model.heads.gflv2 import DistributionQuality, joint_logit
from rgfl.structures import Target
from tests.conftest import DEVICES, REPO_ROOT
from tests.model.test_detector import NUM_CLASSES, _small_model, _total

OLD_HEADS = Path(__file__).parent / "data" / "old_heads.pt"


# ---------------------------------------------------------------------------------- old checkpoints
@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_head_weights_saved_before_the_variant_modules_load_and_give_the_same_outputs(head):
    # The file holds what the single head class of commit 01981c2 computed (tests/model/data/make_old_heads.py).
    record = torch.load(OLD_HEADS, weights_only=True)
    old = record["heads"][head]
    model = RotatedGFL(3, head=head, depth=18, pretrained="none", **record["settings"]).eval()
    state = {k: v.float() for k, v in old["state"].items()}
    model.load_state_dict({**model.state_dict(), **{f"head.{k}": v for k, v in state.items()}}, strict=True)
    assert set(model.head.state_dict()) == set(state)  # no key renamed, added or lost
    with torch.no_grad():
        outputs = model.head([f.float() for f in old["features"]], model.strides)
        detections = model.postprocess(outputs, [(64, 64), (64, 48)])
    torch.testing.assert_close(outputs.cls_logits, old["cls_logits"])
    torch.testing.assert_close(outputs.box_logits, old["box_logits"])
    if old["angle_logits"] is None:
        assert outputs.angle_logits is None
    else:
        torch.testing.assert_close(outputs.angle_logits, old["angle_logits"])
    assert [len(d) for d in detections] == [len(d["scores"]) for d in old["detections"]]
    assert sum(len(d) for d in detections) > 10
    for new, ref in zip(detections, old["detections"]):
        torch.testing.assert_close(new.boxes, ref["boxes"], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(new.scores, ref["scores"])
        assert torch.equal(new.labels, ref["labels"])


def test_a_checkpoint_of_one_head_does_not_load_into_another():
    gfl = _small_model("gfl", feat_channels=32, stacked_convs=1, fpn_channels=32)
    gflv2 = _small_model("gflv2", feat_channels=32, stacked_convs=1, fpn_channels=32)
    with pytest.raises(RuntimeError, match="dgqp"):
        gflv2.load_state_dict(gfl.state_dict())
    with pytest.raises(RuntimeError, match="dgqp"):
        gfl.load_state_dict(gflv2.state_dict())


# ---------------------------------------------------------------------------------- layout
def test_no_variant_branch_outside_the_variant_modules():
    # A comparison with a head name anywhere but rgfl/model/heads/ is a variant branch in shared code.
    branch = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](gfl|gflv2|vanilla)["']""")
    offenders = []
    for path in list((REPO_ROOT / "rgfl").rglob("*.py")) + list((REPO_ROOT / "cli").rglob("*.py")):
        if "heads" in path.relative_to(REPO_ROOT).parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if branch.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_variant_is_a_config_choice():
    import typing

    from rgfl.engine.config import ModelConfig

    assert set(typing.get_args(typing.get_type_hints(ModelConfig)["head"])) == set(HEAD_VARIANTS) == {"gfl", "vanilla", "gflv2"}
    for name, cls in HEADS.items():
        assert cls.name == name


# ---------------------------------------------------------------------------------- gflv2: DGQP
def test_dgqp_statistics_are_top4_of_each_side_and_their_mean():
    dgqp = DistributionQuality(num_bins=6, topk=4)
    probs = torch.tensor(
        [
            [0.5, 0.3, 0.1, 0.05, 0.05, 0.0],  # a sharp side
            [1 / 6] * 6,  # a flat side
            [0.0, 0.45, 0.05, 0.0, 0.45, 0.05],  # a bimodal side
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # a side on the last bin
        ]
    )
    stats = dgqp.statistics(probs[None])  # [1, 20]
    expected = [
        [0.5, 0.3, 0.1, 0.05, 0.2375],
        [1 / 6] * 4 + [1 / 6],
        [0.45, 0.45, 0.05, 0.05, 0.25],
        [1.0, 0.0, 0.0, 0.0, 0.25],
    ]
    torch.testing.assert_close(stats, torch.tensor(expected).reshape(1, 20))


def test_dgqp_starts_at_a_quality_of_one_half_and_passes_gradients_to_the_distributions():
    torch.manual_seed(0)
    dgqp = DistributionQuality(num_bins=9)
    logits = (torch.randn(2, 50, 36) * 3).requires_grad_()
    quality = torch.sigmoid(dgqp(logits))
    assert quality.shape == (2, 50)
    assert float((quality.detach() - 0.5).abs().max()) < 0.01
    quality.sum().backward()
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in dgqp.parameters())
    with pytest.raises(ValueError, match="reg_max >= 3"):
        DistributionQuality(num_bins=3)


def test_dgqp_tells_sharp_sides_from_flat_ones_once_trained():
    # Supervise the quality with 1 for sharp distributions and 0 for flat or bimodal ones: the MLP
    # over (top-4, mean) must separate them (what GFocalV2 relies on).
    generator = torch.Generator().manual_seed(0)
    sharp = torch.zeros(64, 4, 9)
    sharp.scatter_(2, torch.randint(0, 8, (64, 4, 1), generator=generator), 6.0)
    flat = torch.randn(32, 4, 9, generator=generator) * 0.1
    bimodal = torch.zeros(32, 4, 9)
    bimodal[:, :, 1] = 4.0
    bimodal[:, :, 6] = 4.0
    logits = torch.cat([sharp, flat, bimodal]).flatten(1)
    target = torch.cat([torch.ones(64), torch.zeros(64)])
    torch.manual_seed(0)
    dgqp = DistributionQuality(num_bins=9)
    optimizer = torch.optim.Adam(dgqp.parameters(), lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(dgqp(logits), target).backward()
        optimizer.step()
    quality = torch.sigmoid(dgqp(logits)).detach()
    assert float(quality[:64].min()) > 0.9 and float(quality[64:].max()) < 0.1


def test_joint_logit_is_the_logit_of_the_product_everywhere():
    c = torch.linspace(-40, 40, 41, dtype=torch.float64).repeat_interleave(41)
    z = torch.linspace(-40, 40, 41, dtype=torch.float64).repeat(41)
    expected = torch.sigmoid(c) * torch.sigmoid(z)
    joint = joint_logit(c.float().requires_grad_(), z.float())
    assert joint.dtype == torch.float32 and bool(torch.isfinite(joint).all())
    torch.testing.assert_close(torch.sigmoid(joint.double()), expected, rtol=1e-5, atol=0)
    joint.sum().backward()


def test_qfl_of_the_joint_logit_equals_gfocalv2_qfl_on_the_product():
    # GFocalV2 trains QFL on the probability sigmoid(c) * q (binary cross-entropy without logits).
    generator = torch.Generator().manual_seed(0)
    c = torch.randn(20, 3, generator=generator) * 3
    z = torch.randn(20, 1, generator=generator) * 2
    target = torch.zeros(20, 3)
    target[torch.arange(0, 20, 2), torch.randint(0, 3, (10,), generator=generator)] = torch.rand(10, generator=generator)
    p = (torch.sigmoid(c) * torch.sigmoid(z)).double()
    reference = F.binary_cross_entropy(p, target.double(), reduction="none") * (p - target).abs().pow(2)
    torch.testing.assert_close(quality_focal_loss(joint_logit(c, z), target).double(), reference, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------- gflv2 detector
def test_gflv2_outputs_scores_times_quality():
    model = _small_model("gflv2")
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    outputs = model(images)
    gfl_like = RotatedGFL(NUM_CLASSES, head="gfl", depth=18, pretrained="none")
    gfl_like.load_state_dict({k: v for k, v in model.state_dict().items() if "dgqp" not in k})
    plain = gfl_like(images)  # the same towers without the quality branch
    assert outputs.box_logits.shape == plain.box_logits.shape == (2, outputs.cls_logits.shape[1], 4 * 17)
    assert outputs.quality is not None and outputs.quality.shape == outputs.cls_logits.shape[:2]
    torch.testing.assert_close(outputs.box_logits, plain.box_logits)
    torch.testing.assert_close(outputs.angle_logits, plain.angle_logits)
    expected = torch.sigmoid(plain.cls_logits) * outputs.quality[..., None]
    torch.testing.assert_close(model.head.scores(outputs.cls_logits), expected, rtol=1e-5, atol=1e-7)
    assert float((outputs.quality.detach() - 0.5).abs().max()) < 0.01  # fresh quality branch


def test_gflv2_gradients_reach_every_trainable_parameter():
    model = _small_model("gflv2", frozen_stages=1)
    boxes = torch.tensor(
        [
            [60.0, 60.0, 28.0, 20.0, 0.2],
            [300.0, 80.0, 60.0, 50.0, 1.0],
            [100.0, 280.0, 120.0, 100.0, -0.3],
            [192.0, 192.0, 380.0, 370.0, 0.05],
            [250.0, 250.0, 240.0, 200.0, 0.7],
        ]
    )
    torch.nn.init.normal_(model.head.reg_conv.weight, std=0.5)  # boxes that cross their targets (see test_detector)
    images = torch.randint(0, 256, (1, 3, 384, 384), dtype=torch.uint8)
    losses = model.compute_losses(images, [Target(boxes, torch.tensor([0, 1, 2, 0, 1]))])
    assert set(losses) == {"loss_qfl", "loss_bbox", "loss_dfl", "num_pos", "pos_iou"}
    _total(losses).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert missing == []


@pytest.mark.parametrize("device", DEVICES)
def test_gflv2_losses_and_predictions_under_autocast_and_without_objects(device):
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    model = _small_model("gflv2").to(device)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8, device=device)
    empty = Target(torch.zeros(0, 5, device=device), torch.zeros(0, dtype=torch.long, device=device))
    boxes = torch.tensor([[40.0, 30.0, 40.0, 20.0, 0.3]], device=device)
    with torch.autocast(device_type=device, dtype=dtype):
        losses = model.compute_losses(images, [empty, Target(boxes, torch.tensor([1], device=device))])
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    _total(losses).backward()
    assert model.head.dgqp.hidden.weight.grad is not None
    model.eval()
    torch.nn.init.constant_(model.head.cls_conv.bias, 3.0)  # scores above the threshold
    detections = model.predict(images)
    assert all(0 < len(d) and bool((d.scores <= 0.5 + 1e-3).all()) for d in detections)  # sigmoid(c) * ~0.5


def test_gflv2_options_follow_gfl():
    model = _small_model("gflv2", reach_aware=True, quality_weight_floor=0.5, reg_max=8)
    assert model.assigner.reach == 8.0 and model.quality_weight_floor == 0.5 and model.loss_bbox_weight == 2.0
    with pytest.raises(ValueError, match="reg_max must be >= 3"):
        _small_model("gflv2", reg_max=2)


def test_gflv2_reference_config_differs_from_the_gfl_one_only_in_the_head():
    import dataclasses

    from rgfl.engine.config import load_config

    gfl = load_config(REPO_ROOT / "configs" / "rgfl_r50_fpn_1x_dota_le135.yaml")
    gflv2 = load_config(REPO_ROOT / "configs" / "rgflv2_r50_fpn_1x_dota_le135.yaml")
    assert gflv2.model.head == "gflv2" and gfl.model.head == "gfl"
    assert dataclasses.replace(gflv2, model=dataclasses.replace(gflv2.model, head="gfl")) == gfl


def test_gflv2_exports_to_onnx_with_its_quality_in_the_scores(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np

    from rgfl.engine.build import build_model, load_detector
    from rgfl.engine.checkpoint import save_checkpoint
    from rgfl.engine.config import config_to_dict, load_config
    from rgfl.export.onnx import OnnxDetector, export_onnx
    from tests.engine.helpers import TINY_CONFIG
    from tests.test_export_onnx import assert_same_detections

    overrides = ["data.classes=plane,ship", "data.input_size=64", "model.stacked_convs=1", "model.nms_pre=100", "model.head=gflv2"]
    cfg = load_config(TINY_CONFIG, overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, 2)
    with torch.no_grad():
        model.head.cls_conv.weight.mul_(8.0)
        model.head.cls_conv.bias.fill_(0.0)
        model.head.reg_conv.weight.mul_(20.0)  # boxes of many shapes and angles, distributions of many shapes
        torch.nn.init.normal_(model.head.dgqp.hidden.weight, std=1.0)  # qualities spread over (0, 1)
        torch.nn.init.normal_(model.head.dgqp.out.weight, std=0.3)
    path = save_checkpoint({"config": config_to_dict(cfg), "model": model.state_dict()}, tmp_path / "gflv2.pt")
    detector, _ = load_detector(path)
    export_onnx(detector, ("plane", "ship"), tmp_path / "gflv2.onnx", 64, batch=None)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    sizes = [(64, 64), (64, 40)]
    outputs = detector(images)
    assert float(outputs.quality.detach().std()) > 0.1
    expected = detector.predict(images, sizes)
    assert sum(len(d) for d in expected) > 30
    assert_same_detections(expected, OnnxDetector(tmp_path / "gflv2.onnx").predict(images, sizes))


# ---------------------------------------------------------------------------------- paired towers
@pytest.mark.parametrize("stacked_convs", [4, 1, 0])
def test_paired_towers_equal_the_two_separate_towers(stacked_convs):
    # The head runs its class and box towers as one tower of twice the channels (one conv per
    # layer, grouped after the first; GroupNorm of twice the groups); torch's own modules, run
    # one tower at a time, are the reference.
    torch.manual_seed(0)
    head = build_head("gfl", NUM_CLASSES, 8, HeadOptions(), in_channels=64, feat_channels=64, stacked_convs=stacked_convs).double()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.add_(torch.randn_like(parameter))  # GroupNorm affine away from (1, 0)
    feature = torch.randn(2, 64, 9, 7, dtype=torch.float64, requires_grad=True)
    cls_feat, reg_feat = head.paired_towers(feature, head.paired_tower_layers())
    torch.testing.assert_close(cls_feat, head.cls_tower(feature), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reg_feat, head.reg_tower(feature), rtol=1e-12, atol=1e-12)
    if stacked_convs:
        (cls_feat.square().sum() + reg_feat.sum()).backward()
        paired = {name: p.grad.clone() for name, p in head.named_parameters() if p.grad is not None}
        head.zero_grad()
        (head.cls_tower(feature).square().sum() + head.reg_tower(feature).sum()).backward()
        separate = {name: p.grad for name, p in head.named_parameters() if p.grad is not None}
        assert paired.keys() == separate.keys() and len(paired) == 6 * stacked_convs
        for name in paired:
            torch.testing.assert_close(paired[name], separate[name], rtol=1e-10, atol=1e-12)
