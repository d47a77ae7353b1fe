"""On-disk cache of ground-truth roidbs as ``.npz`` (no pickle), keyed by a content hash.

The key hashes the dataset's name, its classes and image list, and the path, modification time
and size of every file its annotations come from; any change gives a new key, so a stale cache
is never read, and older caches of the same dataset are deleted when a new one is written.

The image check's result (:func:`cached_image_problems`) is cached the same way next to it,
keyed by the path, modification time and size of every image and the annotated sizes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from fasterrcnn.data.image_check import ImageProblem, check_image_files

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the cached layout or the parsing rules change."""


def file_fingerprint(paths: Sequence[str]) -> List[List[object]]:
    """[path, mtime_ns, size] of each file (-1, -1 for a missing one)."""
    out: List[List[object]] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append([path, st.st_mtime_ns, st.st_size])
        except OSError:
            out.append([path, -1, -1])
    return out


def cache_key(payload: object) -> str:
    """Hex digest of a JSON-serialisable payload."""
    text = json.dumps([CACHE_VERSION, payload], sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def load_or_build(
    cache_dir: str, name: str, key: str, build: Callable[[], List[Dict[str, object]]]
) -> List[Dict[str, object]]:
    """The roidb from ``cache_dir/{name}_gt_roidb_{key}.npz``, or ``build()`` written there."""
    path = os.path.join(cache_dir, f"{name}_gt_roidb_{key}.npz")
    if os.path.exists(path):
        try:
            roidb = _load(path)
            logger.info("%s: ground truth read from cache %s", name, path)
            return roidb
        except (OSError, ValueError, KeyError) as err:
            logger.warning("%s: unreadable cache %s (%s): rebuilding", name, path, err)
    roidb = build()
    try:
        os.makedirs(cache_dir, exist_ok=True)
        _save(path, roidb)
        for old in glob.glob(os.path.join(cache_dir, f"{glob.escape(name)}_gt_roidb_*.npz")):
            if old != path:
                os.remove(old)
        logger.info("%s: ground truth cached in %s", name, path)
    except OSError as err:
        logger.warning("%s: cannot write cache %s (%s)", name, path, err)
    return roidb


def cached_image_problems(
    cache_dir: str, name: str, paths: Sequence[str], sizes: Sequence[Tuple[int, int]], workers: int
) -> List[ImageProblem]:
    """:func:`~fasterrcnn.data.image_check.check_image_files` of ``paths`` against the
    annotated (width, height) ``sizes``, read from ``cache_dir/{name}_image_check_{key}.npz``
    when no image and no size changed since it was written, else computed and written there."""
    sizes = [(int(w), int(h)) for w, h in sizes]
    key = cache_key([name, file_fingerprint(paths), sizes])
    path = os.path.join(cache_dir, f"{name}_image_check_{key}.npz")
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                return [ImageProblem(str(p), str(q)) for p, q in zip(data["path"], data["problem"])]
        except (OSError, ValueError, KeyError) as err:
            logger.warning(
                "%s: unreadable image check cache %s (%s): checking again", name, path, err
            )
    logger.info("%s: checking %d images (decoding each once; cached afterwards)", name, len(paths))
    problems = check_image_files(paths, sizes, workers=workers)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path[:-4]}.tmp{os.getpid()}.npz"
        np.savez(
            tmp,
            path=np.array([p.path for p in problems], dtype=np.str_),
            problem=np.array([p.problem for p in problems], dtype=np.str_),
        )
        os.replace(tmp, path)
        for old in glob.glob(os.path.join(cache_dir, f"{glob.escape(name)}_image_check_*.npz")):
            if old != path:
                os.remove(old)
    except OSError as err:
        logger.warning("%s: cannot write image check cache %s (%s)", name, path, err)
    return problems


def _save(path: str, roidb: List[Dict[str, object]]) -> None:
    counts = [len(e["boxes"]) for e in roidb]
    arrays = dict(
        image=np.array([e["image"] for e in roidb], dtype=np.str_),
        width=np.array([e["width"] for e in roidb], dtype=np.int64),
        height=np.array([e["height"] for e in roidb], dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=_cat([e["boxes"] for e in roidb], (0, 4), np.float32),
        gt_classes=_cat([e["gt_classes"] for e in roidb], (0,), np.int64),
        difficult=_cat([e["difficult"] for e in roidb], (0,), bool),
    )
    tmp = f"{path[:-4]}.tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load(path: str) -> List[Dict[str, object]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    off = arrays["offsets"]
    return [
        dict(
            image=str(arrays["image"][i]),
            width=int(arrays["width"][i]),
            height=int(arrays["height"][i]),
            boxes=arrays["boxes"][off[i] : off[i + 1]].copy(),
            gt_classes=arrays["gt_classes"][off[i] : off[i + 1]].copy(),
            difficult=arrays["difficult"][off[i] : off[i + 1]].copy(),
            flipped=False,
        )
        for i in range(len(arrays["image"]))
    ]


def _cat(parts: List[np.ndarray], empty_shape, dtype) -> np.ndarray:
    parts = [np.asarray(p, dtype=dtype).reshape((-1,) + tuple(empty_shape[1:])) for p in parts]
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)
