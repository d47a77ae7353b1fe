"""The Fast R-CNN head: RoI pooling, the backbone's top, classification and box regression."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.model.losses import smooth_l1_loss
from fasterrcnn.model.precision import at_least_float32, autocast_disabled
from fasterrcnn.ops import RoIAlign, RoICrop, RoIPool

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


class RoIHead(nn.Module):
    """Pool RoIs from the base features, run the top, predict class scores and box deltas.

    ``bbox_pred`` has 4 outputs per class (``4 * num_classes``, class ``c`` at ``4c .. 4c+3``)
    or 4 in all when ``cfg.CLASS_AGNOSTIC``.  Initialisation as the reference: normal with std
    0.01 for ``cls_score``, 0.001 for ``bbox_pred``, zero biases.
    """

    def __init__(self, cfg: Config, top: nn.Module, top_channels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_agnostic = cfg.CLASS_AGNOSTIC
        self.pooler = build_pooler(cfg)
        self.top = top
        self.cls_score = nn.Linear(top_channels, num_classes)
        self.bbox_pred = nn.Linear(top_channels, 4 if self.class_agnostic else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(self.bbox_pred.weight, 0.0, 0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def pool(self, base_feat: Tensor, rois: Tensor) -> Tensor:
        """``(K, C, POOLING_SIZE, POOLING_SIZE)`` features of ``rois`` ``(K, 5)``.

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

    def forward(self, base_feat: Tensor, rois: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and deltas of ``rois`` ``(K, 5)`` over ``base_feat`` ``(B, C, H, W)``."""
        return self.predict(self.pool(base_feat, rois))

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
