"""ProposalTargetLayer: RoI sampling, labels, normalised targets and weights."""

import math

import torch

from fasterrcnn.config import load_config
from fasterrcnn.rpn import ProposalTargetLayer, box_iou, draw_seed

GT = [10, 10, 49, 49]  # 40 x 40
P1 = [14, 10, 53, 49]  # IoU 1440/1760: fg, target dx = (30 - 34) / 40 = -0.1
P2 = [10, 10, 49, 89]  # IoU 1600/3200 = 0.5: fg, dy = (30 - 50) / 80, dh = log(1/2)
BG = [[30, 10, 69, 49], [10, 30, 49, 69], [25, 25, 64, 64]]  # IoU 1/3, 1/3, 625/2575
IGNORED = [[40, 40, 79, 79], [80, 80, 99, 99]]  # IoU 100/3100 and 0: below BG_THRESH_LO


def _inputs(rois_per_image, gts_per_image, pad_rois=2, pad_gt=1, dtype=torch.float32, junk=None):
    batch = len(rois_per_image)
    p = max(len(r) for r in rois_per_image) + pad_rois
    g = max(len(x) for x in gts_per_image) + pad_gt
    rois = torch.zeros(batch, p, 5, dtype=dtype)
    gt = torch.zeros(batch, g, 5, dtype=dtype)
    for b, (r, x) in enumerate(zip(rois_per_image, gts_per_image)):
        rois[b, :, 0] = b
        if junk is not None:
            rois[b, len(r) :, 1:] = torch.tensor(junk, dtype=dtype)
        if r:
            rois[b, : len(r), 1:] = torch.tensor(r, dtype=dtype)
        if x:
            gt[b, : len(x)] = torch.tensor(x, dtype=dtype)
    num_rois = torch.tensor([len(r) for r in rois_per_image])
    num_boxes = torch.tensor([len(x) for x in gts_per_image])
    return rois, num_rois, gt, num_boxes


def _run(overrides, *inputs, seed=0):
    layer = ProposalTargetLayer.from_config(load_config(None, list(overrides)))
    return layer(*inputs, draw_seed(torch.Generator().manual_seed(seed), torch.device("cpu")))


def _boxes_within(rois, allowed):
    """True when every row of ``rois`` (K, 4) is one of the ``allowed`` boxes."""
    return {tuple(r) for r in rois.tolist()} <= {tuple(map(float, b)) for b in allowed}


def test_hand_targets_normalised_by_stds_and_gt_appended():
    inputs = _inputs([[P1, P2] + BG + IGNORED], [[GT + [3]]])
    # fmt: off
    cfg = [
        "TRAIN.BATCH_SIZE", "8", "TRAIN.FG_FRACTION", "0.5",
        "TRAIN.BBOX_INSIDE_WEIGHTS", "[1.0, 0.5, 2.0, 0.25]",
    ]
    # fmt: on
    rois, labels, targets, inside, outside = _run(cfg, *inputs)
    assert rois.shape == (1, 8, 5) and labels.shape == (1, 8) and labels.dtype == torch.int64
    # Three fg candidates (P1, P2 and the appended gt), quota 4: all three, first.
    assert labels[0].tolist() == [3, 3, 3, 0, 0, 0, 0, 0]
    boxes = rois[0, :, 1:]
    expected = {
        tuple(P1): [-0.1 / 0.1, 0.0, 0.0, 0.0],
        tuple(P2): [0.0, -0.25 / 0.1, 0.0, math.log(0.5) / 0.2],
        tuple(GT): [0.0, 0.0, 0.0, 0.0],
    }
    assert sorted(tuple(int(v) for v in boxes[i].tolist()) for i in range(3)) == sorted(expected)
    for i in range(3):
        key = tuple(int(v) for v in boxes[i].tolist())
        torch.testing.assert_close(targets[0, i], torch.tensor(expected[key]))
    assert _boxes_within(boxes[3:], BG)
    assert (targets[0, 3:] == 0).all()
    torch.testing.assert_close(inside[0, :3], torch.tensor([[1.0, 0.5, 2.0, 0.25]] * 3))
    assert (inside[0, 3:] == 0).all()
    assert torch.equal(outside, (inside > 0).float())
    assert (rois[0, :, 0] == 0).all()


def _shifted(n):
    return [[10 + k, 10, 49 + k, 49] for k in range(1, n + 1)]  # IoU >= 0.6 with GT (n <= 10)


def _bg_boxes(n):
    return [[30 + (k % 10), 10 + (k // 10), 69, 49] for k in range(n)]  # IoU in [0.22, 0.34]


def test_fg_fraction_and_thresholds():
    rois, num_rois, gt, num_boxes = _inputs([_shifted(10) + _bg_boxes(20) + IGNORED], [[GT + [2]]])
    out_rois, labels, _, _, _ = _run(["TRAIN.BATCH_SIZE", "16"], rois, num_rois, gt, num_boxes)
    # round(0.25 * 16) = 4 fg rows without replacement, then 12 distinct bg rows.
    assert labels[0].tolist() == [2] * 4 + [0] * 12
    iou = box_iou(out_rois[0, :, 1:], gt[0, :1, :4])[:, 0]
    assert (iou[:4] >= 0.5).all()
    assert ((iou[4:] >= 0.1) & (iou[4:] < 0.5)).all()
    assert len({tuple(r.tolist()) for r in out_rois[0]}) == 16


def test_labels_from_the_best_gt():
    gts = [GT + [3], [60, 60, 99, 99, 1]]
    rois, num_rois, gt, num_boxes = _inputs([[P1, [61, 60, 99, 99]] + BG], [gts])
    out_rois, labels, _, _, _ = _run(
        ["TRAIN.BATCH_SIZE", "8", "TRAIN.FG_FRACTION", "0.5"], rois, num_rois, gt, num_boxes
    )
    for i in range(4):
        box = out_rois[0, i, 1:]
        expected = 3 if box[0] < 55 else 1
        assert labels[0, i] == expected
    assert (labels[0, 4:] == 0).all()


def test_gt_is_the_only_fg_when_proposals_miss():
    inputs = _inputs([BG + IGNORED], [[GT + [4]]])
    rois, labels, targets, inside, _ = _run(["TRAIN.BATCH_SIZE", "8"], *inputs)
    assert labels[0].tolist() == [4] + [0] * 7
    assert rois[0, 0, 1:].tolist() == [float(v) for v in GT]
    assert (targets == 0).all()
    assert inside[0, 0].tolist() == [1.0] * 4 and (inside[0, 1:] == 0).all()


def test_padded_proposals_and_gt_rows_are_not_candidates():
    # Rows past num_rois hold a box identical to the gt; past num_boxes another gt-like box.
    rois, num_rois, gt, num_boxes = _inputs([BG], [[GT + [4]]], pad_rois=5, junk=GT)
    gt[0, 1] = torch.tensor([60.0, 60, 99, 99, 2])
    _, labels, _, _, _ = _run(
        ["TRAIN.BATCH_SIZE", "8", "TRAIN.FG_FRACTION", "0.5"], rois, num_rois, gt, num_boxes
    )
    assert int((labels > 0).sum()) == 1


def test_only_fg_candidates_sampled_with_replacement():
    inputs = _inputs([_shifted(3)], [[GT + [1]]])
    rois, labels, _, inside, _ = _run(["TRAIN.BATCH_SIZE", "10"], *inputs)
    assert labels[0].tolist() == [1] * 10
    assert (inside[0] == 1).all()
    assert _boxes_within(rois[0, :, 1:], _shifted(3) + [GT])


def test_short_bg_sampled_with_replacement():
    inputs = _inputs([BG], [[GT + [1]]])
    rois, labels, _, _, _ = _run(["TRAIN.BATCH_SIZE", "12"], *inputs)
    assert labels[0].tolist() == [1] + [0] * 11
    assert _boxes_within(rois[0, 1:, 1:], BG)


def test_image_without_gt_is_all_bg():
    inputs = _inputs([BG + IGNORED], [[]])
    rois, labels, targets, inside, outside = _run(
        ["TRAIN.BATCH_SIZE", "8", "TRAIN.BG_THRESH_LO", "0.0"], *inputs
    )
    assert (labels == 0).all() and (targets == 0).all()
    assert (inside == 0).all() and (outside == 0).all()
    assert _boxes_within(rois[0, :, 1:], BG + IGNORED)


def test_no_fg_no_bg_falls_back_to_all_valid_candidates():
    # No gt and BG_THRESH_LO 0.1: every IoU is 0, so there is neither fg nor bg (the reference
    # raises); all valid proposals become bg candidates.
    inputs = _inputs([BG + IGNORED], [[]])
    rois, labels, _, inside, _ = _run(["TRAIN.BATCH_SIZE", "8"], *inputs)
    assert rois.shape == (1, 8, 5) and (labels == 0).all() and (inside == 0).all()
    assert _boxes_within(rois[0, :, 1:], BG + IGNORED)


def test_no_candidates_at_all_gives_zero_rows():
    inputs = _inputs([[], BG], [[], [GT + [1]]])
    rois, labels, _, _, _ = _run(["TRAIN.BATCH_SIZE", "4"], *inputs)
    assert (rois[0, :, 1:] == 0).all() and (labels[0] == 0).all()
    assert rois[1, :, 0].tolist() == [1.0] * 4 and labels[1, 0] == 1


def test_batch_shapes_index_column_dtype_and_seed():
    inputs = _inputs(
        [_shifted(5) + _bg_boxes(20), BG],
        [[GT + [2]], [GT + [3], [0, 0, 9, 9, 1]]],
        dtype=torch.float64,
    )
    cfg = ["TRAIN.BATCH_SIZE", "16"]
    a = _run(cfg, *inputs, seed=1)
    b = _run(cfg, *inputs, seed=1)
    c = _run(cfg, *inputs, seed=2)
    rois, labels, targets, inside, outside = a
    assert rois.shape == (2, 16, 5) and targets.shape == inside.shape == outside.shape == (2, 16, 4)
    assert rois.dtype == targets.dtype == torch.float64
    assert rois[0, :, 0].tolist() == [0.0] * 16 and rois[1, :, 0].tolist() == [1.0] * 16
    # Image 1: its two gt boxes are its only fg candidates.
    assert labels[1, :2].tolist() in ([3, 1], [1, 3]) and (labels[1, 2:] == 0).all()
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
