"""RoIPool (max pooling over RoI bins) with torchvision's signature and numerics.

rois (K,5) = [batch_index, x1, y1, x2, y2] in input-image pixels.  Scaled coordinates are
rounded, the RoI covers round(x2)-round(x1)+1 cells (+1 convention), bin i spans
[floor(i*bin), ceil((i+1)*bin)) clipped to the map, empty bins give 0.  The gradient goes to
the first maximum of each bin; rois get none.
"""

import torch
from torch import nn

from ._checks import OutputSize, assert_batch_indices_on_device, check_roi_args, pair
from ._ext import operators


def roi_pool(
    input: torch.Tensor, rois: torch.Tensor, output_size: OutputSize, spatial_scale: float = 1.0
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w) (``torch.ops.fasterrcnn.roi_pool``)."""
    out_h, out_w = pair(output_size)
    check_roi_args(input, rois, "roi_pool", spatial_scale, (out_h, out_w))
    assert_batch_indices_on_device(rois, input.size(0), "roi_pool")
    output, _ = operators(input).roi_pool(input, rois, float(spatial_scale), out_h, out_w)
    return output


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
