"""The numba port of DOTA_devkit polyiou: bit-equal to a plain-Python port, equal to shapely on simple quads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from rgfl.evaluation.polyiou import iou_poly, poly_iou_matrix
from tests.evaluation import official_port
from tests.evaluation.test_dota_map import random_rectangles


def test_hand_cases():
    unit = np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=np.float64)
    assert iou_poly(unit, unit) == 1.0
    assert iou_poly(unit, unit[[6, 7, 4, 5, 2, 3, 0, 1]]) == 1.0  # clockwise order: reversed first
    assert iou_poly(unit, unit + 0.5) == pytest.approx(0.25 / 1.75, abs=1e-15)
    assert iou_poly(unit, unit + 5) == 0.0
    assert math.isnan(iou_poly(np.zeros(8), np.zeros(8)))  # 0 / 0, as the C code


@pytest.mark.parametrize("integer,scramble", [(True, False), (False, True), (True, True)])
def test_bit_equal_to_plain_python_port(integer, scramble):
    rng = np.random.default_rng(3)
    first = random_rectangles(rng, 40, integer, scramble)
    second = np.concatenate([first[:20] + rng.normal(0, 3, size=(20, 8)).round(), random_rectangles(rng, 20, integer, scramble)])
    ours = poly_iou_matrix(first, second)
    for i in range(len(first)):
        for j in range(len(second)):
            expected = official_port.iou_poly(first[i], second[j])
            assert ours[i, j] == expected or (math.isnan(expected) and math.isnan(ours[i, j])), (i, j)


def test_equals_shapely_on_simple_quadrilaterals():
    rng = np.random.default_rng(4)
    first = random_rectangles(rng, 60)
    second = random_rectangles(rng, 60)
    ours = poly_iou_matrix(first, second)
    for i in range(60):
        a = Polygon(first[i].reshape(4, 2))
        for j in range(60):
            b = Polygon(second[j].reshape(4, 2))
            inter = a.intersection(b).area
            assert ours[i, j] == pytest.approx(inter / (a.area + b.area - inter), abs=1e-12)
    assert (ours > 0).sum() > 20  # the case exercises real overlaps
