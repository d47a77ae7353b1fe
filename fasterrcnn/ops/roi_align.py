"""RoIAlign with torchvision's signature and numerics (``aligned``, adaptive sampling).

rois (K,5) = [batch_index, x1, y1, x2, y2] in input-image pixels; spatial_scale maps them to
the feature map.  No +1 in RoI sizes; ``aligned=True`` shifts by half a pixel.  Each of the
out_h x out_w bins averages sampling_ratio^2 bilinear samples (ceil(roi_size/out_size) per axis
when sampling_ratio <= 0).  Gradients flow to ``input`` only.
"""

import torch
from torch import nn

from ._checks import OutputSize, assert_batch_indices_on_device, check_roi_args, pair
from ._ext import operators


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: OutputSize,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w) (``torch.ops.fasterrcnn.roi_align``)."""
    out_h, out_w = pair(output_size)
    check_roi_args(input, rois, "roi_align", spatial_scale, (out_h, out_w))
    assert_batch_indices_on_device(rois, input.size(0), "roi_align")
    return operators(input).roi_align(
        input, rois, float(spatial_scale), out_h, out_w, int(sampling_ratio), bool(aligned)
    )


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`: forward(input (B,C,H,W), rois (K,5)) -> (K,C,h,w)."""

    def __init__(
        self,
        output_size: OutputSize,
        spatial_scale: float,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
