"""Bad data: each case is repaired by a documented rule or skipped, with a message naming the
file and the box; nothing underflows or becomes NaN."""

import json
import logging
import os

import cv2
import numpy as np
import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.data import BadImagesError, RoIBatchDataset, combined_roidb, get_imdb
from fasterrcnn.data import loader as loader_module
from fasterrcnn.data.roidb import rank_roidb_ratio

HEADER = "<annotation><size><width>{w}</width><height>{h}</height></size>"


def obj(cls, x1, y1, x2, y2):
    return (
        f"<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def custom_tree(tmp_path, xmls, size=(100, 80)):
    """xmls: {id: xml text}; every image is a real (w, h) = size JPEG."""
    root = tmp_path / "custom"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(root / sub, exist_ok=True)
    for name, text in xmls.items():
        cv2.imwrite(
            str(root / "JPEGImages" / f"{name}.jpg"), np.full((size[1], size[0], 3), 128, np.uint8)
        )
        if text is not None:
            (root / "Annotations" / f"{name}.xml").write_text(text)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(xmls) + "\n")
    return root


def load(tmp_path, caplog, xmls, **kw):
    custom_tree(tmp_path, xmls, **kw)
    with caplog.at_level(logging.WARNING):
        return get_imdb("custom_train", str(tmp_path), classes=["a", "b"]).gt_roidb()


def test_reversed_box_is_skipped(tmp_path, caplog):
    gt = load(
        tmp_path,
        caplog,
        {
            "r": HEADER.format(w=100, h=80)
            + obj("a", 50, 10, 20, 30)
            + obj("b", 1, 1, 10, 10)
            + "</annotation>"
        },
    )
    np.testing.assert_array_equal(gt[0]["boxes"], [[0, 0, 9, 9]])
    assert gt[0]["gt_classes"].tolist() == [2]
    assert "r.xml: box 0 (a) [50, 10, 20, 30]" in caplog.text and "x2 < x1" in caplog.text


def test_box_outside_the_image_is_clipped(tmp_path, caplog):
    gt = load(
        tmp_path,
        caplog,
        {
            "o": HEADER.format(w=100, h=80)
            + obj("a", -5, 3, 120, 90)
            + obj("b", 150, 10, 170, 20)
            + "</annotation>"
        },
    )
    np.testing.assert_array_equal(gt[0]["boxes"], [[0, 2, 99, 79]])  # the second is all outside
    assert "o.xml: box 0 (a)" in caplog.text and "clipped" in caplog.text
    assert "o.xml: box 1 (b)" in caplog.text and "skipped" in caplog.text
    assert gt[0]["boxes"].dtype == np.float32


def test_zero_area_box_is_skipped(tmp_path, caplog):
    gt = load(
        tmp_path,
        caplog,
        {
            "z": HEADER.format(w=100, h=80)
            + obj("a", 10, 10, 10, 40)
            + obj("a", 5, 5, 30, 30)
            + "</annotation>"
        },
    )
    np.testing.assert_array_equal(gt[0]["boxes"], [[4, 4, 29, 29]])
    assert "z.xml: box 0 (a) [10, 10, 10, 40]" in caplog.text and "zero area" in caplog.text


def test_unknown_class_and_non_numeric_coordinates_are_skipped(tmp_path, caplog):
    gt = load(
        tmp_path,
        caplog,
        {
            "u": HEADER.format(w=100, h=80)
            + obj("zebra", 1, 1, 9, 9)
            + obj("a", "nan", 1, 9, 9)
            + obj("b", "x", 1, 9, 9)
            + obj(" B ", 2, 2, 9, 9)
            + "</annotation>"
        },
    )
    np.testing.assert_array_equal(gt[0]["boxes"], [[1, 1, 8, 8]])  # " B " matches class b
    assert "u.xml: object 0 has unknown class 'zebra'" in caplog.text
    assert "u.xml: box 0 has a coordinate that is not a number" in caplog.text
    assert "u.xml: object 2 (b) has a missing or non-numeric" in caplog.text


def test_malformed_empty_and_missing_annotations(tmp_path, caplog):
    xmls = {
        "bad": "<annotation><object><name>a</name>",
        "empty": HEADER.format(w=100, h=80) + "</annotation>",
        "noxml": None,
        "good": HEADER.format(w=100, h=80) + obj("a", 1, 1, 20, 20) + "</annotation>",
    }
    gt = load(tmp_path, caplog, xmls)
    assert [len(e["boxes"]) for e in gt] == [0, 0, 0, 1]
    assert "bad.xml: malformed annotation XML" in caplog.text
    assert "noxml.xml: annotation file is missing" in caplog.text
    assert (gt[0]["width"], gt[0]["height"]) == (100, 80)  # size read from the image instead
    caplog.clear()
    cfg = load_config(None, ["DATA_DIR", str(tmp_path), "DATASET.CLASSES", "[a, b]"])
    with caplog.at_level(logging.INFO):
        _, roidb, _, _ = combined_roidb("custom_train", cfg)
    assert len(roidb) == 2 and "3 of 4 images have no (usable) boxes" in caplog.text


def test_xml_without_size_uses_the_image_and_clips(tmp_path, caplog):
    gt = load(
        tmp_path,
        caplog,
        {"s": "<annotation>" + obj("a", 1, 1, 500, 20) + "</annotation>"},
        size=(60, 40),
    )
    assert (gt[0]["width"], gt[0]["height"]) == (60, 40)
    np.testing.assert_array_equal(gt[0]["boxes"], [[0, 0, 59, 19]])


def test_unreadable_or_missing_image_raises_naming_the_file(tmp_path):
    root = custom_tree(
        tmp_path, {"img": HEADER.format(w=100, h=80) + obj("a", 1, 1, 20, 20) + "</annotation>"}
    )
    cfg = load_config(
        None, ["DATA_DIR", str(tmp_path), "DATASET.CLASSES", "[a, b]", "TRAIN.SCALES", "[40]"]
    )
    _, roidb, ratio_list, ratio_index = combined_roidb("custom_train", cfg)
    ds = RoIBatchDataset(roidb, ratio_list, ratio_index, cfg, 1)
    assert int(ds[0].num_boxes) == 1
    image = root / "JPEGImages" / "img.jpg"
    image.write_bytes(b"not a jpeg at all")
    with pytest.raises(OSError, match="img.jpg"):
        ds[0]
    imdb = get_imdb("custom_train", str(tmp_path), cfg)
    with pytest.raises(OSError, match="img.jpg"):
        loader_module.TestImageDataset(imdb, cfg)[0]
    os.remove(image)
    with pytest.raises(OSError, match="img.jpg"):
        ds[0]


def test_image_size_mismatch_raises(tmp_path):
    root = custom_tree(
        tmp_path,
        {"m": HEADER.format(w=100, h=80) + obj("a", 1, 1, 20, 20) + "</annotation>"},
        size=(90, 80),
    )
    cfg = load_config(
        None, ["DATA_DIR", str(tmp_path), "DATASET.CLASSES", "[a, b]", "TRAIN.SCALES", "[40]"]
    )
    with pytest.raises(BadImagesError, match="m.jpg: decoded size is 90x80 .* says 100x80"):
        combined_roidb("custom_train", cfg)
    image = str(root / "JPEGImages" / "m.jpg")
    cv2.imwrite(image, np.full((80, 100, 3), 128, np.uint8))
    _, roidb, ratio_list, ratio_index = combined_roidb("custom_train", cfg)
    cv2.imwrite(image, np.full((80, 90, 3), 128, np.uint8))  # changed after the check
    with pytest.raises(ValueError, match="m.jpg is 90x80 but its annotation says 100x80"):
        RoIBatchDataset(roidb, ratio_list, ratio_index, cfg, 1)[0]


def test_boxes_cut_by_a_crop_are_dropped_never_nan(tmp_path):
    cv2.imwrite(str(tmp_path / "w.png"), np.zeros((100, 400, 3), np.uint8))
    boxes = np.array([[0, 10, 20, 50], [379, 10, 399, 50], [190, 0, 210, 99]], np.float32)
    roidb = [
        dict(
            image=str(tmp_path / "w.png"),
            width=400,
            height=100,
            boxes=boxes,
            gt_classes=np.array([1, 2, 3]),
            difficult=np.zeros(3, bool),
            flipped=False,
        )
    ]
    cfg = load_config(None, ["TRAIN.SCALES", "[100]"])
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)
    ds = RoIBatchDataset(roidb, ratio_list, ratio_index, cfg, 1)
    seen = set()
    for epoch in range(20):
        s = ds[(0, epoch)]
        n = int(s.num_boxes)
        kept = s.gt_boxes[:n].numpy()
        assert torch.isfinite(s.gt_boxes).all() and 1 <= n <= 3
        assert (kept[:, 2] - kept[:, 0] >= 1).all() and (kept[:, 3] - kept[:, 1] >= 1).all()
        assert (kept[:, :4] >= 0).all() and (kept[:, 2] <= 199).all()
        assert 3 in kept[:, 4]  # the middle box is inside every window within [0, 399]
        seen.add(n)
    assert min(seen) < 3  # some crops cut a box off entirely: it was dropped


def test_coco_bad_boxes_and_categories(tmp_path, caplog):
    ann_dir = tmp_path / "coco" / "annotations"
    ann_dir.mkdir(parents=True)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 40}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [40, 30, 20, 20], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        ],
    }
    (ann_dir / "instances_train2017.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        gt = get_imdb("coco_2017_train", str(tmp_path)).gt_roidb()
    np.testing.assert_array_equal(gt[0]["boxes"], [[40, 30, 49, 39], [1, 2, 3, 5]])
    assert "image 1: box 0 (annotation 10)" in caplog.text and "clipped" in caplog.text
