"""Faster R-CNN: backbone base, RPN and RoI head composed; training losses, inference and
post-processing to detections.

Boxes use the +1 convention (width = x2 - x1 + 1) throughout.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.model.image_api import forward_images
from fasterrcnn.model.roi_head import RoIHead
from fasterrcnn.model.rpn import RPN
from fasterrcnn.model.transform import ImageTransform
from fasterrcnn.ops import batched_nms
from fasterrcnn.rpn import ProposalTargetLayer, clip_boxes, decode_boxes

LOSS_NAMES = ("rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box")


class Stages(NamedTuple):
    """Intermediate outputs of one inference pass (see :meth:`FasterRCNN.forward_features`).

    base_feat: ``(B, C, H/16, W/16)`` backbone features.
    rpn_cls_prob: ``(B, N, 2)`` RPN ``[bg, fg]`` probabilities per anchor.
    rpn_bbox_deltas: ``(B, N, 4)`` RPN deltas per anchor.
    anchors: ``(N, 4)`` anchors, row ``(y * W + x) * A + a``.
    rois: ``(B, P, 5)`` proposals ``[b, x1, y1, x2, y2]``, zero rows after ``num_rois[b]``.
    num_rois: ``(B,)`` int64.
    pooled: ``(K, C, POOLING_SIZE, POOLING_SIZE)`` pooled features of the ``K = sum(num_rois)``
        real proposals, image by image.
    cls_prob: ``(B, P, num_classes)`` class probabilities, zero rows for padded proposals.
    bbox_pred: ``(B, P, 4 * num_classes or 4)`` normalised deltas, zero rows for padding.
    """

    base_feat: Tensor
    rpn_cls_prob: Tensor
    rpn_bbox_deltas: Tensor
    anchors: Tensor
    rois: Tensor
    num_rois: Tensor
    pooled: Tensor
    cls_prob: Tensor
    bbox_pred: Tensor


class FasterRCNN(nn.Module):
    """The detector.

    ``forward(im_data, im_info, gt_boxes, num_boxes)`` returns the dict of the four losses in
    training mode and ``(rois, cls_prob, bbox_pred)`` in eval mode (see :meth:`forward`).
    ``model.generator`` is a CPU ``torch.Generator`` seeded with ``cfg.RNG_SEED``; all target
    layer sampling draws from it (save ``generator.get_state()`` with checkpoints).
    """

    def __init__(
        self, cfg: Config, base: nn.Module, rpn: RPN, roi_head: RoIHead, num_classes: int
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.base = base
        self.rpn = rpn
        self.roi_head = roi_head
        self.proposal_target_layer = ProposalTargetLayer(cfg, num_classes)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(cfg.RNG_SEED)
        self.transform = ImageTransform.from_config(cfg)

    @staticmethod
    def _check_inputs(im_data: Tensor, im_info: Tensor) -> None:
        if im_data.dim() != 4 or im_data.shape[1] != 3:
            raise ValueError(f"im_data must be (B, 3, H, W), got shape {tuple(im_data.shape)}")
        if im_info.shape != (im_data.shape[0], 3):
            raise ValueError(
                f"im_info must be (B, 3) = [height, width, scale] with B = {im_data.shape[0]}, "
                f"got shape {tuple(im_info.shape)}"
            )

    def forward(
        self,
        im_data: Tensor,
        im_info: Optional[Tensor] = None,
        gt_boxes: Optional[Tensor] = None,
        num_boxes: Optional[Tensor] = None,
    ) -> Union[Dict[str, Tensor], Tuple[Tensor, Tensor, Tensor], List[Dict[str, Tensor]]]:
        """Losses (training) or raw detections (eval).

        ``model(images, targets)`` with a list of images is torchvision's contract instead:
        see :mod:`fasterrcnn.model.image_api`.

        Args:
            im_data: ``(B, 3, H, W)`` float BGR, PIXEL_MEANS subtracted, divided by PIXEL_STDS.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]`` in resized-image pixels, zero
                rows after ``num_boxes[b]`` (training only).
            num_boxes: ``(B,)`` int64 (training only).

        Returns:
            training: ``{'rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box'}`` scalar losses.
            eval: ``rois (B, P, 5)``, ``cls_prob (B, P, num_classes)``, ``bbox_pred (B, P, 4 *
            num_classes or 4)`` (normalised deltas); rows of padded RoIs are zero in both.
        """
        if isinstance(im_data, (list, tuple)):
            return forward_images(self, im_data, im_info)
        if im_info is None:
            raise ValueError("im_info (B, 3) is required with an im_data tensor "
                             "(or pass a list of images: model(images, targets))")
        self._check_inputs(im_data, im_info)
        if not self.training:
            stages = self.forward_features(im_data, im_info)
            return stages.rois, stages.cls_prob, stages.bbox_pred
        if gt_boxes is None or num_boxes is None:
            raise ValueError("training mode needs gt_boxes (B, G, 5) and num_boxes (B,)")
        if gt_boxes.dim() != 3 or gt_boxes.shape[0] != im_data.shape[0] or gt_boxes.shape[2] != 5:
            raise ValueError(f"gt_boxes must be (B, G, 5), got shape {tuple(gt_boxes.shape)}")
        if num_boxes.shape != (im_data.shape[0],):
            raise ValueError(f"num_boxes must be (B,), got shape {tuple(num_boxes.shape)}")

        base_feat = self.base(im_data)
        rpn_out = self.rpn(base_feat, im_info, gt_boxes, num_boxes, self.generator)
        rois, labels, targets, inside_w, outside_w = self.proposal_target_layer(
            rpn_out.rois, rpn_out.num_rois, gt_boxes, num_boxes, self.generator
        )
        cls_score, bbox_pred = self.roi_head(base_feat, rois.view(-1, 5))
        losses = dict(rpn_out.losses)
        losses.update(
            self.roi_head.losses(
                cls_score,
                bbox_pred,
                labels.view(-1),
                targets.view(-1, 4),
                inside_w.view(-1, 4),
                outside_w.view(-1, 4),
            )
        )
        return {name: losses[name] for name in LOSS_NAMES}

    def forward_features(self, im_data: Tensor, im_info: Tensor) -> Stages:
        """One inference pass keeping every intermediate output (:class:`Stages`).

        Uses the proposal numbers of ``cfg.TEST`` in eval mode and of ``cfg.TRAIN`` in training
        mode; computes no losses.  Only the real (unpadded) proposals are pooled.
        """
        self._check_inputs(im_data, im_info)
        base_feat = self.base(im_data)
        rpn_out = self.rpn(base_feat, im_info)
        rois, num_rois = rpn_out.rois, rpn_out.num_rois
        batch, num_props = rois.shape[:2]
        valid = torch.arange(num_props, device=rois.device).view(1, -1) < num_rois.view(-1, 1)
        pooled = self.roi_head.pool(base_feat, rois[valid])
        cls_score, bbox_pred = self.roi_head.predict(pooled)
        cls_prob = cls_score.new_zeros(batch, num_props, self.num_classes)
        cls_prob[valid] = F.softmax(cls_score, dim=1)
        full_pred = bbox_pred.new_zeros(batch, num_props, bbox_pred.shape[1])
        full_pred[valid] = bbox_pred
        return Stages(
            base_feat,
            rpn_out.cls_prob,
            rpn_out.bbox_deltas,
            rpn_out.anchors,
            rois,
            num_rois,
            pooled,
            cls_prob,
            full_pred,
        )

    @torch.no_grad()
    def postprocess(
        self,
        rois: Tensor,
        cls_prob: Tensor,
        bbox_pred: Tensor,
        im_info: Tensor,
        score_thresh: Optional[float] = None,
        nms_thresh: Optional[float] = None,
        max_per_image: Optional[int] = None,
    ) -> List[Dict[str, Tensor]]:
        """Final detections per image, in original-image pixels.

        As the reference's ``test_net.py``: with ``TEST.BBOX_REG`` the deltas are un-normalised
        (``* BBOX_NORMALIZE_STDS + BBOX_NORMALIZE_MEANS`` when
        ``TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED``, like the proposal target layer) and decoded
        on the RoIs (class-specific or agnostic), otherwise the RoIs are the boxes; boxes are
        clipped to the resized image and divided by its scale ``im_info[b, 2]``.  Then for each
        class ``c >= 1``: scores ``> score_thresh`` (strictly), NMS at ``nms_thresh`` with the
        +1 convention (one batched NMS over the classes), and the ``max_per_image`` best
        detections over all classes are kept (all of them when ``max_per_image <= 0``).  Rows
        of padded RoIs (all-zero ``cls_prob``) are never returned.

        Args:
            rois, cls_prob, bbox_pred: the eval outputs of :meth:`forward`.
            im_info: ``(B, 3)`` ``[height, width, scale]``.
            score_thresh, nms_thresh, max_per_image: default ``cfg.TEST.SCORE_THRESH``,
                ``cfg.TEST.NMS``, ``cfg.TEST.MAX_PER_IMAGE``.

        Returns:
            Per image a dict: ``boxes`` ``(n, 4)`` ``[x1, y1, x2, y2]`` (dtype of the inputs),
            ``scores`` ``(n,)``, ``labels`` ``(n,)`` int64 in ``1 .. num_classes - 1``, by
            decreasing score.
        """
        test = self.cfg.TEST
        score_thresh = test.SCORE_THRESH if score_thresh is None else score_thresh
        nms_thresh = test.NMS if nms_thresh is None else nms_thresh
        max_per_image = test.MAX_PER_IMAGE if max_per_image is None else max_per_image
        batch, num_props = rois.shape[:2]
        boxes = rois[..., 1:5]
        if test.BBOX_REG:
            deltas = bbox_pred.view(batch, num_props, -1, 4)
            if self.cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
                stds = deltas.new_tensor(self.cfg.TRAIN.BBOX_NORMALIZE_STDS)
                means = deltas.new_tensor(self.cfg.TRAIN.BBOX_NORMALIZE_MEANS)
                deltas = deltas * stds + means
            pred_boxes = decode_boxes(boxes, deltas.flatten(2))
        else:
            pred_boxes = boxes
        pred_boxes = clip_boxes(pred_boxes, im_info)
        pred_boxes = pred_boxes / im_info[:, 2].to(pred_boxes.dtype).view(-1, 1, 1)
        per_class = pred_boxes.shape[-1] // 4 > 1

        results: List[Dict[str, Tensor]] = []
        for b in range(batch):
            real = cls_prob[b].sum(dim=1) > 0
            scores = cls_prob[b, :, 1:]
            roi_idx, cls_idx = torch.nonzero((scores > score_thresh) & real.view(-1, 1), as_tuple=True)
            labels = cls_idx + 1
            cand = pred_boxes[b].view(num_props, -1, 4)[roi_idx, labels if per_class else 0]
            cand_scores = scores[roi_idx, cls_idx]
            plus_one = cand.new_tensor([0.0, 0.0, 1.0, 1.0])
            keep = batched_nms(cand + plus_one, cand_scores, labels, nms_thresh)
            if max_per_image > 0:
                keep = keep[:max_per_image]
            results.append(
                {"boxes": cand[keep], "scores": cand_scores[keep], "labels": labels[keep]}
            )
        return results
