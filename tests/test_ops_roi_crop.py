"""fasterrcnn.ops.roi_crop vs a direct F.affine_grid + F.grid_sample (+ max-pool) computation."""

import pytest
import torch
import torch.nn.functional as F
from ops_testing import grads, make_rois

from fasterrcnn import ops
from fasterrcnn.ops import fallback


def reference_crop(x, rois, output_size, spatial_scale, max_pool):
    """Direct per-RoI F.affine_grid + F.grid_sample (+ F.max_pool2d), the definition of the op."""
    out_h, out_w = output_size
    grid_h, grid_w = (2 * out_h, 2 * out_w) if max_pool else (out_h, out_w)
    height, width = x.shape[-2:]
    results = []
    for roi in rois:
        x1, y1, x2, y2 = (roi[1:] * spatial_scale).tolist()
        theta = torch.tensor(
            [
                [
                    [(x2 - x1) / (width - 1), 0.0, (x1 + x2 - width + 1) / (width - 1)],
                    [0.0, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1)],
                ]
            ],
            dtype=x.dtype,
        )
        grid = F.affine_grid(theta, [1, 1, grid_h, grid_w], align_corners=True)
        image = int(roi[0])
        sampled = F.grid_sample(
            x[image : image + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        results.append(F.max_pool2d(sampled, 2, 2) if max_pool else sampled)
    return torch.cat(results)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial_scale", [1.0 / 16, 1.0 / 8, 1.0])
@pytest.mark.parametrize("max_pool", [True, False])
def test_matches_affine_grid_sample(backend, dtype, spatial_scale, max_pool):
    gen = torch.Generator().manual_seed(int(spatial_scale * 64) + int(max_pool))
    x = torch.randn(2, 4, 12, 15, generator=gen, dtype=torch.float64)
    rois = make_rois(16, 2, 12, 15, spatial_scale, torch.float64, gen)
    for output_size in [(3, 4), (7, 7)]:
        weight = torch.randn(16, 4, *output_size, generator=gen, dtype=torch.float64)
        # the float64 reference; float32 runs see inputs rounded to float32
        ref_out, ref_grad = grads(
            lambda t, size=output_size: reference_crop(
                t, rois.to(dtype).double(), size, spatial_scale, max_pool
            ),
            x.to(dtype).double(),
            weight,
        )
        out, grad = grads(
            lambda t, size=output_size: ops.roi_crop(
                t, rois.to(dtype), size, spatial_scale, max_pool
            ),
            x.to(dtype),
            weight.to(dtype),
        )
        assert out.shape == (16, 4) + output_size and out.dtype == dtype
        torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-4)


def test_hand_computed_value(backend):
    # max_pool=False, 1x2 output over a ramp: the two samples sit exactly on x1 and x2.
    x = torch.arange(6, dtype=torch.float64).repeat(1, 1, 5, 1)
    rois = torch.tensor([[0.0, 1.5, 2.0, 4.0, 2.0]], dtype=torch.float64)
    out = ops.roi_crop(x, rois, (1, 2), 1.0, max_pool=False)
    assert torch.allclose(out[0, 0], torch.tensor([[1.5, 4.0]], dtype=torch.float64))


def test_noncontiguous(backend):
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(2, 9, 11, 6, generator=gen)
    x = base.permute(0, 3, 1, 2)[:, ::2]
    wide = torch.zeros(8, 10)
    wide[:, ::2] = make_rois(8, 2, 9, 11, 0.25, torch.float32, gen)
    rois = wide[:, ::2]
    weight = torch.randn(8, 3, 2, 2, generator=gen)
    out, grad = grads(lambda t: ops.roi_crop(t, rois, 2, 0.25), x, weight)
    ref_out, ref_grad = grads(
        lambda t: reference_crop(t, rois.contiguous(), (2, 2), 0.25, True), x.contiguous(), weight
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_zero_rois(backend):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    out = ops.roi_crop(x, torch.zeros(0, 5), (2, 2), 0.5)
    assert out.shape == (0, 3, 2, 2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("max_pool", [pytest.param(True, marks=pytest.mark.slow), False])
def test_gradcheck(backend, max_pool):
    gen = torch.Generator().manual_seed(17)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = make_rois(5, 2, 6, 7, 0.5, torch.float64, gen)
    assert torch.autograd.gradcheck(
        lambda t: ops.roi_crop(t, rois, (2, 3), 0.5, max_pool), (x,), eps=1e-6, atol=1e-5
    )


def test_fallback_matches_compiled(backend):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 10, 13, generator=gen)
    rois = make_rois(20, 2, 10, 13, 1.0 / 16, torch.float32, gen)
    weight = torch.randn(20, 5, 7, 7, generator=gen)
    out, grad = grads(lambda t: ops.roi_crop(t, rois, 7, 1.0 / 16), x, weight)
    ref_out, ref_grad = grads(
        lambda t: fallback.roi_crop(t, rois, (7, 7), 1.0 / 16, True), x, weight
    )
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_module_matches_function(backend):
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 8.0, 8.0, 90.0, 70.0]])
    module = ops.RoICrop((3, 3), 1.0 / 16, max_pool=False)
    assert torch.equal(module(x, rois), ops.roi_crop(x, rois, 3, 1.0 / 16, max_pool=False))
    assert "max_pool=False" in repr(module)
