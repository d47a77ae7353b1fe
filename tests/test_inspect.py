"""fasterrcnn.inspect: the traced stages, their shapes from each backbone's arithmetic, the
drawings and the command line."""

import math

import numpy as np
import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.inspect import STAGES, TARGET_STAGES, trace
from fasterrcnn.model import build_model
from fasterrcnn.model.backbones import scaled

WALKTHROUGH_HEIGHT, WALKTHROUGH_WIDTH = 600, 800
NUM_CLASSES = 21


def conv_out(size: int, kernel: int, stride: int, padding: int, ceil: bool = False) -> int:
    """Output length of a convolution or pooling window (PyTorch's formula)."""
    steps = (size + 2 * padding - kernel) / stride
    return (math.ceil(steps) if ceil else math.floor(steps)) + 1


def vgg16_feature_size(size: int) -> int:
    """conv5_3 of VGG16: 3x3 pad-1 convs keep the size; four 2x2 stride-2 max-pools floor it
    (torchvision's ``make_layers``; caffe's ceil mode would round up)."""
    for _ in range(4):
        size = conv_out(size, 2, 2, 0)
    return size


def resnet_feature_size(size: int, style: str) -> int:
    """layer3 of a ResNet C4: conv1 7x7/2 pad 3, max-pool 3x3/2 (pad 1; caffe: pad 0, ceil),
    then layer2 and layer3 stride 2 (3x3 pad 1; caffe: on the 1x1 conv, pad 0)."""
    size = conv_out(size, 7, 2, 3)
    size = conv_out(size, 3, 2, 0, ceil=True) if style == "caffe" else conv_out(size, 3, 2, 1)
    for _ in range(2):
        size = conv_out(size, 1, 2, 0) if style == "caffe" else conv_out(size, 3, 2, 1)
    return size


def _zero_init_residuals(model) -> None:
    """Zero the last norm of every residual branch (torchvision's ``zero_init_residual``): a
    random-init ResNet-101 with identity (frozen) BatchNorm otherwise grows its activations
    block after block until the RPN's boxes overflow and no proposal survives."""
    for module in model.modules():
        last = getattr(module, "bn3", None) or (
            getattr(module, "bn2", None) if hasattr(module, "conv2") else None
        )
        if last is not None and hasattr(module, "downsample"):
            last.weight.zero_()


def _model(net: str, overrides=(), width: float = 1 / 32, num_classes: int = NUM_CLASSES):
    """A random-init model; narrow (``width``, a 16-channel RPN, 20 test proposals) unless
    ``width`` is 1, which keeps every default of the schema."""
    narrow = (
        []
        if width == 1.0
        else ["BACKBONE.WIDTH_MULT", width, "RPN_CHANNELS", 16, "TEST.RPN_POST_NMS_TOP_N", 20]
    )
    cfg = load_config(None, ["NET", net] + narrow + list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes).eval()
    with torch.no_grad():
        _zero_init_residuals(model)
    return model, cfg


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)


def expected_shapes(cfg, net: str, num_dets: int) -> dict:
    """The eval-mode table of a 600x800 image (scale 1 with TEST.SCALES 600 / MAX_SIZE 1000).
    The second stage runs on every row of the padded proposals (fixed shapes)."""
    w = cfg.BACKBONE.WIDTH_MULT
    if net == "vgg16":
        h_feat = vgg16_feature_size(WALKTHROUGH_HEIGHT)
        w_feat = vgg16_feature_size(WALKTHROUGH_WIDTH)
        channels, top = scaled(512, w), scaled(4096, w)
    else:
        h_feat = resnet_feature_size(WALKTHROUGH_HEIGHT, cfg.BACKBONE.STYLE)
        w_feat = resnet_feature_size(WALKTHROUGH_WIDTH, cfg.BACKBONE.STYLE)
        channels, top = scaled(256, w) * 4, scaled(512, w) * 4  # Bottleneck expansion 4
    a = len(cfg.ANCHOR_SCALES) * len(cfg.ANCHOR_RATIOS)
    post = num_rois = cfg.TEST.RPN_POST_NMS_TOP_N
    p = cfg.POOLING_SIZE
    return {
        "im_data": (1, 3, WALKTHROUGH_HEIGHT, WALKTHROUGH_WIDTH),
        "im_info": (1, 3),
        "base_feat": (1, channels, h_feat, w_feat),
        "rpn_conv1": (1, cfg.RPN_CHANNELS, h_feat, w_feat),
        "rpn_cls_score": (1, 2 * a, h_feat, w_feat),
        "rpn_cls_prob": (1, 2 * a, h_feat, w_feat),
        "rpn_bbox_pred": (1, 4 * a, h_feat, w_feat),
        "anchors": (h_feat * w_feat * a, 4),
        "rois": (1, post, 5),
        "rois_scores": (1, post),
        "pooled_feat": (num_rois, channels, p, p),
        "fc7": (num_rois, top),
        "cls_score": (num_rois, NUM_CLASSES),
        "cls_prob": (num_rois, NUM_CLASSES),
        "bbox_pred": (num_rois, 4 * NUM_CLASSES),
        "det_boxes": (num_dets, 4),
        "det_scores": (num_dets,),
        "det_labels": (num_dets,),
    }


def test_feature_arithmetic_matches_the_walkthroughs():
    # caffe's ceil-mode VGG16 gives the walkthroughs' 38x50; torchvision's floor gives 37x50.
    assert (vgg16_feature_size(600), vgg16_feature_size(800)) == (37, 50)
    assert (resnet_feature_size(600, "caffe"), resnet_feature_size(800, "caffe")) == (38, 50)
    assert (resnet_feature_size(600, "pytorch"), resnet_feature_size(800, "pytorch")) == (38, 50)


@pytest.mark.parametrize("net", ["vgg16", "res101"])
def test_shapes_table_at_600x800(net, one_thread, capsys):
    model, cfg = _model(net)
    result = trace(model, _image(WALKTHROUGH_HEIGHT, WALKTHROUGH_WIDTH))
    table = result.shapes()
    printed = capsys.readouterr().out
    expected = expected_shapes(cfg, net, len(result.detections["boxes"]))
    assert dict(table) == expected
    assert list(table) == [name for name in STAGES if name in expected]  # walkthrough order
    base_name = "conv5_3" if net == "vgg16" else "layer3"
    assert f"base_feat ({base_name})" in printed and "rpn_cls_score" in printed
    feat = expected["base_feat"]
    assert "x".join(map(str, feat)) in printed
    assert result.num_rois == cfg.TEST.RPN_POST_NMS_TOP_N


@pytest.mark.slow
@pytest.mark.parametrize("net", ["vgg16", "res101"])
def test_shapes_table_at_600x800_full_width(net):
    model, cfg = _model(net, width=1.0)
    result = trace(model, _image(WALKTHROUGH_HEIGHT, WALKTHROUGH_WIDTH))
    table = result.shapes()
    assert dict(table) == expected_shapes(cfg, net, len(result.detections["boxes"]))
    if net == "vgg16":
        assert table["base_feat"] == (1, 512, 37, 50) and table["anchors"] == (16650, 4)
        assert table["fc7"][1] == 4096
    else:
        assert table["base_feat"] == (1, 1024, 38, 50) and table["anchors"] == (17100, 4)
        assert table["fc7"][1] == 2048
    assert table["rpn_conv1"][1] == 512 and table["rois"] == (1, 300, 5)
    assert result.num_rois == 300 and table["pooled_feat"][0] == 300
    assert table["rpn_cls_score"][1] == 18 and table["rpn_bbox_pred"][1] == 36


def _targets():
    return {
        "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 90.0]]),
        "labels": torch.tensor([1, 3]),
    }


@pytest.mark.parametrize("mode", ["pool", "align", "crop"])
@pytest.mark.parametrize("net", ["vgg16", "res18", "res50"])
def test_trace_with_targets_every_backbone_and_pooling(net, mode, one_thread):
    # fmt: off
    overrides = [
        "POOLING_MODE", mode, "TRAIN.BATCH_SIZE", 16, "TRAIN.RPN_BATCHSIZE", 32,
        "TRAIN.RPN_POST_NMS_TOP_N", 40, "TEST.SCALES", [128], "TEST.MAX_SIZE", 200,
        "ANCHOR_SCALES", [2, 4, 8], "TRAIN.FG_THRESH", 0.3,
    ]
    # fmt: on
    model, cfg = _model(net, overrides, width=1 / 16, num_classes=4)
    result = trace(model, _image(100, 140), _targets())
    for name in TARGET_STAGES:
        assert name in result
    anchors = result["anchors"].shape[0]
    assert result["rpn_labels"].shape == (1, anchors)
    assert result["rpn_bbox_targets"].shape == (1, anchors, 4)
    labels = result["rpn_labels"]
    assert int((labels == 1).sum()) >= 1 and int((labels != -1).sum()) <= 32
    assert result["rois"].shape == (1, 40, 5)
    assert result["sampled_rois"].shape == (1, 16, 5)
    assert result["pooled_feat"].shape[0] == 16
    assert result["pooled_feat"].shape[2:] == (cfg.POOLING_SIZE, cfg.POOLING_SIZE)
    assert result["cls_score"].shape == (16, 4) and result["bbox_pred"].shape == (16, 16)
    assert int((result["rois_label"] > 0).sum()) >= 2  # the gt boxes are candidates
    assert set(result.losses) == {"rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"}


def test_trace_leaves_the_model_unchanged(one_thread):
    # fmt: off
    overrides = [
        "BACKBONE.NORM", "bn", "RESNET.FIXED_BLOCKS", 0, "TEST.SCALES", [128],
        "TEST.MAX_SIZE", 200, "TRAIN.BATCH_SIZE", 16,
    ]
    # fmt: on
    model, _ = _model("res18", overrides, width=1 / 16, num_classes=4)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    generator = model.generator.get_state()
    flags = {name: m.training for name, m in model.named_modules()}
    trace(model, _image(100, 140), _targets())
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert torch.equal(model.generator.get_state(), generator)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("flip", [False, True])
def test_stages_agree_with_the_model(flip, one_thread):
    """The stages are one pass's: with TEST.FLIP the image's own, not the mirror pass after it."""
    overrides = ["TEST.SCALES", [128], "TEST.MAX_SIZE", 200, "TEST.FLIP", flip]
    model, cfg = _model("res18", overrides, width=1 / 16)
    image = _image(100, 140)
    result = trace(model, image)
    # As trace runs it: without autograd (the backbone layout depends on it, see backbones).
    with torch.no_grad():
        stages = model.forward_features(result["im_data"], result["im_info"])
    torch.testing.assert_close(result["base_feat"], stages.base_feat)
    torch.testing.assert_close(result["anchors"], stages.anchors)
    torch.testing.assert_close(result["rois"], stages.rois)
    fg = stages.rpn_cls_prob[0, :, 1].view(*result.feature_size, -1).permute(2, 0, 1)
    torch.testing.assert_close(result["rpn_cls_prob"][0, 9:], fg)
    n = result.num_rois
    torch.testing.assert_close(result["pooled_feat"][:n], stages.pooled)
    torch.testing.assert_close(result["cls_prob"][:n], stages.cls_prob[0, :n])
    # Each proposal's score is the fg probability of an anchor whose decoded box it is:
    scores = result["rois_scores"][0]
    assert bool((scores[:n] > 0).all()) and bool((scores[n:] == 0).all())
    assert bool((scores[:n].diff() <= 0).all())  # proposals come by decreasing score
    assert bool(torch.isin(scores[:n], stages.rpn_cls_prob[0, :, 1].detach()).all())
    assert result.scale == pytest.approx(1.28) and result.input_image.shape == (128, 179, 3)
    np.testing.assert_allclose(result.image, image)


def test_target_stages_need_targets():
    model, _ = _model("res18", ["TEST.SCALES", [128], "TEST.MAX_SIZE", 200], width=1 / 16)
    result = trace(model, _image(64, 80))
    with pytest.raises(KeyError, match="targets"):
        result["rpn_labels"]


def _rectangles(fig) -> int:
    from matplotlib.patches import Rectangle

    return sum(isinstance(p, Rectangle) for p in fig.axes[0].patches)


def test_drawings(tmp_path, one_thread):
    pytest.importorskip("matplotlib", reason="the [notebook] extra (matplotlib) is not installed")
    from fasterrcnn.inspect import draw

    # fmt: off
    overrides = [
        "TRAIN.BATCH_SIZE", 16, "TRAIN.RPN_BATCHSIZE", 32, "TEST.SCALES", [128],
        "TEST.MAX_SIZE", 200, "ANCHOR_SCALES", [2, 4, 8], "TRAIN.FG_THRESH", 0.3,
    ]
    # fmt: on
    model, _ = _model("res18", overrides, width=1 / 16, num_classes=4)
    result = trace(model, _image(100, 140), _targets(), score_thresh=0.0)
    assert _rectangles(draw.draw_cell_anchors(result)) == 9 + 1  # anchors + the cell
    labels = result["rpn_labels"]
    sampled = int((labels != -1).sum())
    assert _rectangles(draw.draw_anchor_labels(result)) == sampled + 2  # + 2 gt boxes
    assert _rectangles(draw.draw_proposals(result, top_k=5)) == min(5, result.num_rois)
    assert _rectangles(draw.draw_sampled_rois(result, ["bg", "a", "b", "c"])) == 16 + 2
    shown = int((result.detections["scores"] > 0.2).sum())
    assert _rectangles(draw.draw_detections(result, score_thresh=0.2)) >= shown
    anchors = draw.cell_anchors(result, (0, 0))
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.full_like(centres, (16 - 1) / 2))
    shift = torch.tensor([2 * 16, 1 * 16, 2 * 16, 1 * 16], dtype=anchors.dtype)
    torch.testing.assert_close(draw.cell_anchors(result, (1, 2)), anchors + shift)
    with pytest.raises(ValueError, match="outside"):
        draw.cell_anchors(result, (999, 0))
    paths = draw.save_all(result, str(tmp_path), ["bg", "a", "b", "c"])
    assert sorted(p.split("/")[-1] for p in paths) == [
        "1_anchors_of_one_cell.png",
        "2_anchor_labels.png",
        "3_proposals.png",
        "4_sampled_rois.png",
        "5_detections.png",
        "shapes.txt",
    ]
    assert (tmp_path / "shapes.txt").read_text().startswith("stage")


def test_command_line_writes_table_and_figures(tmp_path, tiny_data_dir, one_thread, capsys):
    pytest.importorskip("matplotlib", reason="the [notebook] extra (matplotlib) is not installed")
    from pathlib import Path

    from conftest import train_tiny_checkpoint

    from fasterrcnn.inspect.__main__ import main

    checkpoint = train_tiny_checkpoint(tmp_path, tiny_data_dir, iters=1)
    image = sorted(Path(tiny_data_dir, "shapes", "JPEGImages").glob("test_*.jpg"))[0]
    out = tmp_path / "inspect"
    assert (
        main(
            [
                "--checkpoint",
                str(checkpoint),
                "--image",
                str(image),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--gt",
                "10",
                "10",
                "60",
                "60",
                "2",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "1_anchors_of_one_cell.png",
        "2_anchor_labels.png",
        "3_proposals.png",
        "4_sampled_rois.png",
        "5_detections.png",
        "shapes.txt",
    ]
    assert "rpn_labels" in (out / "shapes.txt").read_text()
    assert "rpn_cls_score" in capsys.readouterr().out
    with pytest.raises(OSError, match="missing.jpg"):
        main(
            [
                "--checkpoint",
                str(tmp_path / "res18" / "shapes" / "faster_rcnn_1_1_1.pth"),
                "--image",
                str(tmp_path / "missing.jpg"),
                "--out",
                str(out),
            ]
        )
