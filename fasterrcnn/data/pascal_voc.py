"""PASCAL VOC 2007 / 2012 in the VOCdevkit layout.

The root is ``DATA_DIR/VOCdevkit{year}/VOC{year}`` (the reference's layout) or
``DATA_DIR/VOCdevkit/VOC{year}`` (the archive's layout), the first that exists.
"""

from __future__ import annotations

import os
from typing import Sequence

from fasterrcnn.data.voc_layout import VocLayoutImdb

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 20 PASCAL VOC object classes (label i+1 is VOC_CLASSES[i])."""

VOC_YEARS = ("2007", "2012")
VOC_IMAGE_SETS = ("train", "val", "trainval", "test")


def voc_root(data_dir: str, year: str) -> str:
    """The first existing VOC{year} folder under data_dir (see the module docstring)."""
    candidates = [
        os.path.join(data_dir, f"VOCdevkit{year}", f"VOC{year}"),
        os.path.join(data_dir, "VOCdevkit", f"VOC{year}"),
    ]
    for path in candidates:
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(f"PASCAL VOC {year} not found: looked for {' and '.join(candidates)}")


class PascalVoc(VocLayoutImdb):
    """``voc_{year}_{image_set}``: year 2007 or 2012, image set train/val/trainval/test."""

    def __init__(
        self, image_set: str, year: str, data_dir: str, classes: Sequence[str] = VOC_CLASSES
    ) -> None:
        if year not in VOC_YEARS or image_set not in VOC_IMAGE_SETS:
            raise ValueError(f"unknown PASCAL VOC split voc_{year}_{image_set}")
        super().__init__(
            f"voc_{year}_{image_set}", voc_root(data_dir, year), image_set, classes, data_dir
        )
        self.year = year
