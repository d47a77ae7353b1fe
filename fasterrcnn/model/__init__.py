"""The Faster R-CNN model: backbones, ImageNet weight loading, RPN, RoI head and the detector."""

from fasterrcnn.model.backbones import (
    BackboneParts,
    build_backbone,
    build_resnet,
    build_vgg16,
)
from fasterrcnn.model.builder import backbone_style, build_model
from fasterrcnn.model.faster_rcnn import FasterRCNN, Stages
from fasterrcnn.model.losses import smooth_l1_loss
from fasterrcnn.model.roi_head import (
    Detections,
    DetectionSettings,
    HeadOutput,
    RoIHead,
    build_pooler,
)
from fasterrcnn.model.rpn import RPN, RPNOutput
from fasterrcnn.model.weights import (
    WeightLoadError,
    WeightReport,
    load_backbone_weights,
    read_state_dict,
)

__all__ = [
    "BackboneParts",
    "DetectionSettings",
    "Detections",
    "FasterRCNN",
    "HeadOutput",
    "RPN",
    "RPNOutput",
    "RoIHead",
    "Stages",
    "WeightLoadError",
    "WeightReport",
    "backbone_style",
    "build_backbone",
    "build_model",
    "build_pooler",
    "build_resnet",
    "build_vgg16",
    "load_backbone_weights",
    "read_state_dict",
    "smooth_l1_loss",
]
