"""fasterrcnn.ops.roi_align vs torchvision.ops.roi_align, gradcheck, fallback vs compiled."""

import pytest
import torch
import torchvision
from ops_testing import grads, make_rois

from fasterrcnn import ops
from fasterrcnn.ops import fallback


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial_scale", [1.0 / 16, 1.0 / 8, 1.0])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_matches_torchvision(backend, dtype, spatial_scale, sampling_ratio, aligned):
    gen = torch.Generator().manual_seed(int(spatial_scale * 64) + 3 * sampling_ratio)
    x = torch.randn(2, 4, 12, 15, generator=gen, dtype=dtype)
    rois = make_rois(24, 2, 12, 15, spatial_scale, dtype, gen)
    for output_size in [(3, 4), 7]:
        expected = torchvision.ops.roi_align(
            x, rois, output_size, spatial_scale, sampling_ratio, aligned
        )
        weight = torch.randn(expected.shape, generator=gen, dtype=dtype)
        out, grad = grads(
            lambda t, size=output_size: ops.roi_align(
                t, rois, size, spatial_scale, sampling_ratio, aligned
            ),
            x,
            weight,
        )
        ref_out, ref_grad = grads(
            lambda t, size=output_size: torchvision.ops.roi_align(
                t, rois, size, spatial_scale, sampling_ratio, aligned
            ),
            x,
            weight,
        )
        assert out.shape == expected.shape and out.dtype == dtype
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 3, 5, 9), (3, 2, 16, 8)])
@pytest.mark.parametrize("channel_step", [2, 1])
def test_shapes_and_noncontiguous(backend, shape, channel_step):
    """A strided (B,C,H,W) view (every other channel of an NHWC tensor) and a channels-last
    input (read in place by the CPU kernel) give torchvision's values and gradients."""
    gen = torch.Generator().manual_seed(7)
    b, c, h, w = shape
    base = torch.randn(b, h, w, channel_step * c, generator=gen)
    x = base.permute(0, 3, 1, 2)[:, ::channel_step]
    assert x.is_contiguous(memory_format=torch.channels_last) == (channel_step == 1)
    wide = torch.zeros(10, 10)
    wide[:, ::2][:, :5] = make_rois(10, b, h, w, 0.125, torch.float32, gen)
    rois = wide[:, ::2][:, :5]
    assert not x.is_contiguous() and not rois.is_contiguous()
    weight = torch.randn(10, c, 2, 3, generator=gen)
    out, grad = grads(lambda t: ops.roi_align(t, rois, (2, 3), 0.125, 2, True), x, weight)
    ref_out, ref_grad = grads(
        lambda t: torchvision.ops.roi_align(t, rois.contiguous(), (2, 3), 0.125, 2, True),
        x.contiguous(),
        weight,
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_zero_rois(backend):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    out = ops.roi_align(x, torch.zeros(0, 5), (2, 2), 0.5)
    assert out.shape == (0, 3, 2, 2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.shape == x.shape and torch.count_nonzero(grad) == 0


def test_hand_computed_value(backend):
    # A 2x2 RoI over cells 0..2 of a ramp x = column index: the bin centres at 0.5 and 1.5
    # average to exactly the column positions, so each output is its sample column.
    x = torch.arange(4, dtype=torch.float64).repeat(1, 1, 4, 1)
    rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    out = ops.roi_align(x, rois, (2, 2), 1.0, 1, False)
    assert torch.equal(out[0, 0], torch.tensor([[0.5, 1.5], [0.5, 1.5]], dtype=torch.float64))


@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck(backend, aligned):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = make_rois(6, 2, 6, 7, 0.5, torch.float64, gen)
    assert torch.autograd.gradcheck(
        lambda t: ops.roi_align(t, rois, (2, 3), 0.5, -1, aligned), (x,), eps=1e-6, atol=1e-5
    )


def test_fallback_matches_compiled(backend):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 10, 13, generator=gen)
    rois = make_rois(20, 2, 10, 13, 1.0 / 16, torch.float32, gen)
    weight = torch.randn(20, 5, 7, 7, generator=gen)
    out, grad = grads(lambda t: ops.roi_align(t, rois, 7, 1.0 / 16, 0, False), x, weight)
    ref_out, ref_grad = grads(
        lambda t: fallback.roi_align(t, rois, (7, 7), 1.0 / 16, 0, False), x, weight
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_module_matches_function(backend):
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 8.0, 8.0, 90.0, 70.0]])
    module = ops.RoIAlign((3, 3), 1.0 / 16, 2, True)
    assert torch.equal(module(x, rois), ops.roi_align(x, rois, 3, 1.0 / 16, 2, True))
    assert "sampling_ratio=2" in repr(module)
