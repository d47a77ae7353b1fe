"""What the dataset check reports: statistics of a roidb, the warnings of its parsing, and a
contact sheet of images with their boxes.

Sizes and ratios use the +1 convention (a box ``[x1, y1, x2, y2]`` is ``x2 - x1 + 1`` wide);
"after the resize" means at each ``TRAIN.SCALES`` with the ``TRAIN.MAX_SIZE`` cap, as in
:mod:`.anchor_fit`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Sequence

import cv2
import numpy as np

from fasterrcnn.data.image import read_image
from fasterrcnn.vis import draw_detections

QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)
"""min, p5, median, p95, max."""


def quantiles(values: np.ndarray) -> List[float]:
    """:data:`QUANTILES` of ``values`` (all 0 when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return [0.0] * len(QUANTILES)
    return [float(v) for v in np.quantile(values, QUANTILES)]


@dataclass
class DatasetStats:
    """Counts of one dataset's ground truth (difficult and crowd boxes included)."""

    images: int
    images_without_boxes: List[str]
    boxes_per_class: Dict[str, int]
    images_per_class: Dict[str, int]
    box_aspect: List[float]
    image_aspect: List[float]
    images_outside_ratio: int
    extra: Dict[str, object] = field(default_factory=dict)


def dataset_stats(
    roidb: Sequence[Mapping[str, object]], classes: Sequence[str], ratio_range: Sequence[float]
) -> DatasetStats:
    """Counts of ``roidb`` (entries as :mod:`.imdb` describes them) for ``classes``
    (``classes[0]`` the background).  ``box_aspect`` is height / width of the boxes,
    ``image_aspect`` width / height of the images with a known size; ``images_outside_ratio``
    counts images whose width / height lies outside ``ratio_range`` (cropped in training)."""
    boxes = {c: 0 for c in classes[1:]}
    images = {c: 0 for c in classes[1:]}
    aspects, ratios, empty = [], [], []
    for e in roidb:
        b = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(e["gt_classes"], dtype=np.int64)
        if not len(b):
            empty.append(str(e["image"]))
        for label in labels:
            boxes[classes[label]] += 1
        for label in set(labels.tolist()):
            images[classes[label]] += 1
        aspects.append((b[:, 3] - b[:, 1] + 1) / (b[:, 2] - b[:, 0] + 1))
        if e["width"] > 0 and e["height"] > 0:
            ratios.append(e["width"] / e["height"])
    ratios_a = np.asarray(ratios, dtype=np.float64)
    outside = int(((ratios_a < ratio_range[0]) | (ratios_a > ratio_range[1])).sum())
    return DatasetStats(
        len(roidb),
        empty,
        boxes,
        images,
        quantiles(np.concatenate(aspects) if aspects else np.zeros(0)),
        quantiles(ratios_a),
        outside,
    )


@dataclass
class DataWarnings:
    """Warnings logged under ``fasterrcnn.data`` while a dataset was read, sorted by kind."""

    repaired: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    other: List[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        if message.endswith("clipped"):
            self.repaired.append(message)
        elif "skipped" in message or "dropped" in message:
            self.dropped.append(message)
        else:
            self.other.append(message)


class _Collector(logging.Handler):
    def __init__(self, sink: DataWarnings) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.add(record.getMessage())


@contextlib.contextmanager
def collect_data_warnings(sink: DataWarnings) -> Iterator[DataWarnings]:
    """Also send the warnings of the ``fasterrcnn.data`` loggers to ``sink`` inside the
    ``with`` block (they still reach the log)."""
    log = logging.getLogger("fasterrcnn.data")
    handler = _Collector(sink)
    log.addHandler(handler)
    try:
        yield sink
    finally:
        log.removeHandler(handler)


def contact_sheet(
    roidb: Sequence[Mapping[str, object]],
    classes: Sequence[str],
    num_images: int,
    seed: int,
    tile: int = 320,
) -> np.ndarray:
    """(H,W,3) uint8 BGR grid of ``num_images`` random entries (seeded; unreadable images are
    passed over) with their boxes and class names drawn, each fitted into a ``tile`` square
    with its file name underneath."""
    order = np.random.default_rng(seed).permutation(len(roidb))
    tiles = []
    for i in order:
        if len(tiles) >= num_images:
            break
        entry = roidb[int(i)]
        try:
            image = read_image(str(entry["image"]))
        except OSError:
            continue
        tiles.append(_tile(image, entry, classes, tile))
    if not tiles:
        raise ValueError("no readable image to draw")
    cols = int(math.ceil(math.sqrt(len(tiles))))
    rows = int(math.ceil(len(tiles) / cols))
    sheet = np.full((rows * tiles[0].shape[0], cols * tile, 3), 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * t.shape[0] : (r + 1) * t.shape[0], c * tile : (c + 1) * tile] = t
    return sheet


def _tile(
    image: np.ndarray, entry: Mapping[str, object], classes: Sequence[str], tile: int
) -> np.ndarray:
    caption = 18
    scale = min(tile / image.shape[1], (tile - caption) / image.shape[0])
    size = (max(1, int(round(image.shape[1] * scale))), max(1, int(round(image.shape[0] * scale))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    boxes = np.asarray(entry["boxes"], dtype=np.float64).reshape(-1, 4) * scale
    drawn = draw_detections(
        small, {"boxes": boxes, "labels": entry["gt_classes"]}, class_names=classes
    )
    out = np.full((tile, tile, 3), 64, dtype=np.uint8)
    out[: size[1], : size[0]] = drawn
    name = str(entry["image"]).replace("\\", "/").split("/")[-1]
    cv2.putText(
        out,
        name[:40],
        (4, tile - 5),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out
