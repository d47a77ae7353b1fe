"""Class lists given by the user: a file or a config list, matched against the data's names."""

from __future__ import annotations

import csv
import logging
from typing import List, Optional, Sequence, Tuple

from fasterrcnn.config import Config
from fasterrcnn.data.imdb import BACKGROUND

logger = logging.getLogger(__name__)

BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")
"""Category names that labelling tools use for "no object" (compared case-insensitively)."""


def is_background_name(name: str) -> bool:
    """True for a name like ``_background_`` that means "no object"."""
    return name.strip().lower() in BACKGROUND_NAMES


def read_class_list(path: str) -> Tuple[str, ...]:
    """Class names from a file: one name per line, or keras-retinanet's ``class_name,id`` CSV
    (ordered by id).  Blank lines and lines starting with ``#`` are ignored; names keep inner
    spaces; quoted names may hold commas.

    Raises:
        ValueError naming the file and line: a mix of both forms, a non-integer id, a
        duplicate name or id.
    """
    rows: List[Tuple[int, List[str]]] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            fields = [f.strip() for f in row]
            while fields and not fields[-1]:
                fields.pop()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) > 2:
                raise ValueError(f"{path}:{line_no}: expected a class name or 'class_name,id'")
            rows.append((line_no, fields))
    with_ids = [r for r in rows if len(r[1]) == 2]
    if with_ids and len(with_ids) != len(rows):
        line_no = next(n for n, f in rows if len(f) != 2)
        raise ValueError(f"{path}:{line_no}: expected 'class_name,id' like the other lines")
    if not with_ids:
        names = [f[0] for _, f in rows]
    else:
        ids = {}
        for line_no, (name, text) in rows:
            try:
                ids[name] = int(text)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: class id {text!r} is not an integer") from None
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"{path}: two classes share an id")
        names = sorted(ids, key=ids.get)
    if len(set(names)) != len(names) or len(names) != len(rows):
        raise ValueError(f"{path}: a class name is listed twice")
    if not names:
        raise ValueError(f"{path}: no class names")
    return tuple(names)


def configured_classes(cfg: Optional[Config]) -> Optional[Tuple[str, ...]]:
    """``DATASET.CLASSES_FILE`` (see :func:`read_class_list`) or ``DATASET.CLASSES``; None when
    neither is set (the names then come from the data).  Giving both is an error."""
    if cfg is None:
        return None
    file_, listed = cfg.DATASET.CLASSES_FILE, tuple(cfg.DATASET.CLASSES)
    if file_ and listed:
        raise ValueError("set only one of DATASET.CLASSES_FILE and DATASET.CLASSES")
    if file_:
        return read_class_list(file_)
    return listed or None


def object_classes(classes: Sequence[str]) -> Tuple[str, ...]:
    """``classes`` without the ``__background__`` entry (a checkpoint's list includes it)."""
    return tuple(c for c in classes if c != BACKGROUND)
