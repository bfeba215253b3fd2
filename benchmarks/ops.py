"""Benchmark rgfl's rotated IoU and NMS against shapely 2 (and mmcv / ultralytics when importable).

Run:  python benchmarks/ops.py            (about 2-4 minutes on 2 cores)
      python benchmarks/ops.py --big      (adds 20000 x 20000 pairwise IoU with its peak memory)

Prints one table: median wall time over repeats (after a warm-up call, so numba compile time is
excluded), the ratio peer / rgfl for each case, and for NMS whether the keep set equals the exact
greedy result. Everything runs in this process with torch and numba limited to --threads threads.
Peers that take minutes (shapely dense on overlapping pairs) are timed on a subset and scaled by
the number of pairs; the table says so.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import Callable

import numpy as np
import shapely
import torch

from rgfl.geometry.boxes import obb2hbb, obb2poly
from rgfl.geometry.iou import box_iou_rotated
from rgfl.geometry.nms import batched_nms_rotated


def timed(function: Callable[[], object], repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Median wall seconds over ``repeats`` calls (after one warm-up call) and the last result.
    The median CPU seconds of the process go to ``timed.cpu`` (the machine is shared and noisy:
    CPU time says what the work costs when the cores are free)."""
    result = function() if warmup else None
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    timed.cpu = statistics.median(cpu)  # type: ignore[attr-defined]
    return statistics.median(times), result


def dota_like_boxes(n: int, extent: float, rng: np.random.Generator) -> np.ndarray:
    """Objects spread over an image: sizes 8-300 px (log-uniform), aspect 1-6, any angle."""
    long_side = np.exp(rng.uniform(np.log(8), np.log(300), n))
    aspect = rng.uniform(1, 6, n)
    return np.stack([rng.uniform(0, extent, n), rng.uniform(0, extent, n), long_side, long_side / aspect, rng.uniform(-np.pi, np.pi, n)], 1)


def clustered_boxes(n: int, extent: float, rng: np.random.Generator, per_cluster: int = 20) -> np.ndarray:
    """Detector output: clusters of jittered copies around objects (most pairs in a cluster overlap)."""
    objects = dota_like_boxes(max(1, n // per_cluster), extent, rng)
    member = rng.integers(0, len(objects), n)
    boxes = objects[member].copy()
    boxes[:, :2] += rng.normal(0, 1, (n, 2)) * boxes[:, 3:4] * 0.15
    boxes[:, 2:4] *= rng.uniform(0.85, 1.15, (n, 2))
    boxes[:, 4] += rng.normal(0, 0.08, n)
    return boxes


def polygons(boxes: np.ndarray) -> np.ndarray:
    return shapely.polygons(obb2poly(boxes.astype(np.float64)).reshape(-1, 4, 2))


def shapely_dense_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    p1, p2 = polygons(boxes1), polygons(boxes2)
    inter = shapely.area(shapely.intersection(p1[:, None], p2[None, :]))
    a1, a2 = shapely.area(p1), shapely.area(p2)
    return inter / (a1[:, None] + a2[None, :] - inter)


def shapely_aligned_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    p1, p2 = polygons(boxes1), polygons(boxes2)
    inter = shapely.area(shapely.intersection(p1, p2))
    return inter / (shapely.area(p1) + shapely.area(p2) - inter)


def shapely_strtree_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    p1, p2 = polygons(boxes1), polygons(boxes2)
    tree = shapely.STRtree(p2)
    i, j = tree.query(p1, predicate="intersects")
    inter = shapely.area(shapely.intersection(p1[i], p2[j]))
    out = np.zeros((len(p1), len(p2)))
    a1, a2 = shapely.area(p1), shapely.area(p2)
    out[i, j] = inter / (a1[i] + a2[j] - inter)
    return out


def prefiltered_polygon_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """DOTA_devkit-style greedy NMS per class: horizontal-box overlap first, exact polygon IoU
    (shapely) only for the boxes whose enclosing boxes touch the kept one."""
    keep_all = []
    hbb_all = obb2hbb(boxes)
    poly_all = polygons(boxes)
    for label in np.unique(labels):
        index = np.nonzero(labels == label)[0]
        order = index[np.lexsort((index, -scores[index]))]
        while order.size:
            i = order[0]
            keep_all.append(i)
            rest = order[1:]
            hbb = hbb_all[rest]
            touch = (hbb[:, 0] <= hbb_all[i, 2]) & (hbb[:, 2] >= hbb_all[i, 0]) & (hbb[:, 1] <= hbb_all[i, 3]) & (hbb[:, 3] >= hbb_all[i, 1])
            candidates = rest[touch]
            suppress = np.zeros(rest.size, dtype=bool)
            if candidates.size:
                inter = shapely.area(shapely.intersection(poly_all[i], poly_all[candidates]))
                iou = inter / (shapely.area(poly_all[i]) + shapely.area(poly_all[candidates]) - inter)
                suppress[np.nonzero(touch)[0][iou > threshold]] = True
            order = rest[~suppress]
    keep = np.array(keep_all, dtype=np.int64)
    return keep[np.lexsort((keep, -scores[keep]))]


def optional_peers() -> dict[str, object]:
    peers: dict[str, object] = {}
    try:
        import mmcv.ops  # type: ignore[import-not-found]

        peers["mmcv"] = mmcv.ops
    except Exception:
        pass
    try:
        from ultralytics.utils.metrics import batch_probiou  # type: ignore[import-not-found]
        from ultralytics.utils.nms import TorchNMS  # type: ignore[import-not-found]

        peers["ultralytics"] = (TorchNMS, batch_probiou)
    except Exception:
        pass
    return peers


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, case: str, method: str, seconds: float, reference: float | None, note: str = "", scale: float = 1.0) -> None:
        """``scale`` multiplies a subset's timing up to the full case (CPU time included)."""
        ratio = "" if reference is None else f"{seconds / reference:.1f}x"
        cpu = f"{timed.cpu * scale:.4f}"  # type: ignore[attr-defined]
        self.rows.append((case, method, f"{seconds:.4f}", cpu, ratio, note))
        print(f"  {case:30s} {method:44s} {seconds:9.4f} s  cpu {cpu:>9s} s {ratio:>8s}  {note}", flush=True)

    def render(self) -> str:
        header = ("case", "method", "wall s (median)", "cpu s", "wall vs rgfl", "note")
        widths = [max(len(r[k]) for r in [header, *self.rows]) for k in range(len(header))]
        lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in self.rows]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big", action="store_true", help="also 20000 x 20000 pairwise IoU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    peers = optional_peers()
    print(f"torch {torch.__version__}, numba {numba.__version__}, shapely {shapely.__version__}, threads {args.threads}, "
          f"peers found: {', '.join(peers) or 'none (mmcv, ultralytics not importable)'}", flush=True)
    table = Table()
    r = args.repeats

    # 1. Pairwise IoU, boxes spread over a 4000 px image (few pairs overlap).
    spread1 = dota_like_boxes(2000, 4000, rng).astype(np.float32)
    spread2 = dota_like_boxes(2000, 4000, rng).astype(np.float32)
    s1, s2 = torch.from_numpy(spread1), torch.from_numpy(spread2)
    case = "pairwise 2000x2000 spread"
    base, ours = timed(lambda: box_iou_rotated(s1, s2), r)
    table.add(case, "rgfl (numba, float32 in)", base, None)
    t, _ = timed(lambda: box_iou_rotated(s1, s2, backend="torch"), r)
    table.add(case, "rgfl torch path (no grad)", t, base)
    t, reference = timed(lambda: shapely_strtree_iou(spread1, spread2), r)
    table.add(case, "shapely STRtree + intersection", t, base, f"max |diff| {np.abs(reference - ours.numpy()).max():.1e}")
    t, _ = timed(lambda: shapely_dense_iou(spread1, spread2), 1, warmup=False)
    table.add(case, "shapely dense (all pairs)", t, base)

    # 2. Pairwise IoU of clustered boxes: most pairs overlap.
    clustered = clustered_boxes(4000, 60, rng).astype(np.float32)
    c1, c2 = torch.from_numpy(clustered[:2000]), torch.from_numpy(clustered[2000:])
    case = "pairwise 2000x2000 clustered"
    base, ours = timed(lambda: box_iou_rotated(c1, c2), r)
    overlapping = float((ours > 0).float().mean())
    table.add(case, "rgfl (numba)", base, None, f"{overlapping:.0%} pairs overlap, {base / 4e6 * 1e6:.3f} us/pair")
    t, _ = timed(lambda: box_iou_rotated(c1[:500], c2, backend="torch"), 1)
    table.add(case, "rgfl torch path (500 rows, scaled x4)", t * 4, base, scale=4)
    t, reference = timed(lambda: shapely_dense_iou(clustered[:100], clustered[2000:]), 1, warmup=False)
    table.add(case, "shapely dense (100 rows, scaled x20)", t * 20, base, f"max |diff| {np.abs(reference - ours[:100].numpy()).max():.1e}", scale=20)
    if "mmcv" in peers:
        t, _ = timed(lambda: peers["mmcv"].box_iou_rotated(c1, c2), r)  # type: ignore[attr-defined]
        table.add(case, "mmcv box_iou_rotated (CPU)", t, base)

    # 3. Aligned IoU of 10^6 overlapping pairs (prediction vs. jittered target, the loss case).
    n = 1_000_000
    target = clustered_boxes(n, 4000, rng).astype(np.float32)
    pred = target.copy()
    pred[:, :2] += rng.normal(0, 3, (n, 2)).astype(np.float32)
    pred[:, 2:4] *= rng.uniform(0.8, 1.2, (n, 2)).astype(np.float32)
    pred[:, 4] += rng.normal(0, 0.1, n).astype(np.float32)
    a1, a2 = torch.from_numpy(pred), torch.from_numpy(target)
    case = "aligned 10^6 pairs"
    base, ours = timed(lambda: box_iou_rotated(a1, a2, aligned=True), r)
    table.add(case, "rgfl (numba)", base, None, f"{float((ours > 0).float().mean()):.0%} overlap")
    t, _ = timed(lambda: box_iou_rotated(a1[:250_000], a2[:250_000], aligned=True, backend="torch"), 1)
    table.add(case, "rgfl torch path (2.5e5, scaled x4)", t * 4, base, scale=4)
    grad1 = a1[:100_000].clone().requires_grad_(True)

    def forward_backward() -> None:
        box_iou_rotated(grad1, a2[:100_000], aligned=True).sum().backward()

    t, _ = timed(forward_backward, 1)
    table.add(case, "rgfl torch fwd+bwd (10^5, scaled x10)", t * 10, base, scale=10)
    t, reference = timed(lambda: shapely_aligned_iou(pred[:100_000], target[:100_000]), 1, warmup=False)
    table.add(case, "shapely (10^5 pairs, scaled x10)", t * 10, base, f"max |diff| {np.abs(reference - ours[:100_000].numpy()).max():.1e}", scale=10)
    if "mmcv" in peers:
        t, _ = timed(lambda: peers["mmcv"].box_iou_rotated(a1, a2, aligned=True), r)  # type: ignore[attr-defined]
        table.add(case, "mmcv box_iou_rotated aligned", t, base)

    # 4./5. Class-aware NMS of clustered detections, 15 classes, IoU 0.1.
    for n, extent in ((20_000, 4000), (200_000, 14000)):
        boxes = clustered_boxes(n, extent, rng).astype(np.float32)
        scores = np.round(rng.uniform(0.05, 1, n), 2).astype(np.float32)  # 2 decimals: many ties
        labels = rng.integers(0, 15, n)
        tb, ts, tl = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels)
        case = f"class-aware NMS {n} @0.1"
        repeats = r if n <= 20_000 else max(1, r // 2)
        base, keep = timed(lambda: batched_nms_rotated(tb, ts, tl, 0.1), repeats)
        keep = keep.numpy()
        table.add(case, "rgfl (numba grid)", base, None, f"keeps {keep.size}")
        t, reference = timed(lambda: prefiltered_polygon_nms(boxes, scores, labels, 0.1), 1 if n > 20_000 else repeats, warmup=False)
        same = "same keep set" if np.array_equal(reference, keep) else f"DIFFERENT keep set ({reference.size})"
        table.add(case, "prefiltered polygon NMS (shapely)", t, base, same)
        if "mmcv" in peers:
            from rgfl.geometry.mmcv_backend import nms_rotated_mmcv

            t, other = timed(lambda: nms_rotated_mmcv(tb, ts, 0.1, tl), 1, warmup=False)
            table.add(case, "mmcv nms_rotated per class", t, base, f"keeps {len(other)}")
        if "ultralytics" in peers and n <= 20_000:
            # One fast_nms call with class offsets (ultralytics' default) needs an N x N probiou
            # matrix (minutes here at 20000); per class gives the same keeps, so time that.
            fast_nms, probiou = peers["ultralytics"]  # type: ignore[misc]

            def ultralytics_per_class() -> list[int]:
                kept: list[int] = []
                for label in range(15):
                    index = torch.nonzero(tl == label).squeeze(1)
                    kept += index[fast_nms.fast_nms(tb[index], ts[index], 0.1, iou_func=probiou)].tolist()
                return kept

            t, other = timed(ultralytics_per_class, 1, warmup=False)
            table.add(case, "ultralytics fast_nms + probiou, per class", t, base, f"keeps {len(other)} (approximate IoU, Fast-NMS)")

    if args.big:
        big1 = torch.from_numpy(dota_like_boxes(20000, 4000, rng).astype(np.float32))
        big2 = torch.from_numpy(dota_like_boxes(20000, 4000, rng).astype(np.float32))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t, out = timed(lambda: box_iou_rotated(big1, big2), 1, warmup=False)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        table.add("pairwise 20000x20000 spread", "rgfl (numba)", t, None, f"output {out.numel() * 4 / 2**30:.2f} GiB, peak RSS growth {peak:.0f} MiB")
        del out

    print()
    print(table.render())


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
