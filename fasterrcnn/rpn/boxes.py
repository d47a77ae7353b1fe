"""Box maths of the model: IoU, regression encoding and decoding, clipping.

This is the one module for model-level box maths.  Every function uses the reference's +1 pixel
convention: a box ``[x1, y1, x2, y2]`` covers the pixels ``x1..x2`` and ``y1..y2`` inclusive, so
its width is ``x2 - x1 + 1`` and its centre ``x1 + 0.5 * width``.  All functions work on any
floating dtype and device, and broadcast over leading dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)
"""Largest dw / dh applied by :func:`decode_boxes`: exp() of larger values would overflow."""


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``(x2 - x1 + 1) * (y2 - y1 + 1)`` (+1 convention): ``(..., 4)`` -> ``(...)``."""
    return (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)


def _is_padding(boxes: Tensor) -> Tensor:
    """True for degenerate boxes with ``x2 <= x1`` and ``y2 <= y1`` (the zero padding rows)."""
    return (boxes[..., 2] <= boxes[..., 0]) & (boxes[..., 3] <= boxes[..., 1])


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise intersection over union, +1 convention.

    Args:
        boxes_a: ``(..., N, 4)``.
        boxes_b: ``(..., M, 4)``; leading dimensions broadcast against those of ``boxes_a``.

    Returns:
        ``(..., N, M)`` IoU.  A degenerate box (``x2 <= x1`` and ``y2 <= y1``, which includes the
        all-zero padding rows of ``gt_boxes``) in either argument gives IoU 0, as the reference
        masks zero-size gt boxes; this also treats a genuine one-pixel box as padding.
    """
    a = boxes_a.unsqueeze(-2)
    b = boxes_b.unsqueeze(-3)
    iw = torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + 1
    ih = torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1]) + 1
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = box_area(boxes_a).unsqueeze(-1) + box_area(boxes_b).unsqueeze(-2) - inter
    iou = inter / union.clamp(min=torch.finfo(inter.dtype).tiny)
    padding = _is_padding(boxes_a).unsqueeze(-1) | _is_padding(boxes_b).unsqueeze(-2)
    return iou.masked_fill(padding, 0.0)


def encode_boxes(ex_rois: Tensor, gt_rois: Tensor) -> Tensor:
    """Regression targets ``(dx, dy, dw, dh)`` taking ``ex_rois`` onto ``gt_rois`` (+1 convention).

    ``dx = (gx - ex) / ew``, ``dw = log(gw / ew)`` with centres ``x1 + 0.5 * w`` and widths
    ``x2 - x1 + 1`` (the reference ``bbox_transform``).

    Args:
        ex_rois: ``(..., 4)`` source boxes (anchors or RoIs).
        gt_rois: ``(..., 4)`` target boxes; broadcasts against ``ex_rois``.

    Returns:
        ``(..., 4)`` deltas.
    """
    ex_w = ex_rois[..., 2] - ex_rois[..., 0] + 1
    ex_h = ex_rois[..., 3] - ex_rois[..., 1] + 1
    ex_cx = ex_rois[..., 0] + 0.5 * ex_w
    ex_cy = ex_rois[..., 1] + 0.5 * ex_h
    gt_w = gt_rois[..., 2] - gt_rois[..., 0] + 1
    gt_h = gt_rois[..., 3] - gt_rois[..., 1] + 1
    gt_cx = gt_rois[..., 0] + 0.5 * gt_w
    gt_cy = gt_rois[..., 1] + 0.5 * gt_h
    return torch.stack(
        (
            (gt_cx - ex_cx) / ex_w,
            (gt_cy - ex_cy) / ex_h,
            torch.log(gt_w / ex_w),
            torch.log(gt_h / ex_h),
        ),
        dim=-1,
    )


def decode_boxes(boxes: Tensor, deltas: Tensor) -> Tensor:
    """Apply regression deltas to boxes: the reference ``bbox_transform_inv``.

    With ``w = x2 - x1 + 1``, ``cx = x1 + 0.5 * w`` (+1 convention), ``pcx = dx * w + cx`` and
    ``pw = exp(dw) * w``, the output is ``[pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw,
    pcy + 0.5 * ph]``.  Exactly as faster-rcnn.pytorch (and py-faster-rcnn), NO ``- 1`` is applied
    to ``x2`` / ``y2``: zero deltas map ``[x1, y1, x2, y2]`` to ``[x1, y1, x2 + 1, y2 + 1]``, and
    ``decode_boxes(a, encode_boxes(a, g)) == g + [0, 0, 1, 1]``.  ``dw`` and ``dh`` are clamped
    to at most ``log(1000 / 16)`` before ``exp`` so that no box becomes infinite.

    Args:
        boxes: ``(..., 4)`` source boxes (anchors or RoIs).
        deltas: ``(..., 4 * k)`` deltas, ``k`` sets of ``(dx, dy, dw, dh)`` per box (e.g. one per
            class); leading dimensions broadcast against those of ``boxes``.

    Returns:
        ``(..., 4 * k)`` decoded boxes, in the layout of ``deltas``.
    """
    w = (boxes[..., 2] - boxes[..., 0] + 1).unsqueeze(-1)
    h = (boxes[..., 3] - boxes[..., 1] + 1).unsqueeze(-1)
    cx = boxes[..., 0].unsqueeze(-1) + 0.5 * w
    cy = boxes[..., 1].unsqueeze(-1) + 0.5 * h
    d = deltas.unflatten(-1, (-1, 4))
    pcx = d[..., 0] * w + cx
    pcy = d[..., 1] * h + cy
    pw = torch.exp(d[..., 2].clamp(max=BBOX_XFORM_CLIP)) * w
    ph = torch.exp(d[..., 3].clamp(max=BBOX_XFORM_CLIP)) * h
    out = torch.stack((pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph), dim=-1)
    return out.flatten(-2)


def clip_boxes(boxes: Tensor, im_info: Tensor) -> Tensor:
    """Clip boxes to their image: x to ``[0, width - 1]``, y to ``[0, height - 1]`` (+1 convention).

    Args:
        boxes: ``(B, ..., 4 * k)`` boxes of image ``b`` in ``boxes[b]``.
        im_info: ``(B, 3)`` rows ``[height, width, scale]``.

    Returns:
        A new tensor shaped like ``boxes``.
    """
    shape = (boxes.shape[0],) + (1,) * (boxes.dim() - 1)
    x_max = (im_info[:, 1] - 1).to(device=boxes.device, dtype=boxes.dtype).view(shape)
    y_max = (im_info[:, 0] - 1).to(device=boxes.device, dtype=boxes.dtype).view(shape)
    b = boxes.unflatten(-1, (-1, 4))
    zero = torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    xs = torch.minimum(torch.maximum(b[..., 0::2], zero), x_max.unsqueeze(-1))
    ys = torch.minimum(torch.maximum(b[..., 1::2], zero), y_max.unsqueeze(-1))
    out = torch.stack((xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]), dim=-1)
    return out.flatten(-2)
