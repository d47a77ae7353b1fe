"""COCO evaluation on a tiny ground truth json written by the test."""

import contextlib
import io
import json
import logging

import numpy as np
import pytest
from pycocotools.coco import COCO

from fasterrcnn.eval import coco_evaluate

# COCO [x, y, w, h] ground truth: areas 400 and 64 are "small" (< 32^2), 1200 and 2500
# "medium"; there is no "large" object, so COCOeval reports APl as -1.
_GT = [  # (id, image_id, category_id, bbox)
    (1, 3, 5, [10, 10, 20, 20]),
    (2, 3, 9, [50, 50, 30, 40]),
    (3, 7, 5, [5, 60, 8, 8]),
    (4, 7, 9, [40, 10, 50, 50]),
]
_IMAGE_IDS = [3, 7]
_LABEL_TO_CAT = {1: 5, 2: 9}  # class index -> non-contiguous COCO category id


@pytest.fixture
def coco_gt(tmp_path):
    data = {
        "images": [
            {"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in _IMAGE_IDS
        ],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}],
        "annotations": [
            {
                "id": a,
                "image_id": im,
                "category_id": c,
                "bbox": b,
                "area": b[2] * b[3],
                "iscrowd": 0,
            }
            for a, im, c, b in _GT
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _all_boxes(dx_fraction=0.0):
    """Detections equal to the ground truth (x2 = x + w - 1), shifted right by a fraction of
    the width."""
    all_boxes = [[np.zeros((0, 5)) for _ in _IMAGE_IDS] for _ in range(3)]
    cat_to_label = {v: k for k, v in _LABEL_TO_CAT.items()}
    for _, image_id, cat, (x, y, w, h) in _GT:
        dx = dx_fraction * w
        row = np.array([[x + dx, y, x + dx + w - 1, y + h - 1, 0.9]])
        label, i = cat_to_label[cat], _IMAGE_IDS.index(image_id)
        all_boxes[label][i] = np.concatenate([all_boxes[label][i], row])
    return all_boxes


def test_perfect_detections_give_ap_one(coco_gt, tmp_path):
    out_json = tmp_path / "results.json"
    result = coco_evaluate(_all_boxes(), coco_gt, _IMAGE_IDS, _LABEL_TO_CAT, str(out_json))
    # a +1 error in the conversion would give IoU (19/20)^2 < 0.95 for the 20x20 box, AP < 1
    for key in ("AP", "AP50", "AP75", "APs", "APm"):
        assert result[key] == pytest.approx(1.0), key
    assert result["APl"] == -1.0
    assert len(result["stats"]) == 12 and result["stats"][0] == result["AP"]
    written = json.loads(out_json.read_text())
    assert {
        "image_id": 3,
        "category_id": 5,
        "bbox": [10.0, 10.0, 20.0, 20.0],
        "score": 0.9,
    } in written
    assert len(written) == 4


def test_shifted_detections_score_lower(coco_gt):
    # shift by 20% of the width: IoU = 0.8 / 1.2 = 2/3, matched at thresholds .5 .. .65 (4 of
    # the 10), so AP = 0.4, AP50 = 1, AP75 = 0
    result = coco_evaluate(_all_boxes(0.2), coco_gt, _IMAGE_IDS, _LABEL_TO_CAT)
    assert result["AP"] == pytest.approx(0.4)
    assert result["AP50"] == pytest.approx(1.0)
    assert result["AP75"] == pytest.approx(0.0)


def test_swapped_category_mapping_scores_zero(coco_gt):
    result = coco_evaluate(_all_boxes(), coco_gt, _IMAGE_IDS, {1: 9, 2: 5})
    assert result["AP"] == pytest.approx(0.0)


def test_empty_detections_give_zeros_with_warning(coco_gt, tmp_path, caplog):
    empty = [[np.zeros((0, 5)) for _ in _IMAGE_IDS] for _ in range(3)]
    out_json = tmp_path / "results.json"
    with caplog.at_level(logging.WARNING, logger="fasterrcnn.eval.coco"):
        result = coco_evaluate(empty, coco_gt, _IMAGE_IDS, _LABEL_TO_CAT, str(out_json))
    assert result["stats"] == [0.0] * 12
    assert all(result[k] == 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert json.loads(out_json.read_text()) == []
