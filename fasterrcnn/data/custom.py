"""A user's dataset in the VOCdevkit layout under ``DATA_DIR/custom``, with class names from
``DATASET.CLASSES_FILE`` (one per line) or ``DATASET.CLASSES``."""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

from fasterrcnn.config import Config
from fasterrcnn.data.imdb import BACKGROUND
from fasterrcnn.data.voc_layout import VocLayoutImdb

CUSTOM_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def read_classes_file(path: str) -> Tuple[str, ...]:
    """Class names, one per line; blank lines and lines starting with '#' are ignored."""
    with open(path, encoding="utf-8") as handle:
        names = tuple(line.strip() for line in handle)
    return tuple(n for n in names if n and not n.startswith("#"))


def classes_from_config(cfg: Config) -> Tuple[str, ...]:
    """The custom classes named by ``cfg.DATASET.CLASSES_FILE`` or ``cfg.DATASET.CLASSES``.

    Giving both is an error (which one wins would be a guess); giving neither too.
    """
    file_, listed = cfg.DATASET.CLASSES_FILE, tuple(cfg.DATASET.CLASSES)
    if file_ and listed:
        raise ValueError("set only one of DATASET.CLASSES_FILE and DATASET.CLASSES")
    if file_:
        return read_classes_file(file_)
    if listed:
        return listed
    raise ValueError("a custom dataset needs DATASET.CLASSES_FILE or DATASET.CLASSES")


class CustomDataset(VocLayoutImdb):
    """``custom_{image_set}``: images in any of CUSTOM_IMAGE_EXTS, VOC XML annotations."""

    def __init__(
        self,
        image_set: str,
        data_dir: str,
        classes: Optional[Sequence[str]] = None,
        cfg: Optional[Config] = None,
        root: Optional[str] = None,
    ) -> None:
        if classes is None:
            if cfg is None:
                raise ValueError(
                    f"custom_{image_set} needs its classes: pass classes= or a "
                    "cfg with DATASET.CLASSES_FILE or DATASET.CLASSES"
                )
            classes = classes_from_config(cfg)
        classes = tuple(c for c in classes if c != BACKGROUND)
        super().__init__(
            f"custom_{image_set}",
            root or os.path.join(data_dir, "custom"),
            image_set,
            classes,
            data_dir,
            CUSTOM_IMAGE_EXTS,
        )
