"""Rotated ATSS on hand-built scenes, and the vectorized assigner against a per-object loop."""

from __future__ import annotations

import math

import pytest
import torch

from rgfl.losses.assigner import RotatedATSSAssigner
from rgfl.model.coder import make_priors
from rgfl.ops import box_iou_rotated
from tests.conftest import DEVICES


def _grid_anchors(level_sizes, strides, octave=4.0, device="cpu"):
    priors = make_priors(level_sizes, strides, octave, device)
    return priors.anchors(), priors.num_per_level


def _index(row, col, width):
    return row * width + col


@pytest.mark.parametrize("device", DEVICES)
def test_centered_square_only_the_center_anchor_is_positive(device):
    # One level, 5 x 5 points at stride 8 (centers 4, 12, 20, 28, 36), anchors 32 x 32.
    anchors, counts = _grid_anchors([(5, 5)], [8], device=device)
    gt = torch.tensor([[20.0, 20.0, 30.0, 30.0, 0.0]], device=device)
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gt)
    # Candidates = the 3 x 3 block around (2, 2). IoUs: center 900/1024 = 0.879, the four edge
    # neighbours (30 x 23 overlap) 690/1234 = 0.559, the four corners (23 x 23) 529/1395 = 0.379.
    # mean 0.515 + std 0.164 = 0.678: only the center anchor passes.
    expected = torch.zeros(25, dtype=torch.bool)
    expected[_index(2, 2, 5)] = True
    assert torch.equal(result.positive.cpu(), expected)
    assert int(result.gt_index[_index(2, 2, 5)]) == 0
    assert float(result.gt_iou[_index(2, 2, 5)]) == pytest.approx(900 / 1024, abs=1e-5)
    assert not bool(result.ignored.any())


def test_level_is_chosen_by_iou():
    # Two levels: stride 8 (anchors 32) and stride 16 (anchors 64). A 64 x 64 box centered on a
    # level-2 point matches its anchor exactly (IoU 1), while level-1 candidates have IoU <= 0.25:
    # the threshold (mean + std over all 18 candidates) lets only the level-2 anchor through.
    anchors, counts = _grid_anchors([(8, 8), (4, 4)], [8, 16])
    gt = torch.tensor([[40.0, 40.0, 64.0, 64.0, 0.0]])  # level-2 point (2, 2) has center (40, 40)
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gt)
    positives = result.positive.nonzero().squeeze(1).tolist()
    assert positives == [64 + _index(2, 2, 4)]


def test_candidate_centers_must_lie_inside_the_rotated_box():
    # A thin diagonal box (100 x 6 at 45 degrees) through (64, 64). Anchors whose centers lie off
    # the diagonal have high IoU-like overlap but their centers are outside: never positive.
    anchors, counts = _grid_anchors([(16, 16)], [8], octave=2.0)
    gt = torch.tensor([[64.0, 64.0, 100.0, 6.0, math.pi / 4]])
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gt)
    centers = anchors[result.positive, :2]
    assert centers.shape[0] >= 1
    # In the box frame, |v| (across the thin side) must be < 3 - 0.01 for every positive.
    offset = centers - gt[:, :2]
    v = -math.sin(math.pi / 4) * offset[:, 0] + math.cos(math.pi / 4) * offset[:, 1]
    assert bool((v.abs() < 3.0 - 0.01).all())
    # The axis-aligned neighbours (e.g. center (68, 60), off the diagonal by 5.7 px) are excluded.
    off_diagonal = (anchors[:, 0] - 64).abs() - (anchors[:, 1] - 64).abs() != 0
    assert not bool((result.positive & off_diagonal).any())


def test_anchor_claimed_by_two_boxes_goes_to_the_higher_iou():
    anchors, counts = _grid_anchors([(5, 5)], [8])
    # Both boxes are centered on point (2, 2) = (20, 20); the 30 x 30 box overlaps its 32 x 32
    # anchor more (IoU 0.88) than the 40 x 12 box does (IoU 0.37).
    gts = torch.tensor([[20.0, 20.0, 40.0, 12.0, 0.0], [20.0, 20.0, 30.0, 30.0, 0.0]])
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gts)
    center = _index(2, 2, 5)
    assert bool(result.positive[center])
    assert int(result.gt_index[center]) == 1


def test_ignored_box_makes_its_anchors_ignored_not_positive():
    anchors, counts = _grid_anchors([(10, 10)], [8])
    gts = torch.tensor([[20.0, 20.0, 30.0, 30.0, 0.0], [60.0, 60.0, 30.0, 30.0, 0.0]])
    ignore = torch.tensor([False, True])
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gts, ignore)
    assert result.positive.nonzero().squeeze(1).tolist() == [_index(2, 2, 10)]
    assert result.ignored.nonzero().squeeze(1).tolist() == [_index(7, 7, 10)]
    assert not bool((result.positive & result.ignored).any())


def test_no_ground_truth_and_tiny_level():
    anchors, counts = _grid_anchors([(3, 2), (1, 1)], [8, 16])
    empty = RotatedATSSAssigner(topk=9)(anchors, counts, torch.zeros(0, 5))
    assert not bool(empty.positive.any()) and bool((empty.gt_index == -1).all())
    # Levels smaller than topk use all their anchors as candidates (min(topk, P_l)).
    result = RotatedATSSAssigner(topk=9)(anchors, counts, torch.tensor([[8.0, 12.0, 20.0, 20.0, 0.3]]))
    assert result.positive.shape == (7,)


def _reference_assign(anchors, counts, gts, topk, margin=0.01, reach=None, strides=None):
    """Plain per-object loop following mmdet's ATSS (dense IoU matrix), for comparison. With
    ``reach``: only the levels whose ``reach * stride`` covers half the box's longer side (else the
    coarsest level) give candidates."""
    num_anchors = anchors.shape[0]
    overlaps = box_iou_rotated(anchors, gts)  # [P, M]
    assigned = torch.full((num_anchors,), -1.0)
    best = torch.full((num_anchors,), -1.0)
    assigned_gt = torch.full((num_anchors,), -1, dtype=torch.long)
    for g in range(gts.shape[0]):
        candidates = []
        start = 0
        levels = range(len(counts))
        if reach is not None:
            levels = [lv for lv in levels if max(gts[g, 2], gts[g, 3]) / 2 <= reach * strides[lv]] or [len(counts) - 1]
        for level, count in enumerate(counts):
            distance = (anchors[start : start + count, :2] - gts[g, :2]).norm(dim=1)
            if level in levels:
                candidates += (distance.topk(min(topk, count), largest=False).indices + start).tolist()
            start += count
        ious = overlaps[candidates, g]
        threshold = ious.mean() + ious.std()
        for a, iou in zip(candidates, ious.tolist()):
            dx, dy = (anchors[a, :2] - gts[g, :2]).tolist()
            c, s = math.cos(gts[g, 4]), math.sin(gts[g, 4])
            u, v = c * dx + s * dy, -s * dx + c * dy
            inside = min(gts[g, 2] / 2 - abs(u), gts[g, 3] / 2 - abs(v)) > margin
            if iou >= threshold and inside and iou > best[a]:
                best[a] = iou
                assigned_gt[a] = g
    del assigned
    return assigned_gt


def _random_scene(seed, num, extent, long_side, short_side):
    """``num`` random le135 boxes [num, 5] with centres in ``[0, extent)`` and sides in the given
    ``(min, max)`` ranges."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.rand(num, generator=generator) * extent,
            torch.rand(num, generator=generator) * extent,
            long_side[0] + torch.rand(num, generator=generator) * (long_side[1] - long_side[0]),
            short_side[0] + torch.rand(num, generator=generator) * (short_side[1] - short_side[0]),
            -math.pi / 4 + torch.rand(num, generator=generator) * math.pi,
        ],
        dim=1,
    )


def test_vectorized_matches_per_object_loop_on_crowded_scene():
    anchors, counts = _grid_anchors([(24, 24), (12, 12), (6, 6), (3, 3), (2, 2)], [8, 16, 32, 64, 128])
    num = 120
    gts = _random_scene(0, num, 192, (6, 96), (4, 34))
    result = RotatedATSSAssigner(topk=9)(anchors, counts, gts)
    reference = _reference_assign(anchors, counts, gts, 9)
    assert int((reference >= 0).sum()) > num  # the scene really has many positives
    assert torch.equal(result.gt_index, reference)


def _sides_in_strides(anchors, gts, gt_index, positive, strides_of_anchor):
    """Largest distance from each positive prior's center to the sides of its box, in strides."""
    boxes = gts[gt_index[positive]]
    centers = anchors[positive, :2]
    c, s = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
    dx, dy = centers[:, 0] - boxes[:, 0], centers[:, 1] - boxes[:, 1]
    u, v = c * dx + s * dy, -s * dx + c * dy
    farthest = torch.maximum(boxes[:, 2] / 2 + u.abs(), boxes[:, 3] / 2 + v.abs())
    return farthest / strides_of_anchor[positive]


def test_reach_aware_keeps_a_pier_within_reach_of_its_priors():
    # A pier 300 x 9 px at 45 degrees (the harbors of DOTA P0706 at rate 0.5). With 9 bins (reach
    # 8 strides), plain ATSS gives it to strides 8 and 16, from where its ends are 150 px away: out
    # of reach, so its box can never be right. Reach-aware ATSS uses the levels that reach it.
    strides = [8, 16, 32, 64, 128]
    sizes = [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    anchors, counts = _grid_anchors(sizes, strides)
    stride_of = torch.repeat_interleave(torch.tensor(strides, dtype=torch.float32), torch.tensor(counts))
    gts = torch.tensor([[256.0, 256.0, 300.0, 9.0, math.pi / 4], [96.0, 400.0, 300.0, 9.0, -math.pi / 4 + 0.1]])
    plain = RotatedATSSAssigner(topk=9)(anchors, counts, gts)
    aware = RotatedATSSAssigner(topk=9, reach=8.0)(anchors, counts, gts, level_strides=strides)
    assert bool(plain.positive.any()) and bool(aware.positive.any())
    assert float(_sides_in_strides(anchors, gts, plain.gt_index, plain.positive, stride_of).min()) > 8.0
    assert float(_sides_in_strides(anchors, gts, aware.gt_index, aware.positive, stride_of).max()) <= 8.0
    assert set(stride_of[aware.positive].tolist()) <= {32.0, 64.0, 128.0}
    reference = _reference_assign(anchors, counts, gts, 9, reach=8.0, strides=strides)
    assert torch.equal(aware.gt_index, reference)


def test_reach_aware_matches_the_loop_and_plain_atss_where_every_level_reaches():
    strides = [8, 16, 32, 64, 128]
    anchors, counts = _grid_anchors([(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], strides)
    gts = _random_scene(3, 150, 256, (6, 306), (3, 23))
    aware = RotatedATSSAssigner(topk=9, reach=8.0)(anchors, counts, gts, level_strides=strides)
    assert torch.equal(aware.gt_index, _reference_assign(anchors, counts, gts, 9, reach=8.0, strides=strides))
    # Boxes every level reaches (half the longer side <= 8 * 8 px) are assigned as plain ATSS does.
    small = gts[gts[:, 2] <= 128]
    assert len(small) > 30
    plain_small = RotatedATSSAssigner(topk=9)(anchors, counts, small)
    aware_small = RotatedATSSAssigner(topk=9, reach=8.0)(anchors, counts, small, level_strides=strides)
    assert torch.equal(plain_small.gt_index, aware_small.gt_index)
    with pytest.raises(ValueError, match="needs level_strides"):
        RotatedATSSAssigner(topk=9, reach=8.0)(anchors, counts, gts)
    with pytest.raises(ValueError, match="reach must be > 0"):
        RotatedATSSAssigner(topk=9, reach=0.0)
