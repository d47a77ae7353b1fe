"""AnchorTargetLayer on hand-built anchors and gt boxes."""

import math

import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.rpn import AnchorTargetLayer, RPNTargets, draw_seed, encode_boxes


def _seed(seed: int) -> torch.Tensor:
    return draw_seed(torch.Generator().manual_seed(seed), torch.device("cpu"))


def _gt(per_image, max_gt=4, dtype=torch.float32):
    gt = torch.zeros(len(per_image), max_gt, 5, dtype=dtype)
    for b, rows in enumerate(per_image):
        if rows:
            gt[b, : len(rows)] = torch.tensor(rows, dtype=dtype)
    return gt, torch.tensor([len(rows) for rows in per_image])


def _run(anchors, per_image, overrides=(), size=(100, 100), seed=0, max_gt=4, dtype=torch.float32):
    cfg = load_config(None, list(overrides))
    gt, num = _gt(per_image, max_gt, dtype)
    im_info = torch.tensor([[size[0], size[1], 1.0]] * len(per_image), dtype=dtype)
    anchors = torch.tensor(anchors, dtype=dtype)
    return AnchorTargetLayer.from_config(cfg)(anchors, gt, im_info, num, _seed(seed))


BASIC_ANCHORS = [
    [0, 0, 9, 9],  # IoU 100/225 with the gt: neither fg nor bg
    [0, 0, 19, 19],  # IoU 225/400 = 0.5625: the gt's best anchor, fg although < 0.7
    [50, 50, 69, 69],  # IoU 0: bg
    [-5, 0, 9, 9],  # crosses x = 0: ignored
    [90, 90, 100, 100],  # x2 = 100 is not < width 100: ignored
]


def test_best_anchor_below_threshold_is_fg_and_border_anchors_ignored():
    t = _run(BASIC_ANCHORS, [[[0, 0, 14, 14, 1]]])
    assert isinstance(t, RPNTargets)
    assert t.labels.dtype == torch.int64
    assert t.labels.tolist() == [[-1, 1, 0, -1, -1]]
    expected_target = [-0.125, -0.125, math.log(0.75), math.log(0.75)]
    torch.testing.assert_close(t.bbox_targets[0, 1], torch.tensor(expected_target))
    assert (t.bbox_targets[0, [0, 2, 3, 4]] == 0).all()
    assert t.bbox_inside_weights[0].tolist() == [[0] * 4, [1] * 4, [0] * 4, [0] * 4, [0] * 4]
    # Two sampled examples (one fg, one bg): each weighs 1/2.
    assert t.bbox_outside_weights[0].tolist() == [[0] * 4, [0.5] * 4, [0.5] * 4, [0] * 4, [0] * 4]


def test_allowed_border_admits_crossing_anchor():
    t = _run(BASIC_ANCHORS, [[[0, 0, 14, 14, 1]]], ["TRAIN.RPN_ALLOWED_BORDER", "5"])
    # [-5,0,9,9] is now inside: IoU 100/275 = 0.36 -> neither fg nor bg; [90,90,100,100] is bg.
    assert t.labels.tolist() == [[-1, 1, 0, -1, 0]]


def test_ties_all_fg_positive_overlap_and_gt_with_zero_best_ignored():
    anchors = [
        [0, 10, 19, 29],  # IoU 1/3 with gt 0 (tie)
        [20, 10, 39, 29],  # IoU 1/3 with gt 0 (tie)
        [60, 60, 79, 79],  # IoU 0 with all: bg
        [61, 0, 79, 20],  # IoU 399/420 with gt 1 ([60,0,79,20]) but not its best
        [60, 0, 79, 20],  # IoU 1 with gt 1
    ]
    # gt 2 at [90,90,98,98] overlaps no anchor: its best IoU is 0 and must make nothing fg.
    t = _run(anchors, [[[10, 10, 29, 29, 1], [60, 0, 79, 20, 2], [90, 90, 98, 98, 3]]])
    assert t.labels.tolist() == [[1, 1, 0, 1, 1]]
    torch.testing.assert_close(t.bbox_targets[0, 4], torch.zeros(4))
    torch.testing.assert_close(
        t.bbox_targets[0, 3],
        encode_boxes(torch.tensor([61.0, 0, 79, 20]), torch.tensor([60.0, 0, 79, 20])),
    )


def test_clobber_positives():
    anchors = [[0, 0, 19, 19], [50, 50, 69, 69]]
    gt = [[[0, 0, 4, 4, 1]]]  # best anchor IoU 25/400 < 0.3
    assert _run(anchors, gt).labels.tolist() == [[1, 0]]
    assert _run(anchors, gt, ["TRAIN.RPN_CLOBBER_POSITIVES", "true"]).labels.tolist() == [[0, 0]]


def _many_anchors(num_fg, num_bg):
    fg = [[10, 10, 29, 29]] * num_fg
    bg = [[60 + (i % 20), 60, 79, 79] for i in range(num_bg)]
    return fg + bg


def test_sampling_caps_fg_and_total():
    t = _run(_many_anchors(300, 400), [[[10, 10, 29, 29, 1]]])
    labels = t.labels[0]
    assert int((labels == 1).sum()) == 128
    assert int((labels == 0).sum()) == 128
    assert (labels[:300] != 0).all() and (labels[300:] != 1).all()
    outside = t.bbox_outside_weights[0]
    torch.testing.assert_close(outside[labels >= 0], torch.full((256, 4), 1 / 256))
    assert (t.bbox_outside_weights[0][labels < 0] == 0).all()
    assert (t.bbox_inside_weights[0][labels != 1] == 0).all()


def test_sampling_fills_with_bg_when_few_fg():
    t = _run(_many_anchors(10, 400), [[[10, 10, 29, 29, 1]]])
    assert int((t.labels == 1).sum()) == 10
    assert int((t.labels == 0).sum()) == 246


def test_sampling_reproducible_and_seed_dependent():
    anchors = _many_anchors(300, 400)
    a = _run(anchors, [[[10, 10, 29, 29, 1]]], seed=5).labels
    b = _run(anchors, [[[10, 10, 29, 29, 1]]], seed=5).labels
    c = _run(anchors, [[[10, 10, 29, 29, 1]]], seed=6).labels
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_image_without_gt_is_all_bg():
    t = _run(_many_anchors(300, 400), [[]])
    assert int((t.labels == 1).sum()) == 0
    assert int((t.labels == 0).sum()) == 256
    assert (t.bbox_targets == 0).all() and (t.bbox_inside_weights == 0).all()
    torch.testing.assert_close(t.bbox_outside_weights.sum(), torch.tensor(4.0))


def test_padded_gt_rows_change_nothing():
    anchors = _many_anchors(300, 400) + BASIC_ANCHORS
    gt = [[10, 10, 29, 29, 1], [0, 0, 14, 14, 2]]
    ref = _run(anchors, [gt], max_gt=2)
    padded = _run(anchors, [gt], max_gt=6)
    cfg = load_config(None, [])
    junk, _ = _gt([gt + [[50, 50, 69, 69, 3]]], 6)  # a real-looking box past num_boxes
    junk_out = AnchorTargetLayer.from_config(cfg)(
        torch.tensor(anchors, dtype=torch.float32),
        junk,
        torch.tensor([[100.0, 100.0, 1.0]]),
        torch.tensor([2]),
        _seed(0),
    )
    for other in (padded, junk_out):
        for x, y in zip(ref, other):
            assert torch.equal(x, y)


def test_positive_weight_in_unit_interval():
    t = _run(_many_anchors(10, 400), [[[10, 10, 29, 29, 1]]], ["TRAIN.RPN_POSITIVE_WEIGHT", "0.25"])
    labels = t.labels[0]
    outside = t.bbox_outside_weights[0]
    torch.testing.assert_close(outside[labels == 1], torch.full((10, 4), 0.25 / 10))
    torch.testing.assert_close(outside[labels == 0], torch.full((246, 4), 0.75 / 246))
    with pytest.raises(ValueError, match="RPN_POSITIVE_WEIGHT"):
        AnchorTargetLayer.from_config(load_config(None, ["TRAIN.RPN_POSITIVE_WEIGHT", "1.5"]))


def test_inside_weights_from_config_and_float64():
    overrides = ["TRAIN.RPN_BBOX_INSIDE_WEIGHTS", "[1.0, 0.5, 2.0, 0.25]"]
    t = _run(BASIC_ANCHORS, [[[0, 0, 14, 14, 1]]], overrides, dtype=torch.float64)
    assert t.bbox_targets.dtype == t.bbox_inside_weights.dtype == torch.float64
    assert t.bbox_inside_weights[0, 1].tolist() == [1.0, 0.5, 2.0, 0.25]


def test_batch_equals_images_alone():
    anchors = _many_anchors(150, 200) + BASIC_ANCHORS
    img0 = [[10, 10, 29, 29, 1], [0, 0, 14, 14, 2], [50, 50, 69, 69, 1]]
    img1 = [[0, 0, 14, 14, 3]]
    unbound = ["TRAIN.RPN_BATCHSIZE", "100000"]
    for overrides in ([], unbound):
        batch = _run(anchors, [img0, img1], overrides, size=(100, 90), seed=3)
        alone0 = _run(anchors, [img0], overrides, size=(100, 90), seed=3)
        # The first image draws first from the stream: identical even with binding sampling.
        for x, y in zip(batch, alone0):
            assert torch.equal(x[0], y[0])
    assert int((batch.labels[0] == 1).sum()) == 150 + 2  # not capped without a binding batch size
    batch = _run(anchors, [img0, img1], unbound, size=(100, 90), seed=3)
    alone1 = _run(anchors, [img1], unbound, size=(100, 90), seed=3)
    for x, y in zip(batch, alone1):
        assert torch.equal(x[1], y[0])
    # With binding sampling, image 1's deterministic parts: its fg set (fewer than 128, so not
    # subsampled), its bg count, and bg drawn only from its bg candidates.
    bound = _run(anchors, [img0, img1], [], size=(100, 90), seed=3)
    assert torch.equal(bound.labels[1] == 1, alone1.labels[0] == 1)
    assert int((bound.labels[1] == 0).sum()) == 256 - int((alone1.labels[0] == 1).sum())
    assert not ((bound.labels[1] == 0) & (alone1.labels[0] != 0)).any()
    assert (bound.labels[1, -2:] == -1).all()  # the border anchors


def test_image_size_from_each_im_info_row():
    anchors = [[0, 0, 9, 9], [0, 0, 59, 9], [60, 60, 79, 79]]
    cfg = load_config(None, [])
    gt, num = _gt([[[0, 0, 9, 9, 1]], [[0, 0, 9, 9, 1]]])
    im_info = torch.tensor([[100.0, 100.0, 1.0], [50.0, 50.0, 1.0]])
    t = AnchorTargetLayer.from_config(cfg)(torch.tensor(anchors), gt, im_info, num, _seed(0))
    # Image 1 is 50x50: the 60-pixel-wide anchor and the one at (60,60) are outside it.
    assert t.labels.tolist() == [[1, 0, 0], [1, -1, -1]]
