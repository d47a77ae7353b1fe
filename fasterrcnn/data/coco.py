"""MS COCO through pycocotools.

Annotations: ``DATA_DIR/coco/annotations/instances_{split}.json``; images:
``DATA_DIR/coco/images/{split}`` (``minival2014`` and ``valminusminival2014`` images live in
``val2014``, as in the reference).  Classes are the file's categories sorted by id; labels are
contiguous (1..K) and map back with ``label_to_category_id``.  Crowd boxes are left out of
``gt_roidb`` (training) and appear in ``annotations()`` as difficult.  ``image_index`` holds
the COCO image ids (ints), also available as ``image_ids``.

COCO boxes ``[x, y, w, h]`` become ``[x, y, x + w - 1, y + h - 1]`` (0-based, +1 convention),
then go through the rules of :mod:`.validate`.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO

from fasterrcnn.data.imdb import Imdb
from fasterrcnn.data.validate import IssueLog, clean_boxes

COCO_SPLITS = {"2014": ("train", "val", "minival", "valminusminival"), "2017": ("train", "val")}
_IMAGE_FOLDER = {"minival2014": "val2014", "valminusminival2014": "val2014"}


class CocoJsonImdb(Imdb):
    """The images ``image_ids`` of a loaded pycocotools ``COCO`` object with the classes
    ``categories`` (dicts with ``id`` and ``name``, label ``k`` is ``categories[k - 1]``);
    image ``file_name``s are relative to ``image_dir``.  Annotations of other categories are
    skipped with a warning."""

    def __init__(
        self,
        name: str,
        coco: COCO,
        annotation_file: str,
        image_dir: str,
        categories: Sequence[Mapping[str, object]],
        image_ids: Sequence[object],
        data_dir: str,
    ) -> None:
        super().__init__(name, [str(c["name"]) for c in categories], data_dir)
        self.coco = coco
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        self.label_to_category_id: Dict[int, int] = {
            i + 1: c["id"] for i, c in enumerate(categories)
        }
        self.category_id_to_label: Dict[int, int] = {
            v: k for k, v in self.label_to_category_id.items()
        }
        self.image_index = list(image_ids)

    @property
    def image_ids(self) -> List[int]:
        """COCO image id of each image, in ``image_index`` order."""
        return list(self.image_index)

    def image_path_at(self, i: int) -> str:
        info = self.coco.imgs[self.image_index[i]]
        return os.path.join(self.image_dir, info["file_name"])

    def _cache_sources(self) -> List[str]:
        return [self.annotation_file]

    def _cache_extra(self) -> List[object]:
        return [self.image_dir]

    def _build_gt_roidb(self) -> List[Dict[str, object]]:
        issues = IssueLog(self.name)
        roidb = []
        for i in range(self.num_images):
            entry = self._entry(i, issues, crowd=False)
            roidb.append(entry)
        issues.summary()
        return roidb

    def annotations(self) -> List[Dict[str, np.ndarray]]:
        """Per image boxes for evaluation; crowd boxes included, marked difficult."""
        issues = IssueLog(self.name)
        out = []
        for i in range(self.num_images):
            e = self._entry(i, issues, crowd=True)
            out.append(dict(boxes=e["boxes"], gt_classes=e["gt_classes"], difficult=e["difficult"]))
        return out

    def _entry(self, i: int, issues: IssueLog, crowd: bool) -> Dict[str, object]:
        image_id = self.image_index[i]
        info = self.coco.imgs[image_id]
        width, height = int(info["width"]), int(info["height"])
        anns = self.coco.imgToAnns.get(image_id, [])
        if not crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2] - 1.0
        where = f"{self.annotation_file} image {image_id}"
        names = [f"annotation {a.get('id')}" for a in anns]
        keep, boxes = clean_boxes(boxes, width, height, where, issues, names)
        labels = np.array(
            [self.category_id_to_label.get(a["category_id"], -1) for a in anns], dtype=np.int64
        )
        for j in np.flatnonzero(keep & (labels < 0)):
            issues.warn(
                f"{where}: annotation {anns[j].get('id')} has unknown category "
                f"{anns[j]['category_id']}: skipped"
            )
        keep &= labels > 0
        hard = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        return dict(
            image=self.image_path_at(i),
            width=width,
            height=height,
            boxes=boxes[keep].reshape(-1, 4),
            gt_classes=labels[keep],
            difficult=hard[keep],
            flipped=False,
        )


class CocoDataset(CocoJsonImdb):
    """``coco_{year}_{image_set}``; see the module docstring."""

    def __init__(self, image_set: str, year: str, data_dir: str) -> None:
        if image_set not in COCO_SPLITS.get(year, ()):
            raise ValueError(f"unknown COCO split coco_{year}_{image_set}")
        split = f"{image_set}{year}"
        annotation_file = os.path.join(data_dir, "coco", "annotations", f"instances_{split}.json")
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"coco_{year}_{image_set}: {annotation_file} not found")
        image_dir = os.path.join(data_dir, "coco", "images", _IMAGE_FOLDER.get(split, split))
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(annotation_file)
        cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
        super().__init__(
            f"coco_{year}_{image_set}",
            coco,
            annotation_file,
            image_dir,
            cats,
            sorted(coco.getImgIds()),
            data_dir,
        )
