"""Official-equivalent DOTA Task1 evaluation (polygon IoU, matching, AP, mAP)."""

from rgfl.evaluation.dota_map import (
    COCO_IOU_THRS,
    MEAN_OVER,
    ClassResult,
    EvalResult,
    evaluate_detections,
    load_ground_truth,
    parse_iou_thresholds,
    read_image_list,
)

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
