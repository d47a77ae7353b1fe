"""RoIAlign (torchvision numerics) in pure torch via separable bilinear weight matrices.

For every RoI, pooled = Ay @ F @ Ax^T where Ay (out_h,H) and Ax (out_w,W) hold the bilinear
weights of the sample rows/columns averaged over the samples of each bin.  Forward is exact and
autograd gives the input gradient.  Boxes are [x1, y1, x2, y2] in input-image pixels scaled by
spatial_scale (no +1; ``aligned`` shifts by half a pixel like torchvision).
"""

from typing import Tuple

import torch

from ._batching import chunks, empty_output, image_groups, per_image


def axis_weights(
    lo: torch.Tensor,
    hi: torch.Tensor,
    out_size: int,
    size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """Averaged bilinear weights along one axis: lo, hi (K,) roi bounds -> (K, out_size, size)."""
    dtype = lo.dtype
    offset = 0.5 if aligned else 0.0
    start = (lo.double() * spatial_scale - offset).to(dtype)
    end = (hi.double() * spatial_scale - offset).to(dtype)
    length = end - start
    if not aligned:
        length = length.clamp(min=1.0)
    bin_size = length / out_size
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio, dtype=torch.int64)
    else:
        grid = torch.ceil(length / out_size).to(torch.int64)
    max_grid = max(int(grid.max()), 1) if grid.numel() else 1
    k = lo.numel()
    bins = torch.arange(out_size, dtype=dtype, device=lo.device).view(1, -1, 1)
    samples = torch.arange(max_grid, device=lo.device)
    grid_f = grid.clamp(min=1).to(dtype).view(-1, 1, 1)
    pos = (start.view(-1, 1, 1) + bins * bin_size.view(-1, 1, 1)) + (
        (samples.to(dtype) + 0.5).view(1, 1, -1) * bin_size.view(-1, 1, 1)
    ) / grid_f
    used = (samples.view(1, 1, -1) < grid.view(-1, 1, 1)).expand(k, out_size, max_grid)
    valid = used & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.to(torch.int64)
    border = low >= size - 1
    low = torch.where(border, torch.full_like(low, size - 1), low)
    high = torch.where(border, low, low + 1)
    pos = torch.where(border, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    weight = valid.to(dtype) / grid_f
    out = torch.zeros(k, out_size, size, dtype=dtype, device=lo.device)
    out.scatter_add_(2, low, (1.0 - frac) * weight)
    out.scatter_add_(2, high, frac * weight)
    return out


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w); rois get no gradient."""
    num_images, channels, height, width = input.shape
    out_h, out_w = output_size
    rois = rois.detach()
    if rois.size(0) == 0:
        return empty_output(input, out_h, out_w)
    ay = axis_weights(rois[:, 2], rois[:, 4], out_h, height, spatial_scale, sampling_ratio, aligned)
    ax = axis_weights(rois[:, 1], rois[:, 3], out_w, width, spatial_scale, sampling_ratio, aligned)

    def pool_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        rows = input[image].permute(1, 0, 2).reshape(height, channels * width)
        parts = []
        for part in chunks(idx.numel(), out_h * channels * width):
            sel = idx[part]
            k = sel.numel()
            tmp = torch.matmul(ay[sel].reshape(k * out_h, height), rows)
            tmp = tmp.view(k, out_h * channels, width)
            pooled = torch.bmm(tmp, ax[sel].transpose(1, 2))
            parts.append(pooled.view(k, out_h, channels, out_w).permute(0, 2, 1, 3))
        return torch.cat(parts)

    return per_image(rois, num_images, pool_image)


def roi_align_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    output_size: Tuple[int, int],
    input_shape: Tuple[int, int, int, int],
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """grad (K,C,out_h,out_w) of :func:`roi_align`'s output -> grad of input (B,C,H,W).

    The transposed products of the forward, as two large matrix products per chunk of RoIs:
    grad_input[b] = sum over the RoIs k of image b of Ay_k^T G_k Ax_k.
    """
    num_images, channels, height, width = input_shape
    out_h, out_w = output_size
    grad_input = grad.new_zeros(input_shape)
    if rois.size(0) == 0:
        return grad_input
    ay = axis_weights(rois[:, 2], rois[:, 4], out_h, height, spatial_scale, sampling_ratio, aligned)
    ax = axis_weights(rois[:, 1], rois[:, 3], out_w, width, spatial_scale, sampling_ratio, aligned)
    for image, idx in image_groups(rois, num_images):
        for part in chunks(idx.numel(), out_h * channels * width):
            sel = idx[part]
            k = sel.numel()
            g = grad[sel].permute(0, 2, 1, 3).reshape(k, out_h * channels, out_w)
            cols = torch.bmm(g, ax[sel]).view(k * out_h, channels * width)
            rows = ay[sel].reshape(k * out_h, height).t() @ cols  # (H, C*W)
            grad_input[image] += rows.view(height, channels, width).permute(1, 0, 2)
    return grad_input
