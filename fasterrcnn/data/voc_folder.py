"""A folder of VOC XML annotations anywhere (labelImg, CVAT, Label Studio exports).

The path is one of:

* a folder with an ``Annotations`` subfolder (the VOCdevkit layout): every XML in it;
* a folder of XML files (labelImg writes them next to the images): every XML in it;
* an image-set file (``ImageSets/Main/train.txt`` or any text file of ids): the ids' XMLs in
  the ``Annotations`` folder of the set's dataset root.

Each image is found by the XML's ``<filename>`` (or the XML's name with an image extension) in
the image root: ``DATASET.IMAGE_ROOT``, or else the first of ``JPEGImages``, ``images``, the
XML's folder and the dataset root that holds it.  Class names are the XMLs' object names,
sorted, unless a class list is given.  Parsing and box rules are those of :mod:`.voc_xml`.
"""

from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from fasterrcnn.data.voc_layout import VocXmlImdb

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


@dataclass(frozen=True)
class VocItem:
    """One annotation file: its key (path relative to the annotation folder, no extension),
    the XML path, the image file it names (or None) and its object names."""

    key: str
    xml: str
    filename: Optional[str]
    names: Tuple[str, ...]


def _scan(xml: str, key: str) -> VocItem:
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        return VocItem(key, xml, None, ())
    filename = (root.findtext("filename") or "").strip() or None
    names = tuple((obj.findtext("name") or "").strip() for obj in root.iter("object"))
    return VocItem(key, xml, filename, tuple(n for n in names if n))


def list_voc_items(path: str) -> Tuple[str, List[VocItem]]:
    """(dataset root, annotation files in order) for a folder or an image-set file.

    Raises:
        FileNotFoundError naming the path when it does not exist or holds no XML.
    """
    if os.path.isfile(path):
        set_dir = os.path.dirname(os.path.abspath(path))
        root = set_dir
        if (
            os.path.basename(set_dir) == "Main"
            and os.path.basename(os.path.dirname(set_dir)) == "ImageSets"
        ):
            root = os.path.dirname(os.path.dirname(set_dir))
        ann_dir = os.path.join(root, "Annotations")
        with open(path, encoding="utf-8") as handle:
            keys = [line.split()[0] for line in handle if line.strip()]
        items = [_scan(os.path.join(ann_dir, f"{k}.xml"), k) for k in keys]
    elif os.path.isdir(path):
        root = os.path.abspath(path)
        ann_dir = os.path.join(root, "Annotations")
        if not os.path.isdir(ann_dir):
            ann_dir = root
        xmls = sorted(glob.glob(os.path.join(glob.escape(ann_dir), "**", "*.xml"), recursive=True))
        items = [_scan(x, os.path.splitext(os.path.relpath(x, ann_dir))[0]) for x in xmls]
    else:
        raise FileNotFoundError(
            f"VOC annotations not found: {path} is neither a folder nor an image-set file"
        )
    if not items:
        raise FileNotFoundError(f"{path}: no VOC XML annotation files found")
    return root, items


class VocFolderSource:
    """A VOC folder (or image-set file) read once: its annotation files and image paths."""

    def __init__(self, path: str, image_root: str = "") -> None:
        self.path = path
        self.root, self.items = list_voc_items(path)
        self.image_paths = [self._image_path(item, image_root) for item in self.items]

    def _image_path(self, item: VocItem, image_root: str) -> str:
        roots = (
            [image_root]
            if image_root
            else [
                os.path.join(self.root, "JPEGImages"),
                os.path.join(self.root, "images"),
                os.path.dirname(item.xml),
                self.root,
            ]
        )
        names = [item.filename] if item.filename else []
        names += [item.key + ext for ext in IMAGE_EXTS]
        for root in roots:
            for name in names:
                candidate = os.path.join(root, name)
                if os.path.isfile(candidate):
                    return candidate
        return os.path.join(roots[0], names[0])

    @property
    def num_images(self) -> int:
        return len(self.items)

    def class_names(self) -> Tuple[str, ...]:
        """Every object name of the XMLs, sorted."""
        return tuple(sorted({n for item in self.items for n in item.names}))

    def imdb(
        self, name: str, classes: Sequence[str], indices: Sequence[int], data_dir: str
    ) -> VocFolderDataset:
        return VocFolderDataset(name, self, classes, indices, data_dir)


class VocFolderDataset(VocXmlImdb):
    """The annotation files ``indices`` of a :class:`VocFolderSource`."""

    def __init__(
        self,
        name: str,
        source: VocFolderSource,
        classes: Sequence[str],
        indices: Sequence[int],
        data_dir: str,
    ) -> None:
        super().__init__(name, classes, data_dir)
        self.source = source
        self._items = [source.items[int(i)] for i in indices]
        self._images = [source.image_paths[int(i)] for i in indices]
        self.image_index = [item.key for item in self._items]

    def image_path_at(self, i: int) -> str:
        return self._images[i]

    def annotation_path(self, i: int) -> str:
        return self._items[i].xml

    def _cache_extra(self) -> List[object]:
        return [self._images]
