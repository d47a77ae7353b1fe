"""The generated shapes dataset: determinism, tight boxes, VOC compatibility, regeneration."""

import multiprocessing
import os

import numpy as np
import pytest

from fasterrcnn.config import load_config
from fasterrcnn.data import SHAPE_CLASSES, ShapesDataset, get_imdb, shapes
from fasterrcnn.data.shapes import MARKER, ensure_shapes, render_image, write_shapes
from fasterrcnn.data.validate import IssueLog
from fasterrcnn.data.voc_layout import VocLayoutImdb
from fasterrcnn.data.voc_xml import parse_voc_xml


def all_files(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def test_same_seed_same_bytes(tmp_path):
    write_shapes(str(tmp_path / "a"), {"train": 4, "test": 2}, seed=3)
    write_shapes(str(tmp_path / "b"), {"train": 4, "test": 2}, seed=3)
    write_shapes(str(tmp_path / "c"), {"train": 4, "test": 2}, seed=4)
    a, b, c = (all_files(tmp_path / x) for x in "abc")
    assert len(a) == 6 + 6 + 2 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".jpg"))


def test_worker_processes_write_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "IMAGES_PER_TASK", 3)
    counts = {"train": 8, "test": 4}
    write_shapes(str(tmp_path / "serial"), counts, seed=5, workers=1)
    write_shapes(str(tmp_path / "forked"), counts, seed=5, workers=2)
    serial, forked = all_files(tmp_path / "serial"), all_files(tmp_path / "forked")
    assert len(serial) == 12 + 12 + 2 and serial == forked
    listed = serial[os.path.join("ImageSets", "Main", "test.txt")].decode().split()
    assert listed == [f"test_{i:06d}" for i in range(4)]


def test_boxes_tight_around_visible_pixels():
    sizes, counts = [], []
    for i in range(40):
        image, owner, objects = render_image(np.random.default_rng([11, i]))
        h, w = owner.shape
        assert 200 <= h <= 400 and 200 <= w <= 400 and 0.5 <= w / h <= 2
        assert 1 <= len(objects) <= 6
        counts.append(len(objects))
        for k, obj in enumerate(objects):
            assert obj["name"] in SHAPE_CLASSES
            x1, y1, x2, y2 = obj["box"]
            mask = owner == k
            ys, xs = np.nonzero(mask)
            # nothing of the object outside the box ...
            assert xs.min() >= x1 and xs.max() <= x2 and ys.min() >= y1 and ys.max() <= y2
            # ... and each border row/column of the box holds object pixels
            assert mask[y1, x1 : x2 + 1].any() and mask[y2, x1 : x2 + 1].any()
            assert mask[y1 : y2 + 1, x1].any() and mask[y1 : y2 + 1, x2].any()
            # the owned pixels carry the object's colour
            assert (image[mask] == obj["color"]).all()
            sizes.append(max(x2 - x1 + 1, y2 - y1 + 1))
    assert min(sizes) >= 12 and max(sizes) <= 150  # 120 px, rotated squares up to 1.22x
    assert len(set(counts)) >= 4  # varied numbers of objects


def test_overlaps_happen_but_objects_stay_mostly_visible():
    overlapping = 0
    for i in range(40):
        _, owner, objects = render_image(np.random.default_rng([5, i]))
        for k, obj in enumerate(objects):
            x1, y1, x2, y2 = obj["box"]
            inside = owner[y1 : y2 + 1, x1 : x2 + 1]
            if (inside > k).any():
                overlapping += 1
            # the visible part still fills a good share of its box
            assert (inside == k).mean() > 0.2
    assert overlapping >= 5


def test_readable_by_voc_classes_and_parser(tmp_path):
    cfg = load_config(
        None,
        # fmt: off
        [
            "DATASET.SHAPES_NUM_TRAIN",
            "5",
            "DATASET.SHAPES_NUM_TEST",
            "3",
            "DATASET.SHAPES_SEED",
            "2",
        ],
        # fmt: on
    )
    imdb = get_imdb("shapes_train", str(tmp_path), cfg)
    assert isinstance(imdb, ShapesDataset) and isinstance(imdb, VocLayoutImdb)
    assert imdb.classes == ("__background__",) + SHAPE_CLASSES
    assert imdb.num_images == 5 and get_imdb("shapes_test", str(tmp_path), cfg).num_images == 3
    gt = imdb.gt_roidb()
    root = tmp_path / "shapes"
    generic = VocLayoutImdb("plain", str(root), "train", SHAPE_CLASSES, str(tmp_path))
    for i, e in enumerate(gt):
        _, _, objects = render_image(np.random.default_rng([2, 0, i]))
        np.testing.assert_array_equal(e["boxes"], [o["box"] for o in objects])
        assert [SHAPE_CLASSES[c - 1] for c in e["gt_classes"]] == [o["name"] for o in objects]
        issues = IssueLog("t")
        parsed = parse_voc_xml(
            str(root / "Annotations" / f"train_{i:06d}.xml"), imdb.class_to_index, issues
        )
        assert issues.count == 0
        np.testing.assert_array_equal(parsed["boxes"], e["boxes"])
        np.testing.assert_array_equal(generic.gt_roidb()[i]["boxes"], e["boxes"])
        assert os.path.isfile(e["image"])


def test_regenerated_when_incomplete_or_the_seed_changes(tmp_path):
    root = ensure_shapes(str(tmp_path), 3, 1, 0)
    marker = os.path.join(root, MARKER)
    stamp = os.stat(marker).st_mtime_ns
    assert ensure_shapes(str(tmp_path), 3, 1, 0) == root and os.stat(marker).st_mtime_ns == stamp
    os.remove(marker)  # an interrupted generation
    os.remove(os.path.join(root, "JPEGImages", "train_000001.jpg"))
    ensure_shapes(str(tmp_path), 3, 1, 0)
    assert os.path.isfile(os.path.join(root, "JPEGImages", "train_000001.jpg"))
    ensure_shapes(str(tmp_path), 3, 1, 7)
    write_shapes(str(tmp_path / "ref"), {"train": 3, "test": 1}, seed=7)
    got = all_files(root)
    assert got.pop(MARKER)
    assert got == all_files(tmp_path / "ref")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".shapes.tmp")]


def test_other_sizes_draw_only_the_missing_images(tmp_path):
    root = ensure_shapes(str(tmp_path), 3, 1, 0)
    kept = os.path.join(root, "JPEGImages", "train_000002.jpg")
    stamp = os.stat(kept).st_mtime_ns

    ensure_shapes(str(tmp_path), 4, 1, 0, num_val=2)
    assert os.stat(kept).st_mtime_ns == stamp
    write_shapes(str(tmp_path / "ref"), {"train": 4, "test": 1, "val": 2}, seed=0)
    got = all_files(root)
    assert got.pop(MARKER)
    assert got == all_files(tmp_path / "ref")

    marker = os.path.join(root, MARKER)
    marker_stamp = os.stat(marker).st_mtime_ns
    ensure_shapes(str(tmp_path), 4, 1, 0)  # no val asked for: the val split stays
    assert os.stat(marker).st_mtime_ns == marker_stamp
    assert (tmp_path / "shapes" / "ImageSets" / "Main" / "val.txt").read_text().split() == [
        "val_000000",
        "val_000001",
    ]

    ensure_shapes(str(tmp_path), 2, 1, 0)  # fewer: listed, not drawn again
    train_ids = (tmp_path / "shapes" / "ImageSets" / "Main" / "train.txt").read_text().split()
    assert train_ids == ["train_000000", "train_000001"]
    assert os.stat(kept).st_mtime_ns == stamp
    ensure_shapes(str(tmp_path), 4, 1, 0)
    assert os.stat(kept).st_mtime_ns == stamp
    assert len((tmp_path / "shapes" / "ImageSets" / "Main" / "train.txt").read_text().split()) == 4


def _generate(data_dir):
    ensure_shapes(data_dir, 6, 2, 1)


def test_concurrent_generation(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_generate, args=(str(tmp_path),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    write_shapes(str(tmp_path / "ref"), {"train": 6, "test": 2}, seed=1)
    got = all_files(tmp_path / "shapes")
    assert got.pop(MARKER)
    assert got == all_files(tmp_path / "ref")


def test_val_split_is_new_images_and_leaves_train_and_test_unchanged(tmp_path):
    write_shapes(str(tmp_path / "a"), {"train": 3, "test": 2}, seed=5)
    write_shapes(str(tmp_path / "b"), {"train": 3, "test": 2, "val": 2}, seed=5)

    def images(root: str, name: str) -> bytes:
        return (tmp_path / root / "JPEGImages" / f"{name}.jpg").read_bytes()

    for name in ("train_000000", "train_000002", "test_000001"):
        assert images("a", name) == images("b", name)
    val = {images("b", f"val_{i:06d}") for i in range(2)}
    others = {images("b", f"train_{i:06d}") for i in range(3)} | {
        images("b", f"test_{i:06d}") for i in range(2)
    }
    assert len(val) == 2 and not val & others
    ids = (tmp_path / "b" / "ImageSets" / "Main" / "val.txt").read_text().split()
    assert ids == ["val_000000", "val_000001"]


def test_empty_val_split_is_refused_by_name(tmp_path):
    from fasterrcnn.data.shapes import ShapesDataset

    with pytest.raises(ValueError, match="SHAPES_NUM_VAL"):
        ShapesDataset("val", str(tmp_path), 2, 1, 0, num_val=0)
