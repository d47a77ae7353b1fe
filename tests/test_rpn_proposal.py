"""ProposalLayer: decode, clip, size filter, ranking, NMS, top-N and padding."""

import torch
import torchvision

from fasterrcnn.config import load_config
from fasterrcnn.rpn import ProposalLayer, clip_boxes, decode_boxes

# With zero deltas a box decodes to [x1, y1, x2 + 1, y2 + 1] (the reference decode).
ANCHORS = torch.tensor(
    [
        [0, 0, 29, 29],  # A0 -> [0,0,30,30]
        [1, 1, 30, 30],  # A1 -> [1,1,31,31]: IoU 841/959 = 0.88 with A0
        [50, 0, 79, 29],  # A2
        [0, 50, 9, 59],  # A3 -> [0,50,10,60]: 11 pixels (+1 widths)
        [90, 90, 119, 119],  # A4 -> clipped to [90,90,99,99]: 10 pixels
        [50, 50, 79, 79],  # A5
    ],
    dtype=torch.float32,
)
SCORES = torch.tensor([0.9, 0.95, 0.3, 0.99, 0.5, 0.6])
DECODED = {
    0: [0, 0, 30, 30],
    1: [1, 1, 31, 31],
    2: [50, 0, 80, 30],
    3: [0, 50, 10, 60],
    4: [90, 90, 99, 99],
    5: [50, 50, 80, 80],
}


def _run(overrides=(), scales=(1.0,), training=True, scores=SCORES, deltas=None):
    cfg = load_config(None, ["TRAIN.RPN_POST_NMS_TOP_N", "8", *overrides])
    batch = len(scales)
    im_info = torch.tensor([[100.0, 100.0, s] for s in scales])
    if deltas is None:
        deltas = torch.zeros(batch, ANCHORS.shape[0], 4)
    layer = ProposalLayer.from_config(cfg)
    return layer(scores.expand(batch, -1), deltas, ANCHORS, im_info, training)


def _expect(order):
    return torch.tensor([DECODED[i] for i in order], dtype=torch.float32)


def test_sorted_nms_clipped_and_padded():
    rois, num = _run(scales=(1.0, 1.5))
    assert rois.shape == (2, 8, 5) and num.dtype == torch.int64
    # Image 0 (min size 8): A0 is suppressed by A1; scores decrease along the rows.
    assert num.tolist() == [5, 3]
    assert torch.equal(rois[0, :5, 1:], _expect([3, 1, 5, 4, 2]))
    # Image 1 (scale 1.5, min size 12): A3 (11 px) and clipped A4 (10 px) are dropped.
    assert torch.equal(rois[1, :3, 1:], _expect([1, 5, 2]))
    assert (rois[0, 5:, 1:] == 0).all() and (rois[1, 3:, 1:] == 0).all()
    assert rois[0, :, 0].tolist() == [0.0] * 8
    assert rois[1, :, 0].tolist() == [1.0] * 8


def test_nms_threshold_from_config():
    rois, num = _run(["TRAIN.RPN_NMS_THRESH", "0.9"])
    assert num.tolist() == [6]
    assert torch.equal(rois[0, :6, 1:], _expect([3, 1, 0, 5, 4, 2]))


def test_pre_and_post_nms_top_n():
    _, num = _run(["TRAIN.RPN_PRE_NMS_TOP_N", "2"])
    assert num.tolist() == [2]
    rois, num = _run(["TRAIN.RPN_POST_NMS_TOP_N", "3"])
    assert rois.shape == (1, 3, 5) and num.tolist() == [3]
    assert torch.equal(rois[0, :, 1:], _expect([3, 1, 5]))


def test_test_numbers_when_not_training():
    rois, num = _run(["TEST.RPN_POST_NMS_TOP_N", "2"], training=False)
    # TEST.RPN_MIN_SIZE 16 drops A3 and A4; post-NMS top 2.
    assert rois.shape == (1, 2, 5) and num.tolist() == [2]
    assert torch.equal(rois[0, :, 1:], _expect([1, 5]))


def test_deltas_are_applied_and_no_gradient():
    deltas = torch.zeros(1, 6, 4)
    deltas[0, 2] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # A2 moves right by 15 px
    deltas.requires_grad_(True)
    rois, _ = _run(deltas=deltas)
    assert not rois.requires_grad
    assert rois[0, 4, 1:].tolist() == [65.0, 0.0, 95.0, 30.0]


def test_matches_torchvision_nms_on_random_input_float64():
    g = torch.Generator().manual_seed(0)
    n = 300
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 200 - 20
    anchors = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 60], 1)
    deltas = torch.randn(2, n, 4, generator=g, dtype=torch.float64) * 0.2
    scores = torch.rand(2, n, generator=g, dtype=torch.float64)
    im_info = torch.tensor([[150.0, 180.0, 1.0], [120.0, 200.0, 0.8]], dtype=torch.float64)
    cfg = load_config(None, ["TRAIN.RPN_PRE_NMS_TOP_N", "150", "TRAIN.RPN_POST_NMS_TOP_N", "60"])
    rois, num = ProposalLayer.from_config(cfg)(scores, deltas, anchors, im_info, True)
    assert rois.dtype == torch.float64
    boxes = clip_boxes(decode_boxes(anchors, deltas), im_info)
    for b in range(2):
        wh = boxes[b, :, 2:] - boxes[b, :, :2] + 1
        ok = (wh >= 8 * im_info[b, 2]).all(1)
        cand, cand_scores = boxes[b][ok], scores[b][ok]
        top = cand_scores.argsort(descending=True)[:150]
        keep = torchvision.ops.nms(cand[top], cand_scores[top], 0.7)[:60]
        k = int(num[b])
        assert k == keep.numel() > 10
        torch.testing.assert_close(rois[b, :k, 1:], cand[top][keep])
        kept = rois[b, :k, 1:]
        iou = torchvision.ops.box_iou(kept, kept).fill_diagonal_(0)
        assert iou.max() <= 0.7
        assert (kept[:, 0] >= 0).all() and (kept[:, 2] <= im_info[b, 1] - 1).all()
        assert (kept[:, 1] >= 0).all() and (kept[:, 3] <= im_info[b, 0] - 1).all()
