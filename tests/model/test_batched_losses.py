"""The batched losses (one set of tensors over the whole batch, issue 20) against the per-image
path they replaced: same losses to 1e-5 and the same gradients, for both heads.

The reference below is the previous implementation of ``RotatedGFL.losses`` (a Python loop over
the images, box losses on the positives picked out with ``nonzero``), kept here only as the
reference; its assignments come from the public per-image assigner call.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rgfl.losses.gfl import distribution_focal_loss, quality_focal_loss, rotated_iou, sigmoid_focal_loss
from rgfl.model.coder import DistanceAngleCoder
from rgfl.model.detector import RotatedGFL, _closest_representation
from rgfl.structures import Target
from tests.conftest import DEVICES

NUM_CLASSES = 4


def _reference_losses(model: RotatedGFL, outputs, targets):
    device = outputs.cls_logits.device
    priors = model.priors(outputs, device)
    batch, num_priors, num_classes = outputs.cls_logits.shape
    assignments = [
        model.assigner(priors.anchors(), priors.num_per_level, t.boxes, t.ignore, level_strides=model.strides) for t in targets
    ]
    labels = torch.full((batch, num_priors), num_classes, dtype=torch.long, device=device)
    valid = torch.ones(batch, num_priors, dtype=torch.bool, device=device)
    pos_gt_boxes = []
    for b, (target, result) in enumerate(zip(targets, assignments)):
        labels[b, result.positive] = target.labels[result.gt_index[result.positive]]
        valid[b] = ~result.ignored
        pos_gt_boxes.append(target.boxes.float()[result.gt_index[result.positive]])
    positive = torch.stack([r.positive for r in assignments]).view(-1)
    pos_flat = positive.nonzero().squeeze(1)
    pos_prior = pos_flat % num_priors
    gt_boxes = torch.cat(pos_gt_boxes)
    labels, valid = labels.view(-1), valid.view(-1)
    num_pos_per_image = sum(max(int(r.positive.sum()), 1) for r in assignments)
    num_pos = pos_flat.numel()
    cls_logits = outputs.cls_logits.reshape(batch * num_priors, num_classes)
    box_logits = outputs.box_logits.reshape(batch * num_priors, -1)
    if model.variant == "gfl":
        angle_logits = outputs.angle_logits.reshape(-1)
        quality = torch.zeros(cls_logits.shape, dtype=torch.float32, device=device)
        pred_boxes = model.decode(box_logits[pos_flat], angle_logits[pos_flat], priors, pos_prior)
        iou = rotated_iou(pred_boxes, gt_boxes)
        quality[pos_flat, labels[pos_flat]] = iou.detach()
        weight = torch.sigmoid(cls_logits[pos_flat].detach().float()).max(dim=1).values
        if model.quality_weight_floor > 0:
            weight = weight.clamp(min=model.quality_weight_floor)
        matched_gt = _closest_representation(gt_boxes, pred_boxes[:, 4].detach())
        target = DistanceAngleCoder.encode(priors.centers[pos_prior], priors.strides[pos_prior], matched_gt)
        target = target.clamp(0.0, model.reg_max - 0.01)
        dfl = distribution_focal_loss(box_logits[pos_flat].view(num_pos * 4, model.reg_max + 1), target.reshape(-1)).view(num_pos, 4)
        weight_sum = weight.sum().clamp(min=1.0)
        avg_factor = max(float(num_pos_per_image), 1.0)
        return {
            "loss_qfl": model.loss_cls_weight * quality_focal_loss(cls_logits[valid], quality[valid], model.qfl_beta).sum() / avg_factor,
            "loss_bbox": model.loss_bbox_weight * (weight * (1.0 - iou)).sum() / weight_sum,
            "loss_dfl": model.loss_dfl_weight * (weight[:, None] * dfl).sum() / 4.0 / weight_sum,
            "num_pos": torch.tensor(float(num_pos)),
            "pos_iou": iou.detach().mean(),
        }
    avg_factor = float(max(num_pos_per_image, 1))
    one_hot = F.one_hot(labels, num_classes + 1)[:, :num_classes]
    loss_cls = sigmoid_focal_loss(cls_logits[valid], one_hot[valid], model.focal_alpha, model.focal_gamma).sum()
    iou = rotated_iou(model.decode(box_logits[pos_flat], None, priors, pos_prior), gt_boxes)
    return {
        "loss_cls": model.loss_cls_weight * loss_cls / avg_factor,
        "loss_bbox": model.loss_bbox_weight * -iou.clamp(min=1e-6).log().sum() / avg_factor,
        "num_pos": torch.tensor(float(num_pos)),
        "pos_iou": iou.detach().mean(),
    }


def _boxes(generator, num, size):
    side = torch.exp(torch.empty(num).uniform_(math.log(8), math.log(120), generator=generator))
    aspect = torch.empty(num).uniform_(1.0, 5.0, generator=generator)
    centre = torch.rand(num, 2, generator=generator) * (size - 16) + 8
    theta = -math.pi / 4 + torch.rand(num, generator=generator) * math.pi
    return torch.cat([centre, side[:, None], (side / aspect).clamp(min=3.0)[:, None], theta[:, None]], dim=1)


def _batch(device):
    """Three images of different crowds: 9 objects (2 ignored), none, 40 (duplicates included, so
    anchors are contested)."""
    generator = torch.Generator().manual_seed(5)
    first = _boxes(generator, 9, 128)
    third = _boxes(generator, 30, 128)
    third = torch.cat([third, third[:10] + torch.tensor([2.0, -1.0, 3.0, 0.0, 0.05])])
    ignore = torch.zeros(9, dtype=torch.bool)
    ignore[[2, 5]] = True
    targets = [
        Target(first, torch.randint(0, NUM_CLASSES, (9,), generator=generator), ignore),
        Target(torch.zeros((0, 5)), torch.zeros(0, dtype=torch.long)),
        Target(third, torch.randint(0, NUM_CLASSES, (40,), generator=generator)),
    ]
    images = torch.randint(0, 256, (3, 3, 128, 128), dtype=torch.uint8, generator=generator)
    return images.to(device), [t.to(device) for t in targets]


def _model(head, device, **kwargs):
    torch.manual_seed(0)
    model = RotatedGFL(NUM_CLASSES, head=head, depth=18, pretrained="none", feat_channels=64, fpn_channels=64, **kwargs)
    # Spread the box distributions so that predicted and true boxes cross (non-trivial IoU gradients).
    torch.nn.init.normal_(model.head.reg_conv.weight, std=0.3)
    torch.nn.init.normal_(model.head.cls_conv.weight, std=0.1)
    return model.to(device)


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("head", "options"),
    [("gfl", {}), ("gfl", {"reach_aware": True, "quality_weight_floor": 0.2, "reg_max": 6}), ("vanilla", {})],
)
@pytest.mark.parametrize("device", DEVICES)
def test_batched_losses_and_gradients_match_the_per_image_path(head, options, device):
    model = _model(head, device, **options)
    images, targets = _batch(device)
    outputs = model(images)
    batched = model.losses(outputs, targets)
    sum(v for k, v in batched.items() if k.startswith("loss")).backward(retain_graph=True)
    batched_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    reference = _reference_losses(model, outputs, targets)
    sum(v for k, v in reference.items() if k.startswith("loss")).backward()
    reference_grads = _grads(model)

    assert set(batched) == set(reference)
    assert float(reference["num_pos"]) > 40  # the scene really trains the box branch
    for name in reference:
        assert float(batched[name].detach()) == pytest.approx(float(reference[name].detach()), rel=1e-5, abs=1e-6), name
    assert set(batched_grads) == set(reference_grads)
    for name, grad in reference_grads.items():
        scale = float(grad.abs().max()) + 1e-12
        assert float((batched_grads[name] - grad).abs().max()) <= 1e-4 * scale, name


def test_batched_assignment_equals_one_image_at_a_time():
    model = _model("gfl", "cpu", reach_aware=True)
    images, targets = _batch("cpu")
    outputs = model(images)
    priors = model.priors(outputs, images.device)
    batched = model.assign_batch(priors, targets)
    assert batched.positive.shape == (3, priors.centers.shape[0])
    for b, target in enumerate(targets):
        single = model.assign(priors, target)
        assert torch.equal(batched.gt_index[b], single.gt_index)
        assert torch.equal(batched.positive[b], single.positive)
        assert torch.equal(batched.ignored[b], single.ignored)
        assert torch.equal(batched.gt_iou[b], single.gt_iou)
    assert bool(batched.ignored[0].any()) and not bool(batched.positive[1].any())


def test_losses_accept_per_image_assignments():
    model = _model("vanilla", "cpu")
    images, targets = _batch("cpu")
    outputs = model(images)
    priors = model.priors(outputs, images.device)
    from_list = model.losses(outputs, targets, [model.assign(priors, t) for t in targets])
    own = model.losses(outputs, targets)
    for name in own:
        assert torch.equal(from_list[name], own[name]), name
