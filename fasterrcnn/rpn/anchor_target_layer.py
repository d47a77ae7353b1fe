"""RPN training targets: anchor labels, regression targets and loss weights.

Boxes use the +1 convention (width = x2 - x1 + 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.rpn.boxes import box_iou, encode_boxes


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


def _disable_random(labels: Tensor, value: int, keep: int, generator: torch.Generator) -> None:
    """Set all but ``keep`` randomly chosen entries equal to ``value`` of 1-D ``labels`` to -1."""
    inds = torch.nonzero(labels == value).view(-1)
    excess = inds.numel() - keep
    if excess > 0:
        perm = torch.randperm(inds.numel(), generator=generator).to(inds.device)
        labels[inds[perm[:excess]]] = -1


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
      bg (num_fg counted after the fg subsampling, as py-faster-rcnn), disabled at random with
      ``torch.randperm`` drawing from the given CPU generator;
    * outside weights ``1 / (number of sampled fg + bg)`` of the image when
      ``RPN_POSITIVE_WEIGHT < 0``, else ``p / num_fg`` on fg and ``(1 - p) / num_bg`` on bg.

    An image without gt boxes has every inside anchor as a bg candidate.  Regression targets are
    zeroed on non-fg anchors (their weights are zero anyway).  The inside test uses each image's
    own ``im_info`` row (the reference uses the first image's for the whole batch).
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        train = cfg.TRAIN
        if train.RPN_POSITIVE_WEIGHT >= 0 and not 0 < train.RPN_POSITIVE_WEIGHT < 1:
            raise ValueError(
                "TRAIN.RPN_POSITIVE_WEIGHT must be negative or in (0, 1), "
                f"got {train.RPN_POSITIVE_WEIGHT}"
            )
        self.positive_overlap = train.RPN_POSITIVE_OVERLAP
        self.negative_overlap = train.RPN_NEGATIVE_OVERLAP
        self.clobber_positives = train.RPN_CLOBBER_POSITIVES
        self.num_fg = int(train.RPN_FG_FRACTION * train.RPN_BATCHSIZE)
        self.batch_size = train.RPN_BATCHSIZE
        self.inside_weights = tuple(train.RPN_BBOX_INSIDE_WEIGHTS)
        self.positive_weight = train.RPN_POSITIVE_WEIGHT
        self.allowed_border = train.RPN_ALLOWED_BORDER

    def forward(
        self,
        anchors: Tensor,
        gt_boxes: Tensor,
        im_info: Tensor,
        num_boxes: Tensor,
        generator: torch.Generator,
    ) -> RPNTargets:
        """Compute the targets.

        Args:
            anchors: ``(N, 4)`` all anchors of the feature map (+1 convention).
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]``, zero rows after ``num_boxes[b]``.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            num_boxes: ``(B,)`` number of valid gt rows per image.
            generator: CPU generator for the sampling.

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

        labels = torch.full((batch, anchors.shape[0]), -1, dtype=torch.int64, device=device)
        negative = inside & (max_overlaps < self.negative_overlap)
        if not self.clobber_positives:
            labels[negative] = 0
        labels[inside & (best_of_gt | (max_overlaps >= self.positive_overlap))] = 1
        if self.clobber_positives:
            labels[negative] = 0

        for b in range(batch):
            _disable_random(labels[b], 1, self.num_fg, generator)
            num_fg = int((labels[b] == 1).sum())
            _disable_random(labels[b], 0, self.batch_size - num_fg, generator)

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
