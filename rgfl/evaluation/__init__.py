"""Official-equivalent DOTA Task1 evaluation (polygon IoU, matching, AP, mAP)."""

from rgfl.evaluation.dota_map import (
    COCO_IOU_THRS,
    ClassResult,
    EvalResult,
    evaluate_detections,
    load_ground_truth,
    parse_iou_thresholds,
)

__all__ = [
    "COCO_IOU_THRS",
    "ClassResult",
    "EvalResult",
    "evaluate_detections",
    "load_ground_truth",
    "parse_iou_thresholds",
]
