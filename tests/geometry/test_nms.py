"""Rotated NMS against a greedy reference built on shapely polygons."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import shapely
import torch

from rgfl.geometry.boxes import obb2poly
from rgfl.geometry.nms import batched_nms_rotated, nms_rotated
from tests.conftest import DEVICES


def clustered_detections(n: int, n_classes: int, seed: int, extent: float = 600.0, per_cluster: int = 12):
    """Detections the way a detector emits them: clusters of jittered copies, 2-decimal scores (ties)."""
    rng = np.random.default_rng(seed)
    clusters = max(1, n // per_cluster)
    centers = rng.uniform(0, extent, (clusters, 2))
    sizes = rng.uniform(10, 80, (clusters, 2))
    angles = rng.uniform(-np.pi, np.pi, clusters)
    member = rng.integers(0, clusters, n)
    boxes = np.concatenate(
        [
            centers[member] + rng.normal(0, 4, (n, 2)),
            sizes[member] * rng.uniform(0.7, 1.3, (n, 2)),
            (angles[member] + rng.normal(0, 0.15, n))[:, None],
        ],
        axis=1,
    )
    scores = np.round(rng.uniform(0, 1, n), 2)
    labels = rng.integers(0, n_classes, n)
    return boxes, scores, labels


@functools.lru_cache(maxsize=8)
def shapely_iou_matrix(n: int, n_classes: int, seed: int, dtype: str) -> np.ndarray:
    boxes = clustered_detections(n, n_classes, seed)[0].astype(dtype).astype(np.float64)
    polygons = shapely.polygons(obb2poly(boxes).reshape(-1, 4, 2))
    i, j = np.triu_indices(n, k=1)
    inter = shapely.area(shapely.intersection(polygons[i], polygons[j]))
    areas = shapely.area(polygons)
    iou = np.eye(n)
    iou[i, j] = iou[j, i] = inter / (areas[i] + areas[j] - inter)
    return iou


def shapely_greedy_nms(iou: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, threshold: float) -> list[int]:
    """Textbook greedy NMS on an exact IoU matrix, visit by score (ties: lower index)."""
    n = len(scores)
    order = sorted(range(n), key=lambda k: (-scores[k], k))
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for a in order:
        if suppressed[a]:
            continue
        keep.append(a)
        same_class = np.ones(n, dtype=bool) if labels is None else labels == labels[a]
        suppressed |= (iou[a] > threshold) & same_class
    return keep


@pytest.mark.parametrize("threshold", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_nms_matches_shapely_greedy_reference(threshold, seed):
    boxes, scores, _ = clustered_detections(300, 1, seed)
    expected = shapely_greedy_nms(shapely_iou_matrix(300, 1, seed, "float64"), scores, None, threshold)
    keep = nms_rotated(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    assert len(expected) < 200  # clusters really suppress
    # float32 input: the reference on the same float32-rounded boxes.
    expected32 = shapely_greedy_nms(shapely_iou_matrix(300, 1, seed, "float32"), scores, None, threshold)
    keep32 = nms_rotated(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), threshold)
    assert keep32.tolist() == expected32


@pytest.mark.parametrize("threshold", [0.1, 0.5])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_classes", [4, 37])  # 37: many groups run in parallel, some of one box
def test_batched_nms_matches_per_class_reference(threshold, device, n_classes):
    boxes, scores, labels = clustered_detections(400, n_classes, seed=2)
    expected = shapely_greedy_nms(shapely_iou_matrix(400, n_classes, 2, "float64"), scores, labels, threshold)
    keep = batched_nms_rotated(torch.from_numpy(boxes).to(device), torch.from_numpy(scores).to(device), torch.from_numpy(labels).to(device), threshold)
    assert keep.device.type == device
    assert keep.tolist() == expected
    # Class-aware: every class on its own gives the same keeps.
    for label in range(n_classes):
        index = np.nonzero(labels == label)[0]
        alone = nms_rotated(boxes[index], scores[index], threshold)
        assert sorted(index[alone].tolist()) == sorted(k for k in expected if labels[k] == label)


def test_tie_breaking_threshold_and_parametrisation():
    box = [10.0, 10.0, 20.0, 8.0, 0.3]
    same_other_way = [10.0, 10.0, 8.0, 20.0, 0.3 + np.pi / 2]
    boxes = torch.tensor([box, same_other_way, box], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    # Equal scores: the lowest index wins, and the other parametrisation is a duplicate (IoU 1).
    assert nms_rotated(boxes, scores, 0.99).tolist() == [0]
    # IoU exactly at the threshold does not suppress (strictly greater suppresses).
    half = torch.tensor([[0.0, 0.0, 2.0, 2.0, 0.0], [1.0, 0.0, 2.0, 2.0, 0.0]], dtype=torch.float64)  # IoU 1/3
    two = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert nms_rotated(half, two, 1 / 3).tolist() == [0, 1]
    assert nms_rotated(half, two, 0.33).tolist() == [0]
    # Output is ordered by score, not by index.
    assert nms_rotated(half, torch.tensor([0.1, 0.8], dtype=torch.float64), 0.5).tolist() == [1, 0]


def test_large_input_is_exact_greedy():
    """30000 clustered boxes: kept boxes never overlap a better kept one above the threshold, and
    every dropped box does. These two properties define the greedy result uniquely."""
    boxes, scores, labels = clustered_detections(30000, 3, seed=5, extent=6000.0, per_cluster=20)
    threshold = 0.3
    keep = batched_nms_rotated(boxes, scores, labels, threshold)
    rank = np.empty(len(boxes), dtype=np.int64)
    rank[np.lexsort((np.arange(len(boxes)), -scores))] = np.arange(len(boxes))
    assert np.all(np.diff(rank[keep]) > 0)
    kept = np.zeros(len(boxes), dtype=bool)
    kept[keep] = True
    polygons = shapely.polygons(obb2poly(boxes).reshape(-1, 4, 2))
    tree = shapely.STRtree(polygons[keep])
    query, target = tree.query(polygons, predicate="intersects")
    other = keep[target]
    valid = (other != query) & (labels[other] == labels[query]) & (rank[other] < rank[query])
    query, other = query[valid], other[valid]
    inter = shapely.area(shapely.intersection(polygons[query], polygons[other]))
    areas = shapely.area(polygons)
    iou = inter / (areas[query] + areas[other] - inter)
    suppressing = np.zeros(len(boxes), dtype=bool)
    suppressing[query[iou > threshold]] = True
    assert not np.any(suppressing & kept)
    assert np.all(suppressing | kept)


def test_empty_numpy_and_bad_input():
    assert nms_rotated(torch.zeros(0, 5), torch.zeros(0), 0.5).shape == (0,)
    assert batched_nms_rotated(torch.zeros(0, 5), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)
    keep = nms_rotated(np.array([[0, 0, 4, 2, 0.0], [0, 0, 4, 2, 0.1]]), np.array([0.2, 0.9]), 0.5)
    assert isinstance(keep, np.ndarray) and keep.tolist() == [1]
    with pytest.raises(ValueError, match="non-finite"):
        nms_rotated(torch.tensor([[0, 0, 4, 2, float("nan")]]), torch.tensor([0.5]), 0.5)
    with pytest.raises(ValueError, match=r"scores \[N\]"):
        nms_rotated(torch.zeros(3, 5), torch.zeros(2), 0.5)


def test_mmcv_backend_is_opt_in_with_a_clear_error(monkeypatch):
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0, 0.0], [0.5, 0.0, 4.0, 2.0, 0.0]])
    scores = torch.tensor([0.9, 0.8])
    try:
        import mmcv.ops  # noqa: F401

        pytest.skip("mmcv is installed here")
    except Exception:
        pass
    with pytest.raises(RuntimeError, match="mmcv"):
        nms_rotated(boxes, scores, 0.5, backend="mmcv")
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "mmcv")
    with pytest.raises(RuntimeError, match="RGFL_GEOMETRY_BACKEND"):
        nms_rotated(boxes, scores, 0.5)
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "torch")  # an IoU preference: NMS stays exact
    assert nms_rotated(boxes, scores, 0.5).tolist() == [0]
