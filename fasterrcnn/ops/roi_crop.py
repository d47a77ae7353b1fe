"""RoI "crop" pooling of faster-rcnn.pytorch (affine grid + bilinear sampler + 2x2 max-pool).

rois (K,5) = [batch_index, x1, y1, x2, y2] in input-image pixels; x1..y2 are multiplied by
spatial_scale.  Per RoI, a grid of (2h,2w) points (max_pool) or (h,w) points spans x1..x2 and
y1..y2 inclusive -- F.affine_grid(theta, align_corners=True) with
theta = [[(x2-x1)/(W-1), 0, (x1+x2-W+1)/(W-1)], [0, (y2-y1)/(H-1), (y1+y2-H+1)/(H-1)]] --
sampled bilinearly on the RoI's own image with zero padding (F.grid_sample, align_corners=True),
then F.max_pool2d(2, 2) when max_pool.  Requires H, W > 1.  Gradients flow to ``input`` only.
"""

import torch
from torch import nn

from ._checks import OutputSize, assert_batch_indices_on_device, check_roi_args, pair
from ._ext import operators


def roi_crop(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: OutputSize,
    spatial_scale: float = 1.0,
    max_pool: bool = True,
) -> torch.Tensor:
    """input (B,C,H,W) with H,W > 1, rois (K,5) -> (K,C,out_h,out_w)
    (``torch.ops.fasterrcnn.roi_crop``)."""
    out_h, out_w = pair(output_size)
    check_roi_args(input, rois, "roi_crop", spatial_scale, (out_h, out_w))
    assert_batch_indices_on_device(rois, input.size(0), "roi_crop")
    output, _ = operators(input).roi_crop(
        input, rois, float(spatial_scale), out_h, out_w, bool(max_pool)
    )
    return output


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
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"max_pool={self.max_pool}"
        )
