"""Fast R-CNN training targets: sample RoIs among the proposals and the gt boxes.

Boxes use the +1 convention (width = x2 - x1 + 1).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.rpn.boxes import box_iou, encode_boxes


def _choose(pool: Tensor, count: int, replace: bool, generator: torch.Generator) -> Tensor:
    """``count`` random entries of the 1-D index tensor ``pool``, with or without replacement."""
    if count <= 0 or pool.numel() == 0:
        return pool[:0]
    if replace:
        picks = torch.randint(pool.numel(), (count,), generator=generator)
    else:
        picks = torch.randperm(pool.numel(), generator=generator)[:count]
    return pool[picks.to(pool.device)]


class ProposalTargetLayer(nn.Module):
    """Sample ``TRAIN.BATCH_SIZE`` RoIs per image and their Fast R-CNN targets (no parameters).

    As faster-rcnn.pytorch's ``_ProposalTargetLayer``: the valid gt boxes of each image join its
    ``num_rois[b]`` valid proposals as candidates; each candidate takes the gt of highest IoU
    (+1 convention).  fg: IoU >= ``FG_THRESH``; bg: ``BG_THRESH_LO <= IoU < BG_THRESH_HI``.  With
    ``q = round(FG_FRACTION * BATCH_SIZE)`` and ``R = BATCH_SIZE``:

    * fg and bg candidates: ``min(q, n_fg)`` fg without replacement, the rest bg, without
      replacement when there are enough bg candidates, with replacement otherwise;
    * only fg: ``R`` fg with replacement; only bg: ``R`` bg with replacement;
    * neither (possible when ``BG_THRESH_LO > 0``; the reference raises): ``R`` of all valid
      candidates, with replacement, labelled bg.  An image with no candidates at all gives
      ``R`` rows ``[b, 0, 0, 0, 0]`` labelled bg.

    An image without gt boxes has IoU 0 everywhere, so all its RoIs are bg.  Rows hold the fg
    RoIs first, then the bg ones.  Randomness comes only from the given CPU generator.
    """

    def __init__(self, cfg: Config, num_classes: int) -> None:
        super().__init__()
        train = cfg.TRAIN
        self.num_classes = num_classes
        self.rois_per_image = train.BATCH_SIZE
        self.fg_per_image = int(round(train.FG_FRACTION * train.BATCH_SIZE))
        self.fg_thresh = train.FG_THRESH
        self.bg_thresh_hi = train.BG_THRESH_HI
        self.bg_thresh_lo = train.BG_THRESH_LO
        self.normalize = train.BBOX_NORMALIZE_TARGETS_PRECOMPUTED
        self.means = tuple(train.BBOX_NORMALIZE_MEANS)
        self.stds = tuple(train.BBOX_NORMALIZE_STDS)
        self.inside_weights = tuple(train.BBOX_INSIDE_WEIGHTS)

    def _sample(
        self, fg: Tensor, bg: Tensor, valid: Tensor, generator: torch.Generator
    ) -> Tuple[Tensor, Tensor]:
        """Indices of the fg and bg rows of one image from its 1-D candidate masks."""
        fg_pool = torch.nonzero(fg).view(-1)
        bg_pool = torch.nonzero(bg).view(-1)
        rois = self.rois_per_image
        if fg_pool.numel() > 0 and bg_pool.numel() > 0:
            fg_inds = _choose(fg_pool, min(self.fg_per_image, fg_pool.numel()), False, generator)
            num_bg = rois - fg_inds.numel()
            bg_inds = _choose(bg_pool, num_bg, bg_pool.numel() < num_bg, generator)
        elif fg_pool.numel() > 0:
            fg_inds, bg_inds = _choose(fg_pool, rois, True, generator), bg_pool
        elif bg_pool.numel() > 0:
            fg_inds, bg_inds = fg_pool, _choose(bg_pool, rois, True, generator)
        else:
            any_pool = torch.nonzero(valid).view(-1)
            fg_inds, bg_inds = fg_pool, _choose(any_pool, rois, True, generator)
        return fg_inds, bg_inds

    def forward(
        self,
        rois: Tensor,
        num_rois: Tensor,
        gt_boxes: Tensor,
        num_boxes: Tensor,
        generator: torch.Generator,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Sample the RoIs.

        Args:
            rois: ``(B, P, 5)`` proposals ``[b, x1, y1, x2, y2]``, valid rows first.
            num_rois: ``(B,)`` number of valid proposals per image.
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]``, zero rows after ``num_boxes[b]``.
            num_boxes: ``(B,)`` number of valid gt rows per image.
            generator: CPU generator for the sampling.

        Returns:
            rois ``(B, R, 5)`` with ``rois[b, :, 0] == b``; labels ``(B, R)`` int64 (gt class on
            fg rows, 0 on bg rows); bbox_targets ``(B, R, 4)`` ``(encode(roi, gt) - MEANS) / STDS``
            (unnormalised without ``BBOX_NORMALIZE_TARGETS_PRECOMPUTED``) on fg rows, 0 elsewhere;
            bbox_inside_weights ``(B, R, 4)`` ``BBOX_INSIDE_WEIGHTS`` on fg rows, 0 elsewhere;
            bbox_outside_weights ``(B, R, 4)`` ``(inside > 0)``.  ``R = TRAIN.BATCH_SIZE``.
        """
        device, dtype = rois.device, rois.dtype
        batch, num_props = rois.shape[0], rois.shape[1]
        if gt_boxes.shape[1] == 0:
            gt_boxes = gt_boxes.new_zeros(batch, 1, gt_boxes.shape[2])
            num_boxes = torch.zeros_like(num_boxes)
        num_gt = gt_boxes.shape[1]
        gt = gt_boxes[..., :4].to(dtype)
        valid_gt = torch.arange(num_gt, device=device) < num_boxes.to(device).view(-1, 1)
        valid_roi = torch.arange(num_props, device=device) < num_rois.to(device).view(-1, 1)

        candidates = torch.cat((rois[..., 1:5], gt), dim=1)
        valid = torch.cat((valid_roi, valid_gt), dim=1)
        overlaps = box_iou(candidates, gt).masked_fill(~valid_gt.unsqueeze(1), 0.0)
        max_overlaps, assignment = overlaps.max(dim=2)
        fg = valid & (max_overlaps >= self.fg_thresh)
        bg = valid & (max_overlaps < self.bg_thresh_hi) & (max_overlaps >= self.bg_thresh_lo)

        keep = torch.zeros(batch, self.rois_per_image, dtype=torch.int64, device=device)
        is_fg = torch.zeros(batch, self.rois_per_image, dtype=torch.bool, device=device)
        has_row = torch.zeros(batch, self.rois_per_image, dtype=torch.bool, device=device)
        for b in range(batch):
            fg_inds, bg_inds = self._sample(fg[b], bg[b], valid[b], generator)
            inds = torch.cat((fg_inds, bg_inds))
            keep[b, : inds.numel()] = inds
            is_fg[b, : fg_inds.numel()] = True
            has_row[b, : inds.numel()] = True

        boxes = torch.gather(candidates, 1, keep.unsqueeze(2).expand(-1, -1, 4))
        boxes = torch.where(has_row.unsqueeze(2), boxes, 0.0)
        gt_inds = torch.gather(assignment, 1, keep)
        assigned = torch.gather(gt_boxes.to(dtype), 1, gt_inds.unsqueeze(2).expand(-1, -1, 5))
        labels = torch.where(is_fg, assigned[..., 4].round().long(), 0)

        targets = encode_boxes(boxes, assigned[..., :4])
        if self.normalize:
            means = torch.tensor(self.means, dtype=dtype, device=device)
            stds = torch.tensor(self.stds, dtype=dtype, device=device)
            targets = (targets - means) / stds
        bbox_targets = torch.where(is_fg.unsqueeze(2), targets, 0.0)
        inside_w = torch.tensor(self.inside_weights, dtype=dtype, device=device)
        bbox_inside_weights = is_fg.unsqueeze(2) * inside_w
        bbox_outside_weights = (bbox_inside_weights > 0).to(dtype)

        batch_index = torch.arange(batch, device=device, dtype=dtype).view(-1, 1, 1)
        out_rois = torch.cat((batch_index.expand(-1, self.rois_per_image, 1), boxes), dim=2)
        return out_rois, labels, bbox_targets, bbox_inside_weights, bbox_outside_weights
