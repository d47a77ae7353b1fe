"""The training roidb: ground truth prepared for the loader.

Entries are the imdb's ground truth dicts (see :mod:`.imdb`) plus ``need_crop`` (bool).
For training (``combined_roidb(..., training=True)``):

* difficult boxes are dropped unless ``TRAIN.USE_DIFFICULT``;
* with ``TRAIN.USE_FLIPPED`` a horizontally flipped copy of every entry follows the originals:
  ``x1' = W - x2 - 1``, ``x2' = W - x1 - 1`` (0-based, +1 convention); the image itself is
  flipped when it is loaded;
* entries whose image file is missing or whose size is unknown are left out (a warning each),
  and so are entries without boxes (one log line with the count);
* every remaining image is decoded once (:mod:`.image_check`, cached next to the roidb cache):
  truncated, corrupt or empty files and files whose size disagrees with the annotation stop
  the run with one :class:`BadImagesError` listing each file and its problem, or, with
  ``DATA_CHECK.ON_BAD_IMAGE skip``, are left out (a warning each and a count).

Every entry gets an aspect ratio ``width / height`` clamped to ``[TRAIN.ASPECT_RATIO_MIN,
TRAIN.ASPECT_RATIO_MAX]``; ``need_crop`` marks those outside.  ``ratio_index`` sorts the
entries by ratio (a stable sort) and ``ratio_list`` holds the sorted ratios.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from fasterrcnn.config import Config
from fasterrcnn.data.cache import cached_image_problems
from fasterrcnn.data.factory import get_imdb
from fasterrcnn.data.image_check import format_problems
from fasterrcnn.data.imdb import CombinedImdb, Imdb
from fasterrcnn.data.validate import IssueLog

logger = logging.getLogger(__name__)

Entry = Dict[str, object]


class BadImagesError(ValueError):
    """Images of a training set that cannot be decoded as annotated; the message lists them."""


def flip_entry(entry: Entry) -> Entry:
    """A copy of ``entry`` with boxes mirrored horizontally and ``flipped`` True."""
    boxes = np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    width = np.float32(entry["width"])
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return dict(entry, boxes=flipped, flipped=not entry.get("flipped", False))


def training_roidb(imdb: Imdb, cfg: Config) -> List[Entry]:
    """The imdb's ground truth prepared for training (see the module docstring)."""
    entries: List[Entry] = []
    missing = 0
    for entry in imdb.gt_roidb():
        entry = dict(entry)
        if entry["width"] <= 0 or entry["height"] <= 0 or not os.path.isfile(entry["image"]):
            logger.warning(
                "%s: image %s is missing or its size is unknown: left out of training",
                imdb.name,
                entry["image"],
            )
            missing += 1
            continue
        if not cfg.TRAIN.USE_DIFFICULT:
            keep = ~np.asarray(entry["difficult"], dtype=bool)
            entry = dict(
                entry,
                boxes=entry["boxes"][keep],
                gt_classes=entry["gt_classes"][keep],
                difficult=entry["difficult"][keep],
            )
        entries.append(entry)
    entries = drop_bad_images(imdb, entries, cfg)
    with_boxes = [e for e in entries if len(e["boxes"]) > 0]
    if len(with_boxes) < len(entries):
        logger.info(
            "%s: %d of %d images have no (usable) boxes: left out of training",
            imdb.name,
            len(entries) - len(with_boxes),
            len(entries),
        )
    crowded = sum(len(e["boxes"]) > cfg.MAX_NUM_GT_BOXES for e in with_boxes)
    if crowded:
        logger.warning(
            "%s: %d images have more than MAX_NUM_GT_BOXES=%d boxes; the loader "
            "keeps a random subset of that many",
            imdb.name,
            crowded,
            cfg.MAX_NUM_GT_BOXES,
        )
    if cfg.TRAIN.USE_FLIPPED:
        with_boxes = with_boxes + [flip_entry(e) for e in with_boxes]
    logger.info(
        "%s: %d training entries (%d images left out as missing)",
        imdb.name,
        len(with_boxes),
        missing,
    )
    return with_boxes


def drop_bad_images(imdb: Imdb, entries: List[Entry], cfg: Config) -> List[Entry]:
    """``entries`` without the images that fail the image check (see the module docstring).

    Raises:
        BadImagesError: some image failed and ``DATA_CHECK.ON_BAD_IMAGE`` is ``stop``.
    """
    problems = cached_image_problems(
        os.path.join(imdb.data_dir, "cache"),
        imdb.name,
        [e["image"] for e in entries],
        [(e["width"], e["height"]) for e in entries],
        cfg.DATA_CHECK.WORKERS,
    )
    if not problems:
        return entries
    if cfg.DATA_CHECK.ON_BAD_IMAGE == "stop":
        raise BadImagesError(
            f"{imdb.name}: {len(problems)} of {len(entries)} images cannot be used for "
            f"training:\n{format_problems(problems)}\nfix or remove them, or set "
            "DATA_CHECK.ON_BAD_IMAGE skip to leave them out"
        )
    issues = IssueLog(imdb.name, log=logger)
    for problem in problems:
        issues.warn(f"{problem.path}: {problem.problem}: left out of training")
    issues.summary()
    logger.warning(
        "%s: %d of %d images failed the image check and are left out of training",
        imdb.name,
        len(problems),
        len(entries),
    )
    bad = {p.path for p in problems}
    return [e for e in entries if e["image"] not in bad]


def eval_roidb(imdb: Imdb) -> List[Entry]:
    """Ground truth of every image, unfiltered and unflipped."""
    return [dict(e) for e in imdb.gt_roidb()]


def rank_roidb_ratio(roidb: List[Entry], cfg: Config) -> Tuple[np.ndarray, np.ndarray]:
    """Set ``need_crop`` on each entry; return (ratio_list sorted (N,) float64, ratio_index
    (N,) int64) with ``ratio_list[k]`` the clamped ratio of ``roidb[ratio_index[k]]``."""
    lo, hi = cfg.TRAIN.ASPECT_RATIO_MIN, cfg.TRAIN.ASPECT_RATIO_MAX
    ratios = np.zeros(len(roidb), dtype=np.float64)
    for i, entry in enumerate(roidb):
        ratio = entry["width"] / entry["height"] if entry["height"] > 0 else 1.0
        entry["need_crop"] = bool(ratio > hi or ratio < lo)
        ratios[i] = min(max(ratio, lo), hi)
    ratio_index = np.argsort(ratios, kind="stable").astype(np.int64)
    return ratios[ratio_index], ratio_index


def combined_roidb(
    names: Union[str, Sequence[str]], cfg: Config, training: bool = True
) -> Tuple[Imdb, List[Entry], np.ndarray, np.ndarray]:
    """(imdb, roidb, ratio_list, ratio_index) for one dataset or a union.

    Args:
        names: a name for ``get_imdb`` or several, as a list or joined with '+'.
        cfg: the config (DATA_DIR, TRAIN.*, DATASET.*).
        training: prepare for training (flips, filters) or keep every image as it is.

    Returns:
        imdb: the dataset (a CombinedImdb when several were named);
        roidb: list of entries (see the module docstring);
        ratio_list, ratio_index: as :func:`rank_roidb_ratio`.
    """
    if isinstance(names, str):
        names = names.split("+")
    imdbs = [get_imdb(n, cfg.DATA_DIR, cfg) for n in names]
    roidb: List[Entry] = []
    for imdb in imdbs:
        roidb += training_roidb(imdb, cfg) if training else eval_roidb(imdb)
    imdb = imdbs[0] if len(imdbs) == 1 else CombinedImdb(imdbs)
    if training and not roidb:
        raise ValueError(f"{imdb.name}: no image with boxes to train on")
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)
    return imdb, roidb, ratio_list, ratio_index
