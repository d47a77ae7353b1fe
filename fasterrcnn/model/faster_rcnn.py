"""Faster R-CNN: backbone base, RPN and the second stage (:class:`RoIHead`) composed.

Boxes use the +1 convention (width = x2 - x1 + 1) throughout.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.model.flip import mirror_images, unmirror_outputs
from fasterrcnn.model.image_api import forward_images
from fasterrcnn.model.roi_head import Detections, RoIHead
from fasterrcnn.model.rpn import RPN
from fasterrcnn.model.transform import ImageTransform
from fasterrcnn.rpn import draw_seed

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
        real proposals, image by image (the model pools all ``B * P`` rows; these are the real
        ones).
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
    """The detector: ``base`` (backbone to stride 16) + :class:`RPN` + :class:`RoIHead`.

    ``forward(im_data, im_info, gt_boxes, num_boxes)`` returns the dict of the four losses in
    training mode and ``(rois, cls_prob, bbox_pred)`` in eval mode (see :meth:`forward`);
    :meth:`detect` goes from images to fixed-size :class:`Detections`, :meth:`postprocess` from
    the eval outputs to per-image lists.  The inference path has fixed shapes and no host
    synchronisation (``torch.compile(fullgraph=True)``, ``torch.export``).
    ``model.generator`` is a CPU ``torch.Generator`` seeded with ``cfg.RNG_SEED``; each training
    forward draws one sampling seed from it (:func:`fasterrcnn.rpn.draw_seed`) from which all
    target layer sampling derives (save ``generator.get_state()`` with checkpoints).
    """

    def __init__(
        self, cfg: Config, base: nn.Module, rpn: RPN, roi_head: RoIHead, num_classes: int
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"num_classes counts the background and must be >= 2, got {num_classes}"
            )
        self.cfg = cfg
        self.num_classes = num_classes
        self.base = base
        self.rpn = rpn
        self.roi_head = roi_head
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
            With ``TEST.FLIP`` ``2P`` rows: the mirror images' after the images' own.
        """
        if isinstance(im_data, (list, tuple)):
            return forward_images(self, im_data, im_info)
        if im_info is None:
            raise ValueError(
                "im_info (B, 3) is required with an im_data tensor "
                "(or pass a list of images: model(images, targets))"
            )
        self._check_inputs(im_data, im_info)
        if not self.training:
            return self._test_outputs(im_data, im_info)
        if gt_boxes is None or num_boxes is None:
            raise ValueError("training mode needs gt_boxes (B, G, 5) and num_boxes (B,)")
        if gt_boxes.dim() != 3 or gt_boxes.shape[0] != im_data.shape[0] or gt_boxes.shape[2] != 5:
            raise ValueError(f"gt_boxes must be (B, G, 5), got shape {tuple(gt_boxes.shape)}")
        if num_boxes.shape != (im_data.shape[0],):
            raise ValueError(f"num_boxes must be (B,), got shape {tuple(num_boxes.shape)}")

        seed = draw_seed(self.generator, im_data.device)
        base_feat = self.base(im_data)
        rpn_out = self.rpn(base_feat, im_info, gt_boxes, num_boxes, seed)
        losses = dict(rpn_out.losses)
        losses.update(
            self.roi_head.forward_train(
                base_feat, rpn_out.rois, rpn_out.num_rois, gt_boxes, num_boxes, seed
            )
        )
        return {name: losses[name] for name in LOSS_NAMES}

    def _infer(self, im_data: Tensor, im_info: Tensor):
        base_feat = self.base(im_data)
        rpn_out = self.rpn(base_feat, im_info)
        head = self.roi_head.infer(base_feat, rpn_out.rois, rpn_out.num_rois)
        return rpn_out.rois, (base_feat, rpn_out), head

    def _test_outputs(self, im_data: Tensor, im_info: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``rois (B, P', 5)``, ``cls_prob``, ``bbox_pred`` of the eval pass: ``P' = P``, or
        with ``TEST.FLIP`` ``2P``: the mirrored images' rows (in the original frame, see
        :mod:`fasterrcnn.model.flip`) after the images' own."""
        rois, _, head = self._infer(im_data, im_info)
        if not self.cfg.TEST.FLIP:
            return rois, head.cls_prob, head.bbox_pred
        mirrored_rois, _, mirrored = self._infer(mirror_images(im_data, im_info), im_info)
        settings = self.roi_head.detection
        mirrored_rois, mirrored_pred = unmirror_outputs(
            mirrored_rois,
            mirrored.cls_prob,
            mirrored.bbox_pred,
            im_info,
            settings.unnormalize,
            settings.means,
            settings.stds,
        )
        return (
            torch.cat((rois, mirrored_rois), dim=1),
            torch.cat((head.cls_prob, mirrored.cls_prob), dim=1),
            torch.cat((head.bbox_pred, mirrored_pred), dim=1),
        )

    def forward_features(self, im_data: Tensor, im_info: Tensor) -> Stages:
        """One inference pass keeping every intermediate output (:class:`Stages`).

        Uses the proposal numbers of ``cfg.TEST`` in eval mode and of ``cfg.TRAIN`` in training
        mode; computes no losses.
        """
        self._check_inputs(im_data, im_info)
        rois, (base_feat, rpn_out), head = self._infer(im_data, im_info)
        num_props = rois.shape[1]
        index = torch.arange(num_props, device=rois.device).view(1, -1)
        valid = index < rpn_out.num_rois.view(-1, 1)
        return Stages(
            base_feat,
            rpn_out.cls_prob,
            rpn_out.bbox_deltas,
            rpn_out.anchors,
            rois,
            rpn_out.num_rois,
            head.pooled[valid.view(-1)],
            head.cls_prob,
            head.bbox_pred,
        )

    def detect(
        self,
        im_data: Tensor,
        im_info: Tensor,
        score_thresh: Optional[float] = None,
        nms_thresh: Optional[float] = None,
        max_per_image: Optional[int] = None,
    ) -> Detections:
        """Images to fixed-size detections in original-image pixels, without host sync.

        ``im_data`` / ``im_info`` as :meth:`forward`; the options default to ``cfg.TEST``
        (see :meth:`RoIHead.detect`).  Returns :class:`Detections` ``boxes (B, K, 4)``,
        ``scores (B, K)``, ``labels (B, K)`` int64, ``num_detections (B,)`` int64, ``K =
        TEST.MAX_PER_IMAGE``; slots past ``num_detections[b]`` are zero.
        """
        self._check_inputs(im_data, im_info)
        rois, cls_prob, bbox_pred = self._test_outputs(im_data, im_info)
        return self.roi_head.detect(
            rois, cls_prob, bbox_pred, im_info, score_thresh, nms_thresh, max_per_image
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
        """Final detections per image from the eval outputs of :meth:`forward`:
        :meth:`RoIHead.detect` (decode, clip, rescale, per-class threshold, NMS +1, top-K; the
        options default to ``cfg.TEST``) as per-image dicts ``boxes (n, 4)``, ``scores (n,)``,
        ``labels (n,)`` int64 in ``1 .. num_classes - 1``, by decreasing score."""
        return self.roi_head.detect(
            rois, cls_prob, bbox_pred, im_info, score_thresh, nms_thresh, max_per_image
        ).to_list()
