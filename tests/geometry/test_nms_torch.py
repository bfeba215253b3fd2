"""The device NMS (rgfl.geometry.nms_torch) against the numba CPU kernel and a shapely greedy reference.

The torch path is what runs on CUDA; here it runs on CPU tensors, where its keep list must be the
numba kernel's exactly (ties, duplicates, zero-area boxes, many label groups, chunked work).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rgfl.geometry import nms_torch
from rgfl.geometry.iou_numba import box_iou_rotated_numba, prepare_boxes
from rgfl.geometry.nms import _resolve_nms_backend, batched_nms_rotated, nms_rotated
from tests.geometry.test_nms import clustered_detections, shapely_greedy_nms, shapely_iou_matrix


def both(boxes, scores, labels, threshold):
    """Keep lists of the numba kernel and the torch path on the same CPU tensors."""
    boxes, scores = torch.as_tensor(boxes), torch.as_tensor(scores)
    labels = None if labels is None else torch.as_tensor(labels)
    if labels is None:
        return nms_rotated(boxes, scores, threshold, backend="numba").tolist(), nms_rotated(boxes, scores, threshold, backend="torch").tolist()
    numba_keep = batched_nms_rotated(boxes, scores, labels, threshold, backend="numba")
    torch_keep = batched_nms_rotated(boxes, scores, labels, threshold, backend="torch")
    assert torch_keep.dtype == torch.int64
    return numba_keep.tolist(), torch_keep.tolist()


def awkward_detections(n: int, n_groups: int, seed: int):
    """Clustered boxes plus exact duplicates, other parametrisations of the same rectangle,
    zero-area and negative-side boxes, axis-aligned boxes on a grid (IoU exactly 1/3, 1/2...), and
    1-decimal scores (many exact ties)."""
    rng = np.random.default_rng(seed)
    boxes, _, labels = clustered_detections(n, n_groups, seed)
    boxes[: n // 10] = boxes[n // 10 : 2 * (n // 10)]  # duplicates
    other = slice(2 * (n // 10), 3 * (n // 10))
    source = boxes[3 * (n // 10) : 4 * (n // 10)]
    boxes[other] = np.c_[source[:, :2], source[:, 3], source[:, 2], source[:, 4] + np.pi / 2]
    degenerate = rng.choice(n, n // 20, replace=False)
    boxes[degenerate, 2 + rng.integers(0, 2, len(degenerate))] = rng.choice([0.0, -3.0], len(degenerate))
    grid = rng.choice(n, n // 5, replace=False)
    boxes[grid] = np.c_[rng.integers(0, 12, (len(grid), 2)) * 1.0 + 300, np.full((len(grid), 2), 2.0), rng.choice([0.0, np.pi / 2, np.pi], len(grid))]
    scores = np.round(rng.uniform(0, 1, n), 1)
    scores[rng.choice(n, n // 10, replace=False)] = rng.choice([0.0, -0.0], n // 10)  # equal, other bits
    return boxes, scores, labels


@pytest.mark.parametrize("threshold", [0.0, 0.1, 1 / 3, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_keep_list_as_numba_kernel(threshold, seed):
    for n, n_groups in [(500, 1), (900, 7), (1200, 150)]:  # 150 groups: many of one or two boxes
        boxes, scores, labels = awkward_detections(n, n_groups, seed)
        numba_keep, torch_keep = both(boxes, scores, labels, threshold)
        assert torch_keep == numba_keep, (n, n_groups)
        numba_keep, torch_keep = both(boxes, scores, None, threshold)
        assert torch_keep == numba_keep
    # float32 input: both compute in float64 from the same rounded boxes.
    boxes32 = torch.from_numpy(boxes).float()
    numba_keep, torch_keep = both(boxes32, torch.from_numpy(scores).float(), labels, threshold)
    assert torch_keep == numba_keep


@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_matches_shapely_greedy_reference(threshold):
    boxes, scores, labels = clustered_detections(400, 4, seed=2)
    expected = shapely_greedy_nms(shapely_iou_matrix(400, 4, 2, "float64"), scores, labels, threshold)
    keep = batched_nms_rotated(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), threshold, backend="torch")
    assert keep.tolist() == expected
    assert len(expected) < 300  # clusters really suppress


def test_ties_thresholds_and_order():
    box = [10.0, 10.0, 20.0, 8.0, 0.3]
    same_other_way = [10.0, 10.0, 8.0, 20.0, 0.3 + np.pi / 2]
    boxes = torch.tensor([box, same_other_way, box], dtype=torch.float64)
    ties = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    assert nms_rotated(boxes, ties, 0.99, backend="torch").tolist() == [0]
    half = torch.tensor([[0.0, 0.0, 2.0, 2.0, 0.0], [1.0, 0.0, 2.0, 2.0, 0.0]], dtype=torch.float64)  # IoU 1/3
    two = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert nms_rotated(half, two, 1 / 3, backend="torch").tolist() == [0, 1]  # strictly greater suppresses
    assert nms_rotated(half, two, 0.33, backend="torch").tolist() == [0]
    assert nms_rotated(half, torch.tensor([0.1, 0.8], dtype=torch.float64), 0.5, backend="torch").tolist() == [1, 0]
    # Labels: the same pair in two groups does not suppress across them.
    labels = torch.tensor([3, 5])
    assert batched_nms_rotated(half, two, labels, 0.2, backend="torch").tolist() == [0, 1]


def test_exact_pair_iou_is_bit_identical_to_the_kernel():
    rng = np.random.default_rng(7)
    n = 300
    first = np.c_[rng.uniform(0, 60, (n, 2)), rng.uniform(0, 40, (n, 2)), rng.uniform(-4, 4, n)]
    second = first + np.c_[rng.normal(0, 3, (n, 2)), rng.normal(0, 2, (n, 2)), rng.normal(0, 0.2, n)]
    # Nearly parallel and exactly parallel edges, shared sides, zero and negative sides.
    second[:50, 4] = first[:50, 4] + rng.choice([0.0, 1e-16, -1e-13, np.pi / 2, np.pi], 50)
    second[50:80] = first[50:80]
    second[80:90, 2] = 0.0
    first[90:100, 3] = -1.0
    expected = box_iou_rotated_numba(torch.from_numpy(first), torch.from_numpy(second), aligned=True).numpy()
    got = nms_torch.exact_pair_iou(torch.from_numpy(prepare_boxes(first)), torch.from_numpy(prepare_boxes(second))).numpy()
    assert np.array_equal(got, expected)  # bit for bit, not allclose
    # Pairwise: the kernel's matrix holds the same values where enclosing boxes touch (0 elsewhere).
    matrix = box_iou_rotated_numba(torch.from_numpy(first), torch.from_numpy(second)).numpy()
    i, j = np.nonzero(matrix)
    pairs = nms_torch.exact_pair_iou(torch.from_numpy(prepare_boxes(first)[i]), torch.from_numpy(prepare_boxes(second)[j])).numpy()
    assert np.array_equal(pairs, matrix[i, j]) and len(i) > n


def test_chunked_work_gives_the_same_keep_list(monkeypatch):
    boxes, scores, labels = awkward_detections(1500, 3, seed=4)
    whole = both(boxes, scores, labels, 0.3)
    monkeypatch.setattr(nms_torch, "_BAND_ENTRIES", 5000)  # rows x columns per band chunk
    monkeypatch.setattr(nms_torch, "_PAIRS_PER_BATCH", 777)
    assert len(nms_torch._band_chunks(np.full(1500, 1500), nms_torch._BAND_ENTRIES)) > 10
    chunked = both(boxes, scores, labels, 0.3)
    assert chunked == whole and whole[0] == whole[1]


def test_band_chunks_cover_every_row_once_within_budget():
    sizes = [1, 4000, 3, 2, 700, 1]
    group_end = np.repeat(np.cumsum(sizes), sizes)
    chunks = nms_torch._band_chunks(group_end, nms_torch._BAND_ENTRIES)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(group_end)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for first, stop, column_stop in chunks:
        assert column_stop == group_end[stop - 1]
        assert stop - first == 1 or (stop - first) * (column_stop - first) <= nms_torch._BAND_ENTRIES


def test_empty_and_non_finite_input():
    assert nms_rotated(torch.zeros(0, 5), torch.zeros(0), 0.5, backend="torch").shape == (0,)
    empty = batched_nms_rotated(torch.zeros(0, 5), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5, backend="torch")
    assert empty.shape == (0,) and empty.dtype == torch.int64
    keep = nms_rotated(np.array([[0, 0, 4, 2, 0.0], [0, 0, 4, 2, 0.1]]), np.array([0.2, 0.9]), 0.5, backend="torch")
    assert isinstance(keep, np.ndarray) and keep.tolist() == [1]
    boxes = torch.tensor([[0, 0, 4, 2, 0.0], [1, 1, 4, 2, 0.0], [0, 0, 4, 2, math.inf]])
    with pytest.raises(ValueError, match="index 2"):
        nms_rotated(boxes, torch.tensor([0.9, 0.5, 0.7]), 0.5, backend="torch")
    with pytest.raises(ValueError, match="index 1"):
        nms_rotated(boxes[:2], torch.tensor([0.9, math.nan]), 0.5, backend="torch")


def test_auto_picks_the_numba_kernel_on_every_device(monkeypatch):
    assert _resolve_nms_backend("auto", torch.device("cpu")) == "numba"
    assert _resolve_nms_backend("auto", torch.device("cuda")) == "numba"  # faster there too (docs/geometry.md)
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "torch")  # the IoU preference does not move CPU NMS
    assert _resolve_nms_backend("auto", torch.device("cpu")) == "numba"
    with pytest.raises(ValueError, match="unknown NMS backend"):
        _resolve_nms_backend("cuda", torch.device("cpu"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5])
def test_cuda_keep_list_equals_the_cpu_kernel(threshold):
    for seed, (n, n_groups) in enumerate([(3000, 15), (6000, 1), (2000, 300)]):
        boxes, scores, labels = awkward_detections(n, n_groups, seed)
        expected = batched_nms_rotated(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), threshold)
        cuda = [torch.from_numpy(x).cuda() for x in (boxes, scores, labels)]
        keep = batched_nms_rotated(*cuda, threshold)  # auto: the torch path on the GPU
        assert keep.device.type == "cuda"
        assert keep.tolist() == expected.tolist()
        keep32 = batched_nms_rotated(cuda[0].float(), cuda[1].float(), cuda[2], threshold)
        expected32 = batched_nms_rotated(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), torch.from_numpy(labels), threshold)
        assert keep32.tolist() == expected32.tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_merge_keeps_what_the_cpu_merge_keeps():
    from rgfl.dota.merge import merge_image_detections
    from rgfl.geometry.boxes import obb2poly

    boxes, scores, labels = awkward_detections(4000, 15, seed=9)
    polygons = obb2poly(boxes)
    on_cpu = merge_image_detections(labels, scores, polygons, iou_thr=0.1, score_thr=0.0, max_per_img=0, device="cpu")
    on_gpu = merge_image_detections(labels, scores, polygons, iou_thr=0.1, score_thr=0.0, max_per_img=0, device="cuda")
    assert on_gpu.tolist() == on_cpu.tolist() and 0 < len(on_cpu) < 4000
