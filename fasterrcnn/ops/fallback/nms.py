"""Greedy NMS in pure torch: blocked IoU matrices, no Python loop over boxes.

Boxes are [x1, y1, x2, y2] with torchvision's convention (area = (x2-x1)*(y2-y1), no +1).
"""

from typing import Tuple

import torch

_BLOCK = 256


def _iou_exceeds(a: torch.Tensor, b: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """(n,4), (m,4) -> bool (n,m): IoU(a_i, b_j) > threshold, computed like torchvision."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    xx1 = torch.maximum(a[:, None, 0], b[None, :, 0])
    yy1 = torch.maximum(a[:, None, 1], b[None, :, 1])
    xx2 = torch.minimum(a[:, None, 2], b[None, :, 2])
    yy2 = torch.minimum(a[:, None, 3], b[None, :, 3])
    inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
    iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return iou.double() > iou_threshold


def _resolve_block(overlap: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Greedy keep flags inside one score-sorted block.

    overlap (n,n) bool, strictly upper triangular (i suppresses j only for i < j); alive (n,)
    bool (not suppressed by earlier blocks).  Solves keep[j] = alive[j] & !any_i(keep[i] &
    overlap[i,j]) by fixed-point iteration; after t rounds the first t entries are final, so it
    stops after at most n rounds (typically a handful).
    """
    weights = overlap.to(torch.float32)
    keep = alive.clone()
    while True:
        hit = (keep.to(torch.float32) @ weights) > 0
        new_keep = alive & ~hit
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def _keep_sorted(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Score order (N,) int64 (ties keep input order) and bool (N,) keep flags in that order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    n = sorted_boxes.size(0)
    kept_boxes = sorted_boxes.new_empty((0, 4))
    keep_flags = [torch.zeros(0, dtype=torch.bool, device=boxes.device)]
    for start in range(0, n, _BLOCK):
        block = sorted_boxes[start : start + _BLOCK]
        alive = ~_iou_exceeds(kept_boxes, block, iou_threshold).any(dim=0)
        overlap = _iou_exceeds(block, block, iou_threshold).triu(diagonal=1)
        keep = _resolve_block(overlap, alive)
        kept_boxes = torch.cat([kept_boxes, block[keep]])
        keep_flags.append(keep)
    return order, torch.cat(keep_flags)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N,4), scores (N,) -> int64 (K,) indices kept, by decreasing score."""
    order, keep = _keep_sorted(boxes, scores, iou_threshold)
    return order[keep]


def nms_mask(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N,4), scores (N,) -> bool (N,): True where the box survives greedy NMS."""
    order, keep = _keep_sorted(boxes, scores, iou_threshold)
    return torch.zeros_like(keep).scatter_(0, order, keep)
