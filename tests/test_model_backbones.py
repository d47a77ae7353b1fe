"""Backbones: torchvision layout, strides, widths, norms, styles and frozen parts."""

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from fasterrcnn.config import load_config
from fasterrcnn.model import build_backbone, build_resnet, build_vgg16

TORCHVISION = {
    "res18": torchvision.models.resnet18,
    "res34": torchvision.models.resnet34,
    "res50": torchvision.models.resnet50,
    "res101": torchvision.models.resnet101,
    "res152": torchvision.models.resnet152,
    "vgg16": torchvision.models.vgg16,
}


def _shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("net", sorted(TORCHVISION))
def test_full_width_matches_torchvision_layout(net):
    """Every torchvision tensor but the ImageNet classifier has a twin of the same shape."""
    with torch.device("meta"):
        reference = TORCHVISION[net](weights=None)
        if net == "vgg16":
            parts = build_vgg16()
        else:
            parts = build_resnet(net, norm="bn")
    expected = {
        k: s for k, s in _shapes(reference).items() if not k.startswith(("fc.", "classifier.6."))
    }
    ours = {**_shapes(parts.base), **_shapes(parts.top)}
    assert ours == expected
    assert not set(_shapes(parts.base)) & set(_shapes(parts.top))
    top_keys = {k.split(".")[0] for k in _shapes(parts.top)}
    assert top_keys == ({"classifier"} if net == "vgg16" else {"layer4"})
    assert parts.base_channels == (
        512 if net == "vgg16" else 256 if net in ("res18", "res34") else 1024
    )
    assert parts.top_channels == (
        4096 if net == "vgg16" else 512 if net in ("res18", "res34") else 2048
    )


@pytest.mark.parametrize(
    "net,width,base_c,top_c",
    [
        ("res18", 0.5, 128, 256),
        pytest.param("res50", 0.25, 256, 512, marks=pytest.mark.slow),
        ("res101", 0.125, 128, 256),
        ("vgg16", 0.5, 256, 2048),
    ],
)
def test_stride_16_and_scaled_widths(net, width, base_c, top_c):
    norm = "frozen_bn" if net == "vgg16" else "bn"
    cfg = load_config(None, ["NET", net, "BACKBONE.WIDTH_MULT", str(width), "BACKBONE.NORM", norm])
    parts = build_backbone(cfg)
    parts.base.eval()
    parts.top.eval()
    assert (parts.base_channels, parts.top_channels) == (base_c, top_c)
    with torch.no_grad():
        feat = parts.base(torch.randn(1, 3, 64, 96))
        assert feat.shape == (1, base_c, 4, 6)
        out = parts.top(torch.randn(3, base_c, 7, 7))
        assert out.shape == (3, top_c)
        if net != "vgg16":
            assert parts.top.layer4(torch.randn(3, base_c, 7, 7)).shape[2:] == (4, 4)


def test_resnet_top_is_layer4_then_spatial_mean():
    parts = build_resnet("res18", width_mult=0.25, norm="bn", fixed_blocks=0)
    parts.top.eval()
    x = torch.randn(2, parts.base_channels, 7, 7)
    with torch.no_grad():
        expected = parts.top.layer4(x).mean(3).mean(2)
        assert torch.allclose(parts.top(x), expected, atol=1e-6)


def test_vgg_top_flattens_into_fc6_fc7():
    parts = build_vgg16(width_mult=0.125, fixed_layers=0, pooling_size=7)
    fc6, fc7 = parts.top.classifier[0], parts.top.classifier[3]
    assert fc6.in_features == 64 * 7 * 7 and fc6.out_features == 512 == fc7.out_features
    parts.top.eval()
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        expected = torch.relu(fc7(torch.relu(fc6(x.reshape(2, -1)))))
        assert torch.allclose(parts.top(x), expected, atol=1e-6)
    assert len(parts.base.features) == 30
    assert not any(isinstance(m, nn.MaxPool2d) for m in list(parts.base.features)[-3:])


@pytest.mark.parametrize(
    "norm,kind", [("frozen_bn", FrozenBatchNorm2d), ("bn", nn.BatchNorm2d), ("gn", nn.GroupNorm)]
)
def test_norm_layers(norm, kind):
    parts = build_resnet("res50", width_mult=0.25, norm=norm, fixed_blocks=0)
    norms = [
        m
        for m in list(parts.base.modules()) + list(parts.top.modules())
        if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d, nn.GroupNorm))
    ]
    assert norms and all(type(m) is kind for m in norms)
    if norm == "gn":
        assert parts.base.bn1.num_channels == 16 and parts.base.bn1.num_groups == 16
        assert all(m.num_groups == math.gcd(32, m.num_channels) for m in norms)
    if norm == "frozen_bn":
        names = [n for n, _ in parts.base.named_parameters()]
        assert not any("bn" in n or "downsample.1" in n for n in names)


@pytest.mark.parametrize(
    "fixed,frozen",
    [
        (0, ()),
        (1, ("conv1", "bn1", "layer1")),
        (2, ("conv1", "bn1", "layer1", "layer2")),
        (3, ("conv1", "bn1", "layer1", "layer2", "layer3")),
    ],
)
def test_resnet_fixed_blocks(fixed, frozen):
    parts = build_resnet("res18", width_mult=0.25, norm="bn", fixed_blocks=fixed)
    for name, p in parts.base.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in frozen), name
    assert all(p.requires_grad for p in parts.top.parameters())


def test_invalid_fixed_blocks_and_layers():
    with pytest.raises(ValueError, match="FIXED_BLOCKS"):
        build_resnet("res18", width_mult=0.25, fixed_blocks=4)
    with pytest.raises(ValueError, match="FIXED_LAYERS"):
        build_vgg16(width_mult=0.125, fixed_layers=31)
    with pytest.raises(ValueError, match="res19"):
        build_resnet("res19")
    with pytest.raises(ValueError, match="norm"):
        build_resnet("res18", norm="ln")
    with pytest.raises(ValueError, match="NORM"):
        build_backbone(load_config(None, ["NET", "vgg16", "BACKBONE.NORM", "bn"]))


def test_vgg_fixed_layers():
    parts = build_vgg16(width_mult=0.125, fixed_layers=10)
    frozen = {n for n, p in parts.base.named_parameters() if not p.requires_grad}
    assert frozen == {f"features.{i}.{t}" for i in (0, 2, 5, 7) for t in ("weight", "bias")}
    assert all(p.requires_grad for p in parts.top.parameters())


def test_frozen_blocks_stay_in_eval_mode_and_keep_statistics():
    parts = build_resnet("res18", width_mult=0.25, norm="bn", fixed_blocks=1)
    base = parts.base
    base.train()
    assert not base.conv1.training and not base.bn1.training and not base.layer1.training
    assert not base.layer1[0].bn1.training
    assert base.layer2.training and base.layer2[0].bn1.training and base.training
    frozen_mean = base.layer1[0].bn1.running_mean.clone()
    live_mean = base.layer2[0].bn1.running_mean.clone()
    base(torch.randn(2, 3, 64, 64))
    assert torch.equal(base.layer1[0].bn1.running_mean, frozen_mean)
    assert not torch.equal(base.layer2[0].bn1.running_mean, live_mean)
    base.eval()
    assert not base.layer2.training


def test_caffe_style_moves_the_stride_to_the_1x1_conv():
    caffe = build_resnet("res50", width_mult=0.25, style="caffe", fixed_blocks=0)
    torch_style = build_resnet("res50", width_mult=0.25, style="pytorch", fixed_blocks=0)
    for layer in ("layer2", "layer3"):
        block = getattr(caffe.base, layer)[0]
        assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
        block = getattr(torch_style.base, layer)[0]
        assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert caffe.top.layer4[0].conv1.stride == (2, 2)
    assert caffe.base.maxpool.ceil_mode and caffe.base.maxpool.padding == 0
    with torch.no_grad():
        assert caffe.base(torch.randn(1, 3, 64, 96)).shape == (1, 256, 4, 6)
    basic = build_resnet("res18", width_mult=0.25, style="caffe", fixed_blocks=0)
    assert basic.base.layer2[0].conv1.stride == (2, 2)


@pytest.mark.parametrize("net,style", [("res18", "pytorch"), ("res50", "caffe")])
def test_feat_stride_8_keeps_layer2_resolution_in_layer3(net, style):
    """FEAT_STRIDE 8: same parameters as stride 16; layer3's first convolutions run at stride 1,
    so their outputs at even positions are the stride-16 outputs (3x3 with padding 1 and the
    1x1 shortcut both sample the centre pixel), and the base ends at 1/8 of the image."""
    torch.manual_seed(0)
    coarse = build_resnet(net, width_mult=0.25, norm="bn", fixed_blocks=0, style=style)
    fine = build_resnet(net, width_mult=0.25, norm="bn", fixed_blocks=0, style=style, feat_stride=8)
    fine.base.load_state_dict(coarse.base.state_dict())
    coarse.base.eval()
    fine.base.eval()
    images = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    coarse.base.double()
    fine.base.double()
    with torch.no_grad():
        x = images
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2"):
            x = getattr(coarse.base, name)(x)
        first, fine_first = coarse.base.layer3[0], fine.base.layer3[0]
        strided = next(n for n in ("conv1", "conv2") if getattr(first, n).stride == (2, 2))
        assert getattr(fine_first, strided).stride == (1, 1)
        strided_input = x if strided == "conv1" else first.relu(first.bn1(first.conv1(x)))
        pairs = [
            (first.downsample[0](x), fine_first.downsample[0](x)),
            (getattr(first, strided)(strided_input), getattr(fine_first, strided)(strided_input)),
        ]
        for expected, got in pairs:
            assert got.shape[2:] == (8, 12) and expected.shape[2:] == (4, 6)
            torch.testing.assert_close(got[:, :, ::2, ::2], expected)
        assert fine.base(images).shape[2:] == (8, 12)
        assert coarse.base(images).shape[2:] == (4, 6)
    assert fine.top.layer4[0].downsample[0].stride == (2, 2)


def test_feat_stride_must_match_the_backbone():
    with pytest.raises(ValueError, match="FEAT_STRIDE"):
        build_resnet("res18", width_mult=0.25, feat_stride=4)
    with pytest.raises(ValueError, match="FEAT_STRIDE"):
        build_backbone(load_config(None, ["NET", "vgg16", "FEAT_STRIDE", "8"]))
    cfg = load_config(None, ["NET", "res18", "BACKBONE.WIDTH_MULT", "0.25", "FEAT_STRIDE", "8"])
    parts = build_backbone(cfg)
    parts.base.eval()
    with torch.no_grad():
        assert parts.base(torch.randn(1, 3, 64, 96)).shape[2:] == (8, 12)
