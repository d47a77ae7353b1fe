"""The generated shapes dataset written in the formats labelling tools export: a COCO json, a
CSV list (keras-retinanet's convention, with a ``class_name,id`` classes file) or a VOC folder,
so every dataset-by-path reader runs end to end with no download.

``export_shapes(out_dir, fmt, counts, seed)`` writes ``out_dir/JPEGImages/*.jpg`` (the images
of :func:`~fasterrcnn.data.shapes.write_shapes`, same seed, same bytes) and

* ``coco``: ``out_dir/{split}.json`` (``file_name`` ``JPEGImages/<id>.jpg``, a subfolder);
* ``csv``: ``out_dir/{split}.csv`` (paths ``JPEGImages/<id>.jpg``) and ``out_dir/classes.csv``;
* ``voc``: ``out_dir/Annotations/*.xml`` and ``out_dir/ImageSets/Main/{split}.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict

from fasterrcnn.data.csv_list import write_csv_list
from fasterrcnn.data.shapes import SHAPE_CLASSES, write_shapes
from fasterrcnn.data.voc_layout import VocLayoutImdb

EXPORT_FORMATS = ("coco", "csv", "voc")


def export_shapes(out_dir: str, fmt: str, counts: Dict[str, int], seed: int) -> str:
    """Write the shapes splits ``counts`` (e.g. ``{"train": 60, "test": 20}``) to ``out_dir``
    in format ``fmt`` (see the module docstring); returns ``out_dir``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    write_shapes(out_dir, counts, seed)
    if fmt == "voc":
        return out_dir
    for split in counts:
        imdb = VocLayoutImdb(f"shapes_{split}", out_dir, split, SHAPE_CLASSES, out_dir)
        roidb = imdb.gt_roidb(use_cache=False)
        files = [os.path.join("JPEGImages", os.path.basename(e["image"])) for e in roidb]
        if fmt == "coco":
            _write_coco(os.path.join(out_dir, f"{split}.json"), roidb, files)
        else:
            rows = [
                (f, box, SHAPE_CLASSES[c - 1])
                for e, f in zip(roidb, files)
                for box, c in zip(e["boxes"].tolist(), e["gt_classes"].tolist())
            ]
            rows += [(f, None, "") for e, f in zip(roidb, files) if not len(e["boxes"])]
            write_csv_list(os.path.join(out_dir, f"{split}.csv"), rows)
    if fmt == "csv":
        with open(os.path.join(out_dir, "classes.csv"), "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name},{i}\n" for i, name in enumerate(SHAPE_CLASSES)))
    shutil.rmtree(os.path.join(out_dir, "Annotations"))
    shutil.rmtree(os.path.join(out_dir, "ImageSets"))
    return out_dir


def _write_coco(path: str, roidb, files) -> None:
    images, annotations = [], []
    for image_id, (entry, file_name) in enumerate(zip(roidb, files), start=1):
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": entry["width"],
                "height": entry["height"],
            }
        )
        for box, label in zip(entry["boxes"].tolist(), entry["gt_classes"].tolist()):
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_CLASSES, start=1)
    ]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
