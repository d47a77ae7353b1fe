"""Drawing detections on BGR images with OpenCV.

Boxes are ``[x1, y1, x2, y2]`` pixels of the image being drawn on, +1 convention (x2, y2 are
the last covered pixels, which is also how ``cv2.rectangle`` treats its second corner).
"""

import colorsys
from typing import Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_TEXT_THICKNESS = 1
_BOX_THICKNESS = 2


def class_color(label: int) -> Tuple[int, int, int]:
    """Deterministic BGR colour of a class index: hues spaced by the golden ratio, so
    neighbouring labels get clearly different colours."""
    hue = (int(label) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _label_name(
    k: int, label: int, names: Optional[Sequence[str]], class_names: Optional[Sequence[str]]
) -> str:
    if names is not None:
        return str(names[k])
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def draw_detections(
    image: np.ndarray,
    detections: Mapping[str, object],
    class_names: Optional[Sequence[str]] = None,
    score_thresh: float = 0.0,
) -> np.ndarray:
    """Draw boxes and "name: 0.93" labels (or "name" without scores) on a copy of an image.

    Args:
        image: (H,W,3) uint8 BGR image; not modified.
        detections: dict(boxes (N,4) [x1,y1,x2,y2], scores (N,), labels (N,) int), numpy
            arrays or torch tensors; optionally 'names' (N,) per-box names or 'class_names'
            (a list indexed by label).  Without 'scores' (ground truth) the labels are the
            names alone.
        class_names: names indexed by label; overrides detections['class_names']. Without any
            names the label number is written.
        score_thresh: boxes with score < score_thresh are not drawn.

    Returns:
        A new (H,W,3) uint8 image with the detections drawn, the colour fixed by the label.
    """
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        raise ValueError("image must be an (H,W,3) uint8 numpy array")
    boxes = _to_numpy(detections["boxes"]).astype(np.float64).reshape(-1, 4)
    has_scores = detections.get("scores") is not None
    scores = (
        _to_numpy(detections["scores"]).astype(np.float64).reshape(-1)
        if has_scores
        else np.ones(len(boxes))
    )
    labels = _to_numpy(detections["labels"]).astype(np.int64).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(
            f"boxes, scores and labels differ in length: {len(boxes)}, {len(scores)}, {len(labels)}"
        )
    names = detections.get("names")
    if names is not None and len(names) != len(boxes):
        raise ValueError(f"'names' has {len(names)} entries for {len(boxes)} boxes")
    if class_names is None:
        class_names = detections.get("class_names")

    out = image.copy()
    height, width = out.shape[:2]
    for k in range(len(boxes)):
        if scores[k] < score_thresh:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
        x1, x2 = min(max(x1, 0), width - 1), min(max(x2, 0), width - 1)
        y1, y2 = min(max(y1, 0), height - 1), min(max(y2, 0), height - 1)
        color = class_color(labels[k])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, _BOX_THICKNESS)
        text = _label_name(k, int(labels[k]), names, class_names)
        if has_scores:
            text = f"{text}: {scores[k]:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, _FONT, _FONT_SCALE, _TEXT_THICKNESS)
        top = y1 - th - baseline if y1 - th - baseline >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + baseline), color, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (x1, top + th),
            _FONT,
            _FONT_SCALE,
            (255, 255, 255),
            _TEXT_THICKNESS,
            cv2.LINE_AA,
        )
    return out
