"""RPN training targets: anchor labels, regression targets and loss weights.

Boxes use the +1 convention (width = x2 - x1 + 1).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.rpn.boxes import box_iou, encode_boxes
from fasterrcnn.rpn.sampling import select_random, uniform_keys

ANCHOR_STREAM = 0
"""The :func:`~fasterrcnn.rpn.sampling.uniform_keys` stream of the anchor sampling."""


class RPNTargets(NamedTuple):
    """Targets of the RPN losses for ``N`` anchors of ``B`` images.

    labels: ``(B, N)`` int64, 1 fg, 0 bg, -1 ignored.
    bbox_targets: ``(B, N, 4)`` deltas from each anchor to its best gt (zero on non-fg anchors).
    bbox_inside_weights: ``(B, N, 4)`` ``TRAIN.RPN_BBOX_INSIDE_WEIGHTS`` on fg anchors, else 0.
    bbox_outside_weights: ``(B, N, 4)`` per-example normalisation on fg and bg anchors, else 0.
    """

    labels: Tensor
    bbox_targets: Tensor
    bbox_inside_weights: Tensor
    bbox_outside_weights: Tensor


class AnchorTargetLayer(nn.Module):
    """Assign anchors to ground truth and sample the RPN minibatch (no parameters).

    As py-faster-rcnn / faster-rcnn.pytorch ``AnchorTargetLayer``:

    * only anchors inside their image (by ``TRAIN.RPN_ALLOWED_BORDER`` pixels at most) take part;
      the others get label -1 and zero targets and weights;
    * IoU (+1 convention) with the first ``num_boxes[b]`` gt boxes of image ``b``;
    * bg where the best IoU < ``RPN_NEGATIVE_OVERLAP``; fg for every anchor that ties a gt's best
      IoU (gts whose best IoU is 0 are skipped) and where the best IoU >= ``RPN_POSITIVE_OVERLAP``;
      with ``RPN_CLOBBER_POSITIVES`` the bg rule is applied last and wins;
    * at most ``int(RPN_FG_FRACTION * RPN_BATCHSIZE)`` fg, then at most ``RPN_BATCHSIZE - num_fg``
      bg (num_fg counted after the fg subsampling, as py-faster-rcnn); the kept ones are a
      uniformly random subset (the reference disables a random permutation's first excess
      entries, the same distribution), chosen as the largest of ``(B, 2, N)`` random keys of the
      given seed (:mod:`fasterrcnn.rpn.sampling`; image ``b``'s keys do not depend on ``B``);
    * outside weights ``1 / (number of sampled fg + bg)`` of the image when
      ``RPN_POSITIVE_WEIGHT < 0``, else ``p / num_fg`` on fg and ``(1 - p) / num_bg`` on bg.

    An image without gt boxes has every inside anchor as a bg candidate.  Regression targets are
    zeroed on non-fg anchors (their weights are zero anyway).  The inside test uses each image's
    own ``im_info`` row (the reference uses the first image's for the whole batch).
    """

    def __init__(
        self,
        *,
        positive_overlap: float = 0.7,
        negative_overlap: float = 0.3,
        clobber_positives: bool = False,
        fg_fraction: float = 0.5,
        batch_size: int = 256,
        inside_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        positive_weight: float = -1.0,
        allowed_border: int = 0,
    ) -> None:
        """Arguments as the ``TRAIN.RPN_*`` options of the same names (see :meth:`from_config`)."""
        super().__init__()
        if positive_weight >= 0 and not 0 < positive_weight < 1:
            raise ValueError(
                f"TRAIN.RPN_POSITIVE_WEIGHT must be negative or in (0, 1), got {positive_weight}"
            )
        self.positive_overlap = positive_overlap
        self.negative_overlap = negative_overlap
        self.clobber_positives = clobber_positives
        self.num_fg = int(fg_fraction * batch_size)
        self.batch_size = batch_size
        self.inside_weights = tuple(inside_weights)
        self.positive_weight = positive_weight
        self.allowed_border = allowed_border

    @classmethod
    def from_config(cls, cfg: Config) -> AnchorTargetLayer:
        """The layer with the ``cfg.TRAIN.RPN_*`` numbers."""
        train = cfg.TRAIN
        return cls(
            positive_overlap=train.RPN_POSITIVE_OVERLAP,
            negative_overlap=train.RPN_NEGATIVE_OVERLAP,
            clobber_positives=train.RPN_CLOBBER_POSITIVES,
            fg_fraction=train.RPN_FG_FRACTION,
            batch_size=train.RPN_BATCHSIZE,
            inside_weights=train.RPN_BBOX_INSIDE_WEIGHTS,
            positive_weight=train.RPN_POSITIVE_WEIGHT,
            allowed_border=train.RPN_ALLOWED_BORDER,
        )

    def forward(
        self,
        anchors: Tensor,
        gt_boxes: Tensor,
        im_info: Tensor,
        num_boxes: Tensor,
        seed: Tensor,
    ) -> RPNTargets:
        """Compute the targets.

        Args:
            anchors: ``(N, 4)`` all anchors of the feature map (+1 convention).
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]``, zero rows after ``num_boxes[b]``.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            num_boxes: ``(B,)`` number of valid gt rows per image.
            seed: 0-dim int64 sampling seed (:func:`fasterrcnn.rpn.sampling.draw_seed`).

        Returns:
            :class:`RPNTargets` on the device of ``gt_boxes``, boxes in its dtype.
        """
        device, dtype = gt_boxes.device, gt_boxes.dtype
        batch, num_gt = gt_boxes.shape[0], gt_boxes.shape[1]
        anchors = anchors.to(device=device, dtype=dtype)
        if num_gt == 0:
            gt_boxes = gt_boxes.new_zeros(batch, 1, gt_boxes.shape[2])
            num_gt = 1
        gt = gt_boxes[..., :4]
        border = self.allowed_border
        height = im_info[:, 0].to(device=device, dtype=dtype).view(-1, 1)
        width = im_info[:, 1].to(device=device, dtype=dtype).view(-1, 1)
        inside = (
            (anchors[:, 0] >= -border)
            & (anchors[:, 1] >= -border)
            & (anchors[:, 2] < width + border)
            & (anchors[:, 3] < height + border)
        )
        valid_gt = torch.arange(num_gt, device=device) < num_boxes.to(device).view(-1, 1)

        overlaps = box_iou(anchors, gt)
        overlaps = overlaps.masked_fill(~valid_gt.unsqueeze(1), 0.0)
        overlaps = overlaps.masked_fill(~inside.unsqueeze(2), 0.0)
        max_overlaps, argmax = overlaps.max(dim=2)
        gt_max = overlaps.max(dim=1).values
        best_of_gt = ((overlaps == gt_max.unsqueeze(1)) & (gt_max > 0).unsqueeze(1)).any(dim=2)

        negative = inside & (max_overlaps < self.negative_overlap)
        positive = inside & (best_of_gt | (max_overlaps >= self.positive_overlap))
        if self.clobber_positives:
            positive = positive & ~negative
        labels = torch.where(positive, 1, torch.where(negative, 0, -1))

        keys = uniform_keys(seed.to(device), ANCHOR_STREAM, (batch, 2, anchors.shape[0]))
        fg_candidates = labels == 1
        kept_fg = select_random(fg_candidates, self.num_fg, keys[:, 0], self.num_fg)
        labels = torch.where(fg_candidates & ~kept_fg, -1, labels)
        bg_candidates = labels == 0
        bg_quota = self.batch_size - kept_fg.sum(dim=1)
        kept_bg = select_random(bg_candidates, bg_quota, keys[:, 1], self.batch_size)
        labels = torch.where(bg_candidates & ~kept_bg, -1, labels)

        fg = labels == 1
        bg = labels == 0
        best_gt = torch.gather(gt, 1, argmax.unsqueeze(2).expand(-1, -1, 4))
        bbox_targets = torch.where(fg.unsqueeze(2), encode_boxes(anchors, best_gt), 0.0)

        inside_w = torch.tensor(self.inside_weights, dtype=dtype, device=device)
        bbox_inside_weights = fg.unsqueeze(2) * inside_w

        fg_count = fg.sum(dim=1, keepdim=True).to(dtype)
        bg_count = bg.sum(dim=1, keepdim=True).to(dtype)
        if self.positive_weight < 0:
            pos_w = neg_w = 1.0 / (fg_count + bg_count).clamp(min=1)
        else:
            pos_w = self.positive_weight / fg_count.clamp(min=1)
            neg_w = (1.0 - self.positive_weight) / bg_count.clamp(min=1)
        outside = fg * pos_w + bg * neg_w
        bbox_outside_weights = outside.unsqueeze(2).expand(-1, -1, 4).contiguous()
        return RPNTargets(labels, bbox_targets, bbox_inside_weights, bbox_outside_weights)
