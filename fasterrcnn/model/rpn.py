"""The region proposal network: a conv head over the base features, proposals and RPN losses."""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.model.losses import smooth_l1_loss
from fasterrcnn.model.precision import at_least_float32
from fasterrcnn.rpn import AnchorTargetLayer, ProposalLayer, generate_anchors, shift_anchors

RPN_SIGMA = 3.0
"""Smooth-L1 sigma of the RPN box loss (the reference's value)."""


class RPNOutput(NamedTuple):
    """Everything the RPN computes for a batch of ``B`` images with ``N = H * W * A`` anchors.

    rois: ``(B, P, 5)`` ``[b, x1, y1, x2, y2]`` proposals (+1 convention), zero rows after
        ``num_rois[b]``.
    num_rois: ``(B,)`` int64.
    losses: ``{'rpn_cls', 'rpn_box'}`` scalars when gt boxes were given, else empty.
    cls_prob: ``(B, N, 2)`` softmax ``[bg, fg]`` per anchor.
    bbox_deltas: ``(B, N, 4)`` predicted deltas per anchor.
    anchors: ``(N, 4)`` anchors, row ``(y * W + x) * A + a``.
    """

    rois: Tensor
    num_rois: Tensor
    losses: Dict[str, Tensor]
    cls_prob: Tensor
    bbox_deltas: Tensor
    anchors: Tensor


class RPN(nn.Module):
    """3x3 conv (``cfg.RPN_CHANNELS``) + ReLU, then 1x1 convs for 2A scores and 4A deltas.

    Channel layout as faster-rcnn.pytorch (so its RPN weights map one to one): score channel
    ``a`` is anchor ``a``'s background logit and ``A + a`` its foreground logit; delta channels
    ``4a .. 4a+3`` are anchor ``a``'s ``(dx, dy, dw, dh)``.  Outputs are reorganised per anchor
    in the order of :func:`fasterrcnn.rpn.shift_anchors`.
    """

    def __init__(self, cfg: Config, in_channels: int) -> None:
        super().__init__()
        base_anchors = generate_anchors(cfg.FEAT_STRIDE, cfg.ANCHOR_RATIOS, cfg.ANCHOR_SCALES)
        self.num_anchors = base_anchors.shape[0]
        self.feat_stride = cfg.FEAT_STRIDE
        self.register_buffer("base_anchors", base_anchors, persistent=False)
        self.conv = nn.Conv2d(in_channels, cfg.RPN_CHANNELS, kernel_size=3, padding=1)
        self.cls_score = nn.Conv2d(cfg.RPN_CHANNELS, 2 * self.num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(cfg.RPN_CHANNELS, 4 * self.num_anchors, kernel_size=1)
        for layer in (self.conv, self.cls_score, self.bbox_pred):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        self.proposal_layer = ProposalLayer(cfg)
        self.anchor_target_layer = AnchorTargetLayer(cfg)

    def anchors(self, height: int, width: int) -> Tensor:
        """``(height * width * A, 4)`` anchors of a feature map, on this module's device."""
        return shift_anchors(self.base_anchors, height, width, self.feat_stride)

    def predict(self, base_feat: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-anchor logits ``(B, N, 2)`` ``[bg, fg]`` and deltas ``(B, N, 4)``, in float32 at
        least (under autocast the convolutions run in lower precision, the box maths not)."""
        batch, _, height, width = base_feat.shape
        hidden = F.relu(self.conv(base_feat), inplace=True)
        a = self.num_anchors
        logits = self.cls_score(hidden).view(batch, 2, a, height, width)
        logits = logits.permute(0, 3, 4, 2, 1).reshape(batch, -1, 2)
        deltas = self.bbox_pred(hidden).view(batch, a, 4, height, width)
        deltas = deltas.permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
        return at_least_float32(logits), at_least_float32(deltas)

    def forward(
        self,
        base_feat: Tensor,
        im_info: Tensor,
        gt_boxes: Optional[Tensor] = None,
        num_boxes: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> RPNOutput:
        """Proposals (and, in training, the RPN losses) for ``base_feat`` ``(B, C, H, W)``.

        The proposal layer uses ``cfg.TRAIN`` numbers in training mode and ``cfg.TEST`` in eval
        mode.  Losses are computed when ``gt_boxes`` ``(B, G, 5)`` is given, which needs
        ``num_boxes`` ``(B,)`` and a CPU ``generator`` for the anchor sampling: ``rpn_cls``
        cross-entropy over the sampled anchors (label != -1, mean); ``rpn_box`` smooth-L1
        (sigma 3) with the anchor target layer's inside/outside weights, summed over anchors and
        coordinates, averaged over the batch.
        """
        logits, deltas = self.predict(base_feat)
        cls_prob = F.softmax(logits, dim=2)
        anchors = self.anchors(base_feat.shape[2], base_feat.shape[3])
        rois, num_rois = self.proposal_layer(
            cls_prob[..., 1], deltas, anchors, im_info, self.training
        )
        losses: Dict[str, Tensor] = {}
        if gt_boxes is not None:
            if num_boxes is None or generator is None:
                raise ValueError("RPN losses need num_boxes and a generator with gt_boxes")
            targets = self.anchor_target_layer(anchors, gt_boxes, im_info, num_boxes, generator)
            sampled = targets.labels != -1
            if bool(sampled.any()):
                losses["rpn_cls"] = F.cross_entropy(logits[sampled], targets.labels[sampled])
            else:
                losses["rpn_cls"] = logits.sum() * 0.0
            losses["rpn_box"] = smooth_l1_loss(
                deltas,
                targets.bbox_targets,
                targets.bbox_inside_weights,
                targets.bbox_outside_weights,
                sigma=RPN_SIGMA,
                sum_dims=(1, 2),
            )
        return RPNOutput(rois, num_rois, losses, cls_prob, deltas, anchors)
