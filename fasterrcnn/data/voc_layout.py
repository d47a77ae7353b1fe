"""A dataset in the VOCdevkit layout: ``Annotations/*.xml``, ``JPEGImages/*``,
``ImageSets/Main/{image_set}.txt``.  Shared by PASCAL VOC, custom datasets and shapes."""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np

from fasterrcnn.data.imdb import Imdb, image_size
from fasterrcnn.data.validate import IssueLog, clean_boxes
from fasterrcnn.data.voc_xml import parse_voc_xml


class VocXmlImdb(Imdb):
    """Images with one VOC XML annotation file each; subclasses say where both are
    (``image_path_at``, ``annotation_path``) and set ``image_index``.

    The image size comes from the XML ``size`` element, or from the image header when the XML
    gives none; an image whose size cannot be found keeps width = height = 0 (a warning), and
    the training roidb leaves it out.
    """

    def annotation_path(self, i: int) -> str:
        """The XML file of image ``i``."""
        raise NotImplementedError

    def _cache_sources(self) -> List[str]:
        return [self.annotation_path(i) for i in range(self.num_images)]

    def _build_gt_roidb(self) -> List[Dict[str, object]]:
        issues = IssueLog(self.name)
        roidb = [self._load_entry(i, issues) for i in range(self.num_images)]
        issues.summary()
        return roidb

    def _load_entry(self, i: int, issues: IssueLog) -> Dict[str, object]:
        xml_path = self.annotation_path(i)
        image = self.image_path_at(i)
        ann = parse_voc_xml(xml_path, self.class_to_index, issues)
        if ann is None:
            ann = dict(
                width=0,
                height=0,
                boxes=np.zeros((0, 4), np.float32),
                gt_classes=np.zeros(0, np.int64),
                difficult=np.zeros(0, bool),
            )
        width, height = ann["width"], ann["height"]
        if width <= 0 or height <= 0:
            width, height = image_size(image)
            if width <= 0 or height <= 0:
                issues.warn(
                    f"{xml_path}: no size in the XML and image {image} is missing or unreadable"
                )
            else:
                keep, boxes = clean_boxes(ann["boxes"], width, height, xml_path, issues)
                ann = dict(
                    ann,
                    boxes=boxes[keep],
                    gt_classes=ann["gt_classes"][keep],
                    difficult=ann["difficult"][keep],
                )
        return dict(
            image=image,
            width=int(width),
            height=int(height),
            boxes=ann["boxes"].astype(np.float32).reshape(-1, 4),
            gt_classes=ann["gt_classes"].astype(np.int64),
            difficult=ann["difficult"].astype(bool),
            flipped=False,
        )


class VocLayoutImdb(VocXmlImdb):
    """Images and VOC XML annotations under ``root`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        root: str,
        image_set: str,
        classes: Sequence[str],
        data_dir: str,
        image_exts: Sequence[str] = (".jpg",),
    ) -> None:
        super().__init__(name, classes, data_dir)
        self.root = root
        self.image_set = image_set
        self.image_exts = tuple(image_exts)
        self.image_set_file = os.path.join(root, "ImageSets", "Main", f"{image_set}.txt")
        if not os.path.isfile(self.image_set_file):
            raise FileNotFoundError(f"{name}: image set file {self.image_set_file} not found")
        with open(self.image_set_file, encoding="utf-8") as handle:
            self.image_index = [line.split()[0] for line in handle if line.strip()]

    def image_path_at(self, i: int) -> str:
        stem = os.path.join(self.root, "JPEGImages", str(self.image_index[i]))
        for ext in self.image_exts:
            if os.path.exists(stem + ext):
                return stem + ext
        return stem + self.image_exts[0]

    def annotation_path(self, i: int) -> str:
        return os.path.join(self.root, "Annotations", f"{self.image_index[i]}.xml")

    def _cache_sources(self) -> List[str]:
        return [self.image_set_file] + super()._cache_sources()
