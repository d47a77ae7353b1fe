"""fasterrcnn.ops.roi_pool vs torchvision.ops.roi_pool, gradcheck, fallback vs compiled."""

import pytest
import torch
import torchvision
from ops_testing import grads, make_rois

from fasterrcnn import ops
from fasterrcnn.ops import fallback


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial_scale", [1.0 / 16, 1.0 / 8, 1.0])
@pytest.mark.parametrize("output_size", [(3, 4), 7, (1, 1)])
def test_matches_torchvision(backend, dtype, spatial_scale, output_size):
    gen = torch.Generator().manual_seed(int(spatial_scale * 64))
    x = torch.randn(2, 4, 12, 15, generator=gen, dtype=dtype)
    rois = make_rois(24, 2, 12, 15, spatial_scale, dtype, gen)
    expected = torchvision.ops.roi_pool(x, rois, output_size, spatial_scale)
    weight = torch.randn(expected.shape, generator=gen, dtype=dtype)
    out, grad = grads(lambda t: ops.roi_pool(t, rois, output_size, spatial_scale), x, weight)
    ref_out, ref_grad = grads(
        lambda t: torchvision.ops.roi_pool(t, rois, output_size, spatial_scale), x, weight
    )
    assert out.shape == expected.shape and out.dtype == dtype
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_rounding_half_away_from_zero(backend):
    # x1 * scale = 2.5 rounds to 3 (std::round), not to 2 (banker's rounding): the RoI then
    # covers columns 3..5 and its single bin's maximum is column 5, never column 2's value.
    x = torch.zeros(1, 1, 1, 8)
    x[0, 0, 0, 2] = 10.0
    x[0, 0, 0, 5] = 1.0
    rois = torch.tensor([[0.0, 5.0, 0.0, 10.0, 0.0]])
    out = ops.roi_pool(x, rois, 1, 0.5)
    assert out.item() == 1.0
    assert out.item() == torchvision.ops.roi_pool(x, rois, 1, 0.5).item()


def test_ties_route_gradient_to_first_maximum(backend):
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])
    out = ops.roi_pool(x, rois, 1, 1.0)
    (grad,) = torch.autograd.grad(out.sum(), x)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 0, 0] = 1.0
    assert torch.equal(grad, expected)


@pytest.mark.parametrize("output_size", [1, (2, 1)])
def test_bins_with_many_cells(backend, output_size):
    # bins of 300+ cells (the compiled kernel then stores argmax as a full plane index)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 20, 24, generator=gen)
    rois = torch.tensor(
        [[0.0, 0.0, 0.0, 23.0, 19.0], [1.0, 2.0, 1.0, 22.0, 18.0], [1.0, 5.0, 5.0, 6.0, 6.0]]
    )
    weight = torch.randn(3, 3, *ops._checks.pair(output_size), generator=gen)
    out, grad = grads(lambda t: ops.roi_pool(t, rois, output_size, 1.0), x, weight)
    ref_out, ref_grad = grads(
        lambda t: torchvision.ops.roi_pool(t, rois, output_size, 1.0), x, weight
    )
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


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
    wide[:, ::2] = make_rois(10, b, h, w, 0.125, torch.float32, gen)
    rois = wide[:, ::2]
    assert not x.is_contiguous() and not rois.is_contiguous()
    weight = torch.randn(10, c, 2, 3, generator=gen)
    out, grad = grads(lambda t: ops.roi_pool(t, rois, (2, 3), 0.125), x, weight)
    ref_out, ref_grad = grads(
        lambda t: torchvision.ops.roi_pool(t, rois.contiguous(), (2, 3), 0.125),
        x.contiguous(),
        weight,
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_zero_rois(backend):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    out = ops.roi_pool(x, torch.zeros(0, 5), (2, 2), 0.5)
    assert out.shape == (0, 3, 2, 2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.count_nonzero(grad) == 0


def test_gradcheck(backend):
    gen = torch.Generator().manual_seed(13)
    # distinct values, spaced far beyond gradcheck's eps, keep every argmax stable
    values = torch.randperm(2 * 2 * 6 * 7, generator=gen).to(torch.float64) * 0.01
    x = values.view(2, 2, 6, 7).requires_grad_(True)
    rois = make_rois(6, 2, 6, 7, 0.5, torch.float64, gen)
    assert torch.autograd.gradcheck(
        lambda t: ops.roi_pool(t, rois, (2, 3), 0.5), (x,), eps=1e-6, atol=1e-5
    )


def test_fallback_matches_compiled(backend):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 10, 13, generator=gen)
    rois = make_rois(20, 2, 10, 13, 1.0 / 16, torch.float32, gen)
    weight = torch.randn(20, 5, 7, 7, generator=gen)
    out, grad = grads(lambda t: ops.roi_pool(t, rois, 7, 1.0 / 16), x, weight)
    ref_out, ref_grad = grads(lambda t: fallback.roi_pool(t, rois, (7, 7), 1.0 / 16), x, weight)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_module_matches_function(backend):
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 8.0, 8.0, 90.0, 70.0]])
    module = ops.RoIPool((3, 3), 1.0 / 16)
    assert torch.equal(module(x, rois), ops.roi_pool(x, rois, 3, 1.0 / 16))
    assert "spatial_scale=0.0625" in repr(module)
