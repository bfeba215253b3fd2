"""Official-equivalent DOTA Task1 mAP: AP50, AP75 and mAP over IoU 0.50:0.05:0.95.

:func:`evaluate_detections` follows ``dota_evaluation_task1.py`` of DOTA_devkit step by step (see
docs/evaluation.md): ground truth per class and image from the label files (``difficult`` is any
nonzero flag), detections of a class ordered by ``np.argsort(-scores)`` on the file order (equal
scores in exactly the official order), polygon IoU of the raw quadrilaterals with DOTA_devkit's
``polyiou`` after its horizontal-box pre-filter, matching to the ground truth of maximum IoU when
that IoU is strictly greater than the threshold, VOC07 11-point AP (or all-point with
``ap_method="area"``), and a plain mean over classes.

Which classes the mean covers (``mean_over``): ``"present"`` (the default, the mmdet / mmrotate
convention) averages over the classes that have non-difficult ground truth in the evaluated
images; ``"all"`` averages over every class of the class list, absent ones as AP 0, as the
official ``dota_evaluation_task1.py`` does (its ``main`` sums the AP of its 15 classes and
divides by 15). The two agree whenever every class has ground truth, which is the case of the
official validation and test sets.

Cases the official script crashes on are scored instead: a class without detections (file missing
or empty) has AP 0; detections on an image without a label file are false positives; blank lines
are skipped. A class without non-difficult ground truth has AP 0 (the official ``voc07``
result; see :func:`~rgfl.evaluation.ap.average_precision`); only ``mean_over="all"`` counts it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rgfl.dota.annotations import ImageLabels, read_label_file
from rgfl.dota.task1 import Task1Detections, read_task1_dir
from rgfl.errors import InputError, ProblemLog
from rgfl.evaluation.ap import AP_METHODS, average_precision, precision_recall
from rgfl.evaluation.matching import best_overlaps, greedy_match, polygon_hbbs

__all__ = [
    "COCO_IOU_THRS",
    "MEAN_OVER",
    "ClassResult",
    "EvalResult",
    "evaluate_detections",
    "load_ground_truth",
    "parse_iou_thresholds",
    "read_image_list",
]

logger = logging.getLogger(__name__)

# 0.5, 0.55, ..., 0.95 as the literals a user would type (no 0.7000000000000001).
COCO_IOU_THRS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
# Classes averaged into the means: those with ground truth (mmrotate) or all (official devkit).
MEAN_OVER = ("present", "all")


def parse_iou_thresholds(spec: str | Sequence[float] | None) -> tuple[float, ...]:
    """IoU thresholds from ``"0.5:0.95:0.05"`` (inclusive range), ``"0.5,0.75"`` or a sequence.

    Values are rounded to 10 decimals so that ranges carry no float drift; each must lie in [0, 1).
    """
    if spec is None:
        return COCO_IOU_THRS
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if ":" in text:
                parts = [float(v) for v in text.split(":")]
                if len(parts) != 3 or parts[2] <= 0:
                    raise ValueError
                start, stop, step = parts
                count = int(np.floor((stop - start) / step + 1e-9)) + 1
                values = [start + k * step for k in range(max(count, 0))]
            else:
                values = [float(v) for v in text.replace(" ", ",").split(",") if v]
        except ValueError:
            raise InputError(
                f"bad IoU thresholds {spec!r}: use START:STOP:STEP (e.g. 0.5:0.95:0.05) or a list (0.5,0.75)"
            ) from None
    else:
        values = [float(v) for v in spec]
    thresholds = tuple(round(v, 10) for v in values)
    if not thresholds or any(not 0.0 <= t < 1.0 for t in thresholds):
        raise InputError(f"IoU thresholds must be in [0, 1), got {list(thresholds)}")
    if len(set(thresholds)) != len(thresholds):
        raise InputError(f"IoU thresholds repeat a value: {list(thresholds)}")
    return thresholds


@dataclass
class ClassResult:
    """Scores of one class.

    Attributes:
        num_gt: non-difficult ground truths (the recall denominator ``npos``).
        num_difficult: difficult ground truths (neither counted nor penalised).
        num_dets: detections read for the class.
        ap: AP at each threshold of :attr:`EvalResult.iou_thrs` (fractions).
    """

    num_gt: int
    num_difficult: int
    num_dets: int
    ap: dict[float, float]


@dataclass
class EvalResult:
    """Result of :func:`evaluate_detections`.

    ``iou_thrs`` are the thresholds averaged into ``mAP``; AP at 0.5 and 0.75 is always computed.
    Class means are plain means over :attr:`averaged_classes`: with ``mean_over="present"`` the
    classes with non-difficult ground truth, with ``"all"`` every class of ``class_names``.
    """

    class_names: tuple[str, ...]
    iou_thrs: tuple[float, ...]
    ap_method: str
    num_images: int
    per_class: dict[str, ClassResult]
    problems: int = 0
    unlabelled_dets: int = 0
    extra: dict = field(default_factory=dict)
    mean_over: str = "present"

    @property
    def averaged_classes(self) -> tuple[str, ...]:
        """The classes of the means, in class-list order."""
        if self.mean_over == "all":
            return self.class_names
        return tuple(name for name in self.class_names if self.per_class[name].num_gt > 0)

    def class_ap(self, name: str, iou_thr: float) -> float:
        return self.per_class[name].ap[round(float(iou_thr), 10)]

    def class_map(self, name: str) -> float:
        values = [self.per_class[name].ap[t] for t in self.iou_thrs]
        return float(sum(values) / len(values))

    def ap(self, iou_thr: float) -> float:
        """Mean over :attr:`averaged_classes` of the AP at ``iou_thr`` (summed in class order, as
        the official main); 0 when no class is averaged."""
        names = self.averaged_classes
        total = 0.0
        for name in names:
            total = total + self.class_ap(name, iou_thr)
        return float(total / len(names)) if names else 0.0

    @property
    def AP50(self) -> float:  # noqa: N802 - the metric's name
        return self.ap(0.5)

    @property
    def AP75(self) -> float:  # noqa: N802
        return self.ap(0.75)

    @property
    def mAP(self) -> float:  # noqa: N802
        """Mean over ``iou_thrs`` of the class-mean AP."""
        return float(sum(self.ap(t) for t in self.iou_thrs) / len(self.iou_thrs))

    def to_dict(self) -> dict:
        """The JSON document of ``rgfl eval --json`` (fractions in [0, 1]).

        The official 11-point sum of eleven 1/11 terms is 1.0000000000000002; values are clipped
        into [0, 1] here so that the document honours its schema (a 2e-16 change).
        """
        return {
            "AP50": _fraction(self.AP50),
            "AP75": _fraction(self.AP75),
            "mAP": _fraction(self.mAP),
            "ap_method": self.ap_method,
            "num_images": self.num_images,
            "mean_over": self.mean_over,
            "num_classes": len(self.class_names),
            "num_classes_averaged": len(self.averaged_classes),
            "per_class": {
                name: {
                    "num_gt": result.num_gt,
                    "num_dets": result.num_dets,
                    "AP50": _fraction(result.ap[0.5]),
                    "AP75": _fraction(result.ap[0.75]),
                    "mAP": _fraction(self.class_map(name)),
                }
                for name, result in self.per_class.items()
            },
        }


def read_image_list(path: str | Path) -> list[str]:
    """Image stems, one per line (the official ``imagesetfile``); blank lines skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise InputError(f"cannot read image list ({error.strerror})", path) from None
    stems = [Path(line.strip()).stem if line.strip().endswith((".png", ".txt", ".jpg")) else line.strip() for line in lines]
    stems = [stem for stem in stems if stem]
    if not stems:
        raise InputError("the image list is empty (expected one image name per line)", path)
    return stems


def _fraction(value: float) -> float:
    return float(min(max(value, 0.0), 1.0))


def load_ground_truth(label_dir: str | Path, problems: ProblemLog | None = None) -> dict[str, ImageLabels]:
    """Read every ``<image>.txt`` of a DOTA label folder (or of ``<root>/labelTxt``), keyed by stem.

    Degenerate polygons are kept (the official script keeps them; they can never be matched).
    Objects of classes outside the evaluated class list are simply not evaluated.
    """
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise InputError("ground-truth folder not found (expected DOTA label files <image>.txt)", label_dir)
    files = sorted(p for p in label_dir.glob("*.txt") if p.is_file())
    if not files and (label_dir / "labelTxt").is_dir():
        return load_ground_truth(label_dir / "labelTxt", problems)
    if not files:
        raise InputError("no label file (<image>.txt) in the ground-truth folder", label_dir)
    problems = problems if problems is not None else ProblemLog()
    return {path.stem: read_label_file(path, None, problems, drop_degenerate=False) for path in files}


@dataclass
class _ClassGroundTruth:
    """Ground truths of one class, grouped by image (contiguous, file order inside an image)."""

    polygons: np.ndarray  # [M, 8]
    hbbs: np.ndarray  # [M, 4]
    difficult: np.ndarray  # [M] bool
    start: np.ndarray  # [I] first index per image
    end: np.ndarray  # [I]


def _group_ground_truth(
    ground_truth: Mapping[str, ImageLabels], image_ids: list[str], class_names: Sequence[str]
) -> dict[str, _ClassGroundTruth]:
    per_class: dict[str, tuple[list, list, list, list]] = {name: ([], [], [], []) for name in class_names}
    for image_index, image_id in enumerate(image_ids):
        labels = ground_truth[image_id]
        classes = np.asarray(labels.classes, dtype=object)
        for name in set(labels.classes):
            if name not in per_class:
                continue
            rows = np.flatnonzero(classes == name)
            polygons, difficult, images, counts = per_class[name]
            polygons.append(labels.polygons[rows])
            difficult.append(labels.difficult[rows] != 0)
            images.append(image_index)
            counts.append(len(rows))
    grouped: dict[str, _ClassGroundTruth] = {}
    for name, (polygons, difficult, images, counts) in per_class.items():
        start = np.zeros(len(image_ids), dtype=np.int64)
        end = np.zeros(len(image_ids), dtype=np.int64)
        # Images were visited in order, so the blocks are already contiguous and ordered.
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        start[np.asarray(images, dtype=np.int64)] = offsets[:-1]
        end[np.asarray(images, dtype=np.int64)] = offsets[1:]
        all_polygons = np.concatenate(polygons) if polygons else np.zeros((0, 8))
        grouped[name] = _ClassGroundTruth(
            np.ascontiguousarray(all_polygons, dtype=np.float64),
            polygon_hbbs(all_polygons),
            np.concatenate(difficult) if difficult else np.zeros(0, dtype=bool),
            start,
            end,
        )
    return grouped


def evaluate_detections(
    detections: Mapping[str, Task1Detections] | str | Path,
    ground_truth: Mapping[str, ImageLabels] | str | Path,
    class_names: Sequence[str],
    iou_thrs: Sequence[float] = COCO_IOU_THRS,
    ap_method: str = "voc07",
    problems: ProblemLog | None = None,
    image_list: Sequence[str] | None = None,
    mean_over: str = "present",
) -> EvalResult:
    """Score detections with the official DOTA Task1 protocol at several IoU thresholds.

    Args:
        detections: class name -> :class:`Task1Detections` (full-image names and coordinates, in
            file order: the order decides ties), or a folder of ``Task1_<class>.txt`` files.
        ground_truth: image stem -> :class:`ImageLabels`, or a DOTA label folder. The images
            evaluated are exactly these.
        class_names: the classes to score and average over.
        iou_thrs: thresholds averaged into ``mAP`` (0.5 and 0.75 are always computed as well).
        ap_method: ``"voc07"`` (official 11-point) or ``"area"``.
        problems: where malformed input lines are reported (strict: first one raises).
        image_list: evaluate only these images (the official script's image-set file); each
            must have ground truth.
        mean_over: ``"present"``: means over the classes with non-difficult ground truth
            (mmrotate); ``"all"``: over every class of ``class_names`` (the official script).

    Returns:
        An :class:`EvalResult`; ``.to_dict()`` is the JSON schema of ``rgfl eval --json``.
    """
    if ap_method not in AP_METHODS:
        raise InputError(f"unknown AP method {ap_method!r}: use voc07 or area")
    if mean_over not in MEAN_OVER:
        raise InputError(f"unknown class mean {mean_over!r}: use present or all")
    class_names = tuple(class_names)
    if not class_names:
        raise InputError("the class list is empty")
    iou_thrs = parse_iou_thresholds(list(iou_thrs))
    problems = problems if problems is not None else ProblemLog()
    if isinstance(ground_truth, (str, Path)):
        ground_truth = load_ground_truth(ground_truth, problems)
    if image_list is not None:
        missing = [image for image in image_list if image not in ground_truth]
        if missing:
            raise InputError(
                f"{len(missing)} images of the image list have no label file, e.g. {missing[:3]}"
            )
        ground_truth = {image: ground_truth[image] for image in dict.fromkeys(image_list)}
    if isinstance(detections, (str, Path)):
        detections = read_task1_dir(detections, class_names, problems)
    all_thrs = tuple(sorted(set(iou_thrs) | {0.5, 0.75}))

    image_ids = list(ground_truth)
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    grouped = _group_ground_truth(ground_truth, image_ids, class_names)

    per_class: dict[str, ClassResult] = {}
    pr50: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # recall, precision at IoU 0.5 (pr_curves.png)
    unlabelled = 0
    for name in class_names:
        dets = detections.get(name) or Task1Detections()
        gt = grouped[name]
        num_gt = int(np.count_nonzero(~gt.difficult))
        num_difficult = int(np.count_nonzero(gt.difficult))
        det_image = np.array(list(map(image_index.get, dets.image_ids, itertools.repeat(-1))), dtype=np.int64)
        labelled = det_image >= 0
        unlabelled += int(np.count_nonzero(~labelled))
        safe_image = np.where(labelled, det_image, 0)
        start = np.where(labelled, gt.start[safe_image] if len(gt.start) else 0, 0)
        end = np.where(labelled, gt.end[safe_image] if len(gt.end) else 0, 0)
        ovmax, jmax = best_overlaps(dets.polygons, start, end, gt.polygons, gt.hbbs)
        # Exactly the official visiting order (default, non-stable sort on the file order).
        order = np.argsort(-dets.scores)
        ap = {}
        for thr in all_thrs:
            tp, fp = greedy_match(order, ovmax, jmax, gt.difficult, thr)
            ap[thr] = average_precision(tp, fp, num_gt, ap_method)
            if thr == 0.5:
                pr50[name] = precision_recall(tp, fp, num_gt)
        per_class[name] = ClassResult(num_gt, num_difficult, len(dets), ap)
    absent = [name for name in class_names if per_class[name].num_gt == 0]
    if absent:
        effect = "left out of the mean (--mean-over all counts them as AP 0)" if mean_over == "present" else "counted as AP 0 in the mean"
        logger.warning(
            "%d of %d classes have no non-difficult ground truth, %s: %s",
            len(absent), len(class_names), effect, ", ".join(absent),
        )
    if unlabelled:
        logger.warning("%d detections on images without a label file were counted as false positives", unlabelled)
    return EvalResult(
        class_names, iou_thrs, ap_method, len(image_ids), per_class, len(problems), unlabelled, extra={"pr50": pr50}, mean_over=mean_over
    )
