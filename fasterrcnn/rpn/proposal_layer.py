"""RPN proposals: decode the anchor deltas, clip, filter, rank and NMS.

Boxes use the +1 convention (width = x2 - x1 + 1) except inside NMS (see :class:`ProposalLayer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.ops import nms_mask
from fasterrcnn.rpn.boxes import clip_boxes, decode_boxes


@dataclass(frozen=True)
class ProposalNumbers:
    """The proposal numbers of one mode (``TRAIN`` or ``TEST``): ``RPN_PRE_NMS_TOP_N``,
    ``RPN_POST_NMS_TOP_N`` (0 or less: keep everything), ``RPN_NMS_THRESH``, ``RPN_MIN_SIZE``."""

    pre_nms_top_n: int
    post_nms_top_n: int
    nms_thresh: float
    min_size: float

    @classmethod
    def from_config(cls, mode_cfg) -> ProposalNumbers:
        """From ``cfg.TRAIN`` or ``cfg.TEST``."""
        return cls(
            mode_cfg.RPN_PRE_NMS_TOP_N,
            mode_cfg.RPN_POST_NMS_TOP_N,
            mode_cfg.RPN_NMS_THRESH,
            mode_cfg.RPN_MIN_SIZE,
        )


class ProposalLayer(nn.Module):
    """Turn RPN outputs into at most ``post_nms_top_n`` proposals per image (no parameters).

    Per image, as py-faster-rcnn's ``ProposalLayer``: decode the deltas on the anchors, clip to
    the image, drop boxes narrower or shorter than ``min_size * scale`` (+1 widths; the scale is
    ``im_info[b, 2]``; faster-rcnn.pytorch disabled this filter, it is kept here: set
    ``RPN_MIN_SIZE`` 0 to disable it), sort by fg score (stable), keep the ``pre_nms_top_n``
    best, NMS at ``nms_thresh``, keep the ``post_nms_top_n`` best.  A top-N of 0 or less keeps
    everything.

    NMS convention: by default :func:`fasterrcnn.ops.nms_mask`, whose IoU has no +1
    (torchvision convention), and zero-area boxes (``x2 == x1`` or ``y2 == y1``, e.g. clipped
    at the border when ``min_size * scale <= 1``) are dropped before NMS (without +1 they would
    never suppress each other).  With ``reference_nms`` (``REFERENCE_NMS``) the IoU uses the
    reference's +1 areas (NMS on ``[x1, y1, x2 + 1, y2 + 1]``) and nothing else is dropped, so
    that with the reference's settings the proposals equal faster-rcnn.pytorch's.

    Sync-free: one fixed-size NMS per image in the boxes' dtype, the selection uses masks,
    ``sort`` and ``topk`` with fixed sizes; nothing is copied to the host.  The inputs are
    detached: no gradient flows through the proposals, as in the reference.
    """

    def __init__(
        self, *, train: ProposalNumbers, test: ProposalNumbers, reference_nms: bool = False
    ) -> None:
        super().__init__()
        self.train_numbers = train
        self.test_numbers = test
        self.reference_nms = reference_nms

    @classmethod
    def from_config(cls, cfg: Config) -> ProposalLayer:
        """The layer with the ``cfg.TRAIN`` / ``cfg.TEST`` numbers and ``cfg.REFERENCE_NMS``."""
        return cls(
            train=ProposalNumbers.from_config(cfg.TRAIN),
            test=ProposalNumbers.from_config(cfg.TEST),
            reference_nms=cfg.REFERENCE_NMS,
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
            training: use the train numbers if True, else the test numbers.

        Returns:
            rois: ``(B, P, 5)`` ``[b, x1, y1, x2, y2]`` by decreasing score, ``P`` the post-NMS
                top-N (``N`` when it is 0 or less); rows from ``num_rois[b]`` on are
                ``[b, 0, 0, 0, 0]``.
            num_rois: ``(B,)`` int64 number of real proposals per image.
        """
        numbers = self.train_numbers if training else self.test_numbers
        fg_scores = fg_scores.detach()
        deltas = bbox_deltas.detach()
        batch, num_anchors = fg_scores.shape
        device, dtype = deltas.device, deltas.dtype
        anchors = anchors.to(device=device, dtype=dtype)

        proposals = clip_boxes(decode_boxes(anchors, deltas), im_info)
        ws = proposals[..., 2] - proposals[..., 0] + 1
        hs = proposals[..., 3] - proposals[..., 1] + 1
        min_sizes = (numbers.min_size * im_info[:, 2]).to(device=device, dtype=dtype).view(-1, 1)
        candidate = (ws >= min_sizes) & (hs >= min_sizes)
        if not self.reference_nms:
            candidate = candidate & (ws > 1) & (hs > 1)

        # Stable descending sort of the candidates' scores, non-candidates last.
        ranked = torch.where(candidate, fg_scores, float("-inf"))
        order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
        num_pre = num_anchors if numbers.pre_nms_top_n <= 0 else numbers.pre_nms_top_n
        order = order[:, : min(num_pre, num_anchors)]
        is_candidate = torch.gather(candidate, 1, order)
        boxes = torch.gather(proposals, 1, order.unsqueeze(2).expand(-1, -1, 4))

        keep = self._nms_keep(boxes, numbers.nms_thresh) & is_candidate
        num_out = num_anchors if numbers.post_nms_top_n <= 0 else numbers.post_nms_top_n
        return _first_kept(boxes, keep, num_out)

    def _nms_keep(self, boxes: Tensor, iou_threshold: float) -> Tensor:
        """``(B, K)`` NMS keep mask of score-sorted boxes ``(B, K, 4)``, images independent.

        One NMS per image: a batched NMS over all ``B * K`` boxes would compare every kept box
        with the other images' boxes too (``B`` times the work) and would need float64 for
        exact per-image offsets (10x slower than float32 on CPU).
        """
        num = boxes.shape[1]
        if self.reference_nms:
            boxes = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
        # The rank as the score: ties keep the stable order of the sort.
        rank = -torch.arange(num, device=boxes.device, dtype=boxes.dtype)
        return torch.stack([nms_mask(image, rank, iou_threshold) for image in boxes.unbind(0)])


def _first_kept(boxes: Tensor, keep: Tensor, num_out: int) -> Tuple[Tensor, Tensor]:
    """The first ``num_out`` kept rows of each image as padded ``(B, num_out, 5)`` rois and the
    ``(B,)`` counts.

    Args:
        boxes: ``(B, K, 4)`` in rank order; keep: ``(B, K)`` bool.
    """
    batch, num = keep.shape
    device, dtype = boxes.device, boxes.dtype
    take = min(num_out, num)
    # Kept rows get distinct keys decreasing with the rank: topk returns them in rank order.
    keys = torch.where(keep, num - torch.arange(num, device=device), 0)
    picked = torch.topk(keys, take, dim=1).indices
    num_rois = keep.sum(dim=1).clamp(max=take)
    real = torch.arange(take, device=device).view(1, -1) < num_rois.view(-1, 1)
    picked_boxes = torch.gather(boxes, 1, picked.unsqueeze(2).expand(-1, -1, 4))
    picked_boxes = torch.where(real.unsqueeze(2), picked_boxes, 0.0)
    picked_boxes = F.pad(picked_boxes, (0, 0, 0, num_out - take))
    batch_index = torch.arange(batch, device=device, dtype=dtype).view(-1, 1, 1)
    rois = torch.cat((batch_index.expand(-1, num_out, 1), picked_boxes), dim=2)
    return rois, num_rois
