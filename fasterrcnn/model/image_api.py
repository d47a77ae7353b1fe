"""The one-call model API with torchvision's contract: ``model(images, targets)``.

    model.train(); losses = model(images, targets)     # dict of the four losses
    model.eval();  detections = model(images)          # one dict per image

``images`` is a list of ``(3, H, W)`` RGB tensors (float in [0, 1] or uint8) or ``(H, W, 3)``
BGR uint8 numpy arrays, of any sizes (see :mod:`fasterrcnn.model.transform`); ``targets`` a
list of dicts ``boxes`` ``(G, 4)`` ``[x1, y1, x2, y2]`` in original-image pixels (+1
convention) and ``labels`` ``(G,)`` in ``1 .. num_classes - 1``.  Each detection dict holds
``boxes`` ``(n, 4)`` float32 in original-image pixels clipped to ``0 .. w - 1`` /
``0 .. h - 1``, ``scores`` ``(n,)`` and ``labels`` ``(n,)`` int64, by decreasing score.

:class:`~fasterrcnn.model.FasterRCNN` dispatches a list (or tuple) first argument here; the
reference entry ``model(im_data, im_info, gt_boxes, num_boxes)`` is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from fasterrcnn.model.transform import ImageLike, Target

if TYPE_CHECKING:
    from fasterrcnn.model.faster_rcnn import FasterRCNN


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def forward_images(
    model: FasterRCNN,
    images: Sequence[ImageLike],
    targets: Optional[Sequence[Target]] = None,
) -> Union[Dict[str, Tensor], List[Dict[str, Tensor]]]:
    """Losses in training mode (``targets`` required), detections in eval mode (``targets``
    ignored), with the defaults of ``model.transform``."""
    if model.training:
        if targets is None:
            raise ValueError(
                "training mode needs targets: a list of dicts with 'boxes' (G, 4) "
                "and 'labels' (G,), one per image (or call model.eval())"
            )
        batch = model.transform(
            images, targets, model.generator, model.num_classes, model_device(model)
        )
        return model(batch.im_data, batch.im_info, batch.gt_boxes, batch.num_boxes)
    return detect(model, images)


def detect(
    model: FasterRCNN,
    images: Sequence[ImageLike],
    score_thresh: Optional[float] = None,
    detections_per_img: Optional[int] = None,
) -> List[Dict[str, Tensor]]:
    """Detections of an eval-mode model on ``images`` (see the module docstring).

    Args:
        score_thresh: keep scores strictly above it; default ``model.transform.score_thresh``
            (``TEST.DETECT_SCORE_THRESH``, 0.05).
        detections_per_img: at most this many per image (0: all); default
            ``model.transform.detections_per_img`` (``TEST.MAX_PER_IMAGE``, 100).
    """
    if model.training:
        raise ValueError("detect() needs an eval-mode model: call model.eval() first")
    transform = model.transform
    score_thresh = transform.score_thresh if score_thresh is None else score_thresh
    if detections_per_img is None:
        detections_per_img = transform.detections_per_img
    batch = transform(images, device=model_device(model))
    rois, cls_prob, bbox_pred = model(batch.im_data, batch.im_info)
    detections = model.postprocess(
        rois,
        cls_prob,
        bbox_pred,
        batch.im_info,
        score_thresh=score_thresh,
        max_per_image=detections_per_img,
    )
    return transform.postprocess(detections, batch.original_sizes)
