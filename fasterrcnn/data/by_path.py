"""The user's own dataset by path: ``path_train`` and ``path_test``.

``DATASET.TRAIN_PATH`` / ``DATASET.TEST_PATH`` name a COCO json (:mod:`.coco_json`), a VOC
folder or image-set file (:mod:`.voc_folder`) or a CSV list (:mod:`.csv_list`);
``DATASET.FORMAT`` says which, or ``auto`` guesses from the path.  Without a TEST_PATH,
``DATASET.VAL_FRACTION`` of TRAIN_PATH's images (drawn with ``DATASET.SPLIT_SEED``, see
:func:`~fasterrcnn.data.split.held_out_split`) form ``path_test`` and the rest ``path_train``.

Class names, in order: the ``classes`` argument (test_net passes the checkpoint's), else
``DATASET.CLASSES_FILE`` / ``DATASET.CLASSES``, else the training file's names (COCO: its
categories with annotations by id; VOC and CSV: the object names, sorted), so a separate test
file is always read with the training classes.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from fasterrcnn.config import Config
from fasterrcnn.data.class_list import configured_classes, object_classes
from fasterrcnn.data.coco_json import CocoJsonSource
from fasterrcnn.data.csv_list import CsvSource
from fasterrcnn.data.imdb import Imdb
from fasterrcnn.data.split import held_out_split
from fasterrcnn.data.voc_folder import VocFolderSource

PATH_SPLITS = ("train", "test")
Source = Union[CocoJsonSource, CsvSource, VocFolderSource]
_READERS = {"coco": CocoJsonSource, "csv": CsvSource, "voc": VocFolderSource}


def detect_format(path: str, fmt: str = "auto") -> str:
    """``coco``, ``voc`` or ``csv``: ``fmt`` unless it is ``auto``, else from the path
    (``.json`` COCO, ``.csv`` CSV, a folder or ``.txt`` image set VOC)."""
    if fmt != "auto":
        if fmt not in _READERS:
            raise ValueError(f"unknown dataset format {fmt!r}; known: auto, {', '.join(_READERS)}")
        return fmt
    lower = path.lower()
    if lower.endswith(".json"):
        return "coco"
    if lower.endswith(".csv"):
        return "csv"
    if os.path.isdir(path) or lower.endswith(".txt"):
        return "voc"
    raise ValueError(
        f"cannot tell the format of {path}: set DATASET.FORMAT (--format) to coco, voc or csv"
    )


def read_source(path: str, fmt: str, image_root: str = "") -> Source:
    """A COCO json, VOC folder or CSV list read from ``path``."""
    return _READERS[detect_format(path, fmt)](path, image_root)


def split_plan(split: str, cfg: Config) -> Tuple[str, str, bool]:
    """(annotation path, image root, whether ``split`` is one side of a held-out split).

    Raises:
        ValueError naming the config keys (and flags) to set when the paths do not define the
        split.
    """
    ds = cfg.DATASET
    if split not in PATH_SPLITS:
        raise ValueError(f"unknown split path_{split}; known: path_train, path_test")
    if ds.TEST_PATH and ds.VAL_FRACTION > 0:
        raise ValueError(
            "DATASET.VAL_FRACTION holds out part of DATASET.TRAIN_PATH; with a "
            "DATASET.TEST_PATH too, set it to 0"
        )
    if split == "test" and ds.TEST_PATH:
        return ds.TEST_PATH, ds.TEST_IMAGE_ROOT or ds.IMAGE_ROOT, False
    if not ds.TRAIN_PATH:
        raise ValueError(
            f"path_{split} needs DATASET.TRAIN_PATH (--train_data)"
            + (" or DATASET.TEST_PATH (--test_data)" if split == "test" else "")
        )
    if split == "test" and ds.VAL_FRACTION <= 0:
        raise ValueError(
            "path_test needs DATASET.TEST_PATH (--test_data) or a held-out "
            "DATASET.VAL_FRACTION (--val_fraction) of DATASET.TRAIN_PATH"
        )
    return ds.TRAIN_PATH, ds.IMAGE_ROOT, ds.VAL_FRACTION > 0


def path_imdb(split: str, cfg: Config, classes: Optional[Sequence[str]] = None) -> Imdb:
    """The imdb ``path_train`` or ``path_test`` of the config (see the module docstring)."""
    path, image_root, held_out = split_plan(split, cfg)
    source = read_source(path, cfg.DATASET.FORMAT, image_root)
    names = object_classes(classes) if classes is not None else configured_classes(cfg)
    if names is None:
        if split == "test" and cfg.DATASET.TEST_PATH and cfg.DATASET.TRAIN_PATH:
            names = read_source(
                cfg.DATASET.TRAIN_PATH, cfg.DATASET.FORMAT, cfg.DATASET.IMAGE_ROOT
            ).class_names()
        else:
            names = source.class_names()
    if not names:
        raise ValueError(
            f"{path}: no annotated objects, so no class names; list them in "
            "DATASET.CLASSES_FILE or DATASET.CLASSES"
        )
    indices = np.arange(source.num_images)
    if held_out:
        train, test = held_out_split(
            source.num_images, cfg.DATASET.VAL_FRACTION, cfg.DATASET.SPLIT_SEED
        )
        indices = train if split == "train" else test
    return source.imdb(f"path_{split}", names, indices, cfg.DATA_DIR)
