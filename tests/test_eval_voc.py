"""VOC evaluation: expectations computed by hand in the comments."""

import logging
import math

import numpy as np
import pytest

from fasterrcnn.eval import format_ap_table, match_class_detections, voc_ap, voc_evaluate


def _dets(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def _ann(boxes, classes, difficult=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if difficult is None:
        difficult = [False] * len(boxes)
    return dict(
        boxes=boxes,
        gt_classes=np.array(classes, dtype=np.int64),
        difficult=np.array(difficult, dtype=bool),
    )


# ---------------------------------------------------------------------------------- voc_ap


def test_voc_ap_11_point_and_area_on_hand_curve():
    rec = [0.2, 0.4, 0.4, 0.6, 0.8]
    prec = [1.0, 1.0, 2 / 3, 0.75, 0.8]
    # 11-point: max precision at recall >= t
    #   t = 0, .1, .2, .3, .4   -> 1.0  (points with recall .2/.4 reach it)   5 x 1.0
    #   t = .5, .6, .7, .8      -> max(.75, .8) = .8 resp. .8                  4 x 0.8
    #   t = .9, 1.0             -> no recall reaches t -> 0                    2 x 0
    #   AP = (5 + 3.2) / 11 = 8.2 / 11
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(8.2 / 11, abs=1e-12)
    # area: envelope over recall steps 0-.2: 1, .2-.4: 1, .4-.6: .8, .6-.8: .8, .8-1: 0
    #   AP = .2 + .2 + .16 + .16 = .72
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.72, abs=1e-12)


def test_voc_ap_perfect_and_empty():
    assert voc_ap([0.5, 1.0], [1.0, 1.0], True) == pytest.approx(1.0, abs=1e-12)
    assert voc_ap([0.5, 1.0], [1.0, 1.0], False) == pytest.approx(1.0, abs=1e-12)
    assert voc_ap([], [], True) == 0.0
    assert voc_ap([], [], False) == 0.0


def test_voc_ap_11_point_thresholds_are_the_devkits_floats():
    # the reference's thresholds np.arange(0., 1.1, 0.1) hold 0.30000000000000004: a recall of
    # exactly 3/10 counts at t = 0, .1, .2 only -> 3/11; the exact k/10 variant also at .3 -> 4/11
    assert voc_ap([3 / 10], [1.0], True) == pytest.approx(3 / 11, abs=1e-12)
    assert voc_ap([3 / 10], [1.0], True, exact_07_thresholds=True) == pytest.approx(
        4 / 11, abs=1e-12
    )
    # the same through voc_evaluate: 10 objects, 3 found by the only 3 detections
    gts = np.array([[10.0 * i, 0, 10.0 * i + 5, 5] for i in range(10)])
    ann = [dict(boxes=gts, gt_classes=np.ones(10, np.int64), difficult=np.zeros(10, bool))]
    dets = [[np.hstack([gts[:3], np.ones((3, 1))])]]
    classes = ["__background__", "a"]
    assert voc_evaluate([[None]] + dets, ann, classes)["ap"]["a"] == pytest.approx(
        3 / 11, abs=1e-12
    )
    assert voc_evaluate([[None]] + dets, ann, classes, exact_07_thresholds=True)["ap"][
        "a"
    ] == pytest.approx(4 / 11, abs=1e-12)


# ------------------------------------------------------------------- match_class_detections


def test_detection_on_difficult_is_neither_tp_nor_fp():
    gts = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]], dtype=np.float32)]
    difficult = [np.array([False, True])]
    dets = [_dets([20, 20, 29, 29, 0.9], [0, 0, 9, 9, 0.8])]
    tp, fp, npos = match_class_detections(dets, gts, difficult)
    assert npos == 1
    np.testing.assert_array_equal(tp, [0, 1])
    np.testing.assert_array_equal(fp, [0, 0])

    classes = ("__background__", "a")
    ann = [_ann([[0, 0, 9, 9], [20, 20, 29, 29]], [1, 1], [False, True])]
    with_difficult_det = voc_evaluate([[None], dets], ann, classes)
    without = voc_evaluate([[None], [_dets([0, 0, 9, 9, 0.8])]], ann, classes)
    # counted as FP the AP would be 0.5 (11-point, precision 1/2 at recall 1)
    assert with_difficult_det["ap"]["a"] == pytest.approx(1.0)
    assert without["ap"]["a"] == pytest.approx(1.0)
    assert with_difficult_det["recall"]["a"] == without["recall"]["a"] == 1.0


def test_duplicate_detection_is_false_positive():
    gts = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]], dtype=np.float32)]
    # second box overlaps the first gt with IoU 90/110 but that gt is already taken
    dets = [_dets([0, 0, 9, 9, 0.9], [1, 0, 10, 9, 0.8], [20, 20, 29, 29, 0.7])]
    tp, fp, npos = match_class_detections(dets, gts, [np.zeros(2, bool)])
    assert npos == 2
    np.testing.assert_array_equal(tp, [1, 0, 1])
    np.testing.assert_array_equal(fp, [0, 1, 0])
    # rec = [.5, .5, 1], prec = [1, .5, 2/3]: 11-point = (6 x 1 + 5 x 2/3) / 11 = 28/33;
    # area = .5 x 1 + .5 x 2/3 = 5/6
    classes = ("__background__", "a")
    ann = [_ann([[0, 0, 9, 9], [20, 20, 29, 29]], [1, 1])]
    assert voc_evaluate([[None], dets], ann, classes)["ap"]["a"] == pytest.approx(28 / 33)
    assert voc_evaluate([[None], dets], ann, classes, use_07_metric=False)["ap"][
        "a"
    ] == pytest.approx(5 / 6)


def test_iou_threshold_is_strict():
    gts = [np.array([[0, 0, 9, 9]], dtype=np.float32)]
    diff = [np.zeros(1, bool)]
    # +1 convention: det 10x5 inside gt 10x10 -> IoU 50 / 100 = 0.5 exactly: not matched
    tp, fp, _ = match_class_detections([_dets([0, 0, 9, 4, 1.0])], gts, diff)
    assert tp.tolist() == [0.0] and fp.tolist() == [1.0]
    # 10x6 -> IoU 0.6: matched
    tp, fp, _ = match_class_detections([_dets([0, 0, 9, 5, 1.0])], gts, diff)
    assert tp.tolist() == [1.0] and fp.tolist() == [0.0]
    # the threshold argument is used: at 0.49 the 0.5 box matches
    tp, _, _ = match_class_detections([_dets([0, 0, 9, 4, 1.0])], gts, diff, iou_thresh=0.49)
    assert tp.tolist() == [1.0]


def test_plus_one_convention_decides_match():
    # gt [0,0,3,3] and det [1,0,4,3]: with +1 inter 3x4 = 12, union 16 + 16 - 12 = 20 ->
    # IoU 0.6 (match); without +1 inter 2x3 = 6, union 9 + 9 - 6 = 12 -> 0.5 (no match)
    tp, fp, _ = match_class_detections(
        [_dets([1, 0, 4, 3, 1.0])], [np.array([[0, 0, 3, 3]], np.float32)], [np.zeros(1, bool)]
    )
    assert tp.tolist() == [1.0] and fp.tolist() == [0.0]


def test_detection_in_image_without_gt_is_fp():
    tp, fp, npos = match_class_detections(
        [_dets([0, 0, 9, 9, 0.5]), _dets()],
        [np.zeros((0, 4)), np.array([[0, 0, 9, 9]], np.float32)],
        [np.zeros(0, bool), np.zeros(1, bool)],
    )
    assert npos == 1 and tp.tolist() == [0.0] and fp.tolist() == [1.0]


# --------------------------------------------------------------------------- voc_evaluate


def _multi_case():
    classes = ("__background__", "a", "b", "c")
    annotations = [
        # image 0: a at A1, A2; b at B1
        _ann([[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]], [1, 1, 2]),
        # image 1: a at A3; b at B2 (difficult), B3
        _ann([[0, 0, 9, 9], [10, 10, 19, 19], [30, 30, 39, 39]], [1, 2, 2], [False, True, False]),
    ]
    empty = _dets()
    all_boxes = [
        [empty, empty],
        # a: .9 A1 (TP), .8 nothing in image 1 (FP), .7 A1 again (FP), .6 A3 (TP); A2 missed
        [
            _dets([0, 0, 9, 9, 0.9], [0, 0, 9, 9, 0.7]),
            _dets([50, 50, 59, 59, 0.8], [0, 0, 9, 9, 0.6]),
        ],
        # b: .95 on difficult B2 (ignored), .85 B3 shifted (IoU 90/110, TP),
        #    .5 on A1 in image 0 (class a's box -> FP), .4 B1 (TP)
        [
            _dets([0, 0, 9, 9, 0.5], [40, 40, 49, 49, 0.4]),
            _dets([10, 10, 19, 19, 0.95], [31, 30, 40, 39, 0.85]),
        ],
        # c: no ground truth anywhere
        [_dets([0, 0, 9, 9, 0.3]), empty],
    ]
    return all_boxes, annotations, classes


def test_multi_image_multi_class_11_point(caplog):
    all_boxes, annotations, classes = _multi_case()
    with caplog.at_level(logging.WARNING, logger="fasterrcnn.eval.voc"):
        result = voc_evaluate(all_boxes, annotations, classes, use_07_metric=True)
    # a: npos 3, tp = [1,0,0,1], rec = [1/3,1/3,1/3,2/3], prec = [1,1/2,1/3,1/2]
    #    11-point: t=0..0.3 -> 1 (4x), t=.4..0.6 -> 1/2 (3x), t>=.7 -> 0: AP = 5.5/11 = 0.5
    # b: npos 2, after the ignored one rec = [.5,.5,1], prec = [1,1/2,2/3]
    #    11-point: t=0...5 -> 1 (6x), t=.6..1 -> 2/3 (5x): AP = 28/33
    assert result["ap"]["a"] == pytest.approx(0.5)
    assert result["ap"]["b"] == pytest.approx(28 / 33)
    assert math.isnan(result["ap"]["c"])
    assert result["map"] == pytest.approx((0.5 + 28 / 33) / 2)
    assert result["recall"]["a"] == pytest.approx(2 / 3)
    assert result["recall"]["b"] == pytest.approx(1.0)
    assert math.isnan(result["recall"]["c"])
    # the area under the envelope comes along (hand-computed in the area test below)
    assert result["ap_area"]["a"] == pytest.approx(0.5)
    assert result["ap_area"]["b"] == pytest.approx(5 / 6)
    assert math.isnan(result["ap_area"]["c"])
    assert result["map_area"] == pytest.approx((0.5 + 5 / 6) / 2)
    assert any("c" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_multi_image_multi_class_area():
    all_boxes, annotations, classes = _multi_case()
    result = voc_evaluate(all_boxes, annotations, classes, use_07_metric=False)
    # a: envelope 1 on (0,1/3], 1/2 on (1/3,2/3], 0 after: 1/3 + 1/6 = 0.5
    # b: envelope 1 on (0,.5], 2/3 on (.5,1]: .5 + 1/3 = 5/6
    assert result["ap"]["a"] == pytest.approx(0.5)
    assert result["ap"]["b"] == pytest.approx(5 / 6)
    assert result["map"] == pytest.approx((0.5 + 5 / 6) / 2)


def test_perfect_detector_and_class_without_detections():
    classes = ("__background__", "a", "b")
    annotations = [_ann([[0, 0, 9, 9], [5, 5, 30, 40]], [1, 2]), _ann([[3, 4, 20, 21]], [1])]
    perfect = [
        [None, None],
        [_dets([0, 0, 9, 9, 0.9]), _dets([3, 4, 20, 21, 0.2])],
        [_dets([5, 5, 30, 40, 0.7]), _dets()],
    ]
    result = voc_evaluate(perfect, annotations, classes)
    assert result["ap"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert result["map"] == pytest.approx(1.0)
    no_b = [perfect[0], perfect[1], [_dets(), _dets()]]
    result = voc_evaluate(no_b, annotations, classes)
    assert result["ap"]["b"] == 0.0 and result["recall"]["b"] == 0.0
    assert result["map"] == pytest.approx(0.5)


def test_format_ap_table():
    all_boxes, annotations, classes = _multi_case()
    result = voc_evaluate(all_boxes, annotations, classes)
    table = format_ap_table(result, classes).splitlines()
    assert table[:2] == ["| class | AP |", "|---|---|"]
    assert table[2:] == [
        "| a | 50.00 |",
        f"| b | {100 * 28 / 33:.2f} |",
        "| c | nan |",
        f"| **mAP** | {100 * (0.5 + 28 / 33) / 2:.2f} |",
    ]


def test_mismatched_inputs_raise():
    classes = ("__background__", "a")
    with pytest.raises(ValueError, match="images"):
        voc_evaluate([[None], [_dets()]], [_ann([], []), _ann([], [])], classes)
    with pytest.raises(ValueError, match="classes"):
        voc_evaluate([[None]], [_ann([], [])], classes)
