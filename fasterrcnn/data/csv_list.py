"""A CSV list of boxes, keras-retinanet's convention: one row ``path,x1,y1,x2,y2,class_name``
per box, and ``path,,,,,`` for an image without objects.

Image paths are relative to the image root (by default the CSV file's folder).  Corners are
pixel edges as a labelling tool writes them (``x2 = x1 + width``, like COCO's ``[x, y, w, h]``);
they become 0-based ``[x1, y1, x2 - 1, y2 - 1]`` with the +1 convention, then go through the
rules of :mod:`.validate`.  Rows may be quoted (names with commas or spaces), lines may end in
CRLF, a header row ``path,x1,y1,x2,y2,class`` is skipped.  Class names are the file's, sorted,
unless a class list is given (:mod:`.class_list`).  Image sizes come from the image headers.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fasterrcnn.data.imdb import Imdb, image_size
from fasterrcnn.data.validate import IssueLog, clean_boxes

logger = logging.getLogger(__name__)


@dataclass
class CsvImage:
    """One image of the list: its path as written, and its boxes (edges, as written)."""

    path: str
    boxes: List[Tuple[float, float, float, float]] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    lines: List[int] = field(default_factory=list)


def read_csv_list(path: str) -> List[CsvImage]:
    """The images of a CSV list in order of first appearance.

    Rows that cannot be read (wrong number of fields, a non-numeric coordinate, a box without a
    class) are skipped with a warning naming the file and line; their image stays listed.

    Raises:
        FileNotFoundError naming the file; ValueError when it lists no image.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV list not found: {path}")
    images: Dict[str, CsvImage] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            fields = [f.strip() for f in row]
            if not any(fields):
                continue
            if len(fields) != 6:
                logger.warning(
                    "%s:%d: expected 6 fields (path,x1,y1,x2,y2,class), got %d: skipped",
                    path,
                    line_no,
                    len(fields),
                )
                continue
            name, coords, label = fields[0], fields[1:5], fields[5]
            if line_no == 1 and not _is_number(coords[0]) and coords[0].lower() == "x1":
                continue
            image = images.setdefault(name, CsvImage(name))
            if not any(coords) and not label:
                continue
            if not all(_is_number(c) for c in coords):
                logger.warning(
                    "%s:%d: %s has a missing or non-numeric coordinate %s: skipped",
                    path,
                    line_no,
                    name,
                    coords,
                )
                continue
            if not label:
                logger.warning("%s:%d: box of %s has no class name: skipped", path, line_no, name)
                continue
            image.boxes.append(tuple(float(c) for c in coords))
            image.names.append(label)
            image.lines.append(line_no)
    if not images:
        raise ValueError(f"{path}: no images listed (expected rows path,x1,y1,x2,y2,class)")
    return list(images.values())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvSource:
    """A CSV list read once: its images, class names and image root."""

    def __init__(self, path: str, image_root: str = "") -> None:
        self.path = path
        self.image_root = image_root or os.path.dirname(os.path.abspath(path))
        self.images = read_csv_list(path)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def class_names(self) -> Tuple[str, ...]:
        """Every class name of the file, sorted."""
        return tuple(sorted({n for im in self.images for n in im.names}))

    def imdb(
        self, name: str, classes: Sequence[str], indices: Sequence[int], data_dir: str
    ) -> CsvDataset:
        return CsvDataset(name, self, classes, indices, data_dir)


class CsvDataset(Imdb):
    """The images ``indices`` of a :class:`CsvSource` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        source: CsvSource,
        classes: Sequence[str],
        indices: Sequence[int],
        data_dir: str,
    ) -> None:
        super().__init__(name, classes, data_dir)
        self.source = source
        self.images = [source.images[int(i)] for i in indices]
        self.image_index = [im.path for im in self.images]

    def image_path_at(self, i: int) -> str:
        return os.path.join(self.source.image_root, self.images[i].path)

    def _cache_sources(self) -> List[str]:
        return [self.source.path]

    def _cache_extra(self) -> List[object]:
        return [
            self.source.image_root,
            [image_size(self.image_path_at(i)) for i in range(self.num_images)],
        ]

    def _build_gt_roidb(self) -> List[Dict[str, object]]:
        issues = IssueLog(self.name)
        roidb = [self._entry(i, issues) for i in range(self.num_images)]
        issues.summary()
        return roidb

    def _entry(self, i: int, issues: IssueLog) -> Dict[str, object]:
        image = self.images[i]
        path = self.image_path_at(i)
        width, height = image_size(path)
        where = f"{self.source.path} ({image.path})"
        if width <= 0 or height <= 0:
            issues.warn(f"{where}: image {path} is missing or unreadable")
        boxes = np.array(image.boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] -= 1.0
        labels = np.array([self.class_to_index.get(n, -1) for n in image.names], dtype=np.int64)
        for j in np.flatnonzero(labels < 0):
            issues.warn(
                f"{self.source.path}:{image.lines[j]}: unknown class {image.names[j]!r}: skipped"
            )
        keep, boxes = clean_boxes(boxes, width, height, where, issues, image.names)
        keep &= labels > 0
        return dict(
            image=path,
            width=int(width),
            height=int(height),
            boxes=boxes[keep].reshape(-1, 4),
            gt_classes=labels[keep],
            difficult=np.zeros(int(keep.sum()), dtype=bool),
            flipped=False,
        )


def write_csv_list(path: str, rows: Sequence[Tuple[str, Optional[Sequence[float]], str]]) -> None:
    """Write ``(image path, box [x1, y1, x2, y2] 0-based +1 convention or None, class)`` rows
    in keras-retinanet's convention (edges: ``x2 + 1``); None writes ``path,,,,,``."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        for image, box, name in rows:
            if box is None:
                writer.writerow([image, "", "", "", "", ""])
            else:
                x1, y1, x2, y2 = (float(v) for v in box)
                writer.writerow([image] + [_fmt(v) for v in (x1, y1, x2 + 1, y2 + 1)] + [name])


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
