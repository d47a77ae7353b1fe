"""BatchNorm folding (:func:`conv_norm`) and channels-last backbones compute what the plain
modules compute, forward and backward, against torchvision's own ResNet in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.ops import FrozenBatchNorm2d

from fasterrcnn.model import backbones, build_resnet
from fasterrcnn.model.backbones import (
    SMALL_MAP_PIXELS,
    _shifted_columns,
    _strided_size,
    conv_norm,
    pointwise_conv,
    small_map_conv3x3,
    subsample,
)


def _random_norm(norm: nn.Module, channels: int, gen: torch.Generator) -> None:
    """Non-trivial statistics and affine parameters (in place)."""
    with torch.no_grad():
        norm.weight.copy_(torch.rand(channels, generator=gen, dtype=torch.float64) + 0.5)
        norm.bias.copy_(torch.randn(channels, generator=gen, dtype=torch.float64))
        norm.running_mean.copy_(torch.randn(channels, generator=gen, dtype=torch.float64))
        norm.running_var.copy_(torch.rand(channels, generator=gen, dtype=torch.float64) + 0.1)


@pytest.mark.parametrize("kind", ["frozen", "bn_eval"])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_folded_norm_equals_conv_then_norm_with_gradients(kind, conv_bias):
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=conv_bias).double()
    norm = (FrozenBatchNorm2d(5) if kind == "frozen" else nn.BatchNorm2d(5).eval()).double()
    _random_norm(norm, 5, gen)
    x = torch.randn(2, 3, 9, 7, generator=gen, dtype=torch.float64, requires_grad=True)

    expected = norm(conv(x))
    grads_expected = torch.autograd.grad(expected.square().sum(), [x, conv.weight])
    folded = conv_norm(conv, norm, x)
    grads_folded = torch.autograd.grad(folded.square().sum(), [x, conv.weight])

    torch.testing.assert_close(folded, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads_folded, grads_expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_folded_bn_in_eval_passes_gradients_to_its_affine_parameters():
    gen = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(2, 4, 1, bias=False).double()
    norm = nn.BatchNorm2d(4).double().eval()
    _random_norm(norm, 4, gen)
    x = torch.randn(1, 2, 5, 5, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(norm(conv(x)).sum(), [norm.weight, norm.bias])
    got = torch.autograd.grad(conv_norm(conv, norm, x).sum(), [norm.weight, norm.bias])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_training_batchnorm_is_not_folded():
    """A BatchNorm in training mode normalises by the batch statistics and updates its running
    statistics: conv_norm must run it as it is."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    norm = nn.BatchNorm2d(4).train()
    reference = copy.deepcopy(norm)
    x = torch.randn(4, 3, 6, 6)
    out = conv_norm(conv, norm, x)
    torch.testing.assert_close(out, reference(conv(x)))
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    # Batch statistics: every output channel has zero mean over (B, H, W).
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-6, rtol=0)


def assert_same_values_and_gradients(
    got: torch.Tensor, expected: torch.Tensor, inputs: list, gen: torch.Generator
) -> None:
    """``got`` equals ``expected`` (float64, 1e-12), and so do their gradients with respect to
    ``inputs`` under one random upstream gradient."""
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    for g, e in zip(
        torch.autograd.grad(got, inputs, upstream), torch.autograd.grad(expected, inputs, upstream)
    ):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("with_bias", [False, True])
def test_pointwise_conv_equals_conv2d_with_gradients(channels_last, stride, batch, with_bias):
    """The matrix-product 1x1 convolution against F.conv2d in float64 (odd sizes, so a strided
    output keeps the last row and column), in the input's memory format."""
    gen = torch.Generator().manual_seed(3)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 6, 7, 5, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=layout).requires_grad_(True)
    weight = torch.randn(4, 6, 1, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    used_bias = bias if with_bias else None

    expected = torch.nn.functional.conv2d(x, weight, used_bias, stride)
    got = pointwise_conv(x, weight, used_bias, (stride, stride))

    out_height, out_width = (4, 3) if stride == 2 else (7, 5)
    assert got.shape == expected.shape == (batch, 4, out_height, out_width)
    assert got.is_contiguous(memory_format=layout)
    assert_same_values_and_gradients(
        got, expected, [x, weight] + ([bias] if with_bias else []), gen
    )


def test_only_trainable_pointwise_convolutions_under_autograd_run_as_matrix_products(
    monkeypatch,
):
    """conv_norm takes the matrix product for a trainable 1x1 convolution when gradients are
    recorded, and the convolution op for a frozen one, a 3x3 one, or without autograd (where
    it computes the same values)."""
    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", False)
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(6)
    pointwise, spatial = nn.Conv2d(4, 6, 1, stride=2), nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)

    assert conv_norm(pointwise, norm, x).grad_fn.name() != "ConvolutionBackward0"
    assert conv_norm(spatial, norm, x).grad_fn.name() == "ConvolutionBackward0"
    with torch.no_grad():
        direct = conv_norm(pointwise, norm, x)
    torch.testing.assert_close(direct, conv_norm(pointwise, norm, x))
    pointwise.weight.requires_grad_(False)
    assert conv_norm(pointwise, norm, x).grad_fn.name() == "ConvolutionBackward0"


def test_float32_pointwise_convolutions_take_the_convolution_op_where_matmul_lags(monkeypatch):
    """Where float32 matrix products lag oneDNN's convolutions (AVX512 without Intel's MKL
    kernels) a trainable 1x1 convolution stays the convolution op in float32, and is still the
    matrix product under bfloat16 autocast; the values are the same either way."""
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(6)
    pointwise = nn.Conv2d(4, 6, 1, stride=2)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", False)
    as_product = conv_norm(pointwise, norm, x)
    assert as_product.grad_fn.name() != "ConvolutionBackward0"

    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", True)
    as_convolution = conv_norm(pointwise, norm, x)
    assert as_convolution.grad_fn.name() == "ConvolutionBackward0"
    torch.testing.assert_close(as_convolution, as_product)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv_norm(pointwise, norm, x).grad_fn.name() != "ConvolutionBackward0"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size,stride", [((7, 7), (2, 2)), ((8, 5), (2, 2)), ((9, 6), (3, 2))])
def test_strided_pointwise_convolution_of_the_subsample_equals_the_strided_one(
    monkeypatch, channels_last, size, stride
):
    """Where the convolution op is taken, a trainable strided 1x1 convolution convolves the
    dense subsample of its input (rows and columns 0, s, 2s, ... kept, in the input's layout):
    values and gradients (input, weight, bias) equal the strided convolution's in float64,
    odd sizes included, and without autograd the values are the same."""
    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", True)
    gen = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(4, 6, 1, stride=stride).double()
    norm = FrozenBatchNorm2d(6).double()
    _random_norm(norm, 6, gen)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, *size, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=layout).requires_grad_(True)

    taken = subsample(x, stride)
    assert taken.is_contiguous(memory_format=layout)
    torch.testing.assert_close(taken, x[:, :, :: stride[0], :: stride[1]], rtol=0, atol=0)
    got = conv_norm(conv, norm, x)
    assert got.grad_fn.name() == "ConvolutionBackward0"
    convolved = got.grad_fn.next_functions[0][0]
    assert convolved.name() != "torch::autograd::AccumulateGrad", "x itself was convolved"
    expected = norm(conv(x))
    assert_same_values_and_gradients(got, expected, [x, conv.weight, conv.bias], gen)
    with torch.no_grad():
        torch.testing.assert_close(conv_norm(conv, norm, x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(7, 7), (8, 5)])
def test_caffe_bottleneck_subsamples_once_for_its_first_conv_and_shortcut(monkeypatch, size):
    """A caffe-style bottleneck (stride on its first 1x1 convolution and on the shortcut) takes
    one subsample of its input for both where they convolve it; values and gradients equal
    torchvision's block with the same weights and strides in float64."""
    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", True)
    gen = torch.Generator().manual_seed(5)

    def caffe_block(cls):
        shortcut = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), FrozenBatchNorm2d(16))
        block = cls(8, 4, stride=2, downsample=shortcut, norm_layer=FrozenBatchNorm2d).double()
        block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
        return block

    reference = caffe_block(tv_resnet.Bottleneck)
    for module in reference.modules():
        if isinstance(module, FrozenBatchNorm2d):
            _random_norm(module, module.weight.numel(), gen)
    ours = caffe_block(backbones.Bottleneck)
    ours.load_state_dict(reference.state_dict())
    calls = []
    real_subsample = backbones.subsample
    monkeypatch.setattr(
        backbones, "subsample", lambda x, stride: calls.append(stride) or real_subsample(x, stride)
    )
    x = torch.randn(2, 8, *size, generator=gen, dtype=torch.float64, requires_grad=True)
    got = ours(x)
    assert calls == [(2, 2)]
    params = [x, ours.conv1.weight, ours.downsample[0].weight]
    expected = reference(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    want = torch.autograd.grad(
        expected, [x, reference.conv1.weight, reference.downsample[0].weight], upstream
    )
    for g, w in zip(torch.autograd.grad(got, params, upstream), want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_float32_matmul_lags_convolution_only_on_avx512_cpus_not_made_by_intel(
    monkeypatch, tmp_path
):
    """The vendor and capability rule, with /proc/cpuinfo and the capability faked."""
    real_open = open

    def fake_cpu(vendor: str, capability: str) -> bool:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t: fpu\n")
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(
            "builtins.open",
            lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k),
        )
        return backbones.float32_matmul_lags_convolution()

    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    assert fake_cpu("AuthenticAMD", "AVX512")
    assert not fake_cpu("AuthenticAMD", "AVX2")
    assert not fake_cpu("GenuineIntel", "AVX512")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    assert not fake_cpu("AuthenticAMD", "AVX512")


@pytest.mark.parametrize("size,stride", [((4, 4), 1), ((7, 7), 2), ((7, 6), 2), ((1, 1), 1)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_small_map_conv3x3_equals_conv2d_with_gradients(size, stride, with_bias):
    """The shifted-inputs matrix product against F.conv2d (padding 1) in float64, values and
    the gradients of the input, weight and bias, odd and strided sizes included."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, *size, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    used_bias = bias if with_bias else None

    expected = torch.nn.functional.conv2d(x, weight, used_bias, stride, padding=1)
    got = small_map_conv3x3(x, weight, used_bias, (stride, stride))

    assert got.shape == expected.shape
    assert_same_values_and_gradients(
        got, expected, [x, weight] + ([bias] if with_bias else []), gen
    )


def _autograd_small_map_conv3x3(x, weight, bias, stride):
    """The shifted-inputs product of small_map_conv3x3 built from the same plain tensor ops
    (:func:`_shifted_columns`: padding, slices, cat) and differentiated by autograd."""
    out_h, out_w = _strided_size(x, stride)
    padded = torch.nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
    columns = _shifted_columns(padded, out_h, out_w, *stride)
    matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    out = torch.nn.functional.linear(columns, matrix, bias)
    return out.view(x.shape[0], out_h, out_w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize("size,stride", [((4, 4), 1), ((7, 7), 2), ((5, 6), 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_small_map_conv3x3_backward_is_autograds_bitwise_in_bf16(size, stride, channels_last):
    """The hand-written backward gives autograd's bfloat16 gradients of the same product bit
    for bit (the window sums in autograd's order), so training numerics do not change."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(16, 24, *size, generator=gen).bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(20, 24, 3, 3, generator=gen).bfloat16()
    bias = torch.randn(20, generator=gen).bfloat16()
    results = []
    for conv in (small_map_conv3x3, _autograd_small_map_conv3x3):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
        out = conv(*leaves, (stride, stride))
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(8)).bfloat16()
        out.backward(upstream)
        results.append([out.detach()] + [leaf.grad for leaf in leaves])
    for got, expected in zip(*results):
        assert torch.equal(got, expected)


def test_small_map_3x3_convolutions_run_as_matrix_products_only_under_bfloat16():
    """Under bfloat16 autocast a trainable 3x3 convolution onto at most SMALL_MAP_PIXELS pixels
    is the matrix product (bfloat16 result close to the float32 convolution); in float32, on a
    larger map, or frozen, it is the convolution op."""
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(6).train()
    conv, strided = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(8, 6, 3, stride=2, padding=1)
    small, large = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 9, 9)
    assert SMALL_MAP_PIXELS == 16

    def grad_fn(c, x):
        return conv_norm(c, nn.Identity(), x).grad_fn.name()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert grad_fn(conv, small) != "ConvolutionBackward0"
        assert grad_fn(strided, torch.randn(2, 8, 7, 7)) != "ConvolutionBackward0"  # 4x4 out
        assert grad_fn(conv, large) == "ConvolutionBackward0"
        got = conv_norm(conv, norm, small)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), norm(conv(small)), rtol=0.05, atol=0.05)
    assert grad_fn(conv, small) == "ConvolutionBackward0"
    conv.weight.requires_grad_(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert grad_fn(conv, small) == "ConvolutionBackward0"


def test_small_map_conv3x3_output_takes_in_place_ops_under_autograd():
    """After a folded frozen BatchNorm the 3x3 matrix-product output goes straight into an
    in-place ReLU (torchvision's Bottleneck): allowed, and the gradients are the convolution's
    (an in-place op on a view of a custom Function's own output would be refused)."""
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(8, 6, 3, padding=1), FrozenBatchNorm2d(6)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = nn.ReLU(inplace=True)(conv_norm(conv, norm, x))
    out.float().sum().backward()
    got = (x.grad.clone(), conv.weight.grad.clone())
    x.grad, conv.weight.grad = None, None
    torch.relu(norm(conv(x))).sum().backward()
    for g, e in zip(got, (x.grad, conv.weight.grad)):
        torch.testing.assert_close(g, e, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("net", ["res18", "res50"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_resnet_c4_equals_torchvision_resnet(net, channels_last, batch):
    """Our C4 halves (folded frozen BN, optional channels-last) against torchvision's ResNet
    with the same weights in float64: base = conv1..layer3, top = layer4 + mean."""
    torch.manual_seed(0)
    ctor = {"res18": tv_resnet.resnet18, "res50": tv_resnet.resnet50}[net]
    reference = ctor(weights=None, norm_layer=FrozenBatchNorm2d).double().eval()
    gen = torch.Generator().manual_seed(2)
    for module in reference.modules():
        if isinstance(module, FrozenBatchNorm2d):
            _random_norm(module, module.weight.numel(), gen)
    parts = build_resnet(net, width_mult=1.0, channels_last=channels_last)
    base, top = parts.base.double(), parts.top.double()
    state = reference.state_dict()
    base.load_state_dict({k: v for k, v in state.items() if not k.startswith(("layer4", "fc"))})
    top.load_state_dict({k: v for k, v in state.items() if k.startswith("layer4")})

    x = torch.randn(batch, 3, 64, 48, generator=gen, dtype=torch.float64, requires_grad=True)
    feat = base(x)
    r = reference
    want = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
    torch.testing.assert_close(feat, want, rtol=1e-9, atol=1e-9)
    # x requires grad: a one-image pass trains NCHW (test_single_image_training_pass_layouts).
    expect_channels_last = channels_last and (
        batch > 1 or not backbones._pointwise_as_matrix_product(x)
    )
    assert feat.is_contiguous(memory_format=torch.channels_last) == expect_channels_last

    pooled = torch.randn(5, feat.shape[1], 7, 7, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(top(pooled), r.layer4(pooled).mean(dim=(2, 3)), rtol=1e-9, atol=1e-9)

    # Gradients through the trainable layers (conv1 + layer1 frozen by default).
    got = torch.autograd.grad(feat.sum(), [x, base.layer3[0].conv1.weight])
    expected = torch.autograd.grad(want.sum(), [x, r.layer3[0].conv1.weight])
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("matmul_lags", [False, True])
def test_single_image_training_pass_layouts(monkeypatch, matmul_lags):
    """A one-image pass under autograd runs its trainable layers NCHW (channels-last 3x3
    weight gradients are slower there) and its frozen layers channels-last, unless the 1x1
    convolutions are oneDNN's (float32 where matrix products lag): then channels-last
    throughout, as batches and no-grad passes always are; bfloat16 autocast trains NCHW."""
    monkeypatch.setattr(backbones, "FLOAT32_MATMUL_LAGS_CONVOLUTION", matmul_lags)
    parts = build_resnet("res18", width_mult=0.25, fixed_blocks=1, channels_last=True)
    layouts = {}

    def record(name):
        def hook(module, args):
            layouts[name] = args[0].is_contiguous(memory_format=torch.channels_last)

        return hook

    for name in ("layer1", "layer2", "layer3"):
        getattr(parts.base, name).register_forward_pre_hook(record(name))
    one = torch.randn(1, 3, 32, 32)
    assert parts.base(one).is_contiguous(memory_format=torch.channels_last) == matmul_lags
    assert layouts == {"layer1": True, "layer2": matmul_lags, "layer3": matmul_lags}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts.base(one)
    assert layouts == {"layer1": True, "layer2": False, "layer3": False}
    with torch.no_grad():
        assert parts.base(one).is_contiguous(memory_format=torch.channels_last)
    assert all(layouts.values())
    assert parts.base(torch.randn(2, 3, 32, 32)).is_contiguous(memory_format=torch.channels_last)
    assert all(layouts.values())
