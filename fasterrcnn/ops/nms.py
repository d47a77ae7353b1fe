"""Non-maximum suppression with torchvision's signature and numerics, and its fixed-size form.

Boxes are [x1, y1, x2, y2]; IoU uses area = (x2-x1)*(y2-y1) (no +1, like torchvision); a box
is suppressed when its IoU with a kept, higher-scoring box is > iou_threshold.  ``nms`` returns
the kept indices (a data-dependent size); ``nms_mask`` the keep mask (the size of the input), for
code that must not synchronise with the device or that compiles / exports with static shapes.
"""

import torch

from ._checks import check_nms_args
from ._ext import operators


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N,4), scores (N,) -> int64 (K,) indices of kept boxes, by decreasing score."""
    check_nms_args(boxes, scores)
    return operators(boxes).nms(boxes, scores, float(iou_threshold))


def nms_mask(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N,4), scores (N,) -> bool (N,): True where the box survives greedy NMS.

    Greedy in decreasing score order (ties: input order), exactly the boxes ``nms`` keeps:
    ``nms(b, s, t)`` equals ``nonzero(nms_mask(b, s, t))`` sorted by decreasing score.
    """
    check_nms_args(boxes, scores, "nms_mask")
    return operators(boxes).nms_mask(boxes, scores, float(iou_threshold))


def _check_idxs(boxes: torch.Tensor, idxs: torch.Tensor, op: str) -> None:
    if idxs.dim() != 1 or idxs.size(0) != boxes.size(0):
        raise ValueError(
            f"{op}: idxs must have shape (N,) with N = {boxes.size(0)}, got {tuple(idxs.shape)}"
        )


def _offset_by_category(boxes: torch.Tensor, idxs: torch.Tensor) -> torch.Tensor:
    """Move each category's boxes by category * (max coordinate + 1): categories never overlap.

    No host synchronisation (the offset stays a tensor).  boxes (N,4) with N > 0."""
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return boxes + offsets[:, None]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS independently per category.

    boxes (N,4), scores (N,), idxs (N,) integer categories -> int64 (K,) kept indices sorted by
    decreasing score.  Boxes of different categories are moved apart by a per-category
    coordinate offset (larger than any coordinate) so one NMS call handles all categories.
    """
    check_nms_args(boxes, scores, "batched_nms")
    _check_idxs(boxes, idxs, "batched_nms")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return nms(_offset_by_category(boxes, idxs), scores, iou_threshold)


def batched_nms_mask(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """:func:`nms_mask` independently per category (coordinate offsets, like ``batched_nms``).

    boxes (N,4), scores (N,), idxs (N,) integer categories -> bool (N,) keep mask.
    """
    check_nms_args(boxes, scores, "batched_nms_mask")
    _check_idxs(boxes, idxs, "batched_nms_mask")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    return nms_mask(_offset_by_category(boxes, idxs), scores, iou_threshold)
