"""Region proposal machinery: box maths, anchors and the RPN / Fast R-CNN target layers.

All boxes use the reference +1 pixel convention (width = x2 - x1 + 1).
"""

from fasterrcnn.rpn.anchor_target_layer import AnchorTargetLayer, RPNTargets
from fasterrcnn.rpn.anchors import generate_anchors, shift_anchors
from fasterrcnn.rpn.boxes import (
    BBOX_XFORM_CLIP,
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
)
from fasterrcnn.rpn.proposal_layer import ProposalLayer, ProposalNumbers
from fasterrcnn.rpn.proposal_target_layer import ProposalTargetLayer
from fasterrcnn.rpn.sampling import draw_seed

__all__ = [
    "AnchorTargetLayer",
    "BBOX_XFORM_CLIP",
    "ProposalLayer",
    "ProposalNumbers",
    "ProposalTargetLayer",
    "RPNTargets",
    "box_area",
    "box_iou",
    "clip_boxes",
    "decode_boxes",
    "draw_seed",
    "encode_boxes",
    "generate_anchors",
    "shift_anchors",
]
