"""RoIPool (max pooling over RoI bins) with torchvision's signature and numerics.

rois (K,5) = [batch_index, x1, y1, x2, y2] in input-image pixels.  Scaled coordinates are
rounded, the RoI covers round(x2)-round(x1)+1 cells (+1 convention), bin i spans
[floor(i*bin), ceil((i+1)*bin)) clipped to the map, empty bins give 0.  The gradient goes to
the first maximum of each bin; rois get none.
"""
from typing import Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import fallback
from ._checks import OutputSize, check_roi_args, pair
from ._ext import extension, use_kernels


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale):
        output, argmax = extension().roi_pool_forward(
            input, rois, spatial_scale, output_size[0], output_size[1]
        )
        ctx.save_for_backward(rois, argmax)
        ctx.shape = input.shape
        ctx.spatial_scale = spatial_scale
        ctx.mark_non_differentiable(argmax)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        rois, argmax = ctx.saved_tensors
        b, c, h, w = ctx.shape
        grad_input = extension().roi_pool_backward(
            grad_output.contiguous(), rois, argmax, ctx.spatial_scale, b, c, h, w
        )
        return grad_input, None, None, None


def roi_pool(
    input: torch.Tensor, rois: torch.Tensor, output_size: OutputSize, spatial_scale: float = 1.0
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w)."""
    check_roi_args(input, rois, "roi_pool")
    size: Tuple[int, int] = pair(output_size)
    if use_kernels(input):
        return _RoIPoolFunction.apply(
            input.contiguous(), rois.detach().contiguous(), size, float(spatial_scale)
        )
    return fallback.roi_pool(input, rois, size, float(spatial_scale))


class RoIPool(nn.Module):
    """Module form of :func:`roi_pool`: forward(input (B,C,H,W), rois (K,5)) -> (K,C,h,w)."""

    def __init__(self, output_size: OutputSize, spatial_scale: float) -> None:
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
