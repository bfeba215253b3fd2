"""RotatedGFL: shapes, gradients, empty and crowded images, weights loading, inference contract."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from rgfl.model.detector import RotatedGFL, _closest_representation
from rgfl.structures import Target
from tests.conftest import DEVICES

NUM_CLASSES = 3


def _small_model(head: str, **kwargs) -> RotatedGFL:
    torch.manual_seed(0)
    return RotatedGFL(NUM_CLASSES, head=head, depth=18, pretrained="none", **kwargs)


def _total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(value for key, value in losses.items() if key.startswith("loss"))


def _scene_targets(device="cpu") -> list[Target]:
    boxes = torch.tensor([[40.0, 50.0, 40.0, 20.0, 0.3], [70.0, 30.0, 30.0, 10.0, 2.0], [90.0, 90.0, 60.0, 18.0, -0.6]])
    return [Target(boxes.to(device), torch.tensor([0, 2, 1], device=device))]


def _ceil_chain(size: int) -> list[int]:
    # conv1 (s2), maxpool (s2), layer2..4 (s2 each), P6, P7 (s2): every stride-2 op rounds up.
    sizes, value = [], size
    for step in range(7):
        value = math.ceil(value / 2)
        if step >= 2:
            sizes.append(value)
    return sizes


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_output_shapes_on_every_level_for_odd_sizes(head):
    model = _small_model(head)
    images = torch.randint(0, 256, (2, 3, 97, 131), dtype=torch.uint8)
    outputs = model(images)
    expected_sizes = list(zip(_ceil_chain(97), _ceil_chain(131)))
    assert outputs.level_sizes == expected_sizes == [(13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]
    num_priors = sum(h * w for h, w in expected_sizes)
    bins = model.reg_max + 1
    assert outputs.cls_logits.shape == (2, num_priors, NUM_CLASSES)
    assert outputs.box_logits.shape == (2, num_priors, (4 if head == "gfl" else 5) * bins)
    if head == "gfl":
        assert outputs.angle_logits is not None and outputs.angle_logits.shape == (2, num_priors)
    else:
        assert outputs.angle_logits is None
    per_level = outputs.split_levels(outputs.cls_logits)
    assert [t.shape[1] for t in per_level] == [h * w for h, w in expected_sizes]
    priors = model.priors(outputs, images.device)
    assert priors.centers.shape == (num_priors, 2)
    assert model.reg_max == (16 if head == "gfl" else 8)


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_gradients_reach_every_trainable_parameter(head):
    model = _small_model(head, frozen_stages=1)
    # Objects of five sizes so that every level has positives (each gfl level has its own Scale):
    # anchors are 32, 64, 128, 256 and 512 px; the large box is closest to the 512 anchor of P7.
    boxes = torch.tensor(
        [
            [60.0, 60.0, 28.0, 20.0, 0.2],
            [300.0, 80.0, 60.0, 50.0, 1.0],
            [100.0, 280.0, 120.0, 100.0, -0.3],
            [192.0, 192.0, 380.0, 370.0, 0.05],
            [250.0, 250.0, 240.0, 200.0, 0.7],
        ]
    )
    # At initialisation every gfl box is ~16 strides wide and encloses its ground truth, and the IoU
    # of an enclosing box does not depend on its angle (zero angle gradient until boxes shrink, which
    # takes a few steps). Spread the box distributions so predicted and true boxes cross already.
    torch.nn.init.normal_(model.head.reg_conv.weight, std=0.5)
    images = torch.randint(0, 256, (1, 3, 384, 384), dtype=torch.uint8)
    outputs = model(images)
    target = Target(boxes, torch.tensor([0, 1, 2, 0, 1]))
    result = model.assign(model.priors(outputs, images.device), target)
    positives_per_level = [int(p.sum()) for p in result.positive.split([h * w for h, w in outputs.level_sizes])]
    assert all(count > 0 for count in positives_per_level), positives_per_level
    losses = model.losses(outputs, [target])
    _total(losses).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    assert missing == []
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("backbone.body.stem", "backbone.body.layer1")) for n in frozen)


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
@pytest.mark.parametrize("device", DEVICES)
def test_zero_ground_truths(head, device):
    model = _small_model(head).to(device)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8, device=device)
    empty = Target(torch.zeros(0, 5, device=device), torch.zeros(0, dtype=torch.long, device=device))
    losses = model.compute_losses(images, [empty, empty])
    assert float(losses["num_pos"]) == 0
    assert float(losses["loss_bbox"].detach()) == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()
    cls_grad = model.head.cls_conv.weight.grad
    assert cls_grad is not None and bool(cls_grad.abs().sum() > 0)  # negatives still train the scores


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_hundreds_of_tiny_ground_truths(head):
    generator = torch.Generator().manual_seed(0)
    num = 400
    boxes = torch.stack(
        [
            4 + torch.rand(num, generator=generator) * 248,
            4 + torch.rand(num, generator=generator) * 248,
            2 + torch.rand(num, generator=generator) * 6,
            1 + torch.rand(num, generator=generator) * 3,
            -math.pi / 4 + torch.rand(num, generator=generator) * math.pi,
        ],
        dim=1,
    )
    labels = torch.randint(0, NUM_CLASSES, (num,), generator=generator)
    ignore = torch.rand(num, generator=generator) < 0.1
    model = _small_model(head)
    images = torch.randint(0, 256, (1, 3, 256, 256), dtype=torch.uint8)
    target = Target(boxes, labels, ignore)
    outputs = model(images)
    priors = model.priors(outputs, images.device)
    result = model.assign(priors, target)
    # Each positive anchor's center lies inside its (non-ignored) box; ignored boxes give no positives.
    positive_gt = result.gt_index[result.positive]
    assert not bool(ignore[positive_gt].any())
    assert bool(result.positive.any())
    losses = model.losses(outputs, [target])
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_stride4_level_takes_the_tiny_cars_of_a_parking_row(head):
    # Six 15 x 7 px cars side by side, centres 9 px apart (1-2 px gaps): about one P3 stride apart.
    centers_v = torch.arange(6, dtype=torch.float32) * 9.0
    theta = 0.4
    boxes = torch.stack(
        [
            100 - centers_v * math.sin(theta),
            60 + centers_v * math.cos(theta),
            torch.full((6,), 15.0),
            torch.full((6,), 7.0),
            torch.full((6,), theta),
        ],
        dim=1,
    )
    target = Target(boxes, torch.zeros(6, dtype=torch.long))
    images = torch.randint(0, 256, (1, 3, 160, 192), dtype=torch.uint8)
    model = _small_model(head, fpn_min_level=2, fpn_channels=32, feat_channels=32, stacked_convs=1)
    outputs = model(images)
    assert outputs.strides == [4, 8, 16, 32, 64, 128] == model.strides
    assert outputs.level_sizes[:2] == [(40, 48), (20, 24)] and len(outputs.level_sizes) == 6
    result = model.assign(model.priors(outputs, images.device), target)
    level_of = torch.repeat_interleave(torch.arange(6), torch.tensor([h * w for h, w in outputs.level_sizes]))
    # Every car gets positives, and on the stride-4 level, where its 16 px anchors match it best.
    per_car = torch.bincount(result.gt_index[result.positive], minlength=6)
    assert bool((per_car >= 5).all()), per_car.tolist()
    assert set(level_of[result.positive].tolist()) == {0}
    losses = model.losses(outputs, [target])
    _total(losses).backward()
    lateral = model.backbone.fpn.inner_blocks[0][0].weight  # C2 -> P2
    assert lateral.shape[1] == 64 and lateral.grad is not None and bool(lateral.grad.abs().sum() > 0)
    # The reference pyramid for comparison: the same cars share P3 points, fewer positives each.
    reference = _small_model(head, fpn_channels=32, feat_channels=32, stacked_convs=1)
    ref_outputs = reference(images)
    ref_result = reference.assign(reference.priors(ref_outputs, images.device), target)
    ref_per_car = torch.bincount(ref_result.gt_index[ref_result.positive], minlength=6)
    assert int(ref_per_car.sum()) < int(per_car.sum())


def test_reach_aware_assignment_gives_a_pier_only_priors_that_reach_its_ends():
    # 300 x 9 px at 45 degrees: from a stride-8 or stride-16 prior its ends are 150 px away, beyond
    # the 8 bins (reg_max 8) of a side; the reach-aware detector trains it from strides >= 32.
    target = Target(torch.tensor([[256.0, 256.0, 300.0, 9.0, math.pi / 4]]), torch.tensor([1]))
    images = torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8)
    strides_used = {}
    for reach_aware in (False, True):
        model = _small_model("gfl", reg_max=8, reach_aware=reach_aware, feat_channels=32, stacked_convs=1)
        outputs = model(images)
        priors = model.priors(outputs, images.device)
        result = model.assign(priors, target)
        assert bool(result.positive.any())
        strides_used[reach_aware] = set(priors.strides[result.positive].flatten().tolist())
    assert strides_used[False] <= {8.0, 16.0}
    assert strides_used[True] and min(strides_used[True]) >= 32.0


def test_pretrained_from_local_state_dict(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = RotatedGFL(NUM_CLASSES, depth=18, pretrained=str(path))
    torch.testing.assert_close(model.backbone.body["layer3"][0].conv1.weight, reference.layer3[0].conv1.weight)
    torch.testing.assert_close(model.backbone.body["stem"][1].running_var, reference.bn1.running_var)
    with pytest.raises(FileNotFoundError, match="not found"):
        RotatedGFL(NUM_CLASSES, depth=18, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="ResNet-34"):
        RotatedGFL(NUM_CLASSES, depth=34, pretrained=str(path))


def test_bad_arguments_say_what_arrived():
    with pytest.raises(ValueError, match="head must be one of"):
        RotatedGFL(NUM_CLASSES, head="fcos", pretrained="none", depth=18)
    with pytest.raises(ValueError, match="depth must be one of"):
        RotatedGFL(NUM_CLASSES, depth=42, pretrained="none")
    with pytest.raises(ValueError, match="first FPN level must be one of .2, 3. .P2 or P3., got 4"):
        RotatedGFL(NUM_CLASSES, depth=18, pretrained="none", fpn_min_level=4)
    with pytest.raises(ValueError, match="reach_aware assignment is for the gfl head"):
        RotatedGFL(NUM_CLASSES, head="vanilla", depth=18, pretrained="none", reach_aware=True)
    with pytest.raises(ValueError, match="quality_weight_floor is for the gfl head"):
        RotatedGFL(NUM_CLASSES, head="vanilla", depth=18, pretrained="none", quality_weight_floor=0.2)
    model = _small_model("gfl")
    bad = Target(torch.tensor([[10.0, 10.0, 5.0, 5.0, 0.0]]), torch.tensor([NUM_CLASSES]))
    with pytest.raises(ValueError, match="labels must be in"):
        model.compute_losses(torch.zeros(1, 3, 64, 64), [bad])


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
def test_predict_contract(head):
    model = _small_model(head, score_thr=0.0, max_per_img=50).eval()
    # Start the class bias high so that there are detections to check (an untrained model has none above 0.05).
    torch.nn.init.constant_(model.head.cls_conv.bias, 1.0)
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    detections = model.predict(images, image_sizes=[(96, 128), (64, 64)])
    assert len(detections) == 2
    for det in detections:
        assert 0 < len(det) <= 50
        assert bool((det.scores[:-1] >= det.scores[1:]).all())
        assert bool((det.boxes[:, 2] >= det.boxes[:, 3]).all())
        assert bool((det.boxes[:, 4] >= -math.pi / 4).all()) and bool((det.boxes[:, 4] < 3 * math.pi / 4).all())
        assert det.labels.dtype == torch.int64 and bool((det.labels < NUM_CLASSES).all())
        assert det.extras["polygons"].shape == (len(det), 8)
    # Batched prediction equals one-by-one prediction.
    single = model.predict(images[:1], image_sizes=[(96, 128)])[0]
    torch.testing.assert_close(single.boxes, detections[0].boxes, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(single.scores, detections[0].scores)


def test_frozen_backbone_settings():
    model = RotatedGFL(NUM_CLASSES, depth=18, pretrained="none", frozen_stages=-1, norm_eval=False)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert model.backbone.body["stem"][1].training
    frozen = RotatedGFL(NUM_CLASSES, depth=18, pretrained="none", frozen_stages=2, norm_eval=False).train()
    assert not frozen.backbone.body["layer2"][0].bn1.training and frozen.backbone.body["layer3"][0].bn1.training
    assert not any(p.requires_grad for p in frozen.backbone.body["layer2"].parameters())


@pytest.mark.parametrize("head", ["gfl", "vanilla"])
@pytest.mark.parametrize("device", DEVICES)
def test_losses_under_autocast(head, device):
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    model = _small_model(head).to(device)
    images = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8, device=device)
    with torch.autocast(device_type=device, dtype=dtype):
        outputs = model(images)
        losses = model.losses(outputs, _scene_targets(device))
    assert outputs.cls_logits.dtype == dtype
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    _total(losses).backward()
    assert model.head.reg_conv.weight.grad is not None


def test_quality_weight_floor_lifts_the_box_loss_weight_of_low_scored_positives():
    from rgfl.losses.gfl import rotated_iou

    images = torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8)
    targets = _scene_targets()
    model = _small_model("gfl")
    outputs = model(images)  # fresh head: every score is about the 0.01 prior
    priors = model.priors(outputs, images.device)
    result = model.assign(priors, targets[0])
    index = result.positive.nonzero().squeeze(1)
    with torch.no_grad():
        boxes = model.decode(outputs.box_logits[0, index], outputs.angle_logits[0, index], priors, index)
        iou = rotated_iou(boxes, targets[0].boxes[result.gt_index[index]])
        scores = torch.sigmoid(outputs.cls_logits[0, index]).max(dim=1).values
    assert float(scores.max()) < 0.05
    for floor in (0.0, 0.5, 1.0):
        model.quality_weight_floor = floor
        with torch.no_grad():
            losses = model.losses(outputs, targets)
        weight = scores.clamp(min=floor)
        expected = (weight * (1 - iou)).sum() / weight.sum().clamp(min=1.0)
        torch.testing.assert_close(losses["loss_bbox"], model.loss_bbox_weight * expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="quality_weight_floor must be in"):
        _small_model("gfl", quality_weight_floor=1.5)


def test_dfl_targets_follow_the_equivalent_box_closest_to_the_predicted_angle():
    box = torch.tensor([[5.0, 6.0, 30.0, 10.0, 0.1]] * 4)
    predicted = torch.tensor([0.15, 0.1 + math.pi / 2 + 0.2, 0.1 + math.pi - 0.3, 0.1 - math.pi / 2])
    same = _closest_representation(box, predicted)
    expected = torch.tensor(
        [
            [5.0, 6.0, 30.0, 10.0, 0.1],
            [5.0, 6.0, 10.0, 30.0, 0.1 + math.pi / 2],
            [5.0, 6.0, 30.0, 10.0, 0.1 + math.pi],
            [5.0, 6.0, 10.0, 30.0, 0.1 - math.pi / 2],
        ]
    )
    torch.testing.assert_close(same, expected)
    # Every representation is the same rectangle.
    from rgfl.ops import box_iou_rotated

    torch.testing.assert_close(box_iou_rotated(same, box, aligned=True), torch.ones(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_label_dtypes_give_the_same_losses(dtype):
    # Labels of any integer dtype are class indices: the padding of a batch's targets (marked by a
    # value no class has) and the one-hot QFL targets must not depend on how they were stored.
    model = _small_model("gfl").train()
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    scene = _scene_targets()[0]
    targets = [scene, Target(scene.boxes[:1] + 5.0, scene.labels[:1])]  # a shorter second image: padding rows
    reference = model.compute_losses(images, targets)
    cast = [Target(t.boxes, t.labels.to(dtype)) for t in targets]
    losses = model.compute_losses(images, cast)
    assert losses["num_pos"].item() == reference["num_pos"].item() > 0
    for key in reference:
        torch.testing.assert_close(losses[key], reference[key])
