"""Benchmark `rgfl eval` on a synthetic set of DOTA-v1.0-val scale, and the merge on patch files.

Builds (in a temporary folder) 458 label files with about 28000 objects over the 15 DOTA-v1.0
classes and Task1 files with about one million detections (jittered copies of the objects plus
random clutter, scores with ties), then times:

- rgfl: ``evaluate_detections`` from the files, all 10 thresholds 0.50:0.05:0.95 (file reading
  included; numba kernels compiled beforehand, as the on-disk cache does after the first run);
- reference: a plain-Python port of the official ``dota_evaluation_task1.py`` (one threshold) on a
  subset of the images, extrapolated per detection to the full set;
- merge (``--merge``): the same detections written as 1024-patch files, indexed and merged;
- malformed (``--malformed``): rgfl again after one malformed line was put in the middle of every
  Task1 file (the bulk scanner must stay on its fast path; the clean files are the peer).

Usage: python benchmarks/eval.py [--images 458] [--dets-per-image 2200] [--repeats 3] [--merge] [--malformed]
Prints a table; medians over repeats. The machine is shared, so expect noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rgfl.dota.annotations import ImageLabels, write_label_file  # noqa: E402
from rgfl.dota.classes import DOTA_V1_0  # noqa: E402
from rgfl.dota.task1 import Task1Writer  # noqa: E402
from rgfl.evaluation import COCO_IOU_THRS, evaluate_detections, load_ground_truth  # noqa: E402


def rectangles(rng, count, width, height, size_low=8, size_high=120):
    centers = rng.uniform([0, 0], [width, height], size=(count, 2))
    sizes = rng.uniform(size_low, size_high, size=(count, 2))
    angles = rng.uniform(0, np.pi, size=count)
    local = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x = local[None, :, 0] * sizes[:, :1]
    y = local[None, :, 1] * sizes[:, 1:]
    pts = np.stack([x * cos - y * sin + centers[:, :1], x * sin + y * cos + centers[:, 1:]], axis=-1)
    return pts.reshape(count, 8)


def build(root: Path, images: int, objects: int, dets_per_image: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    (root / "labels").mkdir(parents=True)
    classes = np.array(DOTA_V1_0)
    per_image = rng.multinomial(objects, np.ones(images) / images)
    with Task1Writer(root / "dets", DOTA_V1_0) as writer:
        for i in range(images):
            stem = f"P{i:04d}"
            width = height = int(rng.integers(800, 4000))
            count = int(per_image[i])
            polys = np.round(rectangles(rng, count, width, height))
            names = classes[rng.integers(0, len(classes), size=count)]
            difficult = (rng.random(count) < 0.1).astype(np.int64)
            write_label_file(root / "labels" / f"{stem}.txt", ImageLabels(polys, list(names), difficult, np.arange(count)))
            copies = max(dets_per_image // 2 // max(count, 1), 1)
            det_polys = [polys[np.repeat(np.arange(count), copies)] + rng.normal(0, 3, size=(count * copies, 8))]
            det_names = [np.repeat(names, copies)]
            clutter = dets_per_image - count * copies
            if clutter > 0:
                det_polys.append(rectangles(rng, clutter, width, height))
                det_names.append(classes[rng.integers(0, len(classes), size=clutter)])
            det_polys = np.concatenate(det_polys)
            det_names = np.concatenate(det_names)
            scores = np.round(rng.random(len(det_names)), 3)  # ties, as real score files have
            for name in DOTA_V1_0:
                mask = det_names == name
                writer.add(name, stem, scores[mask], det_polys[mask])


def time_rgfl(root: Path, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_detections(root / "dets", root / "labels", DOTA_V1_0, COCO_IOU_THRS)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def add_malformed_lines(root: Path) -> int:
    """Put one malformed line (9 fields) in the middle of every Task1 file; returns how many."""
    count = 0
    for path in sorted((root / "dets").glob("Task1_*.txt")):
        lines = path.read_bytes().split(b"\n")
        lines.insert(len(lines) // 2, b"P0000 0.5 1 2 3 4 5 6 7")
        path.write_bytes(b"\n".join(lines))
        count += 1
    return count


def time_reference(root: Path, subset: int) -> tuple[float, int, dict, dict]:
    """Official algorithm (plain-Python port from the tests) on the first `subset` images, AP50."""
    from tests.evaluation import official_port

    stems = sorted(p.stem for p in (root / "labels").glob("*.txt"))[:subset]
    recs = {s: official_port.parse_gt_text((root / "labels" / f"{s}.txt").read_text()) for s in stems}
    keep = set(stems)
    lines = {
        name: [ln for ln in (root / "dets" / f"Task1_{name}.txt").read_text().splitlines() if ln.split(" ", 1)[0] in keep]
        for name in DOTA_V1_0
    }
    start = time.perf_counter()
    aps = {name: official_port.voc_eval(lines[name], recs, name, 0.5, True) for name in DOTA_V1_0}
    seconds = time.perf_counter() - start
    subset_gt = {s: v for s, v in load_ground_truth(root / "labels").items() if s in keep}
    from rgfl.dota.task1 import read_task1_dir

    dets = read_task1_dir(root / "dets", DOTA_V1_0)
    subset_dets = {n: d.select(np.array([i in keep for i in d.image_ids], dtype=bool)) for n, d in dets.items()}
    ours = evaluate_detections(subset_dets, subset_gt, DOTA_V1_0, [0.5])
    ours_aps = {name: ours.class_ap(name, 0.5) for name in DOTA_V1_0}
    return seconds, sum(len(v) for v in lines.values()), aps, ours_aps


def time_merge(root: Path, repeats: int) -> tuple[float, object]:
    """Cut the full-image detections into 1024/824 patch files and merge them back."""
    from rgfl.dota.merge import PatchDetections, merge_patch_detections, write_merged_task1
    from rgfl.dota.patches import patch_name
    from rgfl.dota.task1 import read_task1_dir

    dets = read_task1_dir(root / "dets", DOTA_V1_0)
    with Task1Writer(root / "patches", DOTA_V1_0) as writer:
        for name, det in dets.items():
            ids = np.array(det.image_ids)
            cx = det.polygons[:, 0::2].mean(1)
            cy = det.polygons[:, 1::2].mean(1)
            px = (np.maximum(cx, 0) // 824 * 824).astype(int)
            py = (np.maximum(cy, 0) // 824 * 824).astype(int)
            for stem in np.unique(ids):
                for x, y in set(zip(px[ids == stem].tolist(), py[ids == stem].tolist())):
                    rows = (ids == stem) & (px == x) & (py == y)
                    writer.add(name, patch_name(stem, x, y, 1024), det.scores[rows], det.polygons[rows] - np.tile([x, y], 4))
    times, summary = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        source = PatchDetections(root / "patches", DOTA_V1_0)
        summary = write_merged_task1(merge_patch_detections(source), root / "merged", DOTA_V1_0)
        summary.patches = source.num_patches
        times.append(time.perf_counter() - start)
    return statistics.median(times), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=458)
    parser.add_argument("--objects", type=int, default=28000)
    parser.add_argument("--dets-per-image", type=int, default=2200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=8)
    parser.add_argument("--merge", action="store_true", help="also time merge-submit's library path")
    parser.add_argument("--malformed", action="store_true", help="also time files with one malformed line each")
    parser.add_argument("--no-reference", action="store_true", help="skip the official-algorithm timing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build(root, args.images, args.objects, args.dets_per_image)
        print(f"built synthetic set in {time.perf_counter() - start:.1f} s")
        # Warm-up on a tiny input so the numba kernels are compiled/loaded before timing.
        evaluate_detections({}, {"x": load_ground_truth(root / "labels")["P0000"]}, DOTA_V1_0)

        rgfl_s, result = time_rgfl(root, args.repeats)
        n_dets = sum(c.num_dets for c in result.per_class.values())
        n_gt = sum(c.num_gt + c.num_difficult for c in result.per_class.values())
        print()
        print(f"| what | images | objects | detections | thresholds | seconds |")
        print(f"|---|---|---|---|---|---|")
        print(f"| rgfl evaluate_detections (files -> AP) | {result.num_images} | {n_gt} | {n_dets} | 10 | {rgfl_s:.2f} |")
        if args.malformed:
            import logging

            logging.getLogger("rgfl").setLevel(logging.ERROR)  # one warning per bad line otherwise
            files = add_malformed_lines(root)
            bad_s, bad_result = time_rgfl(root, args.repeats)
            assert bad_result.AP50 == result.AP50  # the bad lines are skipped, nothing else changes
            print(f"| rgfl, one malformed line in each of the {files} files | {result.num_images} | {n_gt} | {n_dets} | 10 | {bad_s:.2f} |")
            print(f"\nmalformed / clean: {bad_s / rgfl_s:.2f}x (medians of {args.repeats})")
        if args.no_reference:
            return
        ref_s, ref_dets, ref_aps, our_aps = time_reference(root, args.reference_images)
        worst = max(abs(ref_aps[n] - our_aps[n]) for n in DOTA_V1_0)
        ref_full = ref_s / max(ref_dets, 1) * n_dets

        print()
        print(f"| official algorithm (Python port), subset | {args.reference_images} | - | {ref_dets} | 1 | {ref_s:.2f} |")
        print(f"| official algorithm, extrapolated to full set | {result.num_images} | {n_gt} | {n_dets} | 1 | {ref_full:.0f} |")
        print(f"| official algorithm, extrapolated, 10 thresholds | | | | 10 | {10 * ref_full:.0f} |")
        print()
        print(f"speed-up vs the reference (10 thresholds each): {10 * ref_full / rgfl_s:.0f}x")
        print(f"max |AP50 difference| rgfl vs reference on the subset: {worst:.2e}")
        print(f"AP50 {result.AP50:.4f}  AP75 {result.AP75:.4f}  mAP {result.mAP:.4f}")
        if args.merge:
            merge_s, summary = time_merge(root, args.repeats)
            print(
                f"merge: {summary.patches} patches, {summary.detections_in} detections in, "
                f"{summary.detections_out} out, {summary.images} images: {merge_s:.2f} s"
            )


if __name__ == "__main__":
    main()
