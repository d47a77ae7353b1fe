"""Detection evaluation: PASCAL VOC (devkit semantics) and COCO (pycocotools)."""

from fasterrcnn.eval.coco import coco_evaluate, detections_to_coco_results
from fasterrcnn.eval.voc import format_ap_table, match_class_detections, voc_ap, voc_evaluate

__all__ = [
    "coco_evaluate",
    "detections_to_coco_results",
    "format_ap_table",
    "match_class_detections",
    "voc_ap",
    "voc_evaluate",
]
