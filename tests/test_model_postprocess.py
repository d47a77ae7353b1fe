"""FasterRCNN.postprocess on hand-built RoIs, probabilities and deltas."""

import math

import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.model import build_model
from fasterrcnn.model.roi_head import vote_boxes

LN2 = math.log(2.0)


def _model(overrides=()):
    cfg = load_config(None, ["NET", "res18", "BACKBONE.WIDTH_MULT", "0.125"] + list(overrides))
    return build_model(cfg, 3)


def _case():
    """Two images; deltas normalised by the default stds (0.1, 0.1, 0.2, 0.2).

    Image 0 (scale 2, 100x120):
      r0 [10,10,29,29]: class 1 p .8 dx=1 -> [30,10,50,30]; class 2 p .1 dw=ln2 -> [0,10,40,30]
      r1 [32,10,51,29]: class 1 p .6 -> [32,10,52,30] (IoU .83 with r0's: suppressed);
                        class 2 p .15 -> same box (IoU .17 with r0's class 2 box: kept)
      r2 [100,80,119,99]: class 1 p .9 dx=dy=.5 -> [110,90,130,110], clipped to [110,90,119,99];
                          class 2 p .05 -> [100,80,120,100] clipped to [100,80,119,99]
      r3, r4: padding
    Image 1 (scale 1, 50x60): r0 [5,5,24,24] class 1 p .5 and class 2 p .4, zero deltas; the
    other rows padding.
    """
    rois = torch.zeros(2, 5, 5)
    rois[1, :, 0] = 1
    rois[0, 0, 1:] = torch.tensor([10.0, 10.0, 29.0, 29.0])
    rois[0, 1, 1:] = torch.tensor([32.0, 10.0, 51.0, 29.0])
    rois[0, 2, 1:] = torch.tensor([100.0, 80.0, 119.0, 99.0])
    rois[1, 0, 1:] = torch.tensor([5.0, 5.0, 24.0, 24.0])
    cls_prob = torch.zeros(2, 5, 3)
    cls_prob[0, 0] = torch.tensor([0.1, 0.8, 0.1])
    cls_prob[0, 1] = torch.tensor([0.25, 0.6, 0.15])
    cls_prob[0, 2] = torch.tensor([0.05, 0.9, 0.05])
    cls_prob[1, 0] = torch.tensor([0.1, 0.5, 0.4])
    deltas = torch.zeros(2, 5, 12)
    deltas[0, 0, 4:8] = torch.tensor([10.0, 0.0, 0.0, 0.0])
    deltas[0, 0, 8:12] = torch.tensor([0.0, 0.0, 5 * LN2, 0.0])
    deltas[0, 2, 4:8] = torch.tensor([5.0, 5.0, 0.0, 0.0])
    deltas[:, 3:] = 7.0
    im_info = torch.tensor([[100.0, 120.0, 2.0], [50.0, 60.0, 1.0]])
    return rois, cls_prob, deltas, im_info


EXPECTED_0 = [
    (0.9, 1, [55.0, 45.0, 59.5, 49.5]),
    (0.8, 1, [15.0, 5.0, 25.0, 15.0]),
    (0.15, 2, [16.0, 5.0, 26.0, 15.0]),
    (0.1, 2, [0.0, 5.0, 20.0, 15.0]),
    (0.05, 2, [50.0, 40.0, 59.5, 49.5]),
]
EXPECTED_1 = [(0.5, 1, [5.0, 5.0, 25.0, 25.0]), (0.4, 2, [5.0, 5.0, 25.0, 25.0])]


def _check(det, expected):
    assert det["boxes"].shape == (len(expected), 4)
    assert det["labels"].dtype == torch.int64
    assert det["scores"].tolist() == pytest.approx([e[0] for e in expected])
    assert det["labels"].tolist() == [e[1] for e in expected]
    assert torch.allclose(
        det["boxes"], torch.tensor([e[2] for e in expected]).view(-1, 4), atol=1e-4
    )


def test_postprocess_hand_case():
    model = _model()
    dets = model.postprocess(*_case())
    assert len(dets) == 2
    _check(dets[0], EXPECTED_0)
    _check(dets[1], EXPECTED_1)


def test_padded_rows_never_returned_even_below_zero_threshold():
    dets = _model().postprocess(*_case(), score_thresh=-1.0)
    _check(dets[0], EXPECTED_0)
    _check(dets[1], EXPECTED_1)


def test_score_threshold_is_strict():
    model = _model()
    _check(model.postprocess(*_case(), score_thresh=0.15)[0], EXPECTED_0[:2])
    _check(model.postprocess(*_case(), score_thresh=0.149)[0], EXPECTED_0[:3])
    model = _model(["TEST.SCORE_THRESH", "0.5"])
    dets = model.postprocess(*_case())
    _check(dets[0], EXPECTED_0[:2])
    _check(dets[1], [])


def test_nms_threshold_and_max_per_image():
    model = _model()
    dets = model.postprocess(*_case(), nms_thresh=0.9)
    _check(
        dets[0],
        EXPECTED_0[:1] + EXPECTED_0[1:2] + [(0.6, 1, [16.0, 5.0, 26.0, 15.0])] + EXPECTED_0[2:],
    )
    _check(model.postprocess(*_case(), max_per_image=2)[0], EXPECTED_0[:2])
    _check(_model(["TEST.MAX_PER_IMAGE", "3"]).postprocess(*_case())[0], EXPECTED_0[:3])
    _check(model.postprocess(*_case(), max_per_image=0)[0], EXPECTED_0)


def test_nms_uses_the_plus_one_convention():
    """RoIs [0,0,9,9] and [5,0,14,9] decode (dw = dh = ln 0.9) to [0.5,0.5,9.5,9.5] and
    [5.5,0.5,14.5,9.5]: IoU 50/150 = 1/3 with +1 sizes, 36/126 = 0.286 without."""
    rois = torch.tensor([[[0, 0.0, 0.0, 9.0, 9.0], [0, 5.0, 0.0, 14.0, 9.0]]])
    cls_prob = torch.tensor([[[0.1, 0.9, 0.0], [0.2, 0.8, 0.0]]])
    deltas = torch.zeros(1, 2, 12)
    deltas[..., 6:8] = 5 * math.log(0.9)
    im_info = torch.tensor([[20.0, 20.0, 1.0]])
    model = _model()
    det = model.postprocess(rois, cls_prob, deltas, im_info, nms_thresh=0.3)[0]
    _check(det, [(0.9, 1, [0.5, 0.5, 9.5, 9.5])])
    det = model.postprocess(rois, cls_prob, deltas, im_info, nms_thresh=0.34)[0]
    _check(det, [(0.9, 1, [0.5, 0.5, 9.5, 9.5]), (0.8, 1, [5.5, 0.5, 14.5, 9.5])])


def test_class_agnostic_deltas():
    rois, cls_prob, deltas, im_info = _case()
    agnostic = deltas[..., 4:8].clone()
    dets = _model(["CLASS_AGNOSTIC", "true"]).postprocess(
        rois[:, :1], cls_prob[:, :1], agnostic[:, :1], im_info
    )
    _check(dets[0], [(0.8, 1, [15.0, 5.0, 25.0, 15.0]), (0.1, 2, [15.0, 5.0, 25.0, 15.0])])


def test_without_bbox_reg_or_normalisation():
    rois, cls_prob, deltas, im_info = _case()
    dets = _model(["TEST.BBOX_REG", "false"]).postprocess(
        rois[:, :1], cls_prob[:, :1], deltas[:, :1], im_info
    )
    _check(dets[0], [(0.8, 1, [5.0, 5.0, 14.5, 14.5]), (0.1, 2, [5.0, 5.0, 14.5, 14.5])])
    raw = deltas.clone()
    raw[..., 0::4] *= 0.1
    raw[..., 1::4] *= 0.1
    raw[..., 2::4] *= 0.2
    raw[..., 3::4] *= 0.2
    unnormalised = _model(["TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED", "false"])
    dets = unnormalised.postprocess(rois, cls_prob, raw, im_info)
    _check(dets[0], EXPECTED_0)
    means = _model(["TRAIN.BBOX_NORMALIZE_MEANS", "[0.5, 0.0, 0.0, 0.0]"])
    shifted = deltas.clone()
    shifted[..., 0::4] -= 5.0
    _check(means.postprocess(rois, cls_prob, shifted, im_info)[0], EXPECTED_0)


def test_box_voting_averages_the_suppressed_boxes_of_the_same_class():
    """Image 0, class 1: r0's [15,5,25,15] (p .8) suppresses r1's [16,5,26,15] (p .6) at IoU
    110/132 = 0.83 and becomes (0.8 * r0 + 0.6 * r1) / 1.4 = [15 + 3/7, 5, 25 + 3/7, 15] with
    a vote threshold of 0.5.  Nothing else has a same-class neighbour at IoU >= 0.5 (class 2's
    r0 and r1 boxes: 55/297 = 0.19), and at 0.9 no box changes."""
    voted = _model(["TEST.BBOX_VOTE_THRESH", "0.5"]).postprocess(*_case())
    expected = list(EXPECTED_0)
    expected[1] = (0.8, 1, [15.0 + 3 / 7, 5.0, 25.0 + 3 / 7, 15.0])
    _check(voted[0], expected)
    _check(voted[1], EXPECTED_1)
    strict = _model(["TEST.BBOX_VOTE_THRESH", "0.9"]).postprocess(*_case())
    _check(strict[0], EXPECTED_0)
    _check(strict[1], EXPECTED_1)


def test_vote_boxes_ignores_other_classes_non_candidates_and_empty_slots():
    kept = torch.tensor([[[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]]])
    kept_labels = torch.tensor([[1, 0]])
    boxes = torch.tensor(
        [
            [
                [0.0, 0.0, 9.0, 9.0],
                [2.0, 0.0, 11.0, 9.0],
                [0.0, 0.0, 19.0, 9.0],
                [1.0, 0.0, 10.0, 9.0],
            ]
        ]
    )
    scores = torch.tensor([[0.6, 0.2, 0.9, 0.8]])
    labels = torch.tensor([1, 1, 2, 1])
    candidate = torch.tensor([[True, True, True, False]])
    out = vote_boxes(kept, kept_labels, boxes, scores, labels, candidate, 0.5)
    # Voters: itself (0.6) and [2,0,11,9] (0.2, IoU 80/120); not class 2, not the non-candidate.
    torch.testing.assert_close(out[0, 0], torch.tensor([0.5, 0.0, 9.5, 9.0]))
    torch.testing.assert_close(out[0, 1], torch.zeros(4))
