"""``get_imdb(name, data_dir)``: every dataset by the reference's names.

Known names: ``voc_{2007,2012}_{train,val,trainval}``, ``voc_2007_test``,
``voc_0712_{train,val,trainval}`` (the 2007 + 2012 union), ``coco_2014_{train,val,minival,
valminusminival}``, ``coco_2017_{train,val}``, ``custom_<imageset>`` (needs the classes),
``shapes_train`` and ``shapes_test`` (generated on demand), ``path_train`` and ``path_test``
(the files named by ``DATASET.TRAIN_PATH`` / ``TEST_PATH``, see :mod:`.by_path`).  ``a+b``
names the union.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from fasterrcnn.config import Config
from fasterrcnn.config.schema import DatasetConfig
from fasterrcnn.data.by_path import PATH_SPLITS, path_imdb
from fasterrcnn.data.coco import COCO_SPLITS, CocoDataset
from fasterrcnn.data.custom import CustomDataset
from fasterrcnn.data.imdb import CombinedImdb, Imdb
from fasterrcnn.data.pascal_voc import PascalVoc
from fasterrcnn.data.shapes import SPLITS as SHAPES_SPLITS
from fasterrcnn.data.shapes import ShapesDataset

_VOC_SETS = ("train", "val", "trainval")


class UnknownDatasetError(ValueError):
    """A dataset name that ``get_imdb`` does not know; the message lists the known ones."""


def known_names() -> List[str]:
    """Every name ``get_imdb`` accepts (``custom_<imageset>`` stands for any image set)."""
    names = [f"voc_{year}_{s}" for year in ("2007", "2012") for s in _VOC_SETS]
    names += ["voc_2007_test"] + [f"voc_0712_{s}" for s in _VOC_SETS]
    names += [f"coco_{year}_{s}" for year, sets in COCO_SPLITS.items() for s in sets]
    names += ["custom_<imageset>"] + [f"shapes_{s}" for s in SHAPES_SPLITS]
    names += [f"path_{s}" for s in PATH_SPLITS]
    return names


def get_imdb(
    name: str, data_dir: str, cfg: Optional[Config] = None, classes: Optional[Sequence[str]] = None
) -> Imdb:
    """The imdb called ``name`` with its data under ``data_dir``.

    Args:
        cfg: the config; read for ``DATASET.CLASSES_FILE`` / ``DATASET.CLASSES`` (custom),
            ``DATASET.SHAPES_*`` (shapes; the schema defaults when None) and the
            ``DATASET.*_PATH`` keys (path_train, path_test: required).
        classes: class names of a custom or path dataset (overrides the config's).
    """
    if "+" in name:
        return CombinedImdb([get_imdb(n, data_dir, cfg, classes) for n in name.split("+")])
    parts = name.split("_")
    if name.startswith("custom_") and len(name) > len("custom_"):
        return CustomDataset(name[len("custom_") :], data_dir, classes=classes, cfg=cfg)
    if len(parts) == 3 and parts[0] == "voc":
        _, year, image_set = parts
        if year == "0712" and image_set in _VOC_SETS:
            return CombinedImdb([PascalVoc(image_set, y, data_dir) for y in ("2007", "2012")])
        if (year, image_set) == ("2007", "test") or (
            year in ("2007", "2012") and image_set in _VOC_SETS
        ):
            return PascalVoc(image_set, year, data_dir)
    if len(parts) == 3 and parts[0] == "coco" and parts[2] in COCO_SPLITS.get(parts[1], ()):
        return CocoDataset(parts[2], parts[1], data_dir)
    if len(parts) == 2 and parts[0] == "path" and parts[1] in PATH_SPLITS:
        if cfg is None:
            raise ValueError(f"{name} needs a config with DATASET.TRAIN_PATH / TEST_PATH")
        return path_imdb(parts[1], cfg, classes)
    if len(parts) == 2 and parts[0] == "shapes" and parts[1] in SHAPES_SPLITS:
        ds = cfg.DATASET if cfg is not None else DatasetConfig()
        return ShapesDataset(
            parts[1],
            data_dir,
            ds.SHAPES_NUM_TRAIN,
            ds.SHAPES_NUM_TEST,
            ds.SHAPES_SEED,
            ds.SHAPES_NUM_VAL,
        )
    raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(known_names())}")
