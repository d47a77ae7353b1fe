"""The image database interface shared by every dataset, and the union of several.

An imdb knows its classes (``classes[0] == '__background__'``), its images in a fixed order
(``image_index``) and their ground truth.  Ground truth entries (``gt_roidb()``) are dicts:
``image`` path, ``width``, ``height``, ``boxes`` (M,4) float32 0-based with the +1 convention,
``gt_classes`` (M,) int64 in 1..K, ``difficult`` (M,) bool, ``flipped`` False.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from fasterrcnn.data.cache import cache_key, file_fingerprint, load_or_build

BACKGROUND = "__background__"


class Imdb:
    """Base class: subclasses set ``image_index`` and implement ``image_path_at``,
    ``_build_gt_roidb`` and ``_cache_sources``."""

    def __init__(self, name: str, classes: Sequence[str], data_dir: str) -> None:
        classes = tuple(classes)
        if not classes or classes[0] != BACKGROUND:
            classes = (BACKGROUND,) + classes
        if len(set(classes)) != len(classes):
            raise ValueError(f"{name}: duplicate class names in {classes}")
        if len(classes) < 2:
            raise ValueError(f"{name}: no object classes given")
        self.name = name
        self.classes = classes
        self.data_dir = data_dir
        self.class_to_index: Dict[str, int] = {c: i for i, c in enumerate(classes)}
        self.image_index: List[object] = []

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.classes)

    @property
    def num_images(self) -> int:
        return len(self.image_index)

    def image_path_at(self, i: int) -> str:
        """Path of image ``i`` (in ``image_index`` order)."""
        raise NotImplementedError

    def gt_roidb(self, use_cache: bool = True) -> List[Dict[str, object]]:
        """Ground truth of every image in ``image_index`` order (cached under DATA_DIR/cache;
        ``use_cache=False`` parses the annotations again, logging every repair and skip)."""
        if not use_cache:
            return self._build_gt_roidb()
        payload = [
            self.name,
            self.classes,
            [str(i) for i in self.image_index],
            file_fingerprint(self._cache_sources()),
        ] + self._cache_extra()
        return load_or_build(
            os.path.join(self.data_dir, "cache"),
            self.name,
            cache_key(payload),
            self._build_gt_roidb,
        )

    def annotations(self) -> List[Dict[str, np.ndarray]]:
        """Per image dict(boxes (M,4) float32 0-based +1, gt_classes (M,), difficult (M,)) for
        evaluation, difficult boxes included, in ``image_index`` order."""
        return [
            dict(boxes=e["boxes"], gt_classes=e["gt_classes"], difficult=e["difficult"])
            for e in self.gt_roidb()
        ]

    def _build_gt_roidb(self) -> List[Dict[str, object]]:
        raise NotImplementedError

    def _cache_sources(self) -> List[str]:
        raise NotImplementedError

    def _cache_extra(self) -> List[object]:
        """Settings besides the source files that change the ground truth (e.g. an image
        root); part of the cache key."""
        return []

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, {self.num_images} images, "
            f"{self.num_classes - 1} classes)"
        )


class CombinedImdb(Imdb):
    """The union of imdbs with the same classes, in the given order (e.g. VOC 07+12)."""

    def __init__(self, parts: Sequence[Imdb]) -> None:
        if not parts:
            raise ValueError("CombinedImdb needs at least one imdb")
        for part in parts[1:]:
            if part.classes != parts[0].classes:
                raise ValueError(
                    f"cannot combine {parts[0].name} and {part.name}: their classes differ"
                )
        super().__init__("+".join(p.name for p in parts), parts[0].classes, parts[0].data_dir)
        self.parts = list(parts)
        self._where = [(k, i) for k, p in enumerate(parts) for i in range(p.num_images)]
        self.image_index = [
            p.image_index[i] for k, p in enumerate(parts) for i in range(p.num_images)
        ]

    def image_path_at(self, i: int) -> str:
        k, j = self._where[i]
        return self.parts[k].image_path_at(j)

    def gt_roidb(self, use_cache: bool = True) -> List[Dict[str, object]]:
        return [e for p in self.parts for e in p.gt_roidb(use_cache)]

    def annotations(self) -> List[Dict[str, np.ndarray]]:
        return [a for p in self.parts for a in p.annotations()]


def image_size(path: str) -> tuple:
    """(width, height) from the image header, or (0, 0) when it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return 0, 0
