"""PASCAL VOC detection evaluation with the devkit's semantics.

Boxes are ``[x1, y1, x2, y2]`` in 0-based pixel coordinates of the original image and use the
reference +1 convention: a box covers the pixels ``x1..x2`` inclusive, so its width is
``x2 - x1 + 1`` (the same convention for the intersection).

Matching follows the VOC devkit (py-faster-rcnn ``voc_eval``):

* the detections of one class over all images are taken by decreasing score (ties keep the
  order of the images, then the order inside an image: a stable sort);
* each detection goes to the ground truth box of its image and class that it overlaps most;
  it is matched when that IoU is strictly greater than ``iou_thresh`` (``ovmax > ovthresh``);
* a match to a "difficult" box counts as neither a true nor a false positive, and difficult
  boxes are left out of the number of positives;
* a match to a box already taken by a higher-scoring detection is a false positive, as is a
  detection without a match.

The 11 recall thresholds of the VOC2007 metric are the reference's floats
``np.arange(0., 1.1, 0.1)`` (py-faster-rcnn and faster-rcnn.pytorch ``voc_eval``): 0.3, 0.6 and
0.7 are ``0.30000000000000004``, ``0.6000000000000001`` and ``0.7000000000000001`` there, so a
recall of exactly 3/10 does not count at the threshold 0.3, and numbers match published tables.
``exact_07_thresholds=True`` uses the exact decimals ``k / 10`` instead (a named variant, not
the default).

One deviation from the reference, deliberate: a class without any non-difficult ground truth
has no defined AP (the reference divides by zero): its AP and recall are reported as ``nan``, it
is left out of the mAP, and a warning is logged.
"""

import logging
import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps

VOC07_THRESHOLDS = np.arange(0.0, 1.1, 0.1)
"""The reference's 11 recall thresholds (floats of ``np.arange``, see the module docstring)."""

EXACT_VOC07_THRESHOLDS = np.array([k / 10.0 for k in range(11)])
"""The exact decimals ``k / 10``, for ``exact_07_thresholds=True``."""


def voc_ap(
    rec: Sequence[float],
    prec: Sequence[float],
    use_07_metric: bool = True,
    exact_07_thresholds: bool = False,
) -> float:
    """Average precision from a precision/recall curve.

    Args:
        rec: (K,) cumulative recall after each detection, in score order (non-decreasing).
        prec: (K,) cumulative precision after each detection.
        use_07_metric: True for the VOC2007 11-point interpolated AP (mean over the 11
            thresholds t of the largest precision at recall >= t, 0 where no recall reaches
            t); False for the area under the monotone precision envelope (VOC2010+).
        exact_07_thresholds: with the 11-point AP, thresholds ``k / 10`` exactly instead of
            the reference's ``np.arange(0., 1.1, 0.1)``.

    Returns:
        The AP as a Python float (0.0 for an empty curve).
    """
    rec = np.asarray(rec, dtype=np.float64).reshape(-1)
    prec = np.asarray(prec, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"rec and prec differ in shape: {rec.shape} vs {prec.shape}")
    if rec.size == 0:
        return 0.0
    if use_07_metric:
        thresholds = EXACT_VOC07_THRESHOLDS if exact_07_thresholds else VOC07_THRESHOLDS
        total = 0.0
        for t in thresholds:
            reached = rec >= t
            total += float(prec[reached].max()) if reached.any() else 0.0
        return total / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _iou_plus_one(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (M,4), +1 convention, float64 -> (M,)."""
    iw = np.maximum(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    area_box = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    area_gts = (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0)
    return inter / (area_box + area_gts - inter)


def _as_detections(dets) -> np.ndarray:
    """Detections of one class in one image as a float64 (N,5) array (N may be 0)."""
    if dets is None:
        return np.zeros((0, 5), dtype=np.float64)
    arr = np.asarray(dets, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"detections must be (N,5) [x1,y1,x2,y2,score], got shape {arr.shape}")
    return arr


def match_class_detections(
    dets_per_image: Sequence[np.ndarray],
    gt_boxes_per_image: Sequence[np.ndarray],
    gt_difficult_per_image: Sequence[np.ndarray],
    iou_thresh: float = 0.5,
) -> Tuple[np.ndarray, np.ndarray, int]:
    """Mark the detections of one class as true or false positives (devkit semantics).

    Args:
        dets_per_image: per image, (N_i,5) [x1,y1,x2,y2,score] detections of the class.
        gt_boxes_per_image: per image, (M_i,4) ground truth boxes of the class (+1 convention).
        gt_difficult_per_image: per image, (M_i,) bool difficult flags.
        iou_thresh: a detection matches when its best IoU is strictly greater than this.

    Returns:
        (tp, fp, npos): tp and fp are (D,) float64 0/1 arrays over all D detections in order
        of decreasing score (both 0 for a detection matched to a difficult box); npos is the
        number of non-difficult ground truth boxes.
    """
    if not (len(dets_per_image) == len(gt_boxes_per_image) == len(gt_difficult_per_image)):
        raise ValueError(
            "dets_per_image, gt_boxes_per_image and gt_difficult_per_image "
            "must have one entry per image"
        )
    gts = [np.asarray(g, dtype=np.float64).reshape(-1, 4) for g in gt_boxes_per_image]
    difficult = [np.asarray(d, dtype=bool).reshape(-1) for d in gt_difficult_per_image]
    for i, (g, d) in enumerate(zip(gts, difficult)):
        if len(g) != len(d):
            raise ValueError(f"image {i}: {len(g)} gt boxes but {len(d)} difficult flags")
    npos = int(sum(int((~d).sum()) for d in difficult))

    dets = [_as_detections(d) for d in dets_per_image]
    if not dets:
        return np.zeros(0), np.zeros(0), npos
    image_of = np.concatenate([np.full(len(d), i, dtype=np.int64) for i, d in enumerate(dets)])
    all_dets = np.concatenate(dets, axis=0)
    order = np.argsort(-all_dets[:, 4], kind="stable")

    taken = [np.zeros(len(g), dtype=bool) for g in gts]
    tp = np.zeros(len(order), dtype=np.float64)
    fp = np.zeros(len(order), dtype=np.float64)
    for rank, k in enumerate(order):
        img = image_of[k]
        g = gts[img]
        if len(g) == 0:
            fp[rank] = 1.0
            continue
        ious = _iou_plus_one(all_dets[k, :4], g)
        j = int(np.argmax(ious))
        if not ious[j] > iou_thresh:
            fp[rank] = 1.0
        elif difficult[img][j]:
            continue
        elif taken[img][j]:
            fp[rank] = 1.0
        else:
            taken[img][j] = True
            tp[rank] = 1.0
    return tp, fp, npos


def voc_evaluate(
    all_boxes: Sequence[Sequence[np.ndarray]],
    annotations: Sequence[Mapping[str, np.ndarray]],
    classes: Sequence[str],
    use_07_metric: bool = True,
    iou_thresh: float = 0.5,
    exact_07_thresholds: bool = False,
) -> Dict[str, object]:
    """Per-class AP and mAP of detections on a VOC-style set.

    Args:
        all_boxes: all_boxes[c][i] is an (N,5) float array [x1,y1,x2,y2,score] of class c in
            image i, 0-based pixels of the original image, +1 convention. all_boxes[0]
            (background) is ignored.
        annotations: annotations[i] = dict(boxes (M,4) float 0-based, gt_classes (M,) int,
            difficult (M,) bool) for image i.
        classes: class names, classes[0] == '__background__'.
        use_07_metric: VOC2007 11-point AP (True) or area under the envelope (False).
        iou_thresh: match when IoU (+1 convention) is strictly greater than this.
        exact_07_thresholds: see :func:`voc_ap`.

    Returns:
        dict(ap={name: float}, map=float, recall={name: float}, ap_area={name: float},
        map_area=float); recall is the final recall of the class (0.0 without detections);
        ap_area / map_area are the area under the envelope whatever ``use_07_metric`` says
        (the 11-point AP of a class whose recall stays below 1 is at most 10/11). Classes
        without non-difficult ground truth get nan and are left out of the means (a warning is
        logged); a mean is nan when no class has ground truth.
    """
    if len(all_boxes) != len(classes):
        raise ValueError(f"all_boxes has {len(all_boxes)} classes, classes has {len(classes)}")
    num_images = len(annotations)
    gt_boxes = [np.asarray(a["boxes"], dtype=np.float64).reshape(-1, 4) for a in annotations]
    gt_classes = [np.asarray(a["gt_classes"]).reshape(-1) for a in annotations]
    gt_difficult = [np.asarray(a["difficult"], dtype=bool).reshape(-1) for a in annotations]

    ap: Dict[str, float] = {}
    ap_area: Dict[str, float] = {}
    recall: Dict[str, float] = {}
    missing: List[str] = []
    for c in range(1, len(classes)):
        name = classes[c]
        if len(all_boxes[c]) != num_images:
            raise ValueError(
                f"all_boxes[{c}] ({name}) has {len(all_boxes[c])} images, "
                f"annotations has {num_images}"
            )
        masks = [gc == c for gc in gt_classes]
        tp, fp, npos = match_class_detections(
            all_boxes[c],
            [b[m] for b, m in zip(gt_boxes, masks)],
            [d[m] for d, m in zip(gt_difficult, masks)],
            iou_thresh,
        )
        if npos == 0:
            ap[name] = ap_area[name] = recall[name] = math.nan
            missing.append(name)
            continue
        tp_cum = np.cumsum(tp)
        fp_cum = np.cumsum(fp)
        rec = tp_cum / float(npos)
        prec = tp_cum / np.maximum(tp_cum + fp_cum, _EPS)
        ap[name] = voc_ap(rec, prec, use_07_metric, exact_07_thresholds)
        ap_area[name] = voc_ap(rec, prec, use_07_metric=False)
        recall[name] = float(rec[-1]) if rec.size else 0.0
    if missing:
        logger.warning(
            "classes without non-difficult ground truth (AP nan, left out of mAP): %s",
            ", ".join(missing),
        )
    return {
        "ap": ap,
        "map": _mean_of_valid(ap),
        "recall": recall,
        "ap_area": ap_area,
        "map_area": _mean_of_valid(ap_area),
    }


def _mean_of_valid(values: Mapping[str, float]) -> float:
    """Mean of the non-nan values; nan when there are none."""
    valid = [v for v in values.values() if not math.isnan(v)]
    return float(np.mean(valid)) if valid else math.nan


def format_ap_table(result: Mapping[str, object], classes: Sequence[str]) -> str:
    """Markdown table of a ``voc_evaluate`` result: one ``class | AP`` row per class
    (background skipped, AP in percent with two decimals, ``nan`` for classes without ground
    truth) and a final ``mAP`` row."""
    ap = result["ap"]
    lines = ["| class | AP |", "|---|---|"]
    for name in classes[1:]:
        lines.append(f"| {name} | {_percent(ap[name])} |")
    lines.append(f"| **mAP** | {_percent(result['map'])} |")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100.0 * value:.2f}"
