"""Helpers to run a per-image computation over the RoIs of each image of a batch."""

from typing import Callable, Iterator, List, Tuple

import torch

#: upper bound on the elements of one intermediate tensor (bounds memory of the fallbacks).
MAX_CHUNK_ELEMENTS = 1 << 24


def check_batch_indices(rois: torch.Tensor, num_images: int, op: str) -> None:
    """rois (K,5): every batch index (truncated to int) must lie in [0, num_images)."""
    batch = rois[:, 0].detach().to(torch.int64)
    if batch.numel() and bool(((batch < 0) | (batch >= num_images)).any()):
        raise ValueError(
            f"{op}: rois batch indices must lie in [0, {num_images}) for an input batch of "
            f"{num_images}"
        )


def image_groups(rois: torch.Tensor, num_images: int) -> Iterator[Tuple[int, torch.Tensor]]:
    """(image, roi_indices) for every image that has RoIs; rois (K,5), batch index first."""
    batch = rois[:, 0].detach().to(torch.int64)
    order = torch.argsort(batch, stable=True)
    start = 0
    for image, count in enumerate(torch.bincount(batch, minlength=num_images).tolist()):
        if count:
            yield image, order[start : start + count]
        start += count


def per_image(
    rois: torch.Tensor,
    num_images: int,
    fn: Callable[[int, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply fn(image_index, roi_indices) to the RoIs of each image and reassemble by RoI.

    rois (K,5) with the batch index first (truncated to int like torchvision); fn returns a
    tensor whose first dim matches roi_indices.  The loop is over images, not RoIs.
    """
    batch = rois[:, 0].detach().to(torch.int64)
    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch, minlength=num_images).tolist()
    parts: List[torch.Tensor] = []
    start = 0
    for image, count in enumerate(counts):
        if count:
            parts.append(fn(image, order[start : start + count]))
        start += count
    out = torch.cat(parts)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return out[inverse]


def chunks(count: int, per_item: int) -> List[slice]:
    """Split range(count) so each chunk holds at most MAX_CHUNK_ELEMENTS / per_item items."""
    step = max(1, MAX_CHUNK_ELEMENTS // max(per_item, 1))
    return [slice(s, min(s + step, count)) for s in range(0, count, step)]


def empty_output(input: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """(0, C, out_h, out_w) result for zero RoIs, still connected to ``input`` for autograd."""
    return input[:0, :, :1, :1].expand(0, input.size(1), out_h, out_w).contiguous()
