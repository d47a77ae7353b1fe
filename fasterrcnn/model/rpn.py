"""The region proposal network: a conv head over the base features, proposals and RPN losses."""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence, Tuple

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
    """3x3 conv (``channels``) + ReLU, then 1x1 convs for 2A scores and 4A deltas.

    Channel layout as faster-rcnn.pytorch (so its RPN weights map one to one): score channel
    ``a`` is anchor ``a``'s background logit and ``A + a`` its foreground logit; delta channels
    ``4a .. 4a+3`` are anchor ``a``'s ``(dx, dy, dw, dh)``.  Outputs are reorganised per anchor
    in the order of :func:`fasterrcnn.rpn.shift_anchors`.  ``A = len(anchor_ratios) *
    len(anchor_scales)``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        proposal_layer: ProposalLayer,
        anchor_target_layer: AnchorTargetLayer,
        channels: int = 512,
        feat_stride: int = 16,
        anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        anchor_scales: Sequence[float] = (8.0, 16.0, 32.0),
    ) -> None:
        super().__init__()
        base_anchors = generate_anchors(feat_stride, anchor_ratios, anchor_scales)
        self.num_anchors = base_anchors.shape[0]
        self.feat_stride = feat_stride
        self.register_buffer("base_anchors", base_anchors, persistent=False)
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.cls_score = nn.Conv2d(channels, 2 * self.num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(channels, 4 * self.num_anchors, kernel_size=1)
        for layer in (self.conv, self.cls_score, self.bbox_pred):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)
        self.proposal_layer = proposal_layer
        self.anchor_target_layer = anchor_target_layer

    @classmethod
    def from_config(cls, cfg: Config, in_channels: int) -> RPN:
        """The RPN of ``cfg`` (``RPN_CHANNELS``, ``FEAT_STRIDE``, ``ANCHOR_RATIOS``,
        ``ANCHOR_SCALES``, the proposal and anchor target layers' options) over
        ``in_channels`` base channels."""
        return cls(
            in_channels=in_channels,
            proposal_layer=ProposalLayer.from_config(cfg),
            anchor_target_layer=AnchorTargetLayer.from_config(cfg),
            channels=cfg.RPN_CHANNELS,
            feat_stride=cfg.FEAT_STRIDE,
            anchor_ratios=cfg.ANCHOR_RATIOS,
            anchor_scales=cfg.ANCHOR_SCALES,
        )

    def anchors(self, height: int, width: int) -> Tensor:
        """``(height * width * A, 4)`` anchors of a feature map, on this module's device."""
        return shift_anchors(self.base_anchors, height, width, self.feat_stride)

    def _conv_input(self, base_feat: Tensor) -> Tensor:
        """``base_feat`` ``(B, C, H, W)`` in NCHW layout for a one-image CPU training pass, else
        as it is: oneDNN's weight gradient of this wide 3x3 convolution is slower on a single
        channels-last map (1024 -> 512 channels at 38x50: forward + backward 169 vs 128 ms on
        2 cores), which the layout copy (8 ms) more than pays for."""
        one_image_training = (
            base_feat.shape[0] == 1
            and base_feat.device.type == "cpu"
            and torch.is_grad_enabled()
            and self.conv.weight.requires_grad
        )
        return base_feat.contiguous() if one_image_training else base_feat

    def predict(self, base_feat: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-anchor logits ``(B, N, 2)`` ``[bg, fg]`` and deltas ``(B, N, 4)``, in float32 at
        least (under autocast the convolutions run in lower precision, the box maths not)."""
        batch, _, height, width = base_feat.shape
        hidden = F.relu(self.conv(self._conv_input(base_feat)), inplace=True)
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
        seed: Optional[Tensor] = None,
    ) -> RPNOutput:
        """Proposals (and, in training, the RPN losses) for ``base_feat`` ``(B, C, H, W)``.

        The proposal layer uses its train numbers in training mode and its test numbers in eval
        mode.  Losses are computed when ``gt_boxes`` ``(B, G, 5)`` is given, which needs
        ``num_boxes`` ``(B,)`` and a sampling ``seed`` (:func:`fasterrcnn.rpn.draw_seed`):
        ``rpn_cls`` cross-entropy over the sampled anchors (label != -1, mean; 0 when none is
        sampled, a masked mean without host synchronisation); ``rpn_box`` smooth-L1 (sigma 3)
        with the anchor target layer's inside/outside weights, summed over anchors and
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
            if num_boxes is None or seed is None:
                raise ValueError("RPN losses need num_boxes and a sampling seed with gt_boxes")
            targets = self.anchor_target_layer(anchors, gt_boxes, im_info, num_boxes, seed)
            sampled = targets.labels != -1
            per_anchor = F.cross_entropy(
                logits.flatten(0, 1), targets.labels.clamp(min=0).flatten(), reduction="none"
            )
            num_sampled = sampled.sum().clamp(min=1).to(per_anchor.dtype)
            per_anchor = torch.where(sampled.flatten(), per_anchor, 0.0)
            losses["rpn_cls"] = per_anchor.sum() / num_sampled
            losses["rpn_box"] = smooth_l1_loss(
                deltas,
                targets.bbox_targets,
                targets.bbox_inside_weights,
                targets.bbox_outside_weights,
                sigma=RPN_SIGMA,
                sum_dims=(1, 2),
            )
        return RPNOutput(rois, num_rois, losses, cls_prob, deltas, anchors)
