"""RoIPool (torchvision numerics) in pure torch: gathered bin patches, max with argmax.

RoI coordinates are rounded (half away from zero) after scaling, the RoI spans
round(x2) - round(x1) + 1 cells (the +1 convention of the original RoIPool), bins are
[floor(i*bin), ceil((i+1)*bin)) clipped to the map; empty bins give 0.  The output is a gather
of the argmax, so autograd routes gradients to the first maximum of each bin (like torchvision).
"""

from typing import Tuple

import torch

from ._batching import chunks, empty_output, per_image


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _bin_bounds(
    lo: torch.Tensor, hi: torch.Tensor, out_size: int, size: int, spatial_scale: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """lo, hi (K,) -> start, end (K, out_size) int64 cell bounds of each bin, clipped to the map."""
    dtype = lo.dtype
    start = _round_half_away(lo.double() * spatial_scale).to(torch.int64)
    end = _round_half_away(hi.double() * spatial_scale).to(torch.int64)
    length = (end - start + 1).clamp(min=1)
    bin_size = length.to(dtype) / out_size
    bins = torch.arange(out_size, device=lo.device, dtype=dtype)
    bin_start = torch.floor(bins[None, :] * bin_size[:, None]).to(torch.int64)
    bin_end = torch.ceil((bins[None, :] + 1) * bin_size[:, None]).to(torch.int64)
    bin_start = (bin_start + start[:, None]).clamp(0, size)
    bin_end = (bin_end + start[:, None]).clamp(0, size)
    return bin_start, bin_end


def _argmax_cells(
    input: torch.Tensor, rois: torch.Tensor, output_size: Tuple[int, int], spatial_scale: float
) -> torch.Tensor:
    """int64 (K,C,out_h,out_w): flat H*W index of each bin's first maximum, -1 for empty bins."""
    num_images, channels, height, width = input.shape
    out_h, out_w = output_size
    rois = rois.detach()
    y0, y1 = _bin_bounds(rois[:, 2], rois[:, 4], out_h, height, spatial_scale)
    x0, x1 = _bin_bounds(rois[:, 1], rois[:, 3], out_w, width, spatial_scale)
    patch_h = max(int((y1 - y0).max()), 1)
    patch_w = max(int((x1 - x0).max()), 1)
    rows = y0[:, :, None] + torch.arange(patch_h, device=input.device)  # (K,out_h,patch_h)
    cols = x0[:, :, None] + torch.arange(patch_w, device=input.device)  # (K,out_w,patch_w)
    row_ok = rows < y1[:, :, None]
    col_ok = cols < x1[:, :, None]
    # (K, out_h, out_w, patch_h, patch_w) flat cell index and validity
    flat = rows[:, :, None, :, None] * width + cols[:, None, :, None, :]
    ok = row_ok[:, :, None, :, None] & col_ok[:, None, :, None, :]
    flat = torch.where(ok, flat, torch.zeros_like(flat)).flatten(3)
    ok = ok.flatten(3)
    nonempty = ok.any(dim=3)

    def argmax_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        plane = input[image].detach().reshape(channels, height * width)
        best = []
        for part in chunks(idx.numel(), channels * out_h * out_w * patch_h * patch_w):
            sel = idx[part]
            cells = flat[sel]
            vals = plane[:, cells.reshape(-1)].view(channels, *cells.shape)
            vals = vals.masked_fill(~ok[sel].unsqueeze(0), float("-inf"))
            arg = vals.argmax(dim=-1, keepdim=True)
            best.append(cells.unsqueeze(0).expand_as(vals).gather(-1, arg).squeeze(-1))
        cell = torch.cat(best, dim=1)  # (C, k, out_h, out_w)
        cell = torch.where(nonempty[idx].unsqueeze(0), cell, torch.full_like(cell, -1))
        return cell.permute(1, 0, 2, 3)

    return per_image(rois, num_images, argmax_image)


def _gather_cells(input: torch.Tensor, rois: torch.Tensor, argmax: torch.Tensor) -> torch.Tensor:
    """input (B,C,H,W), argmax (K,C,h,w) flat H*W indices (-1: empty) -> values, 0 if empty."""
    image = rois[:, 0].detach().to(torch.int64).view(-1, 1, 1, 1)
    channel = torch.arange(input.size(1), device=input.device).view(1, -1, 1, 1)
    cell = argmax.to(torch.int64)
    values = input.flatten(2)[image, channel, cell.clamp(min=0)]
    return torch.where(cell >= 0, values, torch.zeros_like(values))


def roi_pool(
    input: torch.Tensor, rois: torch.Tensor, output_size: Tuple[int, int], spatial_scale: float
) -> torch.Tensor:
    """input (B,C,H,W), rois (K,5) -> (K,C,out_h,out_w); rois get no gradient."""
    if rois.size(0) == 0:
        return empty_output(input, *output_size)
    return _gather_cells(input, rois, _argmax_cells(input, rois, output_size, spatial_scale))


def roi_pool_with_argmax(
    input: torch.Tensor, rois: torch.Tensor, output_size: Tuple[int, int], spatial_scale: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """input (B,C,H,W), rois (K,5) -> output (K,C,out_h,out_w) and int32 argmax (K,C,out_h,out_w).

    argmax is the flat index in the H*W plane of each bin's (first) maximum, -1 for empty bins:
    the layout of the compiled kernels.
    """
    if rois.size(0) == 0:
        shape = (0, input.size(1), *output_size)
        return input.new_zeros(shape), torch.zeros(shape, dtype=torch.int32, device=input.device)
    argmax = _argmax_cells(input, rois, output_size, spatial_scale)
    return _gather_cells(input, rois, argmax), argmax.to(torch.int32)


def roi_pool_backward(
    grad: torch.Tensor,
    rois: torch.Tensor,
    argmax: torch.Tensor,
    input_shape: Tuple[int, int, int, int],
) -> torch.Tensor:
    """grad and argmax (K,C,out_h,out_w) of :func:`roi_pool_with_argmax` -> grad (B,C,H,W)."""
    num_images, channels, height, width = input_shape
    grad_input = grad.new_zeros(num_images, channels, height * width)
    if rois.size(0):
        image = rois[:, 0].to(torch.int64).view(-1, 1, 1, 1).expand_as(argmax)
        channel = torch.arange(channels, device=grad.device).view(1, -1, 1, 1).expand_as(argmax)
        cell = argmax.to(torch.int64)
        valid = cell >= 0
        grad_input.index_put_(
            (image[valid], channel[valid], cell[valid]), grad[valid], accumulate=True
        )
    return grad_input.view(input_shape)
