"""Non-maximum suppression with torchvision's signature and numerics.

Boxes are [x1, y1, x2, y2]; IoU uses area = (x2-x1)*(y2-y1) (no +1, like torchvision); a box
is suppressed when its IoU with a kept, higher-scoring box is > iou_threshold.
"""
import torch

from . import fallback
from ._checks import check_nms_args
from ._ext import extension, use_kernels


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N,4), scores (N,) -> int64 (K,) indices of kept boxes, by decreasing score."""
    check_nms_args(boxes, scores)
    if boxes.size(0) == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if use_kernels(boxes):
        return extension().nms(boxes.contiguous(), scores.contiguous(), float(iou_threshold))
    return fallback.nms(boxes, scores, float(iou_threshold))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS independently per category.

    boxes (N,4), scores (N,), idxs (N,) integer categories -> int64 (K,) kept indices sorted by
    decreasing score.  Boxes of different categories are moved apart by a per-category
    coordinate offset (larger than any coordinate) so one NMS call handles all categories.
    """
    check_nms_args(boxes, scores, "batched_nms")
    if idxs.dim() != 1 or idxs.size(0) != boxes.size(0):
        raise ValueError(
            f"batched_nms: idxs must have shape (N,) with N = {boxes.size(0)}, "
            f"got {tuple(idxs.shape)}"
        )
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)
