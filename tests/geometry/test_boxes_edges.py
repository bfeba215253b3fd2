"""poly2obb_edges: the reference's le135 rule (mmrotate 0.x poly2obb_np, the fork's v2), hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rgfl.geometry.boxes import obb2poly, poly2obb, poly2obb_edges, quad_edge_lengths


@pytest.mark.parametrize(
    "poly,expected",
    [
        # axis-aligned 20 x 10, clockwise from top-left: e1 = 20 > e2 = 10 -> along p1p2, theta 0
        ([0, 0, 20, 0, 20, 10, 0, 10], [10, 5, 20, 10, 0.0]),
        # the same rectangle starting at its top-right corner: e1 = 10 < e2 = 20 -> along p1p4 = (-20, 0) -> pi -> 0
        ([20, 0, 20, 10, 0, 10, 0, 0], [10, 5, 20, 10, 0.0]),
        # tall 10 x 20: e2 > e1 -> direction p1p4 = (0, 20) -> pi/2
        ([0, 0, 10, 0, 10, 20, 0, 20], [5, 10, 20, 10, math.pi / 2]),
        # square: tie -> p1p4 -> pi/2 (mmrotate 0.x; the minimum-area rule gives 0)
        ([0, 0, 10, 0, 10, 10, 0, 10], [5, 5, 10, 10, math.pi / 2]),
        # free quad: w, h from the first two edges only, centre = midpoint of p1 p3
        ([0, 0, 30, 0, 28, 10, 2, 12], [14, 5, 30, math.hypot(2, 10), 0.0]),
        # direction just below -pi/4 wraps to just below 3pi/4
        ([0, 0, 10, -10.2, 17.14, -3.06, 7.14, 7.14], None),
    ],
)
def test_hand_computed_boxes(poly, expected):
    box = poly2obb_edges(np.array(poly, dtype=np.float64))
    if expected is None:
        assert 3 * math.pi / 4 - 0.05 < box[4] < 3 * math.pi / 4
        return
    assert box == pytest.approx(expected, abs=1e-9)


def test_rectangles_in_any_order_give_the_rectangle():
    torch.manual_seed(0)
    boxes = torch.cat([torch.rand(200, 2) * 100, torch.rand(200, 2) * 50 + 2, (torch.rand(200, 1) - 0.5) * 4 * math.pi], 1).double()
    polys = obb2poly(boxes).view(-1, 4, 2)
    for shift in range(4):
        for reverse in (False, True):
            p = torch.roll(polys, -shift, dims=1)
            if reverse:
                p = p.flip(1)
            edge_boxes = poly2obb_edges(p.reshape(-1, 8))
            assert torch.allclose(edge_boxes[:, :4], poly2obb(p.reshape(-1, 8))[:, :4], atol=1e-7)
            # same rectangle as the minimum-area rule (angle up to the square ambiguity)
            back = obb2poly(edge_boxes).view(-1, 4, 2)
            assert torch.allclose(torch.sort(back.reshape(-1, 8), 1).values.sum(1), torch.sort(p.reshape(-1, 8), 1).values.sum(1), atol=1e-6)
            theta = edge_boxes[:, 4]
            assert bool(((theta >= -math.pi / 4) & (theta < 3 * math.pi / 4)).all())


def test_edge_lengths():
    lengths = quad_edge_lengths(np.array([[0, 0, 1.5, 0, 1.5, 10, 0, 10], [0, 0, 3, 4, 3, 14, 0, 10]]))
    assert lengths.tolist() == [[1.5, 10.0], [5.0, 10.0]]
