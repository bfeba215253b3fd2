"""DOTA Task1 AP: hand-computed cases, the official algorithm (ported) and a shapely brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from rgfl.dota.annotations import ImageLabels
from rgfl.dota.task1 import Task1Detections, format_task1_lines
from rgfl.evaluation import COCO_IOU_THRS, evaluate_detections, load_ground_truth, parse_iou_thresholds
from rgfl.evaluation.ap import average_precision
from tests.evaluation import official_port

SQUARE = [0, 0, 10, 0, 10, 10, 0, 10]


def shifted(polygon, dx, dy=0.0):
    return [v + (dx if i % 2 == 0 else dy) for i, v in enumerate(polygon)]


def labels(*objects):
    """ImageLabels from (polygon, class, difficult) tuples."""
    return ImageLabels(
        np.array([o[0] for o in objects], dtype=np.float64).reshape(-1, 8),
        [o[1] for o in objects],
        np.array([o[2] for o in objects], dtype=np.int64),
        np.arange(1, len(objects) + 1),
    )


def dets(*rows):
    """Task1Detections from (image, score, polygon) tuples, in the given (file) order."""
    return Task1Detections(
        [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float64), np.array([r[2] for r in rows]).reshape(-1, 8)
    )


def ap_of(det, gt, thr=0.5, method="voc07"):
    result = evaluate_detections({"a": det}, gt, ["a"], iou_thrs=[thr], ap_method=method)
    return result.class_ap("a", thr)


# --- hand-computed cases ------------------------------------------------------------------------


def test_duplicate_detection_is_a_false_positive():
    gt = {"img": labels((SQUARE, "a", 0))}
    det = dets(("img", 0.9, SQUARE), ("img", 0.8, shifted(SQUARE, 1)))
    # tp = [1, 0], fp = [0, 1]: recall [1, 1], precision [1, 0.5] -> every recall point sees 1.
    assert ap_of(det, gt) == pytest.approx(1.0, abs=1e-12)
    assert ap_of(det, gt, method="area") == pytest.approx(1.0, abs=1e-12)


def test_precision_recall_by_hand():
    gt = {"img": labels((SQUARE, "a", 0), (shifted(SQUARE, 100), "a", 0))}
    det = dets(("img", 0.9, SQUARE), ("img", 0.8, shifted(SQUARE, 50)), ("img", 0.7, shifted(SQUARE, 100)))
    # recall [.5, .5, 1], precision [1, .5, 2/3]; 11-point: 6 points at 1, 5 points at 2/3.
    assert ap_of(det, gt) == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert ap_of(det, gt, method="area") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)


def test_tied_scores_follow_numpy_argsort_of_file_order():
    gt = {"img": labels((SQUARE, "a", 0))}
    miss, hit = ("img", 0.5, shifted(SQUARE, 50)), ("img", 0.5, SQUARE)
    # np.argsort(-[0.5, 0.5]) visits the first line first.
    assert list(np.argsort(-np.array([0.5, 0.5]))) == [0, 1]
    assert ap_of(dets(miss, hit), gt) == pytest.approx(0.5, abs=1e-12)  # precision 1/2 at recall 1
    assert ap_of(dets(hit, miss), gt) == pytest.approx(1.0, abs=1e-12)


def test_difficult_ground_truth_neither_counted_nor_penalised():
    gt = {"img": labels((SQUARE, "a", 1), (shifted(SQUARE, 100), "a", 0))}
    # The first detection hits the difficult object: neither TP nor FP (precision 0/eps = 0 there).
    det = dets(("img", 0.9, SQUARE), ("img", 0.8, shifted(SQUARE, 100)))
    result = evaluate_detections({"a": det}, gt, ["a"], iou_thrs=[0.5])
    assert result.per_class["a"].num_gt == 1 and result.per_class["a"].num_difficult == 1
    assert result.class_ap("a", 0.5) == pytest.approx(1.0, abs=1e-12)
    # Difficult 2 (split-truncated) counts as difficult too, as any nonzero value does officially.
    gt2 = {"img": labels((SQUARE, "a", 2), (shifted(SQUARE, 100), "a", 0))}
    assert ap_of(det, gt2) == pytest.approx(1.0, abs=1e-12)


def test_best_match_already_taken_gives_false_positive_without_fallback():
    other = [0, 0, 10, 0, 10, 8, 0, 8]  # IoU 0.8 with SQUARE
    gt = {"img": labels((SQUARE, "a", 0), (other, "a", 0))}
    det_poly = [0, 0, 10, 0, 10, 9, 0, 9]  # IoU 0.9 with SQUARE, 8/9 with `other`
    det = dets(("img", 0.9, SQUARE), ("img", 0.8, det_poly))
    # The second detection's best ground truth (SQUARE) is taken: FP, although `other` is free.
    # recall [.5, .5], precision [1, .5] -> 6 of 11 points at 1.
    assert ap_of(det, gt) == pytest.approx(6 / 11, abs=1e-12)


def test_iou_must_be_strictly_greater_than_threshold():
    gt = {"img": labels((SQUARE, "a", 0))}
    half = [0, 0, 10, 0, 10, 5, 0, 5]  # IoU exactly 0.5
    assert ap_of(dets(("img", 1.0, half)), gt, thr=0.5) == 0.0
    assert ap_of(dets(("img", 1.0, half)), gt, thr=0.45) == pytest.approx(1.0, abs=1e-12)


def test_eleven_recall_points_keep_numpy_arange_drift():
    # 10 ground truths; 3 hits (recall 0.3), 3 misses, 1 hit (recall 0.4, precision 4/7).
    # The official point 0.30000000000000004 is above 3/10, so it reads precision 4/7, not 1.
    gts = [shifted(SQUARE, 20 * k) for k in range(10)]
    gt = {"img": labels(*[(g, "a", 0) for g in gts])}
    rows = [("img", 0.9 - 0.01 * k, gts[k]) for k in range(3)]
    rows += [("img", 0.8 - 0.01 * k, shifted(SQUARE, 0, 500 + 20 * k)) for k in range(3)]
    rows += [("img", 0.7, gts[3])]
    assert ap_of(dets(*rows), gt) == pytest.approx((3 + 2 * 4 / 7) / 11, abs=1e-12)


def test_unlabelled_images_missing_classes_and_classes_without_ground_truth():
    gt = {"img": labels((SQUARE, "a", 0))}
    det = {"a": dets(("img", 0.9, SQUARE), ("ghost", 0.95, SQUARE)), "b": dets(("img", 0.9, SQUARE))}
    result = evaluate_detections(det, gt, ["a", "b", "c"], iou_thrs=[0.5])
    # "ghost" has no label file: its detection (visited first) is a false positive.
    # tp [0, 1], fp [1, 0]: recall [0, 1], precision [0, 1/2] -> all 11 points read 1/2.
    assert result.class_ap("a", 0.5) == pytest.approx(0.5, abs=1e-12)
    assert result.unlabelled_dets == 1
    assert result.class_ap("b", 0.5) == 0.0  # no ground truth
    assert result.class_ap("c", 0.5) == 0.0  # no detection
    # Default (mmrotate): the mean over the classes with ground truth, here "a" only.
    assert result.averaged_classes == ("a",)
    assert result.AP50 == pytest.approx(result.class_ap("a", 0.5), abs=1e-12)
    assert result.to_dict()["num_classes_averaged"] == 1
    # Official devkit: every class of the list, absent ones as 0.
    official = evaluate_detections(det, gt, ["a", "b", "c"], iou_thrs=[0.5], mean_over="all")
    assert official.AP50 == pytest.approx(result.class_ap("a", 0.5) / 3, abs=1e-12)
    assert official.to_dict()["num_classes_averaged"] == 3


def test_no_ground_truth_class_official_values():
    # Official voc07 gives 0 (recall NaN everywhere); official area gives NaN, rgfl reports 0.
    lines = ["img 0.9 0 0 10 0 10 10 0 10"]
    recs = {"img": []}
    assert official_port.voc_eval(lines, recs, "a", 0.5, True) == 0.0
    assert math.isnan(official_port.voc_eval(lines, recs, "a", 0.5, False))
    assert average_precision(np.array([0.0]), np.array([1.0]), 0, "area") == 0.0


def test_iou_thresholds_have_no_drift():
    assert COCO_IOU_THRS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert parse_iou_thresholds("0.5:0.95:0.05") == COCO_IOU_THRS
    assert parse_iou_thresholds("0.5,0.75") == (0.5, 0.75)


# --- random cases against the official algorithm and a brute force ------------------------------


def random_rectangles(rng, count, integer=False, scramble=False):
    centers = rng.uniform(20, 280, size=(count, 2))
    sizes = rng.uniform(4, 40, size=(count, 2))
    angles = rng.uniform(0, np.pi, size=count)
    local = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    polys = []
    for c, s, a in zip(centers, sizes, angles):
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (local * s) @ rot.T + c
        if rng.random() < 0.5:
            pts = pts[::-1]
        pts = np.roll(pts, rng.integers(4), axis=0)
        if scramble and rng.random() < 0.3:
            pts = pts[[0, 2, 1, 3]]  # self-intersecting "bow tie", as careless labels can be
        polys.append(pts.ravel())
    polys = np.array(polys)
    return np.round(polys) if integer else polys


def random_case(rng, integer=False, scramble=False, n_images=4, classes=("a", "b")):
    gt = {}
    det_rows = {name: [] for name in classes}
    for i in range(n_images):
        image = f"P{i:04d}"
        count = int(rng.integers(3, 12))
        polys = random_rectangles(rng, count, integer, scramble)
        if count > 3:
            polys[1] = polys[0]  # duplicate ground truth
        names = [classes[int(rng.integers(len(classes)))] for _ in range(count)]
        difficult = rng.choice([0, 0, 0, 1, 2], size=count)
        gt[image] = ImageLabels(polys, names, difficult, np.arange(1, count + 1))
        for poly, name in zip(polys, names):
            for _ in range(int(rng.integers(0, 4))):
                sigma = rng.choice([0.5, 2, 5])
                if integer or scramble:
                    moved = poly + np.round(rng.normal(0, sigma, size=8)) if integer else poly + rng.normal(0, sigma, size=8)
                else:  # a moved and scaled copy stays a simple polygon (for shapely)
                    center = poly.reshape(4, 2).mean(axis=0)
                    scale = rng.uniform(0.8, 1.25)
                    moved = ((poly.reshape(4, 2) - center) * scale + center + rng.normal(0, sigma, size=2)).ravel()
                det_rows[name].append((image, moved))
        for poly in random_rectangles(rng, 3, integer):
            det_rows[classes[int(rng.integers(len(classes)))]].append((image, poly))
    for name in classes:
        det_rows[name].append(("unlabelled", random_rectangles(rng, 1, integer)[0]))
    detections = {}
    for name, rows in det_rows.items():
        order = rng.permutation(len(rows))
        scores = np.round(rng.random(len(rows)), 1)  # ties on purpose
        detections[name] = Task1Detections([rows[k][0] for k in order], scores, np.array([rows[k][1] for k in order]))
    return gt, detections


def official_results(gt, detections, classes, thrs, use_07):
    recs = {
        image: [
            {"name": n, "difficult": int(d), "bbox": list(map(float, p))}
            for p, n, d in zip(lab.polygons, lab.classes, lab.difficult)
        ]
        for image, lab in gt.items()
    }
    out = {}
    for name in classes:
        det = detections[name]
        lines = format_task1_lines(det.image_ids, det.scores, det.polygons).splitlines()
        for thr in thrs:
            out[name, thr] = official_port.voc_eval(lines, recs, name, thr, use_07)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_official_algorithm_on_random_cases(seed, tmp_path):
    rng = np.random.default_rng(seed)
    integer, scramble = seed % 2 == 0, seed >= 3
    gt, detections = random_case(rng, integer=integer, scramble=scramble)
    # Round-trip the detections through Task1 files so that the file reader is covered too.
    det_dir = tmp_path / "dets"
    det_dir.mkdir()
    for name, det in detections.items():
        (det_dir / f"Task1_{name}.txt").write_text(format_task1_lines(det.image_ids, det.scores, det.polygons))
    for method in ("voc07", "area"):
        thrs = (0.5, 0.7, 0.75, 0.9)
        result = evaluate_detections(det_dir, gt, ("a", "b"), iou_thrs=thrs, ap_method=method)
        expected = official_results(gt, detections, ("a", "b"), thrs, method == "voc07")
        for (name, thr), value in expected.items():
            assert result.class_ap(name, thr) == pytest.approx(value, abs=1e-9), (name, thr, method)


def brute_force_ap(gt, detections, name, thr, use_07):
    """Independent reference: shapely IoU over all ground truth of the image, plain loops."""
    gt_objects = {
        image: [(Polygon(p.reshape(4, 2)), d != 0) for p, n, d in zip(lab.polygons, lab.classes, lab.difficult) if n == name]
        for image, lab in gt.items()
    }
    npos = sum(1 for objs in gt_objects.values() for _, diff in objs if not diff)
    det = detections[name]
    order = np.argsort(-det.scores)  # the protocol's ordering
    taken = {image: [False] * len(objs) for image, objs in gt_objects.items()}
    flags = []
    for k in order:
        image = det.image_ids[k]
        poly = Polygon(det.polygons[k].reshape(4, 2))
        best, best_j = -1.0, -1
        for j, (g, _) in enumerate(gt_objects.get(image, [])):
            inter = g.intersection(poly).area
            iou = inter / (g.area + poly.area - inter)
            if iou > best:
                best, best_j = iou, j
        if best > thr:
            if gt_objects[image][best_j][1]:
                continue
            flags.append(not taken[image][best_j])
            taken[image][best_j] = True
        else:
            flags.append(False)
    tps = 0
    points = []  # (recall, precision) after each counted detection
    for i, hit in enumerate(flags, start=1):
        tps += hit
        points.append((tps / npos, tps / i))
    if use_07:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            candidates = [p for r, p in points if r >= t]
            total += max(candidates) if candidates else 0.0
        return total / 11
    area, previous_recall = 0.0, 0.0
    for i, (r, _) in enumerate(points):
        if r > previous_recall:
            area += (r - previous_recall) * max(p for _, p in points[i:])
            previous_recall = r
    return area


@pytest.mark.parametrize("seed", range(4))
def test_matches_shapely_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(100 + seed)
    gt, detections = random_case(rng, integer=False, scramble=False, n_images=5)
    for method in ("voc07", "area"):
        result = evaluate_detections(detections, gt, ("a", "b"), iou_thrs=COCO_IOU_THRS, ap_method=method)
        for name in ("a", "b"):
            for thr in (0.5, 0.75, 0.9):
                expected = brute_force_ap(gt, detections, name, thr, method == "voc07")
                assert result.class_ap(name, thr) == pytest.approx(expected, abs=1e-9), (name, thr, method)


def test_hbb_prefilter_drops_only_residuals_on_ordinary_polygons():
    # Polygons whose horizontal boxes are >= 1 px apart are disjoint: polyiou gives them 0 up to a
    # rounding residual (seen: 1e-15), which no threshold in (1e-12, 1) can pass. So on ordinary
    # polygons the pre-filter never changes a result.
    rng = np.random.default_rng(7)
    gt, detections = random_case(rng, integer=True, n_images=3)
    polys = detections["a"].polygons
    for lab in gt.values():
        for g in lab.polygons:
            for p in polys:
                gx, px, gy, py = g[0::2], p[0::2], g[1::2], p[1::2]
                separated = min(gx.max(), px.max()) - max(gx.min(), px.min()) + 1 <= 0 or (
                    min(gy.max(), py.max()) - max(gy.min(), py.min()) + 1 <= 0
                )
                if separated:
                    assert abs(official_port.iou_poly(g, p)) < 1e-12


def test_hbb_prefilter_is_replicated_where_it_matters():
    # It matters with degenerate polygons: a zero-area ground truth far away has IoU 0/0 = NaN with a
    # zero-signed-area "bow tie" detection, and np.max would return that NaN. The official
    # pre-filter removes the far ground truth, so the detection matches the near one.
    bow_tie = [0, 0, 10, 10, 10, 0, 0, 10]
    near = [0, 0, 5, 0, 5, 10, 0, 10]
    point = [100, 100] * 4
    assert math.isnan(official_port.iou_poly(point, bow_tie))
    assert official_port.iou_poly(near, bow_tie) > 0.99
    gt = {"img": labels((near, "a", 0), (point, "a", 0))}
    lines = ["img 1.0 " + " ".join(map(str, bow_tie))]
    recs = {"img": official_port.parse_gt_text("0 0 5 0 5 10 0 10 a 0\n100 100 100 100 100 100 100 100 a 0")}
    expected = official_port.voc_eval(lines, recs, "a", 0.5, True)
    assert expected == pytest.approx(6 / 11, abs=1e-12)  # 1 of 2 positives found
    assert ap_of(dets(("img", 1.0, bow_tie)), gt) == pytest.approx(expected, abs=1e-12)


def test_ground_truth_from_real_sample_as_detections(dota_sample):
    gt = load_ground_truth(dota_sample / "labelTxt")
    classes = sorted({n for lab in gt.values() for n in lab.classes})
    detections = {
        name: Task1Detections(
            [image for image, lab in gt.items() for n in lab.classes if n == name],
            np.ones(sum(n == name for lab in gt.values() for n in lab.classes)),
            np.concatenate([lab.polygons[[n == name for n in lab.classes]] for lab in gt.values()]),
        )
        for name in classes
    }
    result = evaluate_detections(detections, gt, classes)
    assert result.num_images == 7
    for name in classes:
        assert result.class_ap(name, 0.95) == pytest.approx(1.0, abs=1e-12), name
