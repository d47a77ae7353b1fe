"""The Fast R-CNN second stage: RoI sampling (training), RoI pooling, the backbone's top, the
classification and box-regression heads, their losses, and the post-processing to detections.

Boxes use the +1 convention (width = x2 - x1 + 1).  Everything runs batched on the device with
fixed shapes (padded rows plus counts or masks): no host synchronisation, so the stage compiles
with ``torch.compile(fullgraph=True)`` and exports with ``torch.export``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.model.losses import smooth_l1_loss
from fasterrcnn.model.precision import at_least_float32, autocast_disabled
from fasterrcnn.ops import RoIAlign, RoICrop, RoIPool, batched_nms_mask
from fasterrcnn.rpn import ProposalTargetLayer, box_iou, clip_boxes, decode_boxes

RCNN_SIGMA = 1.0
"""Smooth-L1 sigma of the RoI head's box loss (the reference's value)."""


def build_pooler(cfg: Config) -> nn.Module:
    """The RoI pooling of ``cfg.POOLING_MODE`` to ``POOLING_SIZE`` at scale ``1 / FEAT_STRIDE``.

    ``align``: RoIAlign with adaptive sampling (sampling_ratio 0) and ``aligned=False``, as the
    reference; ``pool``: RoIPool; ``crop``: the reference's affine-grid crop, followed by a 2x2
    max-pool when ``CROP_RESIZE_WITH_MAX_POOL``.
    """
    size = cfg.POOLING_SIZE
    scale = 1.0 / cfg.FEAT_STRIDE
    if cfg.POOLING_MODE == "align":
        return RoIAlign(size, scale, sampling_ratio=0, aligned=False)
    if cfg.POOLING_MODE == "pool":
        return RoIPool(size, scale)
    if cfg.POOLING_MODE == "crop":
        return RoICrop(size, scale, max_pool=cfg.CROP_RESIZE_WITH_MAX_POOL)
    raise ValueError(f"unknown POOLING_MODE {cfg.POOLING_MODE!r}; expected pool, align or crop")


@dataclass(frozen=True)
class DetectionSettings:
    """Test-time post-processing options (the ``TEST`` / ``TRAIN`` options in brackets).

    score_thresh: keep class scores strictly above it (``TEST.SCORE_THRESH``).
    nms_thresh: per-class NMS IoU threshold, +1 areas (``TEST.NMS``).
    max_per_image: detections kept per image over all classes; 0 or less: all
        (``TEST.MAX_PER_IMAGE``).
    bbox_reg: decode the predicted deltas (``TEST.BBOX_REG``); else the RoIs are the boxes.
    vote_thresh: box voting after NMS (:func:`vote_boxes`) at this IoU; 0: off
        (``TEST.BBOX_VOTE_THRESH``).
    unnormalize: deltas are ``* stds + means`` first
        (``TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED``, ``BBOX_NORMALIZE_MEANS`` / ``STDS``).
    """

    score_thresh: float = 0.0
    nms_thresh: float = 0.3
    max_per_image: int = 100
    bbox_reg: bool = True
    vote_thresh: float = 0.0
    unnormalize: bool = True
    means: Tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    stds: Tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)

    @classmethod
    def from_config(cls, cfg: Config) -> DetectionSettings:
        return cls(
            score_thresh=cfg.TEST.SCORE_THRESH,
            nms_thresh=cfg.TEST.NMS,
            max_per_image=cfg.TEST.MAX_PER_IMAGE,
            bbox_reg=cfg.TEST.BBOX_REG,
            vote_thresh=cfg.TEST.BBOX_VOTE_THRESH,
            unnormalize=cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED,
            means=tuple(cfg.TRAIN.BBOX_NORMALIZE_MEANS),
            stds=tuple(cfg.TRAIN.BBOX_NORMALIZE_STDS),
        )


def vote_boxes(
    kept: Tensor,
    kept_labels: Tensor,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    candidate: Tensor,
    iou_thresh: float,
) -> Tensor:
    """Box voting (Gidaris & Komodakis, ICCV 2015): each kept detection's box becomes the
    score-weighted mean of the candidate boxes of its class that overlap it at IoU >=
    ``iou_thresh`` (+1 convention; itself included), the NMS-suppressed ones among them.

    Args:
        kept: ``(B, K, 4)`` detections after NMS; kept_labels: ``(B, K)``, 0 for empty slots.
        boxes: ``(B, N, 4)`` every candidate box; scores: ``(B, N)``; labels: ``(N,)`` the class
            of each candidate column; candidate: ``(B, N)`` bool, the boxes that may vote
            (above the score threshold, not padding).

    Returns:
        ``(B, K, 4)``: voted boxes; a slot without voters (empty, or a degenerate box) is
        unchanged.  Memory is ``B * K * N`` (``K = N`` when every detection is kept).
    """
    same_class = kept_labels.unsqueeze(2) == labels.view(1, 1, -1)
    voters = same_class & candidate.unsqueeze(1) & (box_iou(kept, boxes) >= iou_thresh)
    weights = torch.where(voters, scores.unsqueeze(1), 0.0)
    total = weights.sum(dim=2, keepdim=True)
    voted = torch.bmm(weights, boxes) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.where(total > 0, voted, kept)


class HeadOutput(NamedTuple):
    """The second stage at inference over ``(B, P)`` padded proposals.

    pooled: ``(B * P, C, S, S)`` pooled features of every proposal row (padding rows included).
    cls_prob: ``(B, P, num_classes)`` softmax, zero rows for padded proposals.
    bbox_pred: ``(B, P, 4 * num_classes or 4)`` normalised deltas, zero rows for padding.
    """

    pooled: Tensor
    cls_prob: Tensor
    bbox_pred: Tensor


class Detections(NamedTuple):
    """Fixed-size detections of ``B`` images, ``K`` slots each, best first.

    boxes: ``(B, K, 4)`` ``[x1, y1, x2, y2]`` in original-image pixels (+1 convention).
    scores: ``(B, K)``.
    labels: ``(B, K)`` int64 in ``1 .. num_classes - 1``.
    num_detections: ``(B,)`` int64; slots from ``num_detections[b]`` on are zero (label 0).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    num_detections: Tensor

    def to_list(self) -> List[Dict[str, Tensor]]:
        """Per image a dict ``boxes (n, 4)``, ``scores (n,)``, ``labels (n,)`` of the real slots
        (reads the counts on the host)."""
        counts = self.num_detections.tolist()
        return [
            {"boxes": self.boxes[b, :n], "scores": self.scores[b, :n], "labels": self.labels[b, :n]}
            for b, n in enumerate(counts)
        ]


class RoIHead(nn.Module):
    """The second stage: sample RoIs (training), pool, run the top, predict class scores and box
    deltas, compute the losses (training) or the detections (:meth:`detect`).

    ``bbox_pred`` has 4 outputs per class (``4 * num_classes``, class ``c`` at ``4c .. 4c+3``)
    or 4 in all when ``class_agnostic``.  Initialisation as the reference: normal with std
    0.01 for ``cls_score``, 0.001 for ``bbox_pred``, zero biases.
    """

    def __init__(
        self,
        *,
        pooler: nn.Module,
        top: nn.Module,
        top_channels: int,
        num_classes: int,
        proposal_target_layer: ProposalTargetLayer,
        detection: DetectionSettings = DetectionSettings(),
        class_agnostic: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_agnostic = class_agnostic
        self.detection = detection
        self.proposal_target_layer = proposal_target_layer
        self.pooler = pooler
        self.top = top
        self.cls_score = nn.Linear(top_channels, num_classes)
        self.bbox_pred = nn.Linear(top_channels, 4 if class_agnostic else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(self.bbox_pred.weight, 0.0, 0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    @classmethod
    def from_config(
        cls, cfg: Config, top: nn.Module, top_channels: int, num_classes: int
    ) -> RoIHead:
        """The head of ``cfg`` (pooling, ``CLASS_AGNOSTIC``, the ``TRAIN`` sampling numbers, the
        ``TEST`` post-processing) over the backbone's ``top`` of ``top_channels`` outputs."""
        return cls(
            pooler=build_pooler(cfg),
            top=top,
            top_channels=top_channels,
            num_classes=num_classes,
            proposal_target_layer=ProposalTargetLayer.from_config(cfg),
            detection=DetectionSettings.from_config(cfg),
            class_agnostic=cfg.CLASS_AGNOSTIC,
        )

    def pool(self, base_feat: Tensor, rois: Tensor) -> Tensor:
        """``(K, C, S, S)`` features of ``rois`` ``(K, 5)`` ``[b, x1, y1, x2, y2]``.

        Under autocast the pooling runs with autocast off on float32 (at least) features.
        """
        feats = at_least_float32(base_feat)
        with autocast_disabled(feats.device.type):
            return self.pooler(feats, rois.detach().to(feats.dtype))

    def predict(self, pooled: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits ``(K, num_classes)`` and deltas ``(K, 4 * num_classes or 4)``, in float32
        at least (the layers may run in lower precision under autocast)."""
        feats = self.top(pooled)
        return at_least_float32(self.cls_score(feats)), at_least_float32(self.bbox_pred(feats))

    def forward(
        self,
        base_feat: Tensor,
        proposals: Tensor,
        num_proposals: Tensor,
        gt_boxes: Optional[Tensor] = None,
        num_boxes: Optional[Tensor] = None,
        seed: Optional[Tensor] = None,
    ):
        """Training mode: the losses ``{'rcnn_cls', 'rcnn_box'}`` (:meth:`forward_train`);
        eval mode: :class:`HeadOutput` (:meth:`infer`).

        Args:
            base_feat: ``(B, C, H, W)``.
            proposals: ``(B, P, 5)`` padded proposals; num_proposals: ``(B,)``.
            gt_boxes, num_boxes, seed: training only (see :meth:`forward_train`).
        """
        if not self.training:
            return self.infer(base_feat, proposals, num_proposals)
        if gt_boxes is None or num_boxes is None or seed is None:
            raise ValueError("RoIHead training needs gt_boxes, num_boxes and a sampling seed")
        return self.forward_train(base_feat, proposals, num_proposals, gt_boxes, num_boxes, seed)

    def forward_train(
        self,
        base_feat: Tensor,
        proposals: Tensor,
        num_proposals: Tensor,
        gt_boxes: Tensor,
        num_boxes: Tensor,
        seed: Tensor,
    ) -> Dict[str, Tensor]:
        """Sample ``TRAIN.BATCH_SIZE`` RoIs per image among the proposals and gt boxes (the
        proposal target layer, randomness from the sampling ``seed``), pool them, predict, and
        return :meth:`losses`.

        Args:
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]``, zero rows after ``num_boxes``.
        """
        rois, labels, targets, inside_w, outside_w = self.proposal_target_layer(
            proposals, num_proposals, gt_boxes, num_boxes, seed
        )
        cls_score, bbox_pred = self.predict(self.pool(base_feat, rois.view(-1, 5)))
        return self.losses(
            cls_score,
            bbox_pred,
            labels.view(-1),
            targets.view(-1, 4),
            inside_w.view(-1, 4),
            outside_w.view(-1, 4),
        )

    def infer(self, base_feat: Tensor, proposals: Tensor, num_proposals: Tensor) -> HeadOutput:
        """Class probabilities and deltas of every proposal row; rows from
        ``num_proposals[b]`` on are pooled too (fixed shapes) and then zeroed."""
        batch, num = proposals.shape[:2]
        pooled = self.pool(base_feat, proposals.reshape(-1, 5))
        cls_score, bbox_pred = self.predict(pooled)
        real = (
            torch.arange(num, device=proposals.device).view(1, -1) < num_proposals.view(-1, 1)
        ).unsqueeze(2)
        cls_prob = torch.where(real, F.softmax(cls_score, dim=1).view(batch, num, -1), 0.0)
        bbox_pred = torch.where(real, bbox_pred.view(batch, num, -1), 0.0)
        return HeadOutput(pooled, cls_prob, bbox_pred)

    def losses(
        self,
        cls_score: Tensor,
        bbox_pred: Tensor,
        labels: Tensor,
        bbox_targets: Tensor,
        inside_weights: Tensor,
        outside_weights: Tensor,
    ) -> Dict[str, Tensor]:
        """``rcnn_cls`` (cross-entropy, mean over RoIs) and ``rcnn_box`` (smooth-L1 sigma 1 on
        the deltas of each RoI's label, summed over coordinates, mean over RoIs).

        Args:
            cls_score: ``(K, num_classes)``; bbox_pred: ``(K, 4 * num_classes or 4)``;
            labels: ``(K,)`` int64; bbox_targets, inside_weights, outside_weights: ``(K, 4)``.
        """
        if not self.class_agnostic:
            index = labels.view(-1, 1, 1).expand(-1, 1, 4)
            bbox_pred = torch.gather(bbox_pred.view(bbox_pred.shape[0], -1, 4), 1, index).squeeze(1)
        return {
            "rcnn_cls": F.cross_entropy(cls_score, labels),
            "rcnn_box": smooth_l1_loss(
                bbox_pred, bbox_targets, inside_weights, outside_weights, sigma=RCNN_SIGMA
            ),
        }

    def detect(
        self,
        rois: Tensor,
        cls_prob: Tensor,
        bbox_pred: Tensor,
        im_info: Tensor,
        score_thresh: Optional[float] = None,
        nms_thresh: Optional[float] = None,
        max_per_image: Optional[int] = None,
    ) -> Detections:
        """Final detections of every image, in original-image pixels, fixed size.

        As the reference's ``test_net.py``: with ``bbox_reg`` the deltas are un-normalised
        (``* stds + means`` when ``unnormalize``, like the proposal target layer) and decoded
        on the RoIs (class-specific or agnostic), otherwise the RoIs are the boxes; boxes are
        clipped to the resized image and divided by its scale ``im_info[b, 2]``.  Then for each
        class ``c >= 1``: scores ``> score_thresh`` (strictly), NMS at ``nms_thresh`` with the
        +1 convention (one float64 batched NMS over all images and classes, a keep mask), and the
        ``max_per_image`` best detections over all classes are kept (ties in the order of RoI,
        then class), their boxes voted (:func:`vote_boxes`) when ``vote_thresh`` > 0.  Rows of
        padded RoIs (all-zero ``cls_prob``) are never returned.

        Args:
            rois: ``(B, P, 5)``; cls_prob: ``(B, P, num_classes)``; bbox_pred: ``(B, P, 4 *
                num_classes or 4)``: the eval outputs of the model.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            score_thresh, nms_thresh, max_per_image: default from :class:`DetectionSettings`.

        Returns:
            :class:`Detections` with ``K = max_per_image`` slots (``P * (num_classes - 1)``
            when ``max_per_image <= 0``).
        """
        settings = self.detection
        score_thresh = settings.score_thresh if score_thresh is None else score_thresh
        nms_thresh = settings.nms_thresh if nms_thresh is None else nms_thresh
        max_per_image = settings.max_per_image if max_per_image is None else max_per_image
        batch, num_props, num_classes = cls_prob.shape
        pred_boxes = self._decode(rois[..., 1:5], bbox_pred, im_info)
        num_fg = num_classes - 1
        per_class = pred_boxes.shape[-1] // 4 > 1
        boxes = pred_boxes.view(batch, num_props, -1, 4)
        boxes = boxes[:, :, 1:] if per_class else boxes.expand(-1, -1, num_fg, -1)
        boxes = boxes.reshape(batch, num_props * num_fg, 4)
        scores = cls_prob[..., 1:].reshape(batch, -1)
        labels = torch.arange(1, num_classes, device=scores.device).repeat(num_props)
        real = (cls_prob.sum(dim=2) > 0).repeat_interleave(num_fg, dim=1)
        candidate = real & (scores > score_thresh)

        ranked = torch.where(candidate, scores, float("-inf"))
        group = torch.arange(batch, device=scores.device).view(-1, 1) * num_fg + labels - 1
        # float64: the per-(image, class) offsets of batched NMS stay exact.
        nms_boxes = boxes.double() + torch.tensor(
            [0.0, 0.0, 1.0, 1.0], device=boxes.device, dtype=torch.float64
        )
        keep = (
            batched_nms_mask(
                nms_boxes.reshape(-1, 4), ranked.double().reshape(-1), group.reshape(-1), nms_thresh
            ).view(batch, -1)
            & candidate
        )

        total = num_props * num_fg
        slots = total if max_per_image <= 0 else max_per_image
        take = min(slots, total)
        ranked = torch.where(keep, scores, float("-inf"))
        order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :take]
        num_detections = keep.sum(dim=1).clamp(max=take)
        filled = torch.arange(take, device=scores.device).view(1, -1) < num_detections.view(-1, 1)
        out_boxes = torch.gather(boxes, 1, order.unsqueeze(2).expand(-1, -1, 4))
        out_boxes = torch.where(filled.unsqueeze(2), out_boxes, 0.0)
        out_scores = torch.where(filled, torch.gather(scores, 1, order), 0.0)
        out_labels = torch.where(filled, labels[order], 0)
        if settings.vote_thresh > 0:
            out_boxes = vote_boxes(
                out_boxes, out_labels, boxes, scores, labels, candidate, settings.vote_thresh
            )
        pad = slots - take
        return Detections(
            F.pad(out_boxes, (0, 0, 0, pad)),
            F.pad(out_scores, (0, pad)),
            F.pad(out_labels, (0, pad)),
            num_detections,
        )

    def _decode(self, boxes: Tensor, bbox_pred: Tensor, im_info: Tensor) -> Tensor:
        """``(B, P, 4 * k)`` boxes from RoI boxes ``(B, P, 4)``, clipped and in original-image
        pixels (``k`` = 1 or ``num_classes``)."""
        settings = self.detection
        if settings.bbox_reg:
            deltas = bbox_pred.unflatten(-1, (-1, 4))
            if settings.unnormalize:
                deltas = deltas * deltas.new_tensor(settings.stds) + deltas.new_tensor(
                    settings.means
                )
            boxes = decode_boxes(boxes, deltas.flatten(2))
        boxes = clip_boxes(boxes, im_info)
        return boxes / im_info[:, 2].to(boxes.dtype).view(-1, 1, 1)
