"""How well the RPN's anchors fit a dataset's boxes, and anchors that would fit better.

The fit is measured in the standard shape-only way of anchor analyses: each ground-truth box
is compared with every base anchor centred on the box's own centre, so the IoU depends only on
the widths and heights (``inter = min(w, w') * min(h, h')``).  The RPN places anchors on a grid
of ``FEAT_STRIDE`` pixels, so the IoU it can reach is lower, most of all for boxes smaller
than the stride.  Sizes use the +1 convention of :mod:`fasterrcnn.rpn.boxes` (a box
``[x1, y1, x2, y2]`` is ``x2 - x1 + 1`` wide) and are measured after the training resize:
a box of an image resized by ``s`` is ``(x2 - x1) * s + 1`` wide, as the loader scales it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Mapping, Sequence, Tuple

import numpy as np
import torch

from fasterrcnn.data.image import image_scale
from fasterrcnn.rpn.anchors import generate_anchors

SIZE_BUCKETS = (0.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, math.inf)
"""Edges of the size buckets, in pixels of ``sqrt(width * height)`` after the resize."""


def resized_box_sizes(
    entries: Iterable[Mapping[str, object]], scales: Sequence[int], max_size: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Widths and heights (+1 convention) of every box at every training scale.

    Args:
        entries: roidb entries (``width``, ``height``, ``boxes`` (M,4) 0-based +1).
        scales: short-side targets (``TRAIN.SCALES``); each box counts once per scale.
        max_size: the long-side cap (``TRAIN.MAX_SIZE``).

    Returns:
        (widths (N,), heights (N,)) float64, N = boxes x scales.
    """
    widths: List[np.ndarray] = []
    heights: List[np.ndarray] = []
    for e in entries:
        boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
        if not len(boxes) or e["width"] <= 0 or e["height"] <= 0:
            continue
        for target in scales:
            s = image_scale(int(e["height"]), int(e["width"]), target, max_size)
            widths.append((boxes[:, 2] - boxes[:, 0]) * s + 1)
            heights.append((boxes[:, 3] - boxes[:, 1]) * s + 1)
    if not widths:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(widths), np.concatenate(heights)


def anchor_shapes(stride: int, scales: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """(A,2) widths and heights (+1 convention) of the model's base anchors
    (:func:`~fasterrcnn.rpn.anchors.generate_anchors` with ``base_size = stride``)."""
    a = generate_anchors(stride, ratios, scales).double()
    return torch.stack((a[:, 2] - a[:, 0] + 1, a[:, 3] - a[:, 1] + 1), dim=1).numpy()


def shape_iou(boxes_wh: np.ndarray, anchors_wh: np.ndarray) -> np.ndarray:
    """(N,A) IoU of boxes (N,2) and anchors (A,2) given as widths and heights (+1 convention)
    and centred on the same point: ``min(w, w') * min(h, h') / (w h + w' h' - inter)``.  Equal
    to :func:`fasterrcnn.rpn.boxes.box_iou` of the centred boxes (tested), in closed form."""
    a = np.asarray(boxes_wh, np.float64).reshape(-1, 1, 2)
    b = np.asarray(anchors_wh, np.float64).reshape(1, -1, 2)
    inter = np.minimum(a[..., 0], b[..., 0]) * np.minimum(a[..., 1], b[..., 1])
    return inter / (a[..., 0] * a[..., 1] + b[..., 0] * b[..., 1] - inter)


def best_anchor_iou(
    widths: np.ndarray, heights: np.ndarray, anchors_wh: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    """(N,) the best shape-only IoU of each box (N widths, heights) over the anchors (A,2)."""
    boxes = np.stack([np.asarray(widths, np.float64), np.asarray(heights, np.float64)], axis=1)
    if not len(boxes) or not len(anchors_wh):
        return np.zeros(len(boxes))
    return np.concatenate(
        [
            shape_iou(boxes[i : i + chunk], anchors_wh).max(axis=1)
            for i in range(0, len(boxes), chunk)
        ]
    )


@dataclass(frozen=True)
class BucketFit:
    """Anchor fit of the boxes whose size lies in ``[low, high)``."""

    low: float
    high: float
    boxes: int
    frac_positive: float
    frac_half: float
    median_iou: float


def fit_by_size(
    widths: np.ndarray, heights: np.ndarray, best_iou: np.ndarray, positive_overlap: float
) -> List[BucketFit]:
    """Per bucket of :data:`SIZE_BUCKETS` (the non-empty ones) and a last row for all boxes
    (``low = 0``, ``high = inf``): the fraction with best IoU ``>= positive_overlap`` and
    ``>= 0.5``, and the median best IoU."""
    sizes = np.sqrt(np.asarray(widths) * np.asarray(heights))
    rows = []
    edges = list(zip(SIZE_BUCKETS[:-1], SIZE_BUCKETS[1:])) + [(0.0, math.inf)]
    for k, (low, high) in enumerate(edges):
        inside = (sizes >= low) & (sizes < high)
        n = int(inside.sum())
        if n == 0 and k < len(edges) - 1:
            continue
        iou = best_iou[inside]
        rows.append(
            BucketFit(
                low,
                high,
                n,
                float((iou >= positive_overlap).mean()) if n else 0.0,
                float((iou >= 0.5).mean()) if n else 0.0,
                float(np.median(iou)) if n else 0.0,
            )
        )
    return rows


@dataclass(frozen=True)
class AnchorSuggestion:
    """Anchors found by :func:`suggest_anchors` and the fraction of boxes they cover."""

    scales: Tuple[float, ...]
    ratios: Tuple[float, ...]
    coverage: float
    coverage_positive: float

    @property
    def num_anchors(self) -> int:
        return len(self.scales) * len(self.ratios)


def _ratio_candidates(aspects: np.ndarray) -> List[Tuple[float, ...]]:
    """Sets of anchor ratios (height / width) to try: the reference's and quantiles of the
    boxes' aspect ratios."""
    logs = np.log(aspects)
    found = [(1.0,), (0.5, 1.0, 2.0), (0.33, 0.5, 1.0, 2.0, 3.0)]
    for qs in ((0.5,), (1 / 6, 0.5, 5 / 6), (0.1, 0.3, 0.5, 0.7, 0.9)):
        ratios = tuple(sorted({round(float(np.exp(np.quantile(logs, q))), 2) for q in qs}))
        found.append(tuple(max(r, 0.05) for r in ratios))
    return list(dict.fromkeys(found))


def _scale_candidates(sizes: np.ndarray, stride: int) -> List[Tuple[float, ...]]:
    """Geometric series of anchor scales (steps 2 and sqrt 2, three offsets) spanning the
    0.5%..99.5% range of the box sizes."""
    low, high = (float(np.quantile(sizes, q)) for q in (0.005, 0.995))
    found = []
    for step in (2.0, math.sqrt(2.0)):
        for offset in (0.0, 0.25, 0.5):
            first = low * step**offset
            count = max(1, int(math.ceil(math.log(max(high, first) / first, step) + 0.5)))
            scales = tuple(round(first * step**k / stride, 2) for k in range(count))
            found.append(tuple(max(s, 0.01) for s in scales))
    return list(dict.fromkeys(found))


def suggest_anchors(
    widths: np.ndarray,
    heights: np.ndarray,
    stride: int,
    positive_overlap: float,
    target: float = 0.95,
    min_iou: float = 0.5,
    max_boxes: int = 20000,
    seed: int = 0,
) -> AnchorSuggestion:
    """Anchor scales and ratios with the fewest anchors that give at least ``target`` of the
    boxes a best shape-only IoU ``>= min_iou``, and among those the most boxes an IoU
    ``>= positive_overlap`` (the best coverage at ``min_iou`` found when none reaches it).

    Candidates: ratio sets (the reference's 0.5/1/2, 1 or 5 ratios, 1, 3 or 5 quantiles of the
    boxes' height / width) times geometric scale series (factor 2 or sqrt 2 between scales,
    spanning the boxes' sizes).  The search runs on at most ``max_boxes`` boxes (a seeded
    sample); the returned coverage is measured on all of them.
    """
    widths, heights = np.asarray(widths, np.float64), np.asarray(heights, np.float64)
    if not len(widths):
        raise ValueError("no boxes to fit anchors to")
    sample = np.arange(len(widths))
    if len(sample) > max_boxes:
        sample = np.sort(np.random.default_rng(seed).choice(len(widths), max_boxes, False))
    w, h = widths[sample], heights[sample]
    best_key, best = None, None
    for ratios in _ratio_candidates(h / w):
        for scales in _scale_candidates(np.sqrt(w * h), stride):
            iou = best_anchor_iou(w, h, anchor_shapes(stride, scales, ratios))
            cover = float((iou >= min_iou).mean())
            reached = cover >= target
            key = (
                reached,
                -len(scales) * len(ratios) if reached else 0,
                float((iou >= positive_overlap).mean()) if reached else cover,
            )
            if best_key is None or key > best_key:
                best_key, best = key, (scales, ratios)
    scales, ratios = best
    iou = best_anchor_iou(widths, heights, anchor_shapes(stride, scales, ratios))
    return AnchorSuggestion(
        tuple(scales),
        tuple(ratios),
        float((iou >= min_iou).mean()),
        float((iou >= positive_overlap).mean()),
    )
