"""Build a :class:`FasterRCNN` from a config."""

from __future__ import annotations

import logging
from typing import Optional

from fasterrcnn.config import Config
from fasterrcnn.model.backbones import build_backbone
from fasterrcnn.model.faster_rcnn import FasterRCNN
from fasterrcnn.model.roi_head import RoIHead
from fasterrcnn.model.rpn import RPN
from fasterrcnn.model.weights import load_backbone_weights

logger = logging.getLogger(__name__)


def backbone_style(cfg: Config) -> str:
    """``cfg.BACKBONE.STYLE``: ``"caffe"`` (the reference's Caffe ResNets, raw 0-255 BGR minus
    means) or ``"pytorch"`` (torchvision's).  See :mod:`fasterrcnn.model.weights` for the
    pixel statistics that go with each."""
    return cfg.BACKBONE.STYLE


def build_model(cfg: Config, num_classes: int, pretrained: Optional[str] = None) -> FasterRCNN:
    """The Faster R-CNN of ``cfg.NET`` for ``num_classes`` classes (background included).

    Args:
        cfg: the configuration (not modified).
        num_classes: number of classes including the background (class 0).
        pretrained: an ImageNet weight file for the backbone; defaults to
            ``cfg.BACKBONE.PRETRAINED`` (``""``: train from scratch).  Only with
            ``BACKBONE.WIDTH_MULT`` 1.0.
    """
    style = backbone_style(cfg)
    parts = build_backbone(cfg, style)
    path = cfg.BACKBONE.PRETRAINED if pretrained is None else pretrained
    if path:
        if cfg.BACKBONE.WIDTH_MULT != 1.0:
            raise ValueError(
                f"pretrained weights need BACKBONE.WIDTH_MULT 1.0, got {cfg.BACKBONE.WIDTH_MULT}"
            )
        load_backbone_weights(parts.base, parts.top, path, style)
    elif any(not p.requires_grad for p in parts.base.parameters()):
        logger.warning(
            "%s built without pretrained weights but with frozen layers "
            "(RESNET.FIXED_BLOCKS / VGG.FIXED_LAYERS): they will stay at their random init",
            cfg.NET,
        )
    rpn = RPN.from_config(cfg, parts.base_channels)
    roi_head = RoIHead.from_config(cfg, parts.top, parts.top_channels, num_classes)
    return FasterRCNN(cfg, parts.base, rpn, roi_head, num_classes)
