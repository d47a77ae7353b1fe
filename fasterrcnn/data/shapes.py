"""The "shapes" dataset: generated detection images in the VOCdevkit layout, the embedded default.

``DATA_DIR/shapes`` gets ``JPEGImages/*.jpg``, ``Annotations/*.xml`` (1-based VOC XML) and
``ImageSets/Main/{train,test,val}.txt`` (``val``: a validation split for tuning recipes without
looking at ``test``; empty unless ``SHAPES_NUM_VAL`` > 0). Each image (sides 200-400 px, so
aspect ratios within [0.5, 2]) has a textured, noisy background (smooth colour blobs, sometimes
stripes, a few thin clutter lines, per-pixel noise) and 1-6 filled shapes of the classes
``SHAPE_CLASSES`` with random colours (contrasting with the background under them), sizes (the
long side of the unrotated shape in [max(24, 0.12 * short image side), min(120, 0.6 * short
image side)] px, so at least about 30 px once the image's short side is scaled to 256) and
aspect ratios (long / short side 1-1.6, either orientation), squares, triangles and crosses
rotated by up to 15 degrees, stars by any angle. Later shapes may overlap earlier ones, but a
shape is only placed when every earlier shape keeps at least ``MIN_VISIBLE`` of its pixels.
Boxes are the tight extent of each shape's visible pixels (drawn without anti-aliasing).

Image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])`` and written
with OpenCV at a fixed JPEG quality, so a seed gives the same bytes every time, whatever the
split sizes.  Generation runs under a file lock; a marker file (written last) records the seed,
the images drawn and the sizes listed, so an interrupted generation is redone and a request for
other sizes draws only the images that are missing (see :func:`ensure_shapes`).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import multiprocessing
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from filelock import FileLock

from fasterrcnn.data.voc_layout import VocLayoutImdb
from fasterrcnn.data.voc_xml import write_voc_xml

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
SPLITS = ("train", "test", "val")
MIN_VISIBLE = 0.6
"""Smallest visible fraction of a shape once later shapes are drawn over it."""
IMAGE_SIDE = (200, 400)
OBJECT_SIZE = (24, 120)
JPEG_QUALITY = 90
GENERATOR_VERSION = 1
MARKER = "COMPLETE.json"


def shapes_root(data_dir: str) -> str:
    return os.path.join(data_dir, "shapes")


def ensure_shapes(data_dir: str, num_train: int, num_test: int, seed: int, num_val: int = 0) -> str:
    """Make ``DATA_DIR/shapes`` hold these split sizes, drawing only the images it lacks.

    A dataset of another seed or generator version is generated again from scratch (into a
    temporary folder renamed into place).  Otherwise only what is missing is added: asking for
    a val split (or more training images) draws just those images, leaves every other file as
    it is, so a job reading the train split meanwhile is undisturbed, and ``num_val`` 0 keeps
    a val split that is there.  The image-set files list the requested sizes; images drawn for
    a larger request stay on disk, unlisted, for the next one.  Safe against concurrent callers
    (a portable ``filelock.FileLock``) and interruption (the marker is written last).

    Returns the dataset root.
    """
    root = shapes_root(data_dir)
    params = dict(seed=int(seed), version=GENERATOR_VERSION, jpeg_quality=JPEG_QUALITY)
    wanted = {"train": int(num_train), "test": int(num_test)}
    if num_val > 0:
        wanted["val"] = int(num_val)
    if _is_ready(_read_marker(root), params, wanted):
        return root
    os.makedirs(data_dir, exist_ok=True)
    with FileLock(os.path.join(data_dir, ".shapes.lock")):
        marker = _read_marker(root)
        if _is_ready(marker, params, wanted):
            return root
        if _same_generator(marker, params):
            _extend(root, marker, wanted)
        else:
            _generate_from_scratch(data_dir, root, params, wanted)
    return root


def _read_marker(root: str) -> Optional[dict]:
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not all(
        isinstance(marker.get(key), dict) for key in ("drawn", "listed")
    ):
        return None
    return marker


def _same_generator(marker: Optional[dict], params: Dict[str, int]) -> bool:
    """Whether the images on disk come from this seed, generator version and JPEG quality."""
    return marker is not None and all(marker.get(key) == value for key, value in params.items())


def _is_ready(marker: Optional[dict], params: Dict[str, int], wanted: Dict[str, int]) -> bool:
    return _same_generator(marker, params) and all(
        marker["listed"].get(split) == count for split, count in wanted.items()
    )


def _write_marker(root: str, marker: dict) -> None:
    """Replace the marker atomically."""
    tmp = os.path.join(root, f".{MARKER}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(marker, handle)
    os.replace(tmp, os.path.join(root, MARKER))


def _generate_from_scratch(
    data_dir: str, root: str, params: Dict[str, int], wanted: Dict[str, int]
) -> None:
    for stale in glob.glob(os.path.join(data_dir, ".shapes.tmp*")):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = os.path.join(data_dir, f".shapes.tmp{os.getpid()}")
    _log_generation(root, params["seed"], wanted)
    write_shapes(tmp, wanted, params["seed"])
    _write_marker(tmp, dict(params, drawn=dict(wanted), listed=dict(wanted)))
    if os.path.exists(root):
        old = os.path.join(data_dir, f".shapes.tmp{os.getpid()}.old")
        os.replace(root, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, root)


def _extend(root: str, marker: dict, wanted: Dict[str, int]) -> None:
    """Draw the images ``wanted`` adds to ``marker["drawn"]`` and list the wanted sizes."""
    drawn, listed = dict(marker["drawn"]), dict(marker["listed"])
    ranges = {
        split: (drawn.get(split, 0), count)
        for split, count in wanted.items()
        if count > drawn.get(split, 0)
    }
    if ranges:
        missing = {split: stop - start for split, (start, stop) in ranges.items()}
        _log_generation(root, marker["seed"], missing)
        _draw_images(root, ranges, marker["seed"])
    for split, count in wanted.items():
        drawn[split] = max(drawn.get(split, 0), count)
        if listed.get(split) != count:
            _write_image_set(root, split, count)
            listed[split] = count
    _write_marker(root, dict(marker, drawn=drawn, listed=listed))


def _log_generation(root: str, seed: int, counts: Dict[str, int]) -> None:
    logger.info(
        "generating the shapes dataset in %s (%s, seed %d)",
        root,
        ", ".join(f"{count} {split}" for split, count in counts.items()),
        seed,
    )


PARALLEL_MIN_IMAGES = 64
"""Fewer images than this are drawn in the calling process (no worker processes)."""
IMAGES_PER_TASK = 50
"""Images one worker task draws and writes."""


def write_shapes(
    root: str, counts: Dict[str, int], seed: int, workers: Optional[int] = None
) -> None:
    """Write the images, XML and image-set files of each split into ``root``.

    Args:
        counts: images per split name (``SPLITS``).
        workers: processes that draw the images (forked; every image has its own generator, so
            the bytes do not depend on it); None: one per CPU core, at most 4, when there are at
            least :data:`PARALLEL_MIN_IMAGES` images and this process can fork children (not a
            daemon, e.g. a data-loader worker), else 1.
    """
    _draw_images(root, {split: (0, count) for split, count in counts.items()}, seed, workers)
    for split, count in counts.items():
        _write_image_set(root, split, count)


def _draw_images(
    root: str, ranges: Dict[str, Tuple[int, int]], seed: int, workers: Optional[int] = None
) -> None:
    """Draw images ``start..stop-1`` of each split of ``ranges`` (see :func:`write_shapes`)."""
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    tasks = [
        (root, split, int(seed), begin, min(begin + IMAGES_PER_TASK, stop))
        for split, (start, stop) in ranges.items()
        for begin in range(start, stop, IMAGES_PER_TASK)
    ]
    if workers is None:
        can_fork = (
            "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon
        )
        enough = sum(stop - start for start, stop in ranges.values()) >= PARALLEL_MIN_IMAGES
        workers = min(os.cpu_count() or 1, 4) if can_fork and enough else 1
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
            pool.starmap(_write_images, tasks)
    else:
        for task in tasks:
            _write_images(*task)


def _write_image_set(root: str, split: str, count: int) -> None:
    """Write ``ImageSets/Main/<split>.txt`` listing images 0..count-1, atomically."""
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{split}_{i:06d}\n" for i in range(count)))
    os.replace(tmp, path)


def _write_images(root: str, split: str, seed: int, start: int, stop: int) -> None:
    """Draw images ``start..stop-1`` of ``split`` and write their JPEG and XML files."""
    for i in range(start, stop):
        image_id = f"{split}_{i:06d}"
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        image, _, objects = render_image(rng)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {image_id}")
        with open(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), "wb") as handle:
            handle.write(encoded.tobytes())
        write_voc_xml(
            os.path.join(root, "Annotations", f"{image_id}.xml"),
            f"{image_id}.jpg",
            image.shape[1],
            image.shape[0],
            [(o["name"], o["box"], False) for o in objects],
            folder="shapes",
        )


def render_image(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Draw one image.

    Returns:
        image (H,W,3) uint8 BGR; owner (H,W) int8: index of the object that owns each pixel
        (-1 background); objects: list of dict(name, color (3,) uint8, box [x1,y1,x2,y2]
        0-based +1 convention, the tight extent of the pixels with ``owner == k``).
    """
    width, height = (int(v) for v in rng.integers(IMAGE_SIDE[0], IMAGE_SIDE[1] + 1, size=2))
    image = _background(rng, height, width)
    background = image.copy()
    owner = np.full((height, width), -1, dtype=np.int8)
    full_area: List[int] = []
    visible: List[int] = []
    placed: List[dict] = []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(20):
            cls = int(rng.integers(len(SHAPE_CLASSES)))
            mask, rect = _shape_mask(rng, cls, height, width, placed)
            x0, y0, x1, y1 = rect
            sub = mask[y0:y1, x0:x1].astype(bool)
            area = int(sub.sum())
            if area < 100:
                continue
            covered = owner[y0:y1, x0:x1][sub]
            lost = np.bincount(covered[covered >= 0], minlength=len(placed))
            if any(visible[j] - lost[j] < MIN_VISIBLE * full_area[j] for j in range(len(placed))):
                continue
            color = _contrasting_color(rng, background[y0:y1, x0:x1][sub])
            image[y0:y1, x0:x1][sub] = color
            owner[y0:y1, x0:x1][sub] = len(placed)
            for j in range(len(placed)):
                visible[j] -= int(lost[j])
            full_area.append(area)
            visible.append(area)
            placed.append(dict(name=SHAPE_CLASSES[cls], color=color, rect=rect))
            break
    objects = []
    for k, obj in enumerate(placed):
        x0, y0, x1, y1 = obj["rect"]
        ys, xs = np.nonzero(owner[y0:y1, x0:x1] == k)
        box = [x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()), y0 + int(ys.max())]
        objects.append(dict(name=obj["name"], color=obj["color"], box=box))
    return image, owner, objects


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(50, 205, size=3).astype(np.float32)
    gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
    blobs = rng.normal(0.0, 35.0, size=(gh, gw, 3)).astype(np.float32)
    image = base + cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
        image += (rng.uniform(10, 30) * np.sin(phase))[..., None]
    image += rng.standard_normal((height, width, 3), dtype=np.float32) * rng.uniform(4, 14)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        p2 = (int(rng.integers(width)), int(rng.integers(height)))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.line(image, p1, p2, color, int(rng.integers(1, 3)), lineType=cv2.LINE_8)
    return image


def _unit_polygon(cls: int, rng: np.random.Generator) -> Optional[np.ndarray]:
    """Vertices in [-1,1]^2 of a square, triangle, star or cross (None for a circle)."""
    name = SHAPE_CLASSES[cls]
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if name == "triangle":
        return np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if name == "star":
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.5))
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if name == "cross":
        t = rng.uniform(0.3, 0.42)
        return np.array(
            [
                [-t, -1],
                [t, -1],
                [t, -t],
                [1, -t],
                [1, t],
                [t, t],
                [t, 1],
                [-t, 1],
                [-t, t],
                [-1, t],
                [-1, -t],
                [-t, -t],
            ],
            dtype=np.float64,
        )
    return None


def _shape_mask(
    rng: np.random.Generator, cls: int, height: int, width: int, placed: Sequence[dict]
) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """(H,W) uint8 mask of one random shape fully inside the image, and its bounding rect
    (x0, y0, x1, y1) with exclusive ends."""
    short_side = min(height, width)
    low = max(OBJECT_SIZE[0], 0.12 * short_side)
    size = rng.uniform(low, max(low, min(OBJECT_SIZE[1], 0.6 * short_side)))
    other = size / rng.uniform(1.0, 1.6)
    rx, ry = (0.5 * size, 0.5 * other) if rng.random() < 0.5 else (0.5 * other, 0.5 * size)
    name = SHAPE_CLASSES[cls]
    max_angle = {"star": math.pi, "circle": 0.0}.get(name, math.radians(15))
    angle = rng.uniform(-max_angle, max_angle)
    reach = math.hypot(rx, ry) if angle else max(rx, ry)
    reach = min(reach, 0.5 * min(height, width) - 2)
    if placed and rng.random() < 0.4:
        x0, y0, x1, y1 = placed[int(rng.integers(len(placed)))]["rect"]
        cx = rng.uniform(x0 - rx, x1 + rx)
        cy = rng.uniform(y0 - ry, y1 + ry)
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    cx = float(np.clip(cx, reach + 1, width - reach - 2))
    cy = float(np.clip(cy, reach + 1, height - reach - 2))
    mask = np.zeros((height, width), dtype=np.uint8)
    poly = _unit_polygon(cls, rng)
    if poly is None:
        cv2.ellipse(
            mask,
            (round(cx), round(cy)),
            (max(1, round(rx)), max(1, round(ry))),
            0.0,
            0.0,
            360.0,
            1,
            thickness=-1,
            lineType=cv2.LINE_8,
        )
    else:
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = (poly * [rx, ry]) @ rot.T + [cx, cy]
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    r = int(math.ceil(reach)) + 2
    x0, y0 = max(0, int(cx) - r), max(0, int(cy) - r)
    x1, y1 = min(width, int(cx) + r + 1), min(height, int(cy) + r + 1)
    return mask, (x0, y0, x1, y1)


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour far (mean absolute difference) from the pixels it will cover."""
    mean = under.reshape(-1, 3).mean(axis=0)
    best, best_gap = None, -1.0
    for _ in range(10):
        color = rng.integers(0, 256, size=3)
        gap = float(np.abs(color - mean).mean())
        if gap > best_gap:
            best, best_gap = color, gap
        if gap >= 60:
            break
    return best.astype(np.uint8)


class ShapesDataset(VocLayoutImdb):
    """``shapes_train`` / ``shapes_test`` / ``shapes_val``, generated under DATA_DIR/shapes when
    missing.

    Sizes and seed come from ``cfg.DATASET`` (SHAPES_NUM_TRAIN, SHAPES_NUM_TEST,
    SHAPES_NUM_VAL, SHAPES_SEED).
    """

    def __init__(
        self, split: str, data_dir: str, num_train: int, num_test: int, seed: int, num_val: int = 0
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown shapes split {split!r}; known: {SPLITS}")
        if split == "val" and num_val <= 0:
            raise ValueError("shapes_val is empty: set DATASET.SHAPES_NUM_VAL > 0")
        root = ensure_shapes(data_dir, num_train, num_test, seed, num_val)
        super().__init__(f"shapes_{split}", root, split, SHAPE_CLASSES, data_dir)
