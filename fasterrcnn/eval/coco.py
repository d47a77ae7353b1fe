"""COCO box AP through pycocotools' ``COCOeval``.

Detections come in the project's convention: ``[x1, y1, x2, y2]`` 0-based pixels of the
original image with the +1 convention (x2 is the last covered pixel). COCO results use
``[x, y, w, h]`` with ``w = x2 - x1 + 1`` and ``h = y2 - y1 + 1``, as the reference's
``coco.py`` writes them.

The AP numbers are COCOeval's ``stats``; an entry is -1 where COCO has nothing to average
(e.g. APs on a set without small objects).
"""

import contextlib
import io
import json
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_NUM_STATS = 12


def detections_to_coco_results(
    all_boxes: Sequence[Sequence[np.ndarray]],
    image_ids: Sequence[int],
    label_to_category_id: Union[Mapping[int, int], Sequence[int]],
) -> List[dict]:
    """COCO results list from per-class, per-image detections.

    Args:
        all_boxes: all_boxes[c][i] is an (N,5) array [x1,y1,x2,y2,score] (+1 convention) of
            class c in image i; all_boxes[0] (background) is ignored.
        image_ids: COCO image id of image i.
        label_to_category_id: COCO category id of class index c (a mapping, or a sequence
            indexed by c).

    Returns:
        list of dict(image_id, category_id, bbox=[x, y, w, h], score) with Python numbers.
    """
    results: List[dict] = []
    for c in range(1, len(all_boxes)):
        category_id = int(label_to_category_id[c])
        if len(all_boxes[c]) != len(image_ids):
            raise ValueError(
                f"all_boxes[{c}] has {len(all_boxes[c])} images, image_ids has {len(image_ids)}"
            )
        for image_id, dets in zip(image_ids, all_boxes[c]):
            dets = np.asarray(dets, dtype=np.float64)
            if dets.size == 0:
                continue
            dets = dets.reshape(-1, 5)
            widths = dets[:, 2] - dets[:, 0] + 1.0
            heights = dets[:, 3] - dets[:, 1] + 1.0
            for det, w, h in zip(dets, widths, heights):
                results.append(
                    {
                        "image_id": int(image_id),
                        "category_id": category_id,
                        "bbox": [float(det[0]), float(det[1]), float(w), float(h)],
                        "score": float(det[4]),
                    }
                )
    return results


def coco_evaluate(
    all_boxes: Sequence[Sequence[np.ndarray]],
    coco_gt: COCO,
    image_ids: Sequence[int],
    label_to_category_id: Union[Mapping[int, int], Sequence[int]],
    output_json: Optional[str] = None,
) -> Dict[str, object]:
    """COCO box AP of the detections, evaluated on ``image_ids`` only.

    Args:
        all_boxes: all_boxes[c][i] (N,5) [x1,y1,x2,y2,score], +1 convention, c=0 ignored.
        coco_gt: ground truth COCO object.
        image_ids: COCO image id of each image i in all_boxes[c][i].
        label_to_category_id: class index c -> COCO category id.
        output_json: if given, the results list is written there (COCO results format).

    Returns:
        dict(AP, AP50, AP75, APs, APm, APl, stats=list of COCOeval's 12 stats). With no
        detections at all every value is 0.0 and a warning is logged (pycocotools cannot load
        an empty result list).
    """
    results = detections_to_coco_results(all_boxes, image_ids, label_to_category_id)
    if output_json is not None:
        with open(output_json, "w") as f:
            json.dump(results, f)
    if not results:
        logger.warning("no detections to evaluate: every COCO AP is reported as 0")
        stats = [0.0] * _NUM_STATS
    else:
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            coco_dt = coco_gt.loadRes(results)
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
            evaluator.params.imgIds = [int(i) for i in image_ids]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        logger.info("COCOeval:\n%s", log.getvalue())
        stats = [float(s) for s in evaluator.stats]
    out: Dict[str, object] = dict(zip(_STAT_NAMES, stats))
    out["stats"] = stats
    return out
