"""Rotated IoU against shapely's exact polygon intersection, on random boxes and the hard cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

from rgfl.geometry.boxes import obb2poly
from rgfl.geometry.iou import box_iou_rotated, rotated_box_intersection
from tests.conftest import DEVICES

BACKENDS = ["torch", "numba"]
TOLERANCE = {torch.float64: 1e-5, torch.float32: 1e-4}


def shapely_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, mode: str = "iou") -> np.ndarray:
    """Aligned IoU of the exact polygons of the given boxes (float64 arithmetic in GEOS)."""
    p1 = shapely.polygons(obb2poly(boxes1.double().cpu()).reshape(-1, 4, 2).numpy())
    p2 = shapely.polygons(obb2poly(boxes2.double().cpu()).reshape(-1, 4, 2).numpy())
    inter = shapely.area(shapely.intersection(p1, p2))
    area1, area2 = shapely.area(p1), shapely.area(p2)
    denominator = area1 if mode == "iof" else area1 + area2 - inter
    return np.where(denominator > 0, inter / np.where(denominator > 0, denominator, 1.0), 0.0)


def random_pairs(n: int, seed: int, spread: float = 100.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def boxes() -> torch.Tensor:
        centers = torch.rand(n, 2, generator=generator, dtype=torch.float64) * spread
        sizes = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 60 + 0.5
        theta = (torch.rand(n, 1, generator=generator, dtype=torch.float64) - 0.5) * 4 * math.pi
        return torch.cat([centers, sizes, theta], dim=1).to(dtype)

    return boxes(), boxes()


def box(cx, cy, w, h, theta):
    return [float(cx), float(cy), float(w), float(h), float(theta)]


def hard_cases() -> dict[str, tuple[list[list[float]], list[list[float]]]]:
    """Named lists of (boxes1, boxes2) aligned pairs that break naive implementations."""
    generator = torch.Generator().manual_seed(7)
    base = [box(50, 40, 30, 12, t) for t in (0.0, 0.3, math.pi / 4, math.pi / 2, 2.0, -1.0)]
    cases: dict[str, tuple[list, list]] = {}
    cases["identical"] = (base, base)
    cases["other_parametrisation"] = (
        base * 4,
        [box(cx, cy, h, w, t + math.pi / 2) for cx, cy, w, h, t in base]
        + [box(cx, cy, w, h, t + math.pi) for cx, cy, w, h, t in base]
        + [box(cx, cy, h, w, t - math.pi / 2 + 2 * math.pi) for cx, cy, w, h, t in base]
        + [box(cx, cy, w, h, t - 5 * math.pi) for cx, cy, w, h, t in base],
    )
    one_pixel = []
    for cx, cy, w, h, t in base:
        one_pixel += [box(cx + 1, cy, w, h, t), box(cx, cy + 1, w, h, t), box(cx, cy, w + 1, h, t), box(cx, cy, w, h, t + 0.01)]
    cases["one_pixel_perturbed"] = ([b for b in base for _ in range(4)], one_pixel)
    # Shared edges: side by side, stacked, half overlapping along a shared line, also rotated.
    shared1, shared2 = [], []
    for t in (0.0, 0.7, math.pi / 2, -2.2):
        c, s = math.cos(t), math.sin(t)
        for shift_w, shift_h in ((30, 0), (0, 12), (15, 0), (0, 6), (30, 6), (15, 12)):
            shared1.append(box(0, 0, 30, 12, t))
            shared2.append(box(shift_w * c - shift_h * s, shift_w * s + shift_h * c, 30, 12, t))
    cases["shared_edges"] = (shared1, shared2)
    cases["containment"] = (
        [box(0, 0, 100, 50, 0.2), box(0, 0, 100, 50, 0.2), box(0, 0, 100, 50, 0.2), box(10, -5, 20, 5, 1.1)],
        [box(0, 0, 10, 5, 1.3), box(40, 0, 20, 50, 0.2), box(0, 0, 100, 50, 0.2 + math.pi), box(0, 0, 100, 50, 0.2)],
    )
    near1, near2 = [], []
    for delta in (1e-3, 1e-6, 1e-9, 1e-12, 1e-15, 0.0):
        for offset in (0.0, 1e-9, 0.5, 6.0):
            near1.append(box(0, 0, 40, 12, 0.4))
            near2.append(box(3, offset, 40, 12, 0.4 + delta))
            near1.append(box(0, 0, 40, 12, 0.4))
            near2.append(box(0, 12 + offset, 40, 12, 0.4 + math.pi / 2 + delta))
    cases["nearly_parallel"] = (near1, near2)
    tiny = torch.rand(40, 5, generator=generator, dtype=torch.float64)
    tiny1 = [box(x * 0.02, y * 0.02, 0.001 + w * 0.009, 0.001 + h * 0.009, t * 6) for x, y, w, h, t in tiny.tolist()]
    tiny2 = [box(x * 0.02 + 0.003, y * 0.02, 0.005, 0.002 + w * 0.008, t) for x, y, w, h, t in tiny.tolist()]
    cases["tiny"] = (tiny1, tiny2)
    cases["elongated_50_to_1"] = (
        [box(0, 0, 500, 10, t) for t in (0.0, 0.01, 0.5, 1.5, 3.0)] * 2,
        [box(0, 3, 500, 10, t + 0.002) for t in (0.0, 0.01, 0.5, 1.5, 3.0)] + [box(100, 0, 10, 500, t) for t in (0.0, 0.01, 0.5, 1.5, 3.0)],
    )
    large = torch.rand(40, 5, generator=generator, dtype=torch.float64)
    cases["coordinates_1e4"] = (
        [box(1e4 + x * 30, 1e4 - y * 30, 20 + w * 40, 5 + h * 20, t * 6) for x, y, w, h, t in large.tolist()],
        [box(1e4 + y * 30, 1e4 - x * 30, 30 + h * 30, 5 + w * 10, t * 3) for x, y, w, h, t in large.tolist()],
    )
    cases["squares_pi_over_4"] = (
        [box(0, 0, 10, 10, math.pi / 4), box(0, 0, 10, 10, math.pi / 4), box(0, 0, 10, 10, 0.0), box(0, 0, 10, 10, math.pi / 4)],
        [box(0, 0, 10, 10, 0.0), box(0, 0, 10, 10, -math.pi / 4), box(5, 5, 10, 10, math.pi / 4), box(5 * math.sqrt(2), 0, 10, 10, math.pi / 4)],
    )
    cases["corner_contact"] = (
        [box(0, 0, 10, 10, 0.0), box(0, 0, 10, 10, 0.0), box(0, 0, 10, 10, 0.0)],
        [box(10, 10, 10, 10, 0.0), box(5 + 5 * math.sqrt(2), 0, 10, 10, math.pi / 4), box(10, 10 + 1e-9, 10, 10, 0.0)],
    )
    cases["zero_area"] = (
        [box(0, 0, 0, 10, 0.3), box(0, 0, 10, 0, 0.0), box(0, 0, 0, 0, 0.0), box(0, 0, 10, 10, 0.0)],
        [box(0, 0, 10, 10, 0.0), box(0, 0, 10, 0, 0.0), box(0, 0, 0, 0, 0.0), box(0, 0, 0, 10, 1.0)],
    )
    cases["disjoint"] = ([box(0, 0, 10, 4, 0.5)] * 3, [box(100, 0, 10, 4, 0.5), box(0, 30, 10, 4, 2.0), box(8, 8, 3, 3, 0.7)])
    return cases


HARD = hard_cases()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_random_aligned_and_pairwise_match_shapely(backend, dtype, device):
    if backend == "numba" and device != "cpu":
        pytest.skip("numba kernels are CPU only")
    boxes1, boxes2 = random_pairs(3000, seed=0, dtype=dtype)
    boxes1, boxes2 = boxes1.to(device), boxes2.to(device)
    aligned = box_iou_rotated(boxes1, boxes2, aligned=True, backend=backend)
    assert aligned.dtype == dtype and aligned.device == boxes1.device
    expected = shapely_iou(boxes1, boxes2)
    assert (expected > 0).mean() > 0.2  # the set really exercises overlaps
    np.testing.assert_allclose(aligned.double().cpu().numpy(), expected, rtol=0, atol=TOLERANCE[dtype])

    rows, cols = boxes1[:60], boxes2[:70]
    pairwise = box_iou_rotated(rows, cols, backend=backend)
    assert pairwise.shape == (60, 70)
    expected = shapely_iou(rows.repeat_interleave(70, 0), cols.repeat(60, 1)).reshape(60, 70)
    np.testing.assert_allclose(pairwise.double().cpu().numpy(), expected, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_cases_match_shapely(name, dtype, backend):
    boxes1 = torch.tensor(HARD[name][0], dtype=dtype)
    boxes2 = torch.tensor(HARD[name][1], dtype=dtype)
    expected = shapely_iou(boxes1, boxes2)
    got = box_iou_rotated(boxes1, boxes2, aligned=True, backend=backend).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE[dtype], err_msg=name)
    # IoU is symmetric.
    swapped = box_iou_rotated(boxes2, boxes1, aligned=True, backend=backend).double().numpy()
    np.testing.assert_allclose(swapped, expected, rtol=0, atol=TOLERANCE[dtype], err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_rectangle_in_any_parametrisation_has_iou_one(backend):
    boxes1, boxes2 = (torch.tensor(side, dtype=torch.float64) for side in HARD["other_parametrisation"])
    iou = box_iou_rotated(boxes1, boxes2, aligned=True, backend=backend)
    assert torch.allclose(iou, torch.ones_like(iou), atol=1e-12)
    assert bool((box_iou_rotated(boxes1, boxes1, aligned=True, backend=backend) == 1).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_iof_is_over_the_first_box(backend):
    boxes1, boxes2 = random_pairs(500, seed=1)
    got = box_iou_rotated(boxes1, boxes2, mode="iof", aligned=True, backend=backend).numpy()
    np.testing.assert_allclose(got, shapely_iou(boxes1, boxes2, mode="iof"), atol=1e-9)
    small_inside_big = torch.tensor([[0, 0, 10, 5, 0.3]], dtype=torch.float64), torch.tensor([[0, 0, 100, 50, 1.0]], dtype=torch.float64)
    assert box_iou_rotated(*small_inside_big, mode="iof", backend=backend).item() == pytest.approx(1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_generic_configurations(device):
    # Generic: overlapping, no exactly parallel edges, no vertex on an edge.
    boxes1 = torch.tensor([[0.0, 0.0, 10.0, 4.0, 0.3], [5.0, 1.0, 8.0, 8.0, -0.2], [0.0, 0.0, 30.0, 3.0, 1.0]], dtype=torch.float64, device=device)
    boxes2 = torch.tensor([[1.0, 0.5, 7.0, 5.0, 1.1], [6.0, 2.0, 3.0, 9.0, 0.5], [2.0, 1.0, 5.0, 6.0, 2.5]], dtype=torch.float64, device=device)
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: box_iou_rotated(a, b, aligned=True), (boxes1, boxes2))
    assert torch.autograd.gradcheck(lambda a, b: box_iou_rotated(a, b), (boxes1, boxes2))
    assert torch.autograd.gradcheck(lambda a, b: box_iou_rotated(a, b, mode="iof", aligned=True), (boxes1, boxes2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_gradients_are_finite_on_degenerate_pairs(dtype, device):
    names = ["identical", "other_parametrisation", "shared_edges", "nearly_parallel", "disjoint", "corner_contact", "zero_area", "tiny"]
    boxes1 = torch.tensor([b for n in names for b in HARD[n][0]], dtype=dtype, device=device, requires_grad=True)
    boxes2 = torch.tensor([b for n in names for b in HARD[n][1]], dtype=dtype, device=device, requires_grad=True)
    iou = box_iou_rotated(boxes1, boxes2, aligned=True)
    (1 - iou).sum().backward()
    assert bool(torch.isfinite(boxes1.grad).all()) and bool(torch.isfinite(boxes2.grad).all())
    # Disjoint pairs: IoU 0 with zero gradient (no signal, but no NaN either).
    pairwise = box_iou_rotated(boxes1[:3], boxes2[-3:])
    assert pairwise.requires_grad


def shapely_overlap(boxes1: torch.Tensor, boxes2: torch.Tensor, mode: str) -> np.ndarray:
    """shapely's intersection area (``mode="inter"``) or IoU/IoF of aligned pairs."""
    if mode != "inter":
        return shapely_iou(boxes1, boxes2, mode)
    p1 = shapely.polygons(obb2poly(boxes1.double().cpu()).reshape(-1, 4, 2).numpy())
    p2 = shapely.polygons(obb2poly(boxes2.double().cpu()).reshape(-1, 4, 2).numpy())
    return shapely.area(shapely.intersection(p1, p2))


@pytest.mark.parametrize("mode", ["iou", "iof", "inter"])
def test_analytic_gradient_equals_finite_differences_of_shapely(mode):
    # The backward is derived by hand (boundary pieces, transport theorem), so check it against
    # an independent reference: central differences of shapely's exact areas, every parameter
    # of both boxes, on random overlapping pairs (generic: no coinciding sides or vertices).
    boxes1, boxes2 = random_pairs(400, seed=11, spread=30.0)
    boxes1.requires_grad_(True)
    boxes2.requires_grad_(True)
    value = rotated_box_intersection(boxes1, boxes2) if mode == "inter" else box_iou_rotated(boxes1, boxes2, mode=mode, aligned=True)
    value.sum().backward()
    step = 1e-6
    for boxes, other, first in ((boxes1, boxes2, True), (boxes2, boxes1, False)):
        base, fixed = boxes.detach(), other.detach()
        for column in range(5):
            shift = torch.zeros_like(base)
            shift[:, column] = step
            pairs_plus = (base + shift, fixed) if first else (fixed, base + shift)
            pairs_minus = (base - shift, fixed) if first else (fixed, base - shift)
            numeric = (shapely_overlap(*pairs_plus, mode) - shapely_overlap(*pairs_minus, mode)) / (2 * step)
            scale = 1.0 if mode != "inter" else float(np.abs(numeric).max())
            np.testing.assert_allclose(boxes.grad[:, column].numpy(), numeric, atol=1e-5 * scale, err_msg=f"{mode}, box {1 if first else 2}, column {column}")


def test_analytic_gradient_follows_the_clamps_of_degenerate_boxes():
    # A negative side counts as 0: no gradient through it. A box inside the other: dI/dw = h.
    boxes1 = torch.tensor([[0.0, 0.0, -3.0, 4.0, 0.2], [0.0, 0.0, 4.0, 2.0, 0.3]], dtype=torch.float64, requires_grad=True)
    boxes2 = torch.tensor([[0.0, 0.0, 5.0, 5.0, 0.0], [0.5, 0.0, 20.0, 20.0, 1.0]], dtype=torch.float64, requires_grad=True)
    rotated_box_intersection(boxes1, boxes2).sum().backward()
    assert boxes1.grad[0].abs().max().item() == 0.0
    assert boxes1.grad[1].tolist() == pytest.approx([0.0, 0.0, 2.0, 4.0, 0.0], abs=1e-12)
    # B contains A: moving B (but not out of contact) changes nothing.
    assert boxes2.grad[1].tolist() == pytest.approx([0.0] * 5, abs=1e-12)


def test_iou_backward_is_a_few_dozen_operator_calls():
    # The point of the analytic backward (issue 20): a training step on a GPU pays per operator
    # launch, and the reverse of every clipping step was about 240 of them.
    from torch.profiler import ProfilerActivity, profile

    boxes1, boxes2 = random_pairs(64, seed=3, dtype=torch.float32)
    boxes1.requires_grad_(True)
    loss = (1 - box_iou_rotated(boxes1, boxes2, aligned=True)).sum()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss.backward()
    top_level = 0
    for event in prof.events():
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        top_level += event.name.startswith("aten::") and parent is None
    assert 0 < top_level <= 80


def test_gradient_points_towards_more_overlap():
    # A copy shifted right, too small and turned too far: the IoU gradient must pull it back.
    target = torch.tensor([[0.0, 0.0, 20.0, 6.0, 0.4]], dtype=torch.float64)
    pred = torch.tensor([[3.0, 0.0, 15.0, 6.0, 0.6]], dtype=torch.float64, requires_grad=True)
    box_iou_rotated(pred, target, aligned=True).sum().backward()
    d_cx, _, d_w, _, d_theta = pred.grad[0].tolist()
    assert d_cx < 0 and d_w > 0 and d_theta < 0


def test_empty_inputs_numpy_and_errors(monkeypatch):
    empty = torch.zeros(0, 5)
    some = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]])
    for backend in BACKENDS:
        assert box_iou_rotated(empty, some, backend=backend).shape == (0, 1)
        assert box_iou_rotated(some, empty, backend=backend).shape == (1, 0)
        assert box_iou_rotated(empty, empty, aligned=True, backend=backend).shape == (0,)
    out = box_iou_rotated(np.array([[0, 0, 2, 2, 0.0]]), np.array([[1, 0, 2, 2, 0.0]]))
    assert isinstance(out, np.ndarray) and out[0, 0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="mode"):
        box_iou_rotated(some, some, mode="giou")
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        box_iou_rotated(torch.zeros(3, 4), some)
    with pytest.raises(ValueError, match="aligned"):
        box_iou_rotated(some, torch.zeros(2, 5), aligned=True)
    with pytest.raises(ValueError, match="not differentiable"):
        box_iou_rotated(some.clone().requires_grad_(True), some, backend="numba")
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "cuda-magic")
    with pytest.raises(ValueError, match="RGFL_GEOMETRY_BACKEND"):
        box_iou_rotated(some, some)


def test_environment_variable_selects_backend(monkeypatch):
    boxes1, boxes2 = random_pairs(50, seed=3)
    reference = box_iou_rotated(boxes1, boxes2, backend="torch")
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "numba")
    assert torch.allclose(box_iou_rotated(boxes1, boxes2), reference, atol=1e-12)
    # The preference never breaks a differentiable call.
    grad_boxes = boxes1.clone().requires_grad_(True)
    box_iou_rotated(grad_boxes, boxes2).sum().backward()
    assert grad_boxes.grad is not None and bool(torch.isfinite(grad_boxes.grad).all())
    monkeypatch.setenv("RGFL_GEOMETRY_BACKEND", "mmcv")
    box_iou_rotated(boxes1.clone().requires_grad_(True), boxes2).sum().backward()
    try:
        import mmcv.ops  # noqa: F401
    except Exception:
        with pytest.raises(RuntimeError, match="mmcv"):
            box_iou_rotated(boxes1, boxes2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_sides_count_as_zero_and_half_precision(backend):
    boxes = torch.tensor([[0.0, 0.0, -4.0, 2.0, 0.0], [0.0, 0.0, 4.0, 2.0, 0.0]])
    assert box_iou_rotated(boxes, boxes, aligned=True, backend=backend).tolist() == [0.0, 1.0]
    boxes1, boxes2 = random_pairs(200, seed=4)
    expected = shapely_iou(boxes1.half(), boxes2.half())
    got = box_iou_rotated(boxes1.half(), boxes2.half(), aligned=True, backend=backend)
    assert got.dtype == torch.float16
    np.testing.assert_allclose(got.double().numpy(), expected, atol=2e-3)  # float16 output rounding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_integer_grid_boxes_full_of_coincidences(backend, dtype):
    # Integer centers and sizes at multiples of pi/4 (and a pair 0.3 / 0.3 + pi/2): shared sides,
    # vertices on sides, identical and zero-size boxes everywhere; the classic failure ground.
    rng = np.random.default_rng(11)
    angles = np.array([0, math.pi / 2, math.pi, -math.pi / 2, math.pi / 4, -math.pi / 4, 3 * math.pi / 4, 0.3, 0.3 + math.pi / 2])

    def boxes() -> torch.Tensor:
        centers = rng.integers(0, 12, (20000, 2)).astype(float)
        sizes = rng.integers(0, 8, (20000, 2)).astype(float)
        theta = angles[rng.integers(0, len(angles), 20000)]
        return torch.from_numpy(np.concatenate([centers, sizes, theta[:, None]], 1)).to(dtype)

    boxes1, boxes2 = boxes(), boxes()
    got = box_iou_rotated(boxes1, boxes2, aligned=True, backend=backend).double().numpy()
    np.testing.assert_allclose(got, shapely_iou(boxes1, boxes2), rtol=0, atol=TOLERANCE[dtype])


def _iou_sum(seed: int) -> float:
    boxes1, boxes2 = random_pairs(300, seed)
    return float(box_iou_rotated(boxes1, boxes2).sum() + box_iou_rotated(boxes1, boxes2, aligned=True).sum())


def _iou_sum_in_forked_child(seed: int) -> float:
    # A forked child must not use torch's inherited OpenMP pool (DataLoader workers do the same).
    torch.set_num_threads(1)
    return _iou_sum(seed)


def test_parallel_kernels_survive_fork_and_threads():
    # numba's default GNU OpenMP layer aborts forked children once the parent ran a parallel
    # kernel; rgfl picks a fork-safe layer and serializes launches from threads.
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    expected = [_iou_sum(seed) for seed in range(4)]  # parallel kernels ran in the parent
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(_iou_sum, range(4))) == expected
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_iou_sum_in_forked_child, range(4)) == pytest.approx(expected, rel=1e-12)
