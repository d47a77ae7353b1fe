"""Backbones split as in faster-rcnn.pytorch: a stride-16 ``base`` and a per-RoI ``top``.

* VGG16: base = ``features`` without the last max-pool (conv5_3 + ReLU, stride 16, 512 channels);
  top = ``classifier`` without the ImageNet layer (fc6, fc7 with ReLU and dropout, 4096-d).
* ResNet-18/34/50/101/152 (C4): base = conv1 .. layer3 (stride 16); top = layer4 (stride 2 kept,
  so a 7x7 pooled RoI becomes 4x4) followed by a spatial mean, like the reference's
  ``_head_to_tail`` (``layer4(pool).mean(3).mean(2)``).

Modules keep torchvision's names (``base.conv1``, ``base.layer3``, ``top.layer4``,
``base.features``, ``top.classifier``) so ImageNet state dicts map onto them key by key
(:mod:`fasterrcnn.model.weights`).  The blocks are torchvision's ``BasicBlock``/``Bottleneck``;
``width_mult`` scales every channel count (for small from-scratch models).

Speed on CPU (same maths, same state dict): a BatchNorm that is an affine map — frozen, or
trainable in eval mode — is folded into the convolution before it (:func:`conv_norm`: one
convolution with scaled weights and a bias instead of a convolution and two element-wise
passes); with ``BACKBONE.CHANNELS_LAST`` the images and pooled RoIs enter the networks in
channels-last layout, which oneDNN convolutions run without reordering; and a trainable 1x1
convolution under autograd is a matrix product (:func:`pointwise_conv`), whose backward is two
more matrix products instead of oneDNN's convolution backward (several times slower on the
strided 1x1 shortcut of the R50 RoI head) — except in float32 on an AVX512 CPU that is not
Intel's, where MKL's matrix products run AVX2 kernels and oneDNN's convolutions are twice as
fast (:data:`FLOAT32_MATMUL_LAGS_CONVOLUTION`; there a strided one convolves its
:func:`subsample`d input, whose backward is twice as fast as the strided convolution's).

``style``: ``"pytorch"`` is torchvision's architecture.  ``"caffe"`` is the one of the
Caffe-converted ResNets the reference recommended (``resnet101_caffe.pth``): a bottleneck's
stride sits on its first 1x1 convolution instead of the 3x3 one, and the stem max-pool has no
padding and rounds up.  BasicBlock nets and VGG16 are the same in both styles.

Normalisation (``norm``): ``"frozen_bn"`` (torchvision's FrozenBatchNorm2d everywhere, the
reference), ``"bn"`` (trainable BatchNorm2d) or ``"gn"`` (GroupNorm with gcd(32, C) groups).
VGG16 has no normalisation layers; :func:`build_backbone` accepts it only with the default
``frozen_bn``.

Frozen parts have ``requires_grad = False`` and stay in eval mode when the module is put in
train mode (the reference's ``train()`` override).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg
from torchvision.ops import FrozenBatchNorm2d

from fasterrcnn.config import Config
from fasterrcnn.config.schema import CHOICES

NORMS = CHOICES["BACKBONE.NORM"]
STYLES = ("pytorch", "caffe")


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor, subsampled: bool = False) -> Tensor:
    """``norm(conv(x))``, with the normalisation folded into the convolution when it is an
    affine map: ``FrozenBatchNorm2d``, or ``BatchNorm2d`` in eval mode with running statistics.

    Folding: ``scale = gamma / sqrt(var + eps)``, ``conv(x, W * scale) + beta - mean * scale``
    (plus ``scale * conv.bias``).  Gradients reach ``W``, ``gamma`` and ``beta`` through the
    folded weights.  Trainable BatchNorm in training mode and GroupNorm run as they are.

    Args:
        x: ``(B, C_in, H, W)``; returns ``(B, C_out, H', W')`` in ``x``'s memory format.
        subsampled: ``x`` is already ``subsample(input, conv.stride)`` of a 1x1 ``conv``
            (:func:`shared_subsample`): convolve it with stride 1.
    """
    foldable = isinstance(norm, FrozenBatchNorm2d) or (
        isinstance(norm, nn.BatchNorm2d)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )
    if not foldable:
        return norm(_convolve(conv, x, conv.weight, conv.bias, subsampled))
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return _convolve(conv, x, conv.weight * scale.view(-1, 1, 1, 1), shift, subsampled)


def _is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` ``(B, C, H, W)`` with more than one channel has its channels innermost."""
    return x.stride(1) == 1 and x.shape[1] > 1


def pointwise_conv(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Tuple[int, int] = (1, 1)
) -> Tensor:
    """A 1x1 convolution without padding as a matrix product.

    Args:
        x: ``(B, C_in, H, W)``, NCHW or channels-last.
        weight: ``(C_out, C_in, 1, 1)``; bias: ``(C_out,)`` or None.
        stride: ``(sy, sx)``: the output reads every ``sy``-th row and ``sx``-th column.

    Returns:
        ``(B, C_out, ceil(H / sy), ceil(W / sx))`` in ``x``'s layout: channels-last input
        multiplies the (B*H*W, C_in) view by ``weight.T``; NCHW multiplies ``weight`` by each
        (C_in, H*W) image (a batched product: no transposed copies).
    """
    if stride != (1, 1):
        x = x[:, :, :: stride[0], :: stride[1]]
    matrix = weight.flatten(1)
    if _is_channels_last(x):
        return F.linear(x.permute(0, 2, 3, 1), matrix, bias).permute(0, 3, 1, 2)
    batch, channels, height, width = x.shape
    out = torch.bmm(matrix.expand(batch, -1, -1), x.reshape(batch, channels, height * width))
    if bias is not None:
        out = out + bias[:, None]
    return out.view(batch, -1, height, width)


SMALL_MAP_PIXELS = 16
"""Largest output map (H*W) that :func:`small_map_conv3x3` takes over under bfloat16 autocast."""


def _strided_size(x: Tensor, stride: Tuple[int, int]) -> Tuple[int, int]:
    """``(ceil(H / sy), ceil(W / sx))`` of ``x`` ``(B, C, H, W)``: a padded 3x3 convolution's
    (or a strided 1x1 one's) output size."""
    return -(-x.shape[2] // stride[0]), -(-x.shape[3] // stride[1])


def _windows(padded: Tensor, out_h: int, out_w: int, sy: int, sx: int) -> List[Tensor]:
    """The nine shifted (strided) ``(B, out_h, out_w, C)`` views of a padded NHWC map that a 3x3
    convolution reads, window ``(i, j)`` at index ``3*i + j``."""
    last_h, last_w = sy * (out_h - 1) + 1, sx * (out_w - 1) + 1
    return [padded[:, i : i + last_h : sy, j : j + last_w : sx] for i in range(3) for j in range(3)]


def _shifted_columns(padded: Tensor, out_h: int, out_w: int, sy: int, sx: int) -> Tensor:
    """``(B*out_h*out_w, 9*C)``: the nine :func:`_windows` side by side, window ``k`` in
    columns ``k * C ...``."""
    batch, channels = padded.shape[0], padded.shape[3]
    windows = _windows(padded, out_h, out_w, sy, sx)
    return torch.cat(windows, dim=-1).reshape(batch * out_h * out_w, 9 * channels)


class _SmallMapConv3x3(torch.autograd.Function):
    """Forward: the shifted-inputs matrix product.  Backward: two matrix products and one
    scatter-add of the nine windows into a zero padded map (autograd of the slicing allocates,
    fills and adds a whole padded map per window: 15-17% of a 64x256x4x4 bfloat16 convolution's
    forward + backward).  The windows are added last to first, the order autograd sums them in,
    so the gradients equal autograd's bit for bit in every dtype."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Tuple[int, int]
    ) -> Tensor:
        """``(B*H'*W', C_out)``: the output as a matrix, rows in (b, y, x) order (a tensor of
        its own: an in-place op on a view of a custom Function's output is forbidden)."""
        batch, channels, height, width = x.shape
        sy, sx = stride
        out_h, out_w = _strided_size(x, stride)
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
        columns = _shifted_columns(padded, out_h, out_w, sy, sx)
        matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 9 * channels)
        ctx.save_for_backward(columns, matrix)
        ctx.geometry = (batch, channels, height, width, out_h, out_w, sy, sx)
        ctx.has_bias = bias is not None
        return F.linear(columns, matrix, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tuple[Optional[Tensor], ...]:
        """``grad_out``: ``(B*H'*W', C_out)``, the gradient of the forward's matrix."""
        columns, matrix = ctx.saved_tensors
        batch, channels, height, width, out_h, out_w, sy, sx = ctx.geometry
        grad = grad_out.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_columns = (grad @ matrix).view(batch, out_h, out_w, 9, channels)
            grad_padded = grad.new_zeros(batch, height + 2, width + 2, channels)
            windows = _windows(grad_padded, out_h, out_w, sy, sx)
            for k in reversed(range(9)):
                windows[k] += grad_columns[:, :, :, k]
            grad_x = grad_padded[:, 1:-1, 1:-1].permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            grad_matrix = grad.t() @ columns
            grad_weight = grad_matrix.view(-1, 3, 3, channels).permute(0, 3, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=0)
        return grad_x, grad_weight, grad_bias, None


def small_map_conv3x3(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Tuple[int, int] = (1, 1)
) -> Tensor:
    """A 3x3 convolution with padding 1 as one matrix product over the nine shifted inputs.

    Args:
        x: ``(B, C_in, H, W)``, NCHW or channels-last.
        weight: ``(C_out, C_in, 3, 3)``; bias: ``(C_out,)`` or None.
        stride: ``(sy, sx)``.

    Returns:
        ``(B, C_out, H', W')`` (``H' = ceil(H / sy)``), channels-last: the
        ``(B*H'*W', 9*C_in)`` matrix of shifted inputs times ``weight`` as ``(9*C_in, C_out)``.
        The input gradient is channels-last too.
    """
    out_h, out_w = _strided_size(x, stride)
    out = _SmallMapConv3x3.apply(x, weight, bias, stride)
    return out.view(x.shape[0], out_h, out_w, -1).permute(0, 3, 1, 2)


def _bfloat16_autocast(x: Tensor) -> bool:
    return x.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled(x.device.type)
        and torch.get_autocast_dtype(x.device.type) == torch.bfloat16
    )


def float32_matmul_lags_convolution() -> bool:
    """Whether this CPU runs float32 matrix products at half the speed of oneDNN convolutions.

    PyTorch's float32 matrix products on x86 go through MKL, which dispatches AVX512 kernels on
    Intel CPUs only; oneDNN's convolutions use AVX512 on any CPU that has it.  On a 2-core AMD
    EPYC with AVX512 a 3800x1024x256 product ran at 183 GFLOP/s, the same 1x1 convolution at 428,
    and every trainable 1x1 convolution of R50-C4 took half the time forward + backward as the
    convolution op; on an AVX2 EPYC and an Intel Xeon the matrix products were the faster choice.
    Reads the vendor from ``/proc/cpuinfo`` (elsewhere: assumed Intel, the matrix products);
    evaluated once, at import, as :data:`FLOAT32_MATMUL_LAGS_CONVOLUTION`."""
    if not torch.backends.mkl.is_available() or torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            vendor = next((line for line in cpuinfo if line.startswith("vendor_id")), "")
    except OSError:
        return False
    return bool(vendor) and "GenuineIntel" not in vendor


FLOAT32_MATMUL_LAGS_CONVOLUTION = float32_matmul_lags_convolution()
"""This host's :func:`float32_matmul_lags_convolution` (a constant to ``torch.compile``)."""


def _pointwise_as_matrix_product(x: Tensor) -> bool:
    """A trainable 1x1 convolution of ``x`` runs as :func:`pointwise_conv`: always in bfloat16
    (oneDNN's matrix products), in float32 unless :data:`FLOAT32_MATMUL_LAGS_CONVOLUTION`."""
    return _bfloat16_autocast(x) or not FLOAT32_MATMUL_LAGS_CONVOLUTION


def subsample(x: Tensor, stride: Tuple[int, int]) -> Tensor:
    """Every ``sy``-th row and ``sx``-th column of ``x`` ``(B, C, H, W)`` as a dense tensor in
    ``x``'s layout (NCHW or channels-last): ``(B, C, ceil(H / sy), ceil(W / sx))``, what a
    strided 1x1 convolution without padding reads."""
    layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    return x[:, :, :: stride[0], :: stride[1]].contiguous(memory_format=layout)


def _trainable_on_cpu(conv: nn.Conv2d, x: Tensor) -> bool:
    """``conv`` (not dilated or grouped) gets a weight gradient from ``x`` on the CPU."""
    return (
        conv.dilation == (1, 1)
        and conv.groups == 1
        and x.device.type == "cpu"
        and torch.is_grad_enabled()
        and conv.weight.requires_grad
    )


def _is_pointwise(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.padding == (0, 0)


def _convolves_subsample(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether :func:`_convolve` runs ``conv`` on :func:`subsample` of ``x``: a trainable
    strided 1x1 convolution on the CPU where it is the convolution op."""
    return (
        _trainable_on_cpu(conv, x)
        and _is_pointwise(conv)
        and conv.stride != (1, 1)
        and not _pointwise_as_matrix_product(x)
    )


def shared_subsample(first: nn.Conv2d, second: nn.Conv2d, x: Tensor) -> Optional[Tensor]:
    """:func:`subsample` of ``x`` for both ``first`` and ``second`` when both convolve it with
    the same stride (a caffe-style bottleneck's first convolution and its shortcut), else
    None.  Subsampled once, ``x``'s gradient is one scatter of the sum of the two subsampled
    gradients instead of two zero-filled full-size maps added (R50-C4 training: 37 -> 13
    ms of slice backward per step)."""
    shared = (
        first.stride == second.stride
        and _convolves_subsample(first, x)
        and _convolves_subsample(second, x)
    )
    return subsample(x, first.stride) if shared else None


def _convolve(
    conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Optional[Tensor], subsampled: bool = False
) -> Tensor:
    """``conv``'s convolution of ``x`` with ``weight`` and ``bias`` (``subsampled``: ``x`` is
    already the :func:`subsample` a 1x1 ``conv`` reads, convolved with stride 1).

    For a trainable convolution on the CPU under autograd: a 1x1 one is :func:`pointwise_conv`
    (unless :func:`_pointwise_as_matrix_product` says the convolution op is faster; then a
    strided one convolves the :func:`subsample` of ``x`` with stride 1: oneDNN's backward of a
    strided 1x1 convolution runs at half its speed, 200 of 400 GFLOP/s on the R50 RoI head's
    shortcut, and the subsampled step is 4-5% faster);
    a 3x3 one onto a map of at most :data:`SMALL_MAP_PIXELS` pixels (the RoI head's 4x4) in
    bfloat16 is :func:`small_map_conv3x3` (oneDNN's bfloat16 weight and input gradients are
    slow on such maps, the matrix products are not).  Otherwise the convolution op (oneDNN's
    forward is as fast as the matrix product; cuDNN is faster on CUDA)."""
    if subsampled:
        return F.conv2d(x, weight, bias)
    trainable_on_cpu = _trainable_on_cpu(conv, x)
    if trainable_on_cpu and _is_pointwise(conv) and _pointwise_as_matrix_product(x):
        return pointwise_conv(x, weight, bias, conv.stride)
    if _convolves_subsample(conv, x):
        return F.conv2d(subsample(x, conv.stride), weight, bias)
    if (
        trainable_on_cpu
        and conv.kernel_size == (3, 3)
        and conv.padding == (1, 1)
        and _bfloat16_autocast(x)
        and math.prod(_strided_size(x, conv.stride)) <= SMALL_MAP_PIXELS
    ):
        low = torch.bfloat16
        low_bias = None if bias is None else bias.to(low)
        return small_map_conv3x3(x.to(low), weight.to(low), low_bias, conv.stride)
    return conv._conv_forward(x, weight, bias)


class BasicBlock(tv_resnet.BasicBlock):
    """torchvision's ``BasicBlock`` (same modules and state dict) with :func:`conv_norm`."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(conv_norm(self.conv1, self.bn1, x))
        out = conv_norm(self.conv2, self.bn2, out)
        out += x if self.downsample is None else _downsample(self.downsample, x)
        return self.relu(out)


class Bottleneck(tv_resnet.Bottleneck):
    """torchvision's ``Bottleneck`` (same modules and state dict) with :func:`conv_norm`."""

    def forward(self, x: Tensor) -> Tensor:
        shared = None
        if self.downsample is not None:
            shared = shared_subsample(self.conv1, self.downsample[0], x)
        subsampled = shared is not None
        first_in = shared if subsampled else x
        out = self.relu(conv_norm(self.conv1, self.bn1, first_in, subsampled))
        out = self.relu(conv_norm(self.conv2, self.bn2, out))
        out = conv_norm(self.conv3, self.bn3, out)
        if self.downsample is None:
            out += x
        else:
            out += _downsample(self.downsample, first_in, subsampled)
        return self.relu(out)


def _downsample(downsample: nn.Module, x: Tensor, subsampled: bool = False) -> Tensor:
    """A block's shortcut ``Sequential(conv1x1, norm)`` through :func:`conv_norm`."""
    conv, norm = downsample
    return conv_norm(conv, norm, x, subsampled)


def to_channels_last(x: Tensor, enabled: bool) -> Tensor:
    """``x`` (4-D) in channels-last layout when ``enabled``, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if enabled else x


def _channels_last_pays(images: Tensor) -> bool:
    """Whether trainable backbone layers should run channels-last on ``images`` (B,3,H,W).

    Measured with oneDNN on 2 CPU cores: channels-last convolutions are faster forward, and
    backward for batches, but the weight gradient of a 3x3 convolution is slower on a single
    large image (up to 2x: R50-C4's layer3 and the 1024 -> 512 RPN conv at 600x800), so in a
    one-image training pass the layers that get gradients run NCHW (frozen layers compute no
    weight gradient: they stay channels-last).  Except where a ResNet's trainable 1x1
    convolutions are oneDNN's (:func:`_pointwise_as_matrix_product` false): NCHW they take
    up to 2.8x the channels-last time forward + backward (R50-C4's layer2 at 600x800), so
    :class:`ResNetBase` keeps its trainable layers channels-last there and only the RPN conv
    reads NCHW (:meth:`fasterrcnn.model.rpn.RPN.predict`); the R50-C4 float32 training step
    was 3-6% faster so on an AVX512 EPYC, and 12% slower so under bfloat16 autocast.
    """
    return images.shape[0] > 1 or not torch.is_grad_enabled()


def _trains(module: nn.Module) -> bool:
    return any(param.requires_grad for param in module.parameters())


RESNET_SPECS: Dict[str, Tuple[Type[nn.Module], Tuple[int, int, int, int]]] = {
    "res18": (BasicBlock, (2, 2, 2, 2)),
    "res34": (BasicBlock, (3, 4, 6, 3)),
    "res50": (Bottleneck, (3, 4, 6, 3)),
    "res101": (Bottleneck, (3, 4, 23, 3)),
    "res152": (Bottleneck, (3, 8, 36, 3)),
}
"""Block type and blocks per stage of each ResNet depth."""

RESNET_FEAT_STRIDES: Dict[int, Tuple[int, int, int]] = {16: (1, 2, 2), 8: (1, 2, 1)}
"""Strides of layer1..layer3 (after the stride-4 stem) for each supported base stride."""


class BackboneParts(NamedTuple):
    """The two halves of a backbone and their output widths."""

    base: nn.Module
    top: nn.Module
    base_channels: int
    top_channels: int


def scaled(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded, at least 1."""
    return max(1, int(round(channels * width_mult)))


def norm_factory(norm: str) -> Callable[[int], nn.Module]:
    """A constructor ``f(num_channels) -> module`` for the normalisation named by ``norm``."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"unknown backbone norm {norm!r}; expected one of {NORMS}")


class _Freezable(nn.Module):
    """A module whose named sub-modules can be frozen (no gradients, always in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen: Tuple[str, ...] = ()

    def freeze(self, names: Sequence[str]) -> None:
        """Freeze the sub-modules at the dotted paths ``names``."""
        for name in names:
            for param in self.get_submodule(name).parameters():
                param.requires_grad_(False)
        self.frozen = tuple(self.frozen) + tuple(names)
        self.train(self.training)

    def train(self, mode: bool = True) -> _Freezable:
        super().train(mode)
        if mode:
            for name in self.frozen:
                self.get_submodule(name).eval()
        return self


class ResNetBase(_Freezable):
    """conv1 .. layer3 of a ResNet: (B,3,H,W) -> (B, out_channels, ~H/16, ~W/16)."""

    def __init__(
        self, stem: OrderedDict[str, nn.Module], out_channels: int, channels_last: bool = False
    ) -> None:
        super().__init__()
        for name, module in stem.items():
            self.add_module(name, module)
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        nchw_when_training = (
            self.channels_last and not _channels_last_pays(x) and _pointwise_as_matrix_product(x)
        )
        x = to_channels_last(x, self.channels_last)
        if nchw_when_training and _trains(self.conv1):
            x = x.contiguous()
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        for layer in (self.layer1, self.layer2, self.layer3):
            if nchw_when_training and _trains(layer):
                x = x.contiguous()
            x = layer(x)
        return x


class ResNetTop(_Freezable):
    """layer4 + spatial mean: pooled RoIs (K,C,P,P) -> (K, out_channels)."""

    def __init__(self, layer4: nn.Module, out_channels: int, channels_last: bool = False) -> None:
        super().__init__()
        self.layer4 = layer4
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, pooled: Tensor) -> Tensor:
        return self.layer4(to_channels_last(pooled, self.channels_last)).mean(dim=(2, 3))


class VGGBase(_Freezable):
    """VGG16 ``features`` without the last max-pool: (B,3,H,W) -> (B,512w,~H/16,~W/16)."""

    def __init__(
        self, features: nn.Sequential, out_channels: int, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.features = features
        self.out_channels = out_channels
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        return self.features(to_channels_last(x, self.channels_last and _channels_last_pays(x)))


class VGGTop(_Freezable):
    """fc6, fc7 (with ReLU and dropout): pooled RoIs (K,C,P,P) -> (K, out_channels)."""

    def __init__(self, classifier: nn.Sequential, out_channels: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.out_channels = out_channels

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(pooled.flatten(1))


def _init_conv_and_norm(module: nn.Module) -> None:
    """torchvision's from-scratch initialisation (Kaiming convs, unit norms, small linears)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _resnet_stage(
    block: Type[nn.Module],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    norm_layer: Callable[[int], nn.Module],
    style: str,
) -> Tuple[nn.Sequential, int]:
    """One ResNet stage built as torchvision's ``ResNet._make_layer`` does; returns it and its
    width."""
    expansion = block.expansion
    downsample = None
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(
            tv_resnet.conv1x1(inplanes, planes * expansion, stride), norm_layer(planes * expansion)
        )
    layers: List[nn.Module] = [block(inplanes, planes, stride, downsample, norm_layer=norm_layer)]
    inplanes = planes * expansion
    layers.extend(block(inplanes, planes, norm_layer=norm_layer) for _ in range(1, blocks))
    if style == "caffe" and issubclass(block, tv_resnet.Bottleneck) and stride != 1:
        layers[0].conv1.stride = (stride, stride)
        layers[0].conv2.stride = (1, 1)
    return nn.Sequential(*layers), inplanes


def build_resnet(
    net: str,
    width_mult: float = 1.0,
    norm: str = "frozen_bn",
    fixed_blocks: int = 1,
    style: str = "pytorch",
    channels_last: bool = False,
    feat_stride: int = 16,
) -> BackboneParts:
    """A ResNet C4 backbone.

    Args:
        net: ``res18``, ``res34``, ``res50``, ``res101`` or ``res152``.
        width_mult: scales every channel count (1.0 = torchvision's widths).
        norm: ``frozen_bn``, ``bn`` or ``gn``.
        fixed_blocks: 0 freezes nothing; 1 freezes conv1 (+ its norm) and layer1; 2 adds layer2;
            3 adds layer3 (the reference's RESNET.FIXED_BLOCKS).
        style: ``pytorch`` or ``caffe`` (see the module docstring).
        channels_last: feed the images and pooled RoIs to the convolutions channels-last.
        feat_stride: 16 (the reference) or 8: layer3 keeps layer2's resolution (stride 1), so
            the RPN and the RoI pooling see features twice as fine, for about 4x layer3's cost.
    """
    if net not in RESNET_SPECS:
        raise ValueError(f"unknown ResNet {net!r}; expected one of {tuple(RESNET_SPECS)}")
    if not 0 <= fixed_blocks <= 3:
        raise ValueError(f"RESNET.FIXED_BLOCKS must be in 0..3, got {fixed_blocks}")
    if style not in STYLES:
        raise ValueError(f"unknown backbone style {style!r}; expected one of {STYLES}")
    if feat_stride not in RESNET_FEAT_STRIDES:
        raise ValueError(
            f"FEAT_STRIDE must be one of {tuple(RESNET_FEAT_STRIDES)} for a ResNet, "
            f"got {feat_stride}"
        )
    block, depths = RESNET_SPECS[net]
    norm_layer = norm_factory(norm)
    stem_width = scaled(64, width_mult)
    if style == "caffe":
        maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    else:
        maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    modules: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=norm_layer(stem_width),
        relu=nn.ReLU(inplace=True),
        maxpool=maxpool,
    )
    inplanes = stem_width
    for i, (blocks, stride) in enumerate(zip(depths[:3], RESNET_FEAT_STRIDES[feat_stride])):
        planes = scaled(64 * 2**i, width_mult)
        modules[f"layer{i + 1}"], inplanes = _resnet_stage(
            block, inplanes, planes, blocks, stride, norm_layer, style
        )
    base = ResNetBase(modules, inplanes, channels_last)
    layer4, top_channels = _resnet_stage(
        block, inplanes, scaled(512, width_mult), depths[3], 2, norm_layer, style
    )
    top = ResNetTop(layer4, top_channels, channels_last)
    _init_conv_and_norm(base)
    _init_conv_and_norm(top)
    if fixed_blocks >= 1:
        base.freeze(["conv1", "bn1"] + [f"layer{i}" for i in range(1, fixed_blocks + 1)])
    return BackboneParts(base, top, base.out_channels, top_channels)


def build_vgg16(
    width_mult: float = 1.0,
    fixed_layers: int = 10,
    pooling_size: int = 7,
    channels_last: bool = False,
) -> BackboneParts:
    """A VGG16 backbone.

    Args:
        width_mult: scales every conv width and the 4096-d fully connected layers.
        fixed_layers: the first ``fixed_layers`` modules of ``features`` are frozen
            (the reference's VGG.FIXED_LAYERS = 10: conv1 and conv2).
        pooling_size: side of the pooled RoI fed to fc6 (fc6 takes C * size * size inputs).
        channels_last: feed the images to the convolutions channels-last.
    """
    layer_cfg: List[Union[str, int]] = [
        v if v == "M" else scaled(int(v), width_mult) for v in tv_vgg.cfgs["D"]
    ]
    features = tv_vgg.make_layers(layer_cfg, batch_norm=False)[:-1]
    if not 0 <= fixed_layers <= len(features):
        raise ValueError(f"VGG.FIXED_LAYERS must be in 0..{len(features)}, got {fixed_layers}")
    channels = int(layer_cfg[-2])
    hidden = scaled(4096, width_mult)
    classifier = nn.Sequential(
        nn.Linear(channels * pooling_size * pooling_size, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(),
    )
    base = VGGBase(features, channels, channels_last)
    top = VGGTop(classifier, hidden)
    _init_conv_and_norm(base)
    _init_conv_and_norm(top)
    base.freeze([f"features.{i}" for i in range(fixed_layers)])
    return BackboneParts(base, top, channels, hidden)


def build_backbone(cfg: Config, style: str = "pytorch") -> BackboneParts:
    """The backbone named by ``cfg.NET`` with cfg.BACKBONE's width and norm and the frozen
    parts of cfg.RESNET.FIXED_BLOCKS / cfg.VGG.FIXED_LAYERS."""
    if cfg.NET == "vgg16":
        if cfg.BACKBONE.NORM != "frozen_bn":
            raise ValueError(
                "VGG16 has no normalisation layers: BACKBONE.NORM must stay 'frozen_bn' "
                f"(the default) with NET vgg16, got {cfg.BACKBONE.NORM!r}"
            )
        if cfg.FEAT_STRIDE != 16:
            raise ValueError(f"VGG16's features have stride 16: FEAT_STRIDE {cfg.FEAT_STRIDE}")
        return build_vgg16(
            cfg.BACKBONE.WIDTH_MULT,
            cfg.VGG.FIXED_LAYERS,
            cfg.POOLING_SIZE,
            cfg.BACKBONE.CHANNELS_LAST,
        )
    return build_resnet(
        cfg.NET,
        cfg.BACKBONE.WIDTH_MULT,
        cfg.BACKBONE.NORM,
        cfg.RESNET.FIXED_BLOCKS,
        style,
        cfg.BACKBONE.CHANNELS_LAST,
        cfg.FEAT_STRIDE,
    )


__all__ = [
    "BackboneParts",
    "NORMS",
    "STYLES",
    "ResNetBase",
    "ResNetTop",
    "VGGBase",
    "VGGTop",
    "build_backbone",
    "build_resnet",
    "build_vgg16",
    "norm_factory",
    "scaled",
]
