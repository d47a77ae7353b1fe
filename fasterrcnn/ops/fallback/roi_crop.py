"""RoI "crop" pooling of faster-rcnn.pytorch in pure torch (F.affine_grid + F.grid_sample).

Per RoI (x1..y2 = roi * spatial_scale, H,W = feature map size) the affine grid
theta = [[(x2-x1)/(W-1), 0, (x1+x2-W+1)/(W-1)], [0, (y2-y1)/(H-1), (y1+y2-H+1)/(H-1)]]
(align_corners=True) of size (2h,2w) if max_pool else (h,w) is sampled bilinearly with zero
padding, then 2x2 max-pooled if max_pool.  Sample columns run from x1 to x2 inclusive.
"""
import warnings
from typing import Tuple

import torch
import torch.nn.functional as F

from ._batching import empty_output, per_image


def crop_theta(rois: torch.Tensor, spatial_scale: float, height: int, width: int) -> torch.Tensor:
    """rois (K,5) -> theta (K,2,3) of the crop grid (see module docstring)."""
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale).unbind(1)
    zero = torch.zeros_like(x1)
    row_x = torch.stack([(x2 - x1) / (width - 1), zero, (x1 + x2 - width + 1) / (width - 1)], 1)
    row_y = torch.stack([zero, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1)], 1)
    return torch.stack([row_x, row_y], 1)


def roi_crop(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    max_pool: bool,
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w); rois get no gradient."""
    num_images, channels, height, width = input.shape
    out_h, out_w = output_size
    if rois.size(0) == 0:
        return empty_output(input, out_h, out_w)
    grid_h, grid_w = (2 * out_h, 2 * out_w) if max_pool else (out_h, out_w)
    theta = crop_theta(rois.detach(), spatial_scale, height, width)
    with warnings.catch_warnings():
        # a grid of size 1 along an axis samples the RoI centre; that is intended here
        warnings.filterwarnings("ignore", message="Since version 1.3.0, affine_grid")
        grid = F.affine_grid(theta, [theta.size(0), 1, grid_h, grid_w], align_corners=True)

    def crop_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        k = idx.numel()
        image_grid = grid[idx].reshape(1, k * grid_h, grid_w, 2)
        sampled = F.grid_sample(
            input[image:image + 1], image_grid, mode="bilinear", padding_mode="zeros",
            align_corners=True,
        )
        return sampled.view(channels, k, grid_h, grid_w).permute(1, 0, 2, 3)

    out = per_image(rois, num_images, crop_image)
    if max_pool:
        out = F.max_pool2d(out, kernel_size=2, stride=2)
    return out
