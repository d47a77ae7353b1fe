"""The documented repair rules for annotated boxes, and a bounded warning log.

Boxes are ``[x1, y1, x2, y2]`` in 0-based pixels with the +1 convention (a box covers the
pixels ``x1..x2``).  The rules, applied in this order to every annotated box:

1. a coordinate that is not a finite number: the box is skipped;
2. reversed corners (``x2 < x1`` or ``y2 < y1``): skipped, never swapped;
3. corners outside the image: clipped to ``[0, width-1] x [0, height-1]`` (logged);
4. a box whose corners are less than one pixel apart (``x2 - x1 < 1`` or ``y2 - y1 < 1``:
   zero area, or nothing left after clipping): skipped.  The same test drops boxes after
   flips and crops in the loader (the reference's loader drops ``x1 == x2`` boxes there).

Every skip or repair is a warning naming the file and the box.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

MIN_EXTENT = 1.0
"""Smallest ``x2 - x1`` (and ``y2 - y1``) a kept box may have, in pixels."""


class IssueLog:
    """Warnings about one dataset: the first ``limit`` one by one, then only a count.

    ``summary()`` logs how many were left out.  Nothing is global: one log per build.
    """

    def __init__(self, source: str, limit: int = 50, log: logging.Logger = logger) -> None:
        self.source = source
        self.limit = limit
        self.count = 0
        self._log = log

    def warn(self, message: str) -> None:
        """Log ``message`` (it should name the file and the box) while under the limit."""
        self.count += 1
        if self.count <= self.limit:
            self._log.warning("%s", message)

    def summary(self) -> None:
        """Log the number of issues that were not logged one by one."""
        if self.count > self.limit:
            self._log.warning(
                "%s: %d data issues in all (%d more not shown)",
                self.source,
                self.count,
                self.count - self.limit,
            )


def degenerate(boxes: np.ndarray) -> np.ndarray:
    """(M,) bool: boxes (M,4) whose corners are less than MIN_EXTENT apart in x or y."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return ((boxes[:, 2] - boxes[:, 0]) < MIN_EXTENT) | ((boxes[:, 3] - boxes[:, 1]) < MIN_EXTENT)


def clean_boxes(
    boxes: np.ndarray,
    width: int,
    height: int,
    where: str,
    issues: IssueLog,
    names: Optional[Sequence[str]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Apply the module's rules to boxes (M,4) (0-based, +1 convention) of one image.

    Args:
        boxes: (M,4) coordinates, any float dtype.
        width, height: image size; ``<= 0`` means unknown (no clipping, logged by the caller).
        where: the file the boxes come from (for the messages).
        issues: where warnings go.
        names: class name of each box (for the messages).

    Returns:
        (keep (M,) bool, boxes (M,4) float32 clipped); only rows with ``keep`` are valid.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    keep = np.ones(len(boxes), dtype=bool)

    def label(i: int) -> str:
        name = f" ({names[i]})" if names is not None else ""
        x1, y1, x2, y2 = (float(v) + 1 for v in boxes[i])
        return f"{where}: box {i}{name} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] (1-based)"

    finite = np.isfinite(boxes).all(axis=1)
    for i in np.flatnonzero(~finite):
        issues.warn(f"{where}: box {i} has a coordinate that is not a number: skipped")
    keep &= finite
    with np.errstate(invalid="ignore"):
        reversed_ = keep & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    for i in np.flatnonzero(reversed_):
        issues.warn(f"{label(i)} has x2 < x1 or y2 < y1: skipped")
    keep &= ~reversed_
    if width > 0 and height > 0:
        limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float64)
        clipped = np.clip(boxes, 0.0, limits)
        moved = keep & (clipped != boxes).any(axis=1)
        for i in np.flatnonzero(moved):
            issues.warn(f"{label(i)} lies partly outside the {width}x{height} image: clipped")
        boxes = np.where(keep[:, None], clipped, boxes)
    small = keep & degenerate(boxes)
    for i in np.flatnonzero(small):
        issues.warn(f"{label(i)} has zero area (after clipping to the image): skipped")
    keep &= ~small
    return keep, np.nan_to_num(boxes).astype(np.float32)
