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

from ._batching import empty_output, image_groups, per_image


def crop_theta(rois: torch.Tensor, spatial_scale: float, height: int, width: int) -> torch.Tensor:
    """rois (K,5) -> theta (K,2,3) of the crop grid (see module docstring)."""
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale).unbind(1)
    zero = torch.zeros_like(x1)
    row_x = torch.stack([(x2 - x1) / (width - 1), zero, (x1 + x2 - width + 1) / (width - 1)], 1)
    row_y = torch.stack([zero, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1)], 1)
    return torch.stack([row_x, row_y], 1)


def crop_grid(
    rois: torch.Tensor, spatial_scale: float, grid_size: Tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """rois (K,5) -> sampling grid (K, grid_h, grid_w, 2) in [-1, 1] (align_corners=True)."""
    theta = crop_theta(rois.detach(), spatial_scale, height, width)
    with warnings.catch_warnings():
        # a grid of size 1 along an axis samples the RoI centre; that is intended here
        warnings.filterwarnings("ignore", message="Since version 1.3.0, affine_grid")
        return F.affine_grid(theta, [theta.size(0), 1, *grid_size], align_corners=True)


def _grid_size(output_size: Tuple[int, int], max_pool: bool) -> Tuple[int, int]:
    out_h, out_w = output_size
    return (2 * out_h, 2 * out_w) if max_pool else (out_h, out_w)


def _sample(
    input: torch.Tensor, rois: torch.Tensor, grid_size: Tuple[int, int], spatial_scale: float
) -> torch.Tensor:
    """Bilinear samples (K,C,grid_h,grid_w) of every RoI's crop grid on its own image."""
    num_images, channels, height, width = input.shape
    grid_h, grid_w = grid_size
    grid = crop_grid(rois, spatial_scale, grid_size, height, width)

    def crop_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        k = idx.numel()
        image_grid = grid[idx].reshape(1, k * grid_h, grid_w, 2)
        sampled = F.grid_sample(
            input[image : image + 1],
            image_grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )
        return sampled.view(channels, k, grid_h, grid_w).permute(1, 0, 2, 3)

    return per_image(rois, num_images, crop_image)


def roi_crop(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    max_pool: bool,
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w); rois get no gradient."""
    out_h, out_w = output_size
    if rois.size(0) == 0:
        return empty_output(input, out_h, out_w)
    out = _sample(input, rois, _grid_size(output_size, max_pool), spatial_scale)
    if max_pool:
        out = F.max_pool2d(out, kernel_size=2, stride=2)
    return out


def roi_crop_with_argmax(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    max_pool: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`roi_crop` plus the argmax its backward needs, laid out like the compiled kernels'.

    Returns output (K,C,out_h,out_w) and, when max_pool, uint8 (K,C,out_h,out_w) positions
    dy*2+dx of each maximum in its 2x2 window (first maximum on ties), else a (0,) tensor.
    """
    out_h, out_w = output_size
    shape = (rois.size(0), input.size(1), out_h, out_w)
    if rois.size(0) == 0:
        return input.new_zeros(shape), torch.zeros(
            shape if max_pool else (0,), dtype=torch.uint8, device=input.device
        )
    sampled = _sample(input, rois, _grid_size(output_size, max_pool), spatial_scale)
    if not max_pool:
        return sampled, torch.zeros(0, dtype=torch.uint8, device=input.device)
    out, flat = F.max_pool2d(sampled, kernel_size=2, stride=2, return_indices=True)
    row, col = flat // (2 * out_w), flat % (2 * out_w)
    return out, ((row % 2) * 2 + col % 2).to(torch.uint8)


def roi_crop_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    argmax: torch.Tensor,
    spatial_scale: float,
    output_size: Tuple[int, int],
    max_pool: bool,
    input_shape: Tuple[int, int, int, int],
) -> torch.Tensor:
    """grad (K,C,out_h,out_w) and argmax of :func:`roi_crop_with_argmax` -> grad (B,C,H,W)."""
    num_images, channels, height, width = input_shape
    grad_input = grad.new_zeros(input_shape)
    if rois.size(0) == 0:
        return grad_input
    grid_h, grid_w = _grid_size(output_size, max_pool)
    if max_pool:
        # route each output's gradient to the (dy, dx) sample of its 2x2 window
        onehot = F.one_hot(argmax.to(torch.int64), 4).to(grad.dtype) * grad.unsqueeze(-1)
        grad = (
            onehot.view(*grad.shape, 2, 2)
            .permute(0, 1, 2, 4, 3, 5)
            .reshape(rois.size(0), channels, grid_h, grid_w)
        )
    grid = crop_grid(rois, spatial_scale, (grid_h, grid_w), height, width)
    for image, idx in image_groups(rois, num_images):
        k = idx.numel()
        image_grad = grad[idx].permute(1, 0, 2, 3).reshape(1, channels, k * grid_h, grid_w)
        image_grid = grid[idx].reshape(1, k * grid_h, grid_w, 2)
        zeros = grad.new_zeros(1, channels, height, width)
        grad_image, _ = torch.ops.aten.grid_sampler_2d_backward(
            image_grad, zeros, image_grid, 0, 0, True, [True, False]
        )  # bilinear, zeros pad
        grad_input[image] += grad_image[0]
    return grad_input
