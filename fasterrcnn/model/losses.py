"""The smooth-L1 box regression loss of Fast/Faster R-CNN (the one place it is defined)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def smooth_l1_loss(
    pred: Tensor,
    target: Tensor,
    inside_weights: Tensor,
    outside_weights: Tensor,
    sigma: float = 1.0,
    sum_dims: Sequence[int] = (1,),
) -> Tensor:
    """The reference ``_smooth_l1_loss``: weighted smooth-L1, summed over ``sum_dims``, then
    averaged over what is left.

    With ``d = inside_weights * (pred - target)`` and ``s = sigma ** 2`` the element loss is
    ``0.5 * s * d**2`` where ``|d| < 1 / s`` and ``|d| - 0.5 / s`` elsewhere, multiplied by
    ``outside_weights``.  The RPN uses ``sigma=3`` on ``(B, N, 4)`` tensors with
    ``sum_dims=(1, 2)`` (sum over anchors and coordinates, mean over images); the RoI head
    ``sigma=1`` on ``(K, 4)`` with ``sum_dims=(1,)`` (sum over coordinates, mean over RoIs).

    Args:
        pred, target, inside_weights, outside_weights: tensors of one shape.
        sigma: transition point ``1 / sigma**2`` between the quadratic and linear parts.
        sum_dims: dimensions summed before the mean.

    Returns:
        A scalar tensor.
    """
    sigma2 = sigma * sigma
    diff = inside_weights * (pred - target)
    abs_diff = diff.abs()
    loss = torch.where(abs_diff < 1.0 / sigma2, 0.5 * sigma2 * diff * diff, abs_diff - 0.5 / sigma2)
    return (outside_weights * loss).sum(dim=tuple(sum_dims)).mean()
