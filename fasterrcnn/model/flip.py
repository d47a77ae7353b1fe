"""Horizontal-flip test-time augmentation (``TEST.FLIP``).

The detector runs on the images and on their mirror images; the mirrored pass's RoIs and box
deltas are mapped back into the original frame and both passes' rows go to the usual per-class
NMS (and box voting) together, as one set of ``2P`` scored proposals per image.

Mirroring follows the +1 box convention of the reference's flipped roidb: in an image ``w``
pixels wide, column ``x`` becomes ``w - 1 - x``, so a box ``(x1, x2)`` becomes
``(w - 1 - x2, w - 1 - x1)``.  Images of a padded batch are mirrored within their own width
(``im_info[b, 1]``): the padding stays on the right.  No host synchronisation: the fixed-shape
inference path (``torch.compile``, ``torch.export``) keeps its shapes, with twice the proposals.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor


def mirror_images(im_data: Tensor, im_info: Tensor) -> Tensor:
    """Each image mirrored left-right within its own width.

    Args:
        im_data: ``(B, C, H, W)``; image ``b`` fills columns ``[0, im_info[b, 1])``.
        im_info: ``(B, 3)`` ``[height, width, scale]``.

    Returns:
        ``(B, C, H, W)``: column ``x < w_b`` holds column ``w_b - 1 - x``; padding unchanged.
    """
    batch, width = im_data.shape[0], im_data.shape[3]
    columns = torch.arange(width, device=im_data.device).view(1, -1)
    image_width = im_info[:, 1].round().to(torch.int64).view(-1, 1)
    source = torch.where(columns < image_width, image_width - 1 - columns, columns)
    return im_data.gather(3, source.view(batch, 1, 1, width).expand_as(im_data))


def unmirror_outputs(
    rois: Tensor,
    cls_prob: Tensor,
    bbox_pred: Tensor,
    im_info: Tensor,
    unnormalize: bool,
    means: Sequence[float],
    stds: Sequence[float],
) -> Tuple[Tensor, Tensor]:
    """The eval outputs of a pass over mirrored images, in the original images' frame.

    A RoI ``(x1, x2)`` becomes ``(w - 1 - x2, w - 1 - x1)`` and every class's horizontal
    centre delta changes sign (in un-normalised units: ``d * std + mean`` -> its negative, so
    the normalised delta becomes ``-d - 2 * mean / std`` when ``unnormalize``); widths, heights
    and the vertical deltas are unchanged, so the decoded box is the mirror of the mirrored
    pass's box.  Padded rows (all-zero ``cls_prob``) stay zero.

    Args:
        rois: ``(B, P, 5)`` ``[b, x1, y1, x2, y2]``; cls_prob: ``(B, P, num_classes)``;
            bbox_pred: ``(B, P, 4 * k)`` normalised deltas (``k`` = 1 or num_classes).
        im_info: ``(B, 3)``; unnormalize, means, stds: as :class:`DetectionSettings`.

    Returns:
        ``rois (B, P, 5)``, ``bbox_pred (B, P, 4 * k)``.
    """
    last = (im_info[:, 1] - 1).to(rois.dtype).view(-1, 1)
    real = (cls_prob.sum(dim=2) > 0).unsqueeze(2)
    mirrored = torch.stack(
        (rois[..., 0], last - rois[..., 3], rois[..., 2], last - rois[..., 1], rois[..., 4]),
        dim=2,
    )
    deltas = bbox_pred.unflatten(-1, (-1, 4))
    shift = 2.0 * means[0] / stds[0] if unnormalize else 0.0
    deltas = torch.cat((-deltas[..., :1] - shift, deltas[..., 1:]), dim=-1)
    return (
        torch.where(real, mirrored, rois),
        torch.where(real, deltas.flatten(2), bbox_pred),
    )
