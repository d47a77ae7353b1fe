"""RPN proposals: decode the anchor deltas, clip, filter, rank and NMS.

Boxes use the +1 convention (width = x2 - x1 + 1) except inside NMS (see :class:`ProposalLayer`).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.ops import nms
from fasterrcnn.rpn.boxes import clip_boxes, decode_boxes


class ProposalLayer(nn.Module):
    """Turn RPN outputs into at most ``RPN_POST_NMS_TOP_N`` proposals per image (no parameters).

    Per image, as py-faster-rcnn's ``ProposalLayer``: decode the deltas on the anchors, clip to
    the image, drop boxes narrower or shorter than ``RPN_MIN_SIZE * scale`` (+1 widths; the
    scale is ``im_info[b, 2]``; faster-rcnn.pytorch disabled this filter, it is kept here), sort
    by fg score, keep the ``RPN_PRE_NMS_TOP_N`` best, NMS at ``RPN_NMS_THRESH``, keep the
    ``RPN_POST_NMS_TOP_N`` best.  A top-N of 0 or less keeps everything.  ``cfg.TRAIN`` or
    ``cfg.TEST`` numbers are used according to ``training``.

    NMS is :func:`fasterrcnn.ops.nms`, whose IoU has no +1 (torchvision convention) while the
    reference's NMS used +1 areas: a small, accepted difference on tiny boxes.

    The inputs are detached: no gradient flows through the proposals, as in the reference.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.train_cfg = (
            cfg.TRAIN.RPN_PRE_NMS_TOP_N,
            cfg.TRAIN.RPN_POST_NMS_TOP_N,
            cfg.TRAIN.RPN_NMS_THRESH,
            cfg.TRAIN.RPN_MIN_SIZE,
        )
        self.test_cfg = (
            cfg.TEST.RPN_PRE_NMS_TOP_N,
            cfg.TEST.RPN_POST_NMS_TOP_N,
            cfg.TEST.RPN_NMS_THRESH,
            cfg.TEST.RPN_MIN_SIZE,
        )

    def forward(
        self,
        fg_scores: Tensor,
        bbox_deltas: Tensor,
        anchors: Tensor,
        im_info: Tensor,
        training: bool,
    ) -> Tuple[Tensor, Tensor]:
        """Compute the proposals.

        Args:
            fg_scores: ``(B, N)`` foreground probabilities (or any monotone score) per anchor.
            bbox_deltas: ``(B, N, 4)`` predicted deltas per anchor.
            anchors: ``(N, 4)`` anchors (+1 convention), in the order of the scores.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            training: use the ``cfg.TRAIN`` numbers if True, else ``cfg.TEST``.

        Returns:
            rois: ``(B, P, 5)`` ``[b, x1, y1, x2, y2]`` by decreasing score, ``P`` the post-NMS
                top-N; rows from ``num_rois[b]`` on are ``[b, 0, 0, 0, 0]``.
            num_rois: ``(B,)`` int64 number of real proposals per image.
        """
        pre_n, post_n, nms_thresh, min_size = self.train_cfg if training else self.test_cfg
        fg_scores = fg_scores.detach()
        deltas = bbox_deltas.detach()
        batch, num_anchors = fg_scores.shape
        device, dtype = deltas.device, deltas.dtype
        anchors = anchors.to(device=device, dtype=dtype)

        proposals = clip_boxes(decode_boxes(anchors, deltas), im_info)
        ws = proposals[..., 2] - proposals[..., 0] + 1
        hs = proposals[..., 3] - proposals[..., 1] + 1
        min_sizes = (min_size * im_info[:, 2]).to(device=device, dtype=dtype).view(-1, 1)
        big_enough = (ws >= min_sizes) & (hs >= min_sizes)

        num_out = post_n if post_n > 0 else num_anchors
        rois = proposals.new_zeros(batch, num_out, 5)
        rois[:, :, 0] = torch.arange(batch, device=device, dtype=dtype).view(-1, 1)
        num_rois = torch.zeros(batch, dtype=torch.int64, device=device)
        for b in range(batch):
            idx = torch.nonzero(big_enough[b]).view(-1)
            order = torch.sort(fg_scores[b, idx], descending=True, stable=True).indices
            if pre_n > 0:
                order = order[:pre_n]
            idx = idx[order]
            boxes, scores = proposals[b, idx], fg_scores[b, idx]
            keep = nms(boxes, scores, nms_thresh)[:num_out]
            rois[b, : keep.numel(), 1:] = boxes[keep]
            num_rois[b] = keep.numel()
        return rois, num_rois
