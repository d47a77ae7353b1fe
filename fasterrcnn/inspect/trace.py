"""Record every stage of one image's pass through a :class:`~fasterrcnn.model.FasterRCNN`.

    from fasterrcnn.inspect import trace
    t = trace(model, image)                        # eval pass: proposals, scores, detections
    t = trace(model, image, {"boxes": ..., "labels": ...})   # + RPN and RoI training targets
    t.shapes()                                     # the walkthroughs' table, printed
    t["rpn_cls_prob"], t["anchors"], t["rois"], t.detections

The stages are caught with forward hooks on the model's layer modules (found by type: the
backbone base, :class:`~fasterrcnn.model.RPN` and its convolutions, the proposal and target
layers, the RoI pooler, the head's top and predictors), so the model runs its ordinary
forward.  ``image`` follows the one-call API's contract (a ``(3, H, W)`` RGB tensor or an
``(H, W, 3)`` BGR uint8 array, see :mod:`fasterrcnn.model.transform`), or is a file path.

Without targets everything comes from one eval-mode pass (``TEST`` proposal numbers; the second
stage runs on every row of the padded proposals, so its shapes are fixed); with ``TEST.FLIP``
the stages are the image's own pass and only the detections merge in the mirror image's.
With targets a second pass runs the model in training mode, as the walkthroughs do, with
BatchNorm and Dropout kept in eval mode, the image at the same test scale, no gradients, and
the sampling generator restored afterwards (the model is left exactly as it was): the stages
from ``rois`` on are then that pass's (``TRAIN`` proposal numbers, the sampled RoIs and their
targets, the second stage on the sampled RoIs), and ``losses`` holds its four losses.
Detections always come from the eval pass.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.data.image import read_image
from fasterrcnn.model.backbones import ResNetBase, VGGBase
from fasterrcnn.model.image_api import detect
from fasterrcnn.model.roi_head import RoIHead
from fasterrcnn.model.rpn import RPN
from fasterrcnn.model.transform import ImageLike, Target, to_bgr_float
from fasterrcnn.ops import RoIAlign, RoICrop, RoIPool
from fasterrcnn.rpn import (
    AnchorTargetLayer,
    ProposalLayer,
    ProposalTargetLayer,
    clip_boxes,
    decode_boxes,
)

STAGES: OrderedDict[str, str] = OrderedDict(
    [
        ("im_data", "network input: BGR minus PIXEL_MEANS, resized, (1, 3, H, W)"),
        ("im_info", "[height, width, scale] of the resized image"),
        ("base_feat", "backbone base, stride 16: conv5_3 (VGG16) / layer3 (ResNet)"),
        ("rpn_conv1", "RPN 3x3 conv + ReLU"),
        ("rpn_cls_score", "RPN logits, 2A channels: bg of anchor a at a, fg at A + a"),
        ("rpn_cls_prob", "softmax over (bg, fg) of each anchor, same layout"),
        ("rpn_bbox_pred", "RPN deltas (dx, dy, dw, dh), 4A channels"),
        ("anchors", "all anchors (H * W * A, 4), row (y * W + x) * A + a"),
        ("rpn_labels", "anchor target: 1 fg, 0 bg, -1 ignored (targets only)"),
        ("rpn_bbox_targets", "anchor target: deltas to the matched gt box"),
        ("rpn_bbox_inside_weights", "anchor target: 1 on fg anchors"),
        ("rpn_bbox_outside_weights", "anchor target: 1 / number of sampled anchors"),
        ("rois", "proposals [b, x1, y1, x2, y2] after NMS (zero rows pad)"),
        ("rois_scores", "fg probability of each proposal (0 on padding rows)"),
        ("sampled_rois", "proposal target: sampled RoIs (targets only)"),
        ("rois_label", "proposal target: class of each sampled RoI, 0 bg"),
        ("rois_target", "proposal target: normalised deltas to the matched gt box"),
        ("rois_inside_ws", "proposal target: 1 on fg RoIs"),
        ("rois_outside_ws", "proposal target: 1 on fg RoIs"),
        ("pooled_feat", "RoI pooling of the base features (pool | align | crop)"),
        ("fc7", "the top: fc6, fc7 (VGG16) / layer4 + spatial mean (ResNet)"),
        ("cls_score", "class logits"),
        ("cls_prob", "softmax of cls_score"),
        ("bbox_pred", "normalised box deltas, 4 per class (or 4)"),
        ("det_boxes", "detections [x1, y1, x2, y2] in original-image pixels"),
        ("det_scores", "detection scores"),
        ("det_labels", "detection classes"),
    ]
)
"""Stage names (the reference's variable names) in the walkthroughs' order, and what each is."""

TARGET_STAGES = (
    "rpn_labels",
    "rpn_bbox_targets",
    "rpn_bbox_inside_weights",
    "rpn_bbox_outside_weights",
    "sampled_rois",
    "rois_label",
    "rois_target",
    "rois_inside_ws",
    "rois_outside_ws",
)
"""The stages recorded only when targets are given."""


class Trace:
    """The recorded stages of one image (see the module docstring).

    Attributes:
        stages: ``{name: tensor}`` on the CPU, in :data:`STAGES` order.
        image: the original image, ``(h, w, 3)`` uint8 BGR.
        input_image: the network's input image (resized, unpadded), ``(H, W, 3)`` uint8 BGR.
        scale: resize factor from ``image`` to ``input_image``.
        num_anchors: anchors per feature cell ``A``; feat_stride: pixels per feature cell.
        detections: ``{'boxes', 'scores', 'labels'}`` in original-image pixels.
        targets: the targets given (original pixels) or ``None``.
        losses: the four losses of the training pass (``None`` without targets).
        backbone: ``"vgg16"`` or ``"resnet"``.
        num_rois: the number of real proposals (rows of ``rois`` before the zero padding).
    """

    def __init__(
        self,
        stages: Dict[str, Tensor],
        image: np.ndarray,
        input_image: np.ndarray,
        scale: float,
        num_anchors: int,
        feat_stride: int,
        detections: Dict[str, Tensor],
        targets: Optional[Target],
        losses: Optional[Dict[str, float]],
        backbone: str,
        num_rois: int,
    ) -> None:
        self.stages = OrderedDict((k, stages[k]) for k in STAGES if k in stages)
        self.image = image
        self.input_image = input_image
        self.scale = scale
        self.num_anchors = num_anchors
        self.feat_stride = feat_stride
        self.detections = detections
        self.targets = targets
        self.losses = losses
        self.backbone = backbone
        self.num_rois = num_rois

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.stages:
            raise KeyError(
                f"no stage {name!r} in this trace; recorded: {list(self.stages)}"
                + (
                    ""
                    if self.targets is not None
                    else " (the target stages need trace(..., targets=...))"
                )
            )
        return self.stages[name]

    def __contains__(self, name: str) -> bool:
        return name in self.stages

    def __iter__(self) -> Iterator[str]:
        return iter(self.stages)

    @property
    def feature_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the base feature map."""
        return int(self["base_feat"].shape[2]), int(self["base_feat"].shape[3])

    def shapes(self, print_table: bool = True) -> OrderedDict[str, Tuple[int, ...]]:
        """``{stage: shape}`` in the walkthroughs' order; prints the table unless told not to."""
        table = OrderedDict((name, tuple(tensor.shape)) for name, tensor in self.stages.items())
        if print_table:
            print(self.format_shapes())
        return table

    def format_shapes(self) -> str:
        """The shapes table as text: stage, shape (``1x512x37x50``), what it is."""
        base = "conv5_3" if self.backbone == "vgg16" else "layer3"
        rows = [("stage", "shape", "what")]
        for name, tensor in self.stages.items():
            label = f"{name} ({base})" if name == "base_feat" else name
            shape = "x".join(str(s) for s in tensor.shape) or "scalar"
            rows.append((label, shape, STAGES[name]))
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def _first(model: nn.Module, types: Tuple[type, ...], what: str) -> nn.Module:
    for module in model.modules():
        if isinstance(module, types):
            return module
    raise ValueError(f"trace: the model has no {what} ({', '.join(t.__name__ for t in types)})")


class _Recorder:
    """Forward hooks that copy module outputs into ``self.stages`` (detached, on the CPU)."""

    def __init__(self) -> None:
        self.stages: Dict[str, Tensor] = {}
        self.handles: List[Any] = []
        self.keep_first = False

    def store(self, name: str, value: Tensor) -> None:
        """Record ``value`` as ``name``; while ``keep_first``, a name already recorded keeps
        its first value (the image's own pass, not the ``TEST.FLIP`` mirror pass after it)."""
        if self.keep_first and name in self.stages:
            return
        self.stages[name] = value.detach().to("cpu", copy=True)

    def on(self, module: nn.Module, *names: str) -> None:
        """Record ``module``'s output (or the first ``len(names)`` items of it) as ``names``."""

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            values = (output,) if len(names) == 1 and isinstance(output, Tensor) else output
            for name, value in zip(names, values):
                self.store(name, value)

        self.handles.append(module.register_forward_hook(hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _backbone_kind(base: nn.Module) -> str:
    return "vgg16" if isinstance(base, VGGBase) else "resnet"


def _per_anchor(
    rpn_cls_score: Tensor, rpn_bbox_pred: Tensor, num_anchors: int
) -> Tuple[Tensor, Tensor]:
    """fg probabilities ``(B, N)`` and deltas ``(B, N, 4)`` per anchor, row ``(y*W+x)*A+a``, from
    the RPN convolutions' outputs (channel layout of :class:`~fasterrcnn.model.RPN`)."""
    batch, _, height, width = rpn_cls_score.shape
    a = num_anchors
    logits = rpn_cls_score.view(batch, 2, a, height, width).permute(0, 3, 4, 2, 1)
    fg = F.softmax(logits.reshape(batch, -1, 2).float(), dim=2)[..., 1]
    deltas = rpn_bbox_pred.view(batch, a, 4, height, width).permute(0, 3, 4, 1, 2)
    return fg, deltas.reshape(batch, -1, 4).float()


def _proposal_scores(rois: Tensor, boxes: Tensor, fg: Tensor) -> Tensor:
    """The fg probability ``(B, P)`` of each proposal row (0 on padding rows): the best score
    among the decoded anchor ``boxes`` ``(B, N, 4)`` equal to the proposal."""
    scores = torch.zeros(rois.shape[:2])
    for b in range(rois.shape[0]):
        best: Dict[Tuple[float, ...], float] = {}
        for box, score in zip(boxes[b].tolist(), fg[b].tolist()):
            key = tuple(box)
            best[key] = max(score, best.get(key, 0.0))
        for p, row in enumerate(rois[b, :, 1:].tolist()):
            scores[b, p] = best.get(tuple(row), 0.0)
    return scores


def _image_of(image: Union[ImageLike, str, os.PathLike]) -> ImageLike:
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image))
    return image


@torch.no_grad()
def trace(
    model: nn.Module,
    image: Union[ImageLike, str, os.PathLike],
    targets: Optional[Target] = None,
    score_thresh: Optional[float] = None,
    detections_per_img: Optional[int] = None,
) -> Trace:
    """Run ``model`` on one image and record every stage (see the module docstring).

    Args:
        model: a :class:`~fasterrcnn.model.FasterRCNN` (any backbone, pooling mode, device).
        image: a ``(3, H, W)`` RGB tensor, an ``(H, W, 3)`` BGR uint8 array, or a file path.
        targets: ``{'boxes': (G, 4), 'labels': (G,)}`` in original-image pixels: adds the RPN
            and RoI training targets (a training-mode pass, see the module docstring).
        score_thresh, detections_per_img: passed to :func:`fasterrcnn.model.image_api.detect`.
    """
    image = _image_of(image)
    base = _first(model, (VGGBase, ResNetBase), "backbone base")
    rpn = _first(model, (RPN,), "RPN")
    head = _first(model, (RoIHead,), "RoI head")
    pooler = _first(head, (RoIAlign, RoIPool, RoICrop), "RoI pooler")
    recorder = _Recorder()
    recorder.on(model.transform, "im_data", "im_info")
    recorder.on(base, "base_feat")
    recorder.on(rpn.conv, "rpn_conv1")
    recorder.on(rpn.cls_score, "rpn_cls_score")
    recorder.on(rpn.bbox_pred, "rpn_bbox_pred")
    recorder.on(_first(rpn, (ProposalLayer,), "proposal layer"), "rois", "num_rois")
    recorder.on(
        _first(model, (AnchorTargetLayer,), "anchor target layer"),
        "rpn_labels",
        "rpn_bbox_targets",
        "rpn_bbox_inside_weights",
        "rpn_bbox_outside_weights",
    )
    recorder.on(
        _first(model, (ProposalTargetLayer,), "proposal target layer"),
        "sampled_rois",
        "rois_label",
        "rois_target",
        "rois_inside_ws",
        "rois_outside_ws",
    )
    recorder.on(pooler, "pooled_feat")
    recorder.on(head.top, "fc7")
    recorder.on(head.cls_score, "cls_score")
    recorder.on(head.bbox_pred, "bbox_pred")
    was_training = {module: module.training for module in model.modules()}
    try:
        model.eval()
        recorder.keep_first = True
        detection = detect(model, [image], score_thresh, detections_per_img)[0]
        recorder.keep_first = False
        losses = None
        if targets is not None:
            losses = _training_pass(model, image, targets)
    finally:
        recorder.remove()
        for module, flag in was_training.items():
            module.training = flag
    stages = recorder.stages
    num_rois = int(stages.pop("num_rois")[0])
    _derive(stages, rpn)
    for key in ("boxes", "scores", "labels"):
        stages[f"det_{key}"] = detection[key].detach().cpu()
    bgr = to_bgr_float(image)
    info = stages["im_info"][0]
    height, width, scale = int(info[0]), int(info[1]), float(info[2])
    means = torch.tensor(model.transform.pixel_means).view(3, 1, 1)
    stds = torch.tensor(model.transform.pixel_stds).view(3, 1, 1)
    net_input = (stages["im_data"][0, :, :height, :width] * stds + means).permute(1, 2, 0)
    return Trace(
        stages,
        np.clip(bgr, 0, 255).astype(np.uint8),
        net_input.round().clamp(0, 255).to(torch.uint8).numpy(),
        scale,
        rpn.num_anchors,
        rpn.feat_stride,
        {key: stages[f"det_{key}"] for key in ("boxes", "scores", "labels")},
        targets,
        losses,
        _backbone_kind(base),
        num_rois,
    )


def _training_pass(model: nn.Module, image: ImageLike, targets: Target) -> Dict[str, float]:
    """A training-mode pass without side effects on BatchNorm statistics, Dropout or the
    sampling generator; the image keeps the test scale.  Returns the losses as floats."""
    state = model.generator.get_state()
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
            module.training = False
    model.transform.training = False
    try:
        losses = model([image], [targets])
    finally:
        model.generator.set_state(state)
    return {name: float(value) for name, value in losses.items()}


def _derive(stages: Dict[str, Tensor], rpn: RPN) -> None:
    """Add the stages computed from recorded ones: ``rpn_conv1`` after its ReLU,
    ``rpn_cls_prob``, ``anchors``, ``rois_scores``, ``cls_prob``.  The box
    maths runs on the RPN's device, as the proposal layer's did, so the boxes match exactly."""
    stages["rpn_conv1"] = F.relu(stages["rpn_conv1"])
    score = stages["rpn_cls_score"]
    batch, _, height, width = score.shape
    prob = F.softmax(score.view(batch, 2, rpn.num_anchors, height, width).float(), dim=1)
    stages["rpn_cls_prob"] = prob.view(score.shape)
    anchors = rpn.anchors(height, width).detach()
    stages["anchors"] = anchors.cpu()
    fg, deltas = _per_anchor(score, stages["rpn_bbox_pred"], rpn.num_anchors)
    device = anchors.device
    boxes = clip_boxes(
        decode_boxes(anchors.to(deltas.dtype), deltas.to(device)), stages["im_info"].to(device)
    ).cpu()
    stages["rois_scores"] = _proposal_scores(stages["rois"], boxes, fg)
    stages["cls_prob"] = F.softmax(stages["cls_score"].float(), dim=1)
