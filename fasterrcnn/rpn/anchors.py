"""Reference anchors: the base set of one feature-map cell and its shifts over the whole map.

Boxes use the +1 convention (width = x2 - x1 + 1).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _centred(ws: Tensor, hs: Tensor, cx: float, cy: float) -> Tensor:
    """Boxes ``(n, 4)`` of widths ``ws`` and heights ``hs`` (+1 convention) around ``(cx, cy)``."""
    return torch.stack(
        (cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1), cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)), dim=1
    )


def generate_anchors(
    base_size: int = 16,
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    scales: Sequence[float] = (8.0, 16.0, 32.0),
) -> Tensor:
    """The reference base anchors around the cell ``[0, 0, base_size - 1, base_size - 1]``.

    For each ratio ``r`` (height / width) in order, the base cell is reshaped to keep its area:
    ``w = round(sqrt(base_size**2 / r))``, ``h = round(w * r)`` (round half to even, as numpy), then
    for each scale ``s`` in order the box ``s*w x s*h`` is centred on the cell centre
    ``(base_size - 1) / 2``.  Row ``i * len(scales) + j`` holds ratio ``i``, scale ``j``.

    Returns:
        ``(len(ratios) * len(scales), 4)`` float32 boxes, +1 convention.  The defaults give the
        9 anchors of py-faster-rcnn, ``[-84, -40, 99, 55]`` first.
    """
    ratios_t = torch.tensor(ratios, dtype=torch.float64)
    scales_t = torch.tensor(scales, dtype=torch.float64)
    ctr = 0.5 * (base_size - 1)
    ws = torch.round(torch.sqrt(base_size * base_size / ratios_t))
    hs = torch.round(ws * ratios_t)
    anchors = _centred(
        (ws[:, None] * scales_t[None, :]).reshape(-1),
        (hs[:, None] * scales_t[None, :]).reshape(-1),
        ctr,
        ctr,
    )
    return anchors.to(torch.float32)


def shift_anchors(
    base_anchors: Tensor, feat_height: int, feat_width: int, feat_stride: int
) -> Tensor:
    """All anchors of a feature map: the base anchors shifted to every cell.

    Args:
        base_anchors: ``(A, 4)`` anchors of the cell at the origin (+1 convention).
        feat_height, feat_width: feature map size.
        feat_stride: image pixels per feature cell.

    Returns:
        ``(feat_height * feat_width * A, 4)`` anchors on the device and dtype of ``base_anchors``;
        row ``(y * feat_width + x) * A + a`` is anchor ``a`` shifted by
        ``(x * feat_stride, y * feat_stride)``.
    """
    dev, dt = base_anchors.device, base_anchors.dtype
    sx = torch.arange(feat_width, device=dev, dtype=dt) * feat_stride
    sy = torch.arange(feat_height, device=dev, dtype=dt) * feat_stride
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
    return (shifts + base_anchors.unsqueeze(0)).reshape(-1, 4)
