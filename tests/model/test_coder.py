"""Prior points and the two box codings: decode(encode(box)) must give the box back at every angle."""

from __future__ import annotations

import math

import pytest
import torch

from rgfl.losses.gfl import rotated_iou
from rgfl.model.coder import DeltaXYWHACoder, DistanceAngleCoder, make_priors, regularize_le135
from tests.conftest import DEVICES


def _random_le135_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """Random le135 boxes (w >= h, theta in [-pi/4, 3pi/4)) covering the whole angle range."""
    f64 = torch.float64
    cx = torch.rand(n, generator=generator, dtype=f64) * 1000
    cy = torch.rand(n, generator=generator, dtype=f64) * 1000
    a = 2 + torch.rand(n, generator=generator, dtype=f64) * 300
    b = 2 + torch.rand(n, generator=generator, dtype=f64) * 300
    theta = -math.pi / 4 + torch.rand(n, generator=generator, dtype=f64) * math.pi
    # include the exact range ends and the axis-aligned angles
    theta[:6] = torch.tensor([-math.pi / 4, 0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4 - 1e-9, -math.pi / 4 + 1e-9], dtype=f64)
    return torch.stack([cx, cy, torch.maximum(a, b), torch.minimum(a, b), theta], dim=1)


def test_priors_are_cell_centers_level_major():
    priors = make_priors([(2, 3), (1, 2)], [8, 16], octave_base_scale=4, device="cpu")
    assert priors.num_per_level == [6, 2]
    expected = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8], [24, 8]]
    assert torch.equal(priors.centers, torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(priors.strides, torch.tensor([8.0] * 6 + [16.0] * 2))
    anchors = priors.anchors()
    assert torch.equal(anchors[0], torch.tensor([4.0, 4.0, 32.0, 32.0, 0.0]))
    assert torch.equal(anchors[-1], torch.tensor([24.0, 8.0, 64.0, 64.0, 0.0]))


@pytest.mark.parametrize("device", DEVICES)
def test_distance_angle_round_trip_all_angles(device):
    generator = torch.Generator().manual_seed(0)
    boxes = _random_le135_boxes(2000, generator).to(device)
    # prior points anywhere around the box (inside or not: the coding is exact either way)
    points = boxes[:, :2] + (torch.rand(2000, 2, generator=generator, dtype=torch.float64).to(device) - 0.5) * boxes[:, 2:3]
    strides = torch.tensor([8.0, 16, 32, 64, 128], dtype=torch.float64)[torch.randint(0, 5, (2000,), generator=generator)].to(device)
    distances = DistanceAngleCoder.encode(points, strides, boxes)
    decoded = DistanceAngleCoder.decode(points, strides, distances, boxes[:, 4])
    torch.testing.assert_close(decoded, boxes, rtol=0, atol=1e-9)


def test_distance_encoding_by_hand():
    # Box centered at (100, 50), 40 x 20, rotated by 90 degrees: its w side runs along +y.
    box = torch.tensor([[100.0, 50.0, 40.0, 20.0, math.pi / 2]])
    point = torch.tensor([[103.0, 55.0]])  # in the box frame: u = +5 (along w), v = -3
    distances = DistanceAngleCoder.encode(point, torch.tensor([1.0]), box)
    torch.testing.assert_close(distances, torch.tensor([[25.0, 7.0, 15.0, 13.0]]))
    distances8 = DistanceAngleCoder.encode(point, torch.tensor([8.0]), box)
    torch.testing.assert_close(distances8, distances / 8)


def test_sigmoid_angle_coding_spans_le135():
    logits = torch.tensor([-50.0, 0.0, 50.0])
    angles = DistanceAngleCoder.angle_from_logit(logits, "sigmoid")
    torch.testing.assert_close(angles, torch.tensor([-math.pi / 4, math.pi / 4, 3 * math.pi / 4]))


def test_linear_angle_coding_matches_sigmoid_at_zero_and_is_unbounded():
    logits = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0], requires_grad=True)
    angles = DistanceAngleCoder.angle_from_logit(logits, "linear")
    torch.testing.assert_close(angles.detach(), torch.tensor([-math.pi / 4, 0.0, math.pi / 4, math.pi / 2, math.pi]))
    angles.sum().backward()
    zero = torch.zeros(1, requires_grad=True)
    DistanceAngleCoder.angle_from_logit(zero, "sigmoid").backward()
    torch.testing.assert_close(logits.grad, torch.full((5,), math.pi / 4))
    torch.testing.assert_close(zero.grad, torch.tensor([math.pi / 4]))  # same slope at the start
    with pytest.raises(ValueError, match="angle coding"):
        DistanceAngleCoder.angle_from_logit(logits, "tanh")


@pytest.mark.parametrize(("coding", "reaches"), [("linear", True), ("sigmoid", False)])
def test_iou_loss_turns_a_thin_box_across_the_le135_boundary(coding, reaches):
    # A ship 40 x 6 px at -40 degrees (le135): the same rectangle as at 140 degrees. Started at 100
    # degrees (as the detector's angle branch was seen to stall), gradient descent on 1 - IoU turns
    # the box up towards 140 degrees. The sigmoid coding cannot pass 135 (and slows down before it),
    # so the thin box stays misaligned; the linear coding reaches it.
    target = torch.tensor([[0.0, 0.0, 40.0, 6.0, math.radians(-40.0)]])
    if coding == "linear":
        start = math.radians(100.0) / (math.pi / 4) - 1.0
    else:
        start = math.log((math.radians(100.0) / math.pi + 0.25) / (1 - (math.radians(100.0) / math.pi + 0.25)))
    logit = torch.tensor([start], requires_grad=True)
    optimizer = torch.optim.Adam([logit], lr=0.05)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98)  # settle instead of circling the kink at IoU 1
    for _ in range(300):
        theta = DistanceAngleCoder.angle_from_logit(logit, coding)
        loss = (1 - rotated_iou(torch.cat([target[:, :4], theta[:, None]], dim=1), target)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    theta = DistanceAngleCoder.angle_from_logit(logit.detach(), coding)
    error = abs(math.degrees(float(theta)) - 140.0)  # the equivalent angle on the side it came from
    iou = float(rotated_iou(torch.cat([target[:, :4], theta[:, None]], dim=1), target))
    if reaches:
        assert error < 0.5 and iou > 0.97, (error, iou)
    else:
        assert error > 4.0 and iou < 0.8, (error, iou)


@pytest.mark.parametrize("device", DEVICES)
def test_delta_coder_round_trip_all_angles(device):
    generator = torch.Generator().manual_seed(1)
    boxes = _random_le135_boxes(2000, generator).to(device)
    # anchor sides within the coder's clamp range of every box (|log(size / side)| < log(1000 / 16))
    side = (boxes[:, 2] * boxes[:, 3]).sqrt() * 2 ** (torch.rand(2000, generator=generator, dtype=torch.float64).to(device) * 2 - 1)
    offset = (torch.rand(2000, 2, generator=generator, dtype=torch.float64).to(device) - 0.5) * side[:, None]
    anchors = torch.cat([boxes[:, :2] + offset, side[:, None], side[:, None], torch.zeros_like(side)[:, None]], dim=1)
    deltas = DeltaXYWHACoder.encode(anchors, boxes)
    assert bool((deltas[:, 4] >= -0.25).all()) and bool((deltas[:, 4] < 0.75).all())
    decoded = DeltaXYWHACoder.decode(anchors, deltas)
    torch.testing.assert_close(decoded, boxes, rtol=0, atol=1e-9)


def test_delta_coder_rotated_anchor_and_clamp():
    # A rotated anchor (the coder supports any anchor angle) and a delta beyond the clamp.
    anchor = torch.tensor([[10.0, 20.0, 30.0, 15.0, 0.4]])
    box = torch.tensor([[14.0, 17.0, 50.0, 12.0, 2.0]])
    torch.testing.assert_close(DeltaXYWHACoder.decode(anchor, DeltaXYWHACoder.encode(anchor, box)), box)
    huge = torch.tensor([[0.0, 0.0, 10.0, -10.0, 0.0]])
    decoded = DeltaXYWHACoder.decode(anchor, huge)
    assert float(decoded[0, 2]) == pytest.approx(30.0 * 1000 / 16, rel=1e-5)
    assert float(decoded[0, 3]) == pytest.approx(15.0 * 16 / 1000, rel=1e-5)


def test_regularize_le135_keeps_the_rectangle():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 30.0, 0.2], [0.0, 0.0, 30.0, 10.0, 3.0], [0.0, 0.0, 5.0, 5.0, -1.0]])
    regular = regularize_le135(boxes)
    assert bool((regular[:, 2] >= regular[:, 3]).all())
    assert bool((regular[:, 4] >= -math.pi / 4).all()) and bool((regular[:, 4] < 3 * math.pi / 4).all())
    torch.testing.assert_close(regular[0], torch.tensor([0.0, 0.0, 30.0, 10.0, 0.2 + math.pi / 2]))
    torch.testing.assert_close(regular[1], torch.tensor([0.0, 0.0, 30.0, 10.0, 3.0 - math.pi]))
