"""FasterRCNN forward/backward for every backbone and pooling mode, eval outputs, stages,
reproducibility and input validation (tiny images, narrow widths)."""

import math

import pytest
import torch
from conftest import TINY_MODEL

from fasterrcnn.config import load_config
from fasterrcnn.model import FasterRCNN, Stages, build_model

LOSSES = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(height: int = 64, width: int = 96):
    gen = torch.Generator().manual_seed(1)
    im_data = torch.randn(2, 3, height, width, generator=gen)
    im_info = torch.tensor([[height, width, 1.0], [height, width, 1.6]])
    gt = torch.zeros(2, 3, 5)
    gt[0, 0] = torch.tensor([8.0, 10.0, 40.0, 50.0, 1.0])
    gt[0, 1] = torch.tensor([50.0, 20.0, 90.0, 60.0, 2.0])
    gt[1, 0] = torch.tensor([20.0, 4.0, 60.0, 30.0, 2.0])
    num = torch.tensor([2, 1])
    return im_data, im_info, gt, num


def _model(overrides, num_classes: int = 3) -> FasterRCNN:
    torch.manual_seed(0)
    return build_model(load_config(None, TINY_MODEL + list(overrides)), num_classes)


def _train_step(model: FasterRCNN, height: int = 64, width: int = 96):
    model.train()
    losses = model(*_batch(height, width))
    assert set(losses) == set(LOSSES)
    for name, value in losses.items():
        assert value.dim() == 0 and math.isfinite(value.item()), name
    sum(losses.values()).backward()
    return losses


def _check_gradients(model: FasterRCNN, frozen_prefixes=()):
    for name, p in model.named_parameters():
        frozen = name.startswith(tuple(frozen_prefixes))
        assert p.requires_grad != frozen, name
        if frozen:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for part in (model.base, model.rpn, model.roi_head):
        grads = [p.grad.abs().sum() for p in part.parameters() if p.grad is not None]
        assert sum(grads) > 0


@pytest.mark.parametrize(
    "net,size,frozen",
    [
        (
            "vgg16",
            (64, 96),
            ["base.features.0.", "base.features.2.", "base.features.5.", "base.features.7."],
        ),
        ("res18", (64, 96), ["base.conv1.", "base.layer1."]),
        ("res34", (64, 96), ["base.conv1.", "base.layer1."]),
        ("res50", (64, 64), ["base.conv1.", "base.layer1."]),
        ("res101", (64, 64), ["base.conv1.", "base.layer1."]),
        ("res152", (64, 64), ["base.conv1.", "base.layer1."]),
    ],
)
def test_train_step_every_backbone(net, size, frozen):
    """Reference freezing (FIXED_BLOCKS 1 / FIXED_LAYERS 10, frozen BN): frozen params get no
    gradient, every other parameter does."""
    model = _model(["NET", net])
    _train_step(model, *size)
    _check_gradients(model, frozen)


@pytest.mark.parametrize(
    "mode,max_pool", [("pool", False), ("align", False), ("crop", True), ("crop", False)]
)
@pytest.mark.parametrize("agnostic", [False, True])
def test_train_step_every_pooling_mode(mode, max_pool, agnostic):
    model = _model(
        # fmt: off
        [
            "NET",
            "res18",
            "BACKBONE.NORM",
            "bn",
            "RESNET.FIXED_BLOCKS",
            "0",
            "POOLING_MODE",
            mode,
            "CROP_RESIZE_WITH_MAX_POOL",
            str(max_pool).lower(),
            "CLASS_AGNOSTIC",
            str(agnostic).lower(),
        ]
        # fmt: on
    )
    _train_step(model)
    _check_gradients(model)
    model.eval()
    with torch.no_grad():
        rois, cls_prob, bbox_pred = model(*_batch()[:2])
    assert bbox_pred.shape == rois.shape[:2] + (4 if agnostic else 12,)


def test_eval_outputs_and_padding():
    model = _model(["NET", "res18", "TEST.RPN_POST_NMS_TOP_N", "400", "TEST.RPN_NMS_THRESH", "0.3"])
    model.eval()
    im_data, im_info, _, _ = _batch()
    with torch.no_grad():
        rois, cls_prob, bbox_pred = model(im_data, im_info)
        stages = model.forward_features(im_data, im_info)
    assert rois.shape == (2, 400, 5) and cls_prob.shape == (2, 400, 3)
    assert bbox_pred.shape == (2, 400, 12)
    assert torch.equal(rois, stages.rois) and torch.equal(cls_prob, stages.cls_prob)
    num = stages.num_rois
    assert (num > 0).all() and (num < 400).all()
    for b in range(2):
        n = int(num[b])
        assert torch.allclose(cls_prob[b, :n].sum(1), torch.ones(n))
        assert torch.count_nonzero(cls_prob[b, n:]) == 0
        assert torch.count_nonzero(bbox_pred[b, n:]) == 0
        assert (rois[b, :, 0] == b).all()
    detections = model.postprocess(rois, cls_prob, bbox_pred, im_info)
    assert len(detections) == 2
    for det, scale in zip(detections, (1.0, 1.6)):
        assert det["boxes"].shape[1] == 4 and det["labels"].dtype == torch.int64
        assert ((det["labels"] >= 1) & (det["labels"] <= 2)).all()
        assert (det["boxes"][:, 2] <= (96 - 1) / scale + 1e-4).all()


def test_forward_features_stages():
    model = _model(["NET", "res18"])
    model.eval()
    im_data, im_info, _, _ = _batch()
    with torch.no_grad():
        stages = model.forward_features(im_data, im_info)
    assert isinstance(stages, Stages)
    assert stages.base_feat.shape == (2, 32, 4, 6)
    anchors = 4 * 6 * 9
    assert stages.anchors.shape == (anchors, 4)
    assert stages.rpn_cls_prob.shape == (2, anchors, 2)
    assert stages.rpn_bbox_deltas.shape == (2, anchors, 4)
    assert stages.pooled.shape == (int(stages.num_rois.sum()), 32, 7, 7)


def test_generator_reproducibility():
    model = _model(["NET", "res18", "TRAIN.RPN_BATCHSIZE", "16", "TRAIN.BATCH_SIZE", "8"])
    model.train()
    batch = _batch()
    with torch.no_grad():
        first = model(*batch)
        model.generator.manual_seed(model.cfg.RNG_SEED)
        again = model(*batch)
        advanced = model(*batch)
    assert all(torch.equal(first[k], again[k]) for k in LOSSES)
    assert any(not torch.equal(first[k], advanced[k]) for k in LOSSES)
    other = _model(["NET", "res18", "TRAIN.RPN_BATCHSIZE", "16", "TRAIN.BATCH_SIZE", "8"])
    other.train()
    with torch.no_grad():
        twin = other(*batch)
    assert all(torch.equal(first[k], twin[k]) for k in LOSSES)


def test_double_precision_follows_the_model():
    model = _model(["NET", "res18"]).double()
    model.eval()
    im_data, im_info, _, _ = _batch()
    with torch.no_grad():
        rois, cls_prob, bbox_pred = model(im_data.double(), im_info.double())
    assert rois.dtype == cls_prob.dtype == bbox_pred.dtype == torch.float64


def test_input_validation():
    model = _model(["NET", "res18"])
    im_data, im_info, gt, num = _batch()
    model.train()
    with pytest.raises(ValueError, match="im_data"):
        model(im_data[0], im_info, gt, num)
    with pytest.raises(ValueError, match="im_info"):
        model(im_data, im_info[:, :2], gt, num)
    with pytest.raises(ValueError, match="gt_boxes"):
        model(im_data, im_info)
    with pytest.raises(ValueError, match="gt_boxes"):
        model(im_data, im_info, gt[..., :4], num)
    with pytest.raises(ValueError, match="num_boxes"):
        model(im_data, im_info, gt, num[:1])
    with pytest.raises(ValueError, match="num_classes"):
        build_model(load_config(None, TINY_MODEL), 1)


@pytest.mark.slow
def test_full_width_res101_train_step():
    """The reference configuration (full width, frozen BN, FIXED_BLOCKS 1) at 64x64."""
    model = _model(["NET", "res101", "BACKBONE.WIDTH_MULT", "1.0", "RPN_CHANNELS", "64"])
    assert model.roi_head.cls_score.in_features == 2048 and model.rpn.conv.in_channels == 1024
    _train_step(model, 64, 64)
    _check_gradients(model, ["base.conv1.", "base.layer1."])
