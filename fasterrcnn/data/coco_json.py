"""Any COCO-format json by path (labelme, CVAT, Label Studio, Roboflow exports).

The file is read with :mod:`json` and normalised before pycocotools indexes it, so that
training, :class:`~fasterrcnn.data.coco.CocoJsonImdb` and COCOeval see one consistent set:

* image ids may be ints or strings: when any is not an int, every image gets the int id
  ``1..N`` in file order (``original_ids`` keeps the file's);
* category ids may be any ints (0 included) or strings (then renumbered ``1..K`` likewise);
* ``iscrowd`` defaults to 0 and ``area`` to ``w * h``; annotations without a 4-number ``bbox``
  or with an unknown ``image_id`` are skipped with a warning; a missing image ``width`` /
  ``height`` is read from the image header;
* ``file_name`` may hold subfolders; it is relative to the image root: ``DATASET.IMAGE_ROOT``,
  or else the first of the json's folder, its ``images`` subfolder and a sibling ``images``
  folder (CVAT's export) that holds the first image.

Classes are the categories sorted by id; a category without a single annotation (labelme's
``_background_`` with id 0, Roboflow's parent category) is dropped with a warning.  A given class
list (a checkpoint's, or ``DATASET.CLASSES_FILE``) is matched by name instead; a listed class the
file lacks gets a new category id without annotations, so COCOeval leaves it out.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from pycocotools.coco import COCO

from fasterrcnn.data.class_list import is_background_name
from fasterrcnn.data.coco import CocoJsonImdb
from fasterrcnn.data.imdb import image_size

logger = logging.getLogger(__name__)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _renumber(items: List[dict], key: str = "id") -> Dict[object, int]:
    """old id -> new int id; identity when every id is already an int."""
    ids = [item.get(key) for item in items]
    if all(_is_int(i) for i in ids):
        return {i: i for i in ids}
    return {old: new for new, old in enumerate(ids, start=1)}


def read_coco_json(path: str) -> Tuple[dict, Dict[object, object]]:
    """The normalised dataset dict of a COCO json (see the module docstring) and the map
    new image id -> the file's image id.

    Raises:
        FileNotFoundError / ValueError naming the file: missing, not json, no ``images`` or
        ``categories`` list, duplicate image or category ids.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO json not found: {path}")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except ValueError as err:
        raise ValueError(f"{path}: not valid json ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a COCO json holds an object with 'images', 'annotations' and 'categories'"
        )
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: no '{key}' list")
    images = [dict(im) for im in data["images"]]
    cats = [dict(c) for c in data["categories"]]
    for what, items in (("image", images), ("category", cats)):
        ids = [item.get("id") for item in items]
        if any(i is None for i in ids) or len(set(map(repr, ids))) != len(ids):
            raise ValueError(f"{path}: every {what} needs an 'id', and ids must be unique")
    image_ids, cat_ids = _renumber(images), _renumber(cats)
    for im in images:
        im["id"] = image_ids[im["id"]]
        if "file_name" not in im:
            raise ValueError(f"{path}: image {im['id']} has no 'file_name'")
    for cat in cats:
        cat["id"] = cat_ids[cat["id"]]
        cat["name"] = str(cat.get("name", cat["id"])).strip()
    anns = []
    for k, raw in enumerate(data.get("annotations") or []):
        ann = dict(raw)
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            logger.warning(
                "%s: annotation %s has no [x, y, w, h] bbox: skipped", path, ann.get("id", k)
            )
            continue
        if ann.get("image_id") not in image_ids:
            logger.warning(
                "%s: annotation %s refers to unknown image %r: skipped",
                path,
                ann.get("id", k),
                ann.get("image_id"),
            )
            continue
        if ann.get("category_id") not in cat_ids:
            logger.warning(
                "%s: annotation %s has unknown category %r: skipped",
                path,
                ann.get("id", k),
                ann.get("category_id"),
            )
            continue
        ann["image_id"] = image_ids[ann["image_id"]]
        ann["category_id"] = cat_ids[ann["category_id"]]
        ann["id"] = k + 1
        ann["iscrowd"] = int(bool(ann.get("iscrowd", 0)))
        ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
        anns.append(ann)
    original = {new: old for old, new in image_ids.items()}
    return {"images": images, "annotations": anns, "categories": cats}, original


def _find_image_root(path: str, images: List[dict]) -> str:
    """The json's folder, its ``images`` subfolder or a sibling ``images`` folder: the first
    that holds the first image (the json's folder when none does)."""
    folder = os.path.dirname(os.path.abspath(path))
    candidates = [
        folder,
        os.path.join(folder, "images"),
        os.path.join(os.path.dirname(folder), "images"),
    ]
    if images:
        for root in candidates:
            if os.path.exists(os.path.join(root, images[0]["file_name"])):
                return root
    return folder


class CocoJsonSource:
    """A COCO json read once: the normalised pycocotools object, its classes and image root."""

    def __init__(self, path: str, image_root: str = "") -> None:
        self.path = path
        dataset, self.original_ids = read_coco_json(path)
        self.image_root = image_root or _find_image_root(path, dataset["images"])
        for im in dataset["images"]:
            if not im.get("width") or not im.get("height"):
                im["width"], im["height"] = image_size(
                    os.path.join(self.image_root, im["file_name"])
                )
        self.coco = COCO()
        self.coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.getImgIds())

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def categories(self, classes: Optional[Sequence[str]] = None) -> List[dict]:
        """The categories of ``classes`` (matched by name), or of the data: every category with
        annotations, sorted by id (the others dropped with a warning)."""
        cats = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        if classes is None:
            used = Counter(a["category_id"] for a in self.coco.dataset["annotations"])
            kept = []
            for cat in cats:
                if used[cat["id"]]:
                    kept.append(cat)
                else:
                    kind = (
                        "background-like category"
                        if is_background_name(cat["name"])
                        else "category"
                    )
                    logger.warning(
                        "%s: %s %r (id %s) has no annotations: dropped",
                        self.path,
                        kind,
                        cat["name"],
                        cat["id"],
                    )
            return kept
        by_name: Dict[str, dict] = {}
        for cat in cats:
            if cat["name"] in by_name:
                raise ValueError(f"{self.path}: two categories are named {cat['name']!r}")
            by_name[cat["name"]] = cat
        next_id = max([c["id"] for c in cats], default=0) + 1
        chosen = []
        for name in classes:
            if name not in by_name:
                logger.warning(
                    "%s: no category named %r: it has no ground truth here", self.path, name
                )
                by_name[name] = {"id": next_id, "name": name}
                self.coco.dataset["categories"].append(by_name[name])
                self.coco.cats[next_id] = by_name[name]
                self.coco.catToImgs[next_id] = []
                next_id += 1
            chosen.append(by_name[name])
        return chosen

    def class_names(self) -> Tuple[str, ...]:
        """Names of the categories with annotations, sorted by category id."""
        return tuple(c["name"] for c in self.categories())

    def imdb(
        self, name: str, classes: Sequence[str], indices: Sequence[int], data_dir: str
    ) -> CocoJsonImdb:
        """The images ``indices`` (positions in the sorted image ids) with ``classes``."""
        cats = self.categories(classes)
        return CocoJsonImdb(
            name,
            self.coco,
            self.path,
            self.image_root,
            cats,
            [self.image_ids[int(i)] for i in indices],
            data_dir,
        )
