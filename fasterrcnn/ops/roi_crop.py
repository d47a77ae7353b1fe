"""RoI "crop" pooling of faster-rcnn.pytorch (affine grid + bilinear sampler + 2x2 max-pool).

rois (K,5) = [batch_index, x1, y1, x2, y2] in input-image pixels; x1..y2 are multiplied by
spatial_scale.  Per RoI, a grid of (2h,2w) points (max_pool) or (h,w) points spans x1..x2 and
y1..y2 inclusive -- F.affine_grid(theta, align_corners=True) with
theta = [[(x2-x1)/(W-1), 0, (x1+x2-W+1)/(W-1)], [0, (y2-y1)/(H-1), (y1+y2-H+1)/(H-1)]] --
sampled bilinearly on the RoI's own image with zero padding (F.grid_sample, align_corners=True),
then F.max_pool2d(2, 2) when max_pool.  Requires H, W > 1.  Gradients flow to ``input`` only.
"""
from typing import Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import fallback
from ._checks import OutputSize, check_roi_args, pair
from ._ext import extension, use_kernels


class _RoICropFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, max_pool):
        output, argmax = extension().roi_crop_forward(
            input, rois, spatial_scale, output_size[0], output_size[1], max_pool
        )
        ctx.save_for_backward(rois, argmax)
        ctx.params = (output_size, spatial_scale, max_pool, input.shape)
        ctx.mark_non_differentiable(argmax)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        rois, argmax = ctx.saved_tensors
        output_size, spatial_scale, max_pool, shape = ctx.params
        grad_input = extension().roi_crop_backward(
            grad_output.contiguous(), rois, argmax, spatial_scale, output_size[0],
            output_size[1], max_pool, shape[0], shape[1], shape[2], shape[3],
        )
        return grad_input, None, None, None, None


def roi_crop(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: OutputSize,
    spatial_scale: float = 1.0,
    max_pool: bool = True,
) -> torch.Tensor:
    """input (B,C,H,W) with H,W > 1, rois (K,5) -> (K,C,out_h,out_w)."""
    check_roi_args(input, rois, "roi_crop")
    if input.size(2) < 2 or input.size(3) < 2:
        raise ValueError(f"roi_crop: feature map must be at least 2x2, got {tuple(input.shape)}")
    size: Tuple[int, int] = pair(output_size)
    if use_kernels(input):
        return _RoICropFunction.apply(
            input.contiguous(), rois.detach().contiguous(), size, float(spatial_scale),
            bool(max_pool),
        )
    return fallback.roi_crop(input, rois, size, float(spatial_scale), bool(max_pool))


class RoICrop(nn.Module):
    """Module form of :func:`roi_crop`: forward(input (B,C,H,W), rois (K,5)) -> (K,C,h,w)."""

    def __init__(
        self, output_size: OutputSize, spatial_scale: float, max_pool: bool = True
    ) -> None:
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = spatial_scale
        self.max_pool = max_pool

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_crop(input, rois, self.output_size, self.spatial_scale, self.max_pool)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"max_pool={self.max_pool}")
