"""Fast R-CNN training targets: sample RoIs among the proposals and the gt boxes.

Boxes use the +1 convention (width = x2 - x1 + 1).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.rpn.boxes import box_iou, encode_boxes
from fasterrcnn.rpn.sampling import draw_with_replacement, ordered_random, uniform_keys

ROI_STREAM = 1
"""The :func:`~fasterrcnn.rpn.sampling.uniform_keys` stream of the RoI sampling."""


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
    RoIs first, then the bg ones.  Randomness comes only from the given seed: one block of
    ``(B, 2, C + R)`` uniforms per call (``C`` candidates per image; see
    :mod:`fasterrcnn.rpn.sampling`);
    subsets without replacement are the candidates of largest random key, draws with
    replacement pick the ``floor(u * n)``-th of ``n`` candidates.  The whole layer runs on the
    device of its inputs with fixed shapes (no host synchronisation).
    """

    def __init__(
        self,
        *,
        batch_size: int = 128,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        bg_thresh_hi: float = 0.5,
        bg_thresh_lo: float = 0.1,
        normalize_targets: bool = True,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
        inside_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    ) -> None:
        """Arguments as the ``TRAIN`` options ``BATCH_SIZE``, ``FG_FRACTION``, ``FG_THRESH``,
        ``BG_THRESH_HI``, ``BG_THRESH_LO``, ``BBOX_NORMALIZE_TARGETS_PRECOMPUTED``,
        ``BBOX_NORMALIZE_MEANS``, ``BBOX_NORMALIZE_STDS``, ``BBOX_INSIDE_WEIGHTS``."""
        super().__init__()
        self.rois_per_image = batch_size
        self.fg_per_image = int(round(fg_fraction * batch_size))
        self.fg_thresh = fg_thresh
        self.bg_thresh_hi = bg_thresh_hi
        self.bg_thresh_lo = bg_thresh_lo
        self.normalize = normalize_targets
        self.means = tuple(means)
        self.stds = tuple(stds)
        self.inside_weights = tuple(inside_weights)

    @classmethod
    def from_config(cls, cfg: Config) -> ProposalTargetLayer:
        """The layer with the ``cfg.TRAIN`` numbers."""
        train = cfg.TRAIN
        return cls(
            batch_size=train.BATCH_SIZE,
            fg_fraction=train.FG_FRACTION,
            fg_thresh=train.FG_THRESH,
            bg_thresh_hi=train.BG_THRESH_HI,
            bg_thresh_lo=train.BG_THRESH_LO,
            normalize_targets=train.BBOX_NORMALIZE_TARGETS_PRECOMPUTED,
            means=train.BBOX_NORMALIZE_MEANS,
            stds=train.BBOX_NORMALIZE_STDS,
            inside_weights=train.BBOX_INSIDE_WEIGHTS,
        )

    def _sample(
        self, fg: Tensor, bg: Tensor, valid: Tensor, seed: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Candidate index ``(B, R)`` of every output row, its fg flag and whether it exists.

        ``fg``, ``bg``, ``valid``: ``(B, C)`` candidate masks.
        """
        batch, num_cand = fg.shape
        rois, quota = self.rois_per_image, self.fg_per_image
        draws = uniform_keys(seed.to(fg.device), ROI_STREAM, (batch, 2, num_cand + rois))
        fg_keys, fg_uniforms = draws[:, 0, :num_cand], draws[:, 0, num_cand:]
        bg_keys, bg_uniforms = draws[:, 1, :num_cand], draws[:, 1, num_cand:]
        n_fg = fg.sum(dim=1, keepdim=True)
        n_bg = bg.sum(dim=1, keepdim=True)
        both = (n_fg > 0) & (n_bg > 0)
        num_fg_rows = torch.where(both, n_fg.clamp(max=quota), torch.where(n_fg > 0, rois, 0))
        # Neither fg nor bg: every valid candidate is a bg candidate.
        bg_pool = torch.where((n_fg == 0) & (n_bg == 0), valid, bg)
        n_pool = bg_pool.sum(dim=1, keepdim=True)
        bg_distinct = both & (n_bg >= rois - num_fg_rows)

        row = torch.arange(rois, device=fg.device).view(1, -1)
        fg_distinct_idx = _pad_columns(ordered_random(fg, fg_keys, quota), rois)
        fg_idx = torch.where(both, fg_distinct_idx, draw_with_replacement(fg, fg_uniforms))
        bg_row = (row - num_fg_rows).clamp(min=0)
        bg_distinct_idx = torch.gather(
            _pad_columns(ordered_random(bg_pool, bg_keys, rois), rois), 1, bg_row
        )
        bg_idx = torch.where(
            bg_distinct, bg_distinct_idx, draw_with_replacement(bg_pool, bg_uniforms)
        )
        is_fg = row < num_fg_rows
        has_row = is_fg | (n_pool > 0)
        return torch.where(is_fg, fg_idx, bg_idx), is_fg, has_row

    def forward(
        self,
        rois: Tensor,
        num_rois: Tensor,
        gt_boxes: Tensor,
        num_boxes: Tensor,
        seed: Tensor,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Sample the RoIs.

        Args:
            rois: ``(B, P, 5)`` proposals ``[b, x1, y1, x2, y2]``, valid rows first.
            num_rois: ``(B,)`` number of valid proposals per image.
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]``, zero rows after ``num_boxes[b]``.
            num_boxes: ``(B,)`` number of valid gt rows per image.
            seed: 0-dim int64 sampling seed (:func:`fasterrcnn.rpn.sampling.draw_seed`).

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

        keep, is_fg, has_row = self._sample(fg, bg, valid, seed)

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


def _pad_columns(index: Tensor, width: int) -> Tensor:
    """``(B, k)`` -> ``(B, width)`` (``k <= width``), zero columns appended."""
    return torch.nn.functional.pad(index, (0, width - index.shape[1]))
