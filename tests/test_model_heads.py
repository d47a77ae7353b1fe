"""Losses, the RPN's per-anchor layout and losses, the RoI head's pooling, init and losses."""

import math

import pytest
import torch
import torch.nn.functional as F

from fasterrcnn.config import load_config
from fasterrcnn.model import RPN, RoIHead, build_pooler, build_resnet, smooth_l1_loss
from fasterrcnn.ops import RoIAlign, RoICrop, RoIPool


def _hand_smooth_l1(d: float, sigma: float) -> float:
    s = sigma * sigma
    return 0.5 * s * d * d if abs(d) < 1.0 / s else abs(d) - 0.5 / s


def test_smooth_l1_hand_values():
    pred = torch.tensor([[[0.05, 0.5, -0.2, 0.0]], [[1.0, 0.1, 0.0, 0.3]]], dtype=torch.float64)
    target = torch.zeros_like(pred)
    inside = torch.tensor([[[1.0, 1.0, 2.0, 1.0]], [[1.0, 0.0, 1.0, 1.0]]], dtype=torch.float64)
    outside = torch.full_like(pred, 0.5)
    got = smooth_l1_loss(pred, target, inside, outside, sigma=3.0, sum_dims=(1, 2))
    image0 = 0.5 * (0.5 * 9 * 0.05**2 + (0.5 - 0.5 / 9) + (0.4 - 0.5 / 9))
    image1 = 0.5 * ((1.0 - 0.5 / 9) + (0.3 - 0.5 / 9))
    assert got.item() == pytest.approx((image0 + image1) / 2, rel=1e-12)
    flat = smooth_l1_loss(
        pred.view(-1, 4), target.view(-1, 4), inside.view(-1, 4), outside.view(-1, 4)
    )
    per_row = [
        sum(0.5 * _hand_smooth_l1(i * p, 1.0) for p, i in zip(pr, ir))
        for pr, ir in zip(pred.view(-1, 4).tolist(), inside.view(-1, 4).tolist())
    ]
    assert flat.item() == pytest.approx(sum(per_row) / 2, rel=1e-12)


def test_smooth_l1_gradcheck():
    pred = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, dtype=torch.float64)
    weights = torch.rand(3, 4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda p: smooth_l1_loss(p, target, weights, weights, sigma=3.0), (pred,)
    )


def _rpn(overrides=()):
    cfg = load_config(None, ["RPN_CHANNELS", "4", "ANCHOR_SCALES", "[2, 4]"] + list(overrides))
    return cfg, RPN.from_config(cfg, in_channels=3)


def test_rpn_per_anchor_layout_follows_shift_anchors():
    """Score channel a / A+a is anchor a's bg / fg logit; deltas channel 4a+k its k-th delta;
    rows are (y * W + x) * A + a."""
    _, rpn = _rpn()
    a_count = rpn.num_anchors
    assert a_count == 6
    with torch.no_grad():
        rpn.conv.weight.zero_()
        rpn.conv.weight[0, 0, 1, 1] = 1.0
        rpn.conv.bias.zero_()
        rpn.cls_score.weight.zero_()
        rpn.cls_score.weight[:, 0] = 1.0
        rpn.cls_score.bias.copy_(1000.0 * torch.arange(2 * a_count))
        rpn.bbox_pred.weight.zero_()
        rpn.bbox_pred.weight[:, 0] = 1.0
        rpn.bbox_pred.bias.copy_(1000.0 * torch.arange(4 * a_count))
    height, width = 3, 5
    feat = torch.zeros(2, 3, height, width)
    for b in range(2):
        for y in range(height):
            for x in range(width):
                feat[b, 0, y, x] = 1 + 100 * b + 10 * y + x
    with torch.no_grad():
        logits, deltas = rpn.predict(feat)
    assert logits.shape == (2, height * width * a_count, 2)
    assert deltas.shape == (2, height * width * a_count, 4)
    for b in range(2):
        for y in range(height):
            for x in range(width):
                for a in range(a_count):
                    row = (y * width + x) * a_count + a
                    v = float(feat[b, 0, y, x])
                    assert logits[b, row].tolist() == [v + 1000.0 * a, v + 1000.0 * (a_count + a)]
                    assert deltas[b, row].tolist() == [v + 1000.0 * (4 * a + k) for k in range(4)]
    anchors = rpn.anchors(height, width)
    assert anchors.shape == (height * width * a_count, 4)
    assert torch.equal(
        anchors[(2 * width + 3) * a_count + 1] - anchors[1], torch.tensor([48.0, 32.0, 48.0, 32.0])
    )


def test_rpn_init_and_eval_without_losses():
    cfg, rpn = _rpn(["RPN_CHANNELS", "256"])
    rpn = RPN.from_config(cfg, in_channels=256)
    for layer in (rpn.conv, rpn.cls_score, rpn.bbox_pred):
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1)
    rpn.eval()
    out = rpn(torch.randn(1, 256, 4, 6), torch.tensor([[64.0, 96.0, 1.0]]))
    assert out.losses == {}
    assert out.rois.shape == (1, cfg.TEST.RPN_POST_NMS_TOP_N, 5)
    assert torch.allclose(out.cls_prob.sum(-1), torch.ones(1, 4 * 6 * 6))


def test_rpn_conv_takes_nchw_input_in_a_one_image_cpu_training_pass():
    """The RPN's 3x3 conv reads channels-last base features as NCHW in a one-image training
    pass (its weight gradient is faster so) and as they are in a batch, without autograd or
    with a frozen conv; the logits and deltas are the same either way."""
    _, rpn = _rpn()
    seen = []
    rpn.conv.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    feat = torch.randn(2, 3, 5, 6).contiguous(memory_format=torch.channels_last)
    one = feat[:1]
    assert one.is_contiguous(memory_format=torch.channels_last)
    trained = rpn.predict(one)
    assert seen == [False]
    rpn.predict(feat)
    with torch.no_grad():
        plain = rpn.predict(one)
    rpn.conv.weight.requires_grad_(False)
    rpn.predict(one)
    assert seen == [False, True, True, True]
    for got, want in zip(trained, plain):
        torch.testing.assert_close(got, want)


def test_rpn_losses_against_hand_formulas():
    cfg, rpn = _rpn(["TRAIN.RPN_BATCHSIZE", "32"])
    feat = torch.randn(2, 3, 4, 6)
    im_info = torch.tensor([[64.0, 96.0, 1.0], [60.0, 90.0, 1.0]])
    gt = torch.tensor(
        [
            [[10.0, 12.0, 40.0, 50.0, 1.0], [0, 0, 0, 0, 0]],
            [[30.0, 5.0, 80.0, 40.0, 2.0], [5.0, 20.0, 30.0, 55.0, 1.0]],
        ]
    )
    num = torch.tensor([1, 2])
    seed = torch.tensor(5)
    out = rpn(feat, im_info, gt, num, seed)
    logits, deltas = rpn.predict(feat)
    targets = rpn.anchor_target_layer(out.anchors, gt, im_info, num, seed)
    logits, deltas = logits.double().tolist(), deltas.double().tolist()
    labels = targets.labels.tolist()
    ce = [
        -(logits[b][n][lab] - math.log(sum(math.exp(v) for v in logits[b][n])))
        for b in range(2)
        for n, lab in enumerate(labels[b])
        if lab != -1
    ]
    assert out.losses["rpn_cls"].item() == pytest.approx(sum(ce) / len(ce), rel=1e-5)
    box = 0.0
    for b in range(2):
        for n in range(len(labels[b])):
            for k in range(4):
                d = float(targets.bbox_inside_weights[b, n, k]) * (
                    deltas[b][n][k] - float(targets.bbox_targets[b, n, k])
                )
                box += float(targets.bbox_outside_weights[b, n, k]) * _hand_smooth_l1(d, 3.0)
    assert out.losses["rpn_box"].item() == pytest.approx(box / 2, rel=1e-5, abs=1e-9)
    assert (targets.labels == 1).any()


@pytest.mark.parametrize(
    "mode,max_pool,kind",
    [
        ("align", False, RoIAlign),
        ("pool", False, RoIPool),
        ("crop", True, RoICrop),
        ("crop", False, RoICrop),
    ],
)
def test_build_pooler(mode, max_pool, kind):
    cfg = load_config(
        None,
        # fmt: off
        [
            "POOLING_MODE",
            mode,
            "CROP_RESIZE_WITH_MAX_POOL",
            str(max_pool).lower(),
            "POOLING_SIZE",
            "5",
        ],
        # fmt: on
    )
    pooler = build_pooler(cfg)
    assert type(pooler) is kind
    assert pooler.spatial_scale == pytest.approx(1.0 / 16)
    if kind is RoIAlign:
        assert pooler.sampling_ratio == 0 and pooler.aligned is False
    if kind is RoICrop:
        assert pooler.max_pool is max_pool
    out = pooler(torch.randn(1, 2, 6, 8), torch.tensor([[0.0, 8.0, 8.0, 70.0, 50.0]]))
    assert out.shape == (1, 2, 5, 5)


def _head(agnostic: bool, num_classes: int = 3) -> RoIHead:
    cfg = load_config(None, ["CLASS_AGNOSTIC", str(agnostic).lower()])
    parts = build_resnet("res18", width_mult=0.25, norm="bn", fixed_blocks=0)
    return RoIHead.from_config(cfg, parts.top, parts.top_channels, num_classes)


def test_roi_head_init_and_shapes():
    head = _head(False, num_classes=21)
    assert head.cls_score.weight.shape == (21, 128) and head.bbox_pred.weight.shape == (84, 128)
    assert head.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.15)
    assert head.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.15)
    assert torch.count_nonzero(head.cls_score.bias) == 0
    assert torch.count_nonzero(head.bbox_pred.bias) == 0
    assert _head(True).bbox_pred.out_features == 4
    rois = torch.tensor([[0.0, 0.0, 0.0, 40.0, 40.0], [1.0, 10.0, 5.0, 60.0, 30.0]])
    scores, deltas = head.predict(head.pool(torch.randn(2, 64, 4, 6), rois))
    assert scores.shape == (2, 21) and deltas.shape == (2, 84)


@pytest.mark.parametrize("agnostic", [False, True])
def test_roi_head_losses_use_the_label_class_deltas(agnostic):
    head = _head(agnostic)
    cls_score = torch.tensor(
        [[0.1, 2.0, -1.0], [1.0, 0.0, 0.5], [0.0, 0.3, 0.2]], dtype=torch.float64
    )
    labels = torch.tensor([2, 0, 1])
    columns = 4 if agnostic else 12
    bbox_pred = torch.arange(3 * columns, dtype=torch.float64).view(3, columns) * 0.1 - 1.0
    targets = torch.tensor(
        [[0.5, -0.5, 0.0, 0.2], [0.0] * 4, [0.1, 0.1, 0.1, 0.1]], dtype=torch.float64
    )
    inside = torch.tensor([[1.0] * 4, [0.0] * 4, [1.0] * 4], dtype=torch.float64)
    losses = head.losses(cls_score, bbox_pred, labels, targets, inside, inside)
    ce = [-(cls_score[i, labels[i]] - torch.logsumexp(cls_score[i], 0)).item() for i in range(3)]
    assert losses["rcnn_cls"].item() == pytest.approx(sum(ce) / 3, rel=1e-12)
    expected = 0.0
    for i in range(3):
        start = 0 if agnostic else 4 * int(labels[i])
        for k in range(4):
            d = float(inside[i, k]) * (float(bbox_pred[i, start + k]) - float(targets[i, k]))
            expected += float(inside[i, k]) * _hand_smooth_l1(d, 1.0)
    assert losses["rcnn_box"].item() == pytest.approx(expected / 3, rel=1e-12)
    assert F.cross_entropy(cls_score, labels).item() == pytest.approx(losses["rcnn_cls"].item())
