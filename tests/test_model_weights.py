"""ImageNet weight loading: torchvision and Caffe layouts, nesting, prefixes and errors."""

import pytest
import torch
import torchvision

from fasterrcnn.config import load_config
from fasterrcnn.model import (
    WeightLoadError,
    backbone_style,
    build_model,
    build_resnet,
    build_vgg16,
    load_backbone_weights,
)


def _random_state(model: torch.nn.Module) -> dict:
    """A state dict with non-trivial BatchNorm statistics."""
    gen = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "bias")) and value.dtype.is_floating_point:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
    return state


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return _random_state(torchvision.models.resnet18(weights=None))


def _combined(parts) -> dict:
    return {**parts.base.state_dict(), **parts.top.state_dict()}


@pytest.mark.parametrize(
    "net",
    [
        "res18",
        pytest.param("res50", marks=pytest.mark.slow),
        pytest.param("vgg16", marks=pytest.mark.slow),
    ],
)
def test_torchvision_state_dict_loads_every_tensor(net, tmp_path):
    torch.manual_seed(0)
    if net == "vgg16":
        source = torchvision.models.vgg16(weights=None).state_dict()
        parts = build_vgg16()
        classifier = {"classifier.6.weight", "classifier.6.bias"}
    else:
        source = _random_state(getattr(torchvision.models, f"resnet{net[3:]}")(weights=None))
        parts = build_resnet(net, norm="frozen_bn")
        classifier = {"fc.weight", "fc.bias"}
    path = tmp_path / "weights.pth"
    torch.save(source, path)
    report = load_backbone_weights(parts.base, parts.top, str(path), style="caffe")
    counters = {k for k in source if k.endswith("num_batches_tracked")}
    assert set(report.ignored) == classifier | counters
    assert set(report.loaded) == set(source) - classifier - counters
    assert report.flipped == ""
    ours = _combined(parts)
    assert set(ours) == set(report.loaded)
    for key in report.loaded:
        assert torch.equal(ours[key], source[key]), key


def test_pytorch_style_flips_the_first_conv_to_bgr(resnet18_state):
    """torchvision weights on RGB input == our base with the loaded weights on BGR input."""
    reference = torchvision.models.resnet18(weights=None)
    reference.load_state_dict(resnet18_state)
    reference.eval()
    parts = build_resnet("res18", norm="frozen_bn")
    report = load_backbone_weights(parts.base, parts.top, resnet18_state, style="pytorch")
    assert report.flipped == "conv1.weight"
    assert torch.equal(parts.base.conv1.weight, resnet18_state["conv1.weight"][:, [2, 1, 0]])
    rgb = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(rgb))))
        expected = reference.layer3(reference.layer2(reference.layer1(x)))
        feat = parts.base(rgb[:, [2, 1, 0]])
        assert torch.allclose(feat, expected, atol=1e-4, rtol=1e-4)
        pooled = torch.randn(2, 256, 7, 7)
        assert torch.allclose(parts.top(pooled), reference.layer4(pooled).mean((2, 3)), atol=1e-4)


def test_nested_and_prefixed_state_dicts(resnet18_state, tmp_path):
    prefixed = {f"module.{k}": v for k, v in resnet18_state.items()}
    for i, wrapped in enumerate(
        ({"state_dict": prefixed}, {"model": resnet18_state, "epoch": 3}, prefixed)
    ):
        path = tmp_path / f"w{i}.pth"
        torch.save(wrapped, path)
        parts = build_resnet("res18", norm="bn")
        report = load_backbone_weights(parts.base, parts.top, path, style="caffe")
        assert torch.equal(
            parts.top.layer4[1].conv2.weight, resnet18_state["layer4.1.conv2.weight"]
        )
        assert torch.equal(parts.base.bn1.running_var, resnet18_state["bn1.running_var"])
        assert "fc.weight" in report.ignored


def test_trainable_bn_accepts_files_without_batch_counters(resnet18_state):
    caffe_like = {k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}
    parts = build_resnet("res18", norm="bn")
    report = load_backbone_weights(parts.base, parts.top, caffe_like, style="caffe")
    assert not any(k.endswith("num_batches_tracked") for k in report.loaded)
    assert torch.equal(parts.base.layer1[0].bn2.weight, resnet18_state["layer1.0.bn2.weight"])


def test_mismatches_are_listed(resnet18_state, tmp_path):
    broken = dict(resnet18_state)
    del broken["layer1.0.conv1.weight"]
    broken["extra.weight"] = torch.zeros(3)
    broken["layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    parts = build_resnet("res18", norm="frozen_bn")
    before = parts.base.conv1.weight.clone()
    with pytest.raises(WeightLoadError) as info:
        load_backbone_weights(parts.base, parts.top, str(path))
    message = str(info.value)
    assert "layer1.0.conv1.weight" in message and "extra.weight" in message
    assert "layer2.0.conv2.weight: file (128, 128, 1, 1) vs model (128, 128, 3, 3)" in message
    assert torch.equal(parts.base.conv1.weight, before)


def test_missing_file_and_wrong_width(tmp_path):
    parts = build_resnet("res18", width_mult=0.5, norm="frozen_bn")
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(parts.base, parts.top, str(tmp_path / "nope.pth"))
    cfg = load_config(None, ["NET", "res18", "BACKBONE.WIDTH_MULT", "0.5"])
    with pytest.raises(ValueError, match="WIDTH_MULT"):
        build_model(cfg, 3, pretrained=str(tmp_path / "nope.pth"))


def test_build_model_loads_pretrained(resnet18_state, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    cfg = load_config(None, ["NET", "res18", "BACKBONE.PRETRAINED", str(path)])
    assert backbone_style(cfg) == "caffe"
    model = build_model(cfg, 3)
    assert torch.equal(model.base.conv1.weight, resnet18_state["conv1.weight"])
    assert torch.equal(
        model.roi_head.top.layer4[0].bn1.running_mean, resnet18_state["layer4.0.bn1.running_mean"]
    )
    cfg = load_config(
        None, ["NET", "res18", "BACKBONE.STYLE", "pytorch", "PIXEL_STDS", "[57.375, 57.12, 58.395]"]
    )
    assert backbone_style(cfg) == "pytorch"
    model = build_model(cfg, 3, pretrained=str(path))
    assert torch.equal(model.base.conv1.weight, resnet18_state["conv1.weight"].flip(1))
