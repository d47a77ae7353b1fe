"""Datasets by path: COCO json, VOC folder and CSV list quirks, the held-out split, class lists."""

import json
import logging
import os

import cv2
import numpy as np
import pytest

from fasterrcnn.cli import add_config_arguments, build_config
from fasterrcnn.config import load_config
from fasterrcnn.data import get_imdb
from fasterrcnn.data.by_path import detect_format
from fasterrcnn.data.class_list import read_class_list
from fasterrcnn.data.coco import CocoJsonImdb
from fasterrcnn.data.csv_list import CsvDataset
from fasterrcnn.data.shapes_export import export_shapes
from fasterrcnn.data.split import held_out_split
from fasterrcnn.data.voc_folder import VocFolderDataset
from fasterrcnn.eval import coco_evaluate


def image(path, width, height):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


def cfg_for(tmp_path, *overrides):
    return load_config(None, ["DATA_DIR", str(tmp_path / "data")] + list(overrides))


# ---------------------------------------------------------------- COCO json


def labelme_coco(tmp_path):
    """A labelme-style export: string image ids, a `_background_` category with id 0 and no
    annotations, file names in a subfolder, no iscrowd / area, one size missing, a crowd box."""
    image(tmp_path / "export" / "JPEGImages" / "a.jpg", 100, 80)
    image(tmp_path / "export" / "JPEGImages" / "b.jpg", 60, 50)
    data = {
        "images": [
            {"id": "img_a", "file_name": "JPEGImages/a.jpg", "width": 100, "height": 80},
            {"id": "img_b", "file_name": "JPEGImages/b.jpg"},
        ],
        "categories": [
            {"id": 0, "name": "_background_"},
            {"id": 1, "name": "red car"},
            {"id": 2, "name": "dog"},
        ],
        "annotations": [
            {"id": 10, "image_id": "img_a", "category_id": 1, "bbox": [10, 20, 30, 40]},
            {
                "id": 11,
                "image_id": "img_a",
                "category_id": 2,
                "bbox": [0, 0, 100, 80],
                "iscrowd": 1,
            },
            {"id": 12, "image_id": "img_b", "category_id": 2, "bbox": [5.5, 6, 10, 10.5]},
            {"id": 13, "image_id": "img_b", "category_id": 2, "bbox": [1, 2]},
            {"id": 14, "image_id": "nope", "category_id": 2, "bbox": [1, 2, 3, 4]},
        ],
    }
    path = tmp_path / "export" / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_json_quirks(tmp_path, caplog):
    path = labelme_coco(tmp_path)
    cfg = cfg_for(tmp_path, "DATASET.TRAIN_PATH", str(path))
    with caplog.at_level(logging.WARNING):
        imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
    assert isinstance(imdb, CocoJsonImdb)
    assert imdb.classes == ("__background__", "red car", "dog")
    assert "'_background_' (id 0) has no annotations: dropped" in caplog.text
    assert "annotation 13 has no [x, y, w, h] bbox" in caplog.text
    assert "unknown image 'nope'" in caplog.text
    assert imdb.image_ids == [1, 2] and imdb.label_to_category_id == {1: 1, 2: 2}
    assert imdb.image_path_at(1) == str(tmp_path / "export" / "JPEGImages" / "b.jpg")
    gt = imdb.gt_roidb()
    np.testing.assert_array_equal(gt[0]["boxes"], [[10, 20, 39, 59]])  # crowd left out
    assert gt[0]["gt_classes"].tolist() == [1]
    assert (gt[1]["width"], gt[1]["height"]) == (60, 50)  # from the image header
    np.testing.assert_allclose(gt[1]["boxes"], [[5.5, 6, 14.5, 15.5]])
    ann = imdb.annotations()
    assert ann[0]["gt_classes"].tolist() == [1, 2] and ann[0]["difficult"].tolist() == [False, True]
    # COCOeval runs on the normalised set: perfect detections score AP 1
    all_boxes = [
        [np.zeros((0, 5), np.float32)] * 2,
        [np.array([[10, 20, 39, 59, 0.9]], np.float32), np.zeros((0, 5), np.float32)],
        [np.zeros((0, 5), np.float32), np.array([[5.5, 6, 14.5, 15.5, 0.8]], np.float32)],
    ]
    stats = coco_evaluate(all_boxes, imdb.coco, imdb.image_ids, imdb.label_to_category_id)
    assert stats["AP"] == pytest.approx(1.0)


def test_coco_json_with_checkpoint_classes_and_cvat_layout(tmp_path, caplog):
    """CVAT puts the json in annotations/ and the images in a sibling images/ folder; a test
    file is read with the training classes, a class it lacks gets an empty category."""
    image(tmp_path / "cvat" / "images" / "x.png", 40, 30)
    data = {
        "images": [{"id": 5, "file_name": "x.png", "width": 40, "height": 30}],
        "categories": [{"id": 7, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 7,
                "bbox": [1, 1, 10, 10],
                "area": 100,
                "iscrowd": 0,
            }
        ],
    }
    os.makedirs(tmp_path / "cvat" / "annotations")
    path = tmp_path / "cvat" / "annotations" / "instances_default.json"
    path.write_text(json.dumps(data))
    cfg = cfg_for(tmp_path, "DATASET.TEST_PATH", str(path))
    imdb = get_imdb("path_test", cfg.DATA_DIR, cfg, classes=["__background__", "cat", "dog"])
    assert imdb.classes == ("__background__", "cat", "dog")
    assert imdb.image_path_at(0) == str(tmp_path / "cvat" / "images" / "x.png")
    assert imdb.gt_roidb()[0]["gt_classes"].tolist() == [2]
    assert imdb.label_to_category_id[2] == 7 and imdb.label_to_category_id[1] not in (7,)
    assert imdb.label_to_category_id[1] in imdb.coco.cats


def test_coco_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cfg = cfg_for(tmp_path, "DATASET.TRAIN_PATH", str(bad))
    with pytest.raises(ValueError, match="bad.json: not valid json"):
        get_imdb("path_train", cfg.DATA_DIR, cfg)
    bad.write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], "categories": []}
        )
    )
    with pytest.raises(ValueError, match="ids must be unique"):
        get_imdb("path_train", cfg.DATA_DIR, cfg)


# ---------------------------------------------------------------- CSV


def test_csv_quirks(tmp_path, caplog):
    image(tmp_path / "imgs" / "one.jpg", 50, 40)
    image(tmp_path / "imgs" / "sub dir" / "two.jpg", 30, 30)
    image(tmp_path / "imgs" / "empty.jpg", 20, 20)
    rows = [
        "path,x1,y1,x2,y2,class",
        "one.jpg,10,5,30,25,traffic light",
        '"sub dir/two.jpg",0,0,10,10,"person, adult"',
        "one.jpg,0,0,60,20,person",  # x2 beyond the 50 px image: clipped
        "empty.jpg,,,,,",
        "one.jpg,a,0,5,5,person",
        "one.jpg,1,2,3",
        "",
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes("\r\n".join(rows).encode("utf-8"))
    cfg = cfg_for(
        tmp_path, "DATASET.TRAIN_PATH", str(csv_path), "DATASET.IMAGE_ROOT", str(tmp_path / "imgs")
    )
    with caplog.at_level(logging.WARNING):
        imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
        gt = imdb.gt_roidb()
    assert isinstance(imdb, CsvDataset)
    assert imdb.classes == ("__background__", "person", "person, adult", "traffic light")
    assert imdb.image_index == ["one.jpg", "sub dir/two.jpg", "empty.jpg"]
    assert "labels.csv:6: one.jpg has a missing or non-numeric coordinate" in caplog.text
    assert "labels.csv:7: expected 6 fields" in caplog.text
    assert "lies partly outside the 50x40 image: clipped" in caplog.text
    # edges -> 0-based +1 convention: x2 - 1
    np.testing.assert_array_equal(gt[0]["boxes"], [[10, 5, 29, 24], [0, 0, 49, 19]])
    assert gt[0]["gt_classes"].tolist() == [3, 1] and (gt[0]["width"], gt[0]["height"]) == (50, 40)
    assert gt[1]["gt_classes"].tolist() == [2]
    assert gt[2]["boxes"].shape == (0, 4) and gt[2]["image"].endswith("empty.jpg")


def test_csv_classes_file_fixes_the_order(tmp_path):
    image(tmp_path / "a.jpg", 20, 20)
    (tmp_path / "l.csv").write_text("a.jpg,1,1,9,9,cat\na.jpg,2,2,12,12,dog\n")
    (tmp_path / "classes.csv").write_text("dog,0\ncat,1\nbird,2\n")
    cfg = cfg_for(
        tmp_path,
        "DATASET.TRAIN_PATH",
        str(tmp_path / "l.csv"),
        "DATASET.CLASSES_FILE",
        str(tmp_path / "classes.csv"),
    )
    imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
    assert imdb.classes == ("__background__", "dog", "cat", "bird")
    assert imdb.gt_roidb()[0]["gt_classes"].tolist() == [2, 1]


def test_read_class_list_forms(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("# classes\nsmall car\n\nbus\n")
    assert read_class_list(str(p)) == ("small car", "bus")
    p.write_text('b,1\n"a, x",0\n')
    assert read_class_list(str(p)) == ("a, x", "b")
    p.write_text("cat,\r\ndog\r\n")  # trailing comma, CRLF
    assert read_class_list(str(p)) == ("cat", "dog")
    p.write_text("a,0,x\n")
    with pytest.raises(ValueError, match="c.txt:1"):
        read_class_list(str(p))
    p.write_text("a,0\nb\n")
    with pytest.raises(ValueError, match="c.txt:2"):
        read_class_list(str(p))
    p.write_text("a,0\nb,0\n")
    with pytest.raises(ValueError, match="share an id"):
        read_class_list(str(p))


# ---------------------------------------------------------------- VOC folder

XML = """<annotation><filename>{file}</filename><size><width>{w}</width><height>{h}</height>
<depth>3</depth></size>{objects}</annotation>"""
OBJ = (
    "<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
    "<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
)


def test_voc_folder_of_xml_next_to_images(tmp_path):
    """labelImg: XML next to the images; <filename> may differ from the XML's name."""
    folder = tmp_path / "labelimg"
    image(folder / "photo 1.png", 40, 30)
    image(folder / "b.jpg", 40, 30)
    (folder / "a.xml").write_text(
        XML.format(
            file="photo 1.png", w=40, h=30, objects=OBJ.format(n="Stop Sign", a=1, b=1, c=10, d=10)
        )
    )
    (folder / "b.xml").write_text(XML.format(file="", w=40, h=30, objects=""))
    cfg = cfg_for(tmp_path, "DATASET.TRAIN_PATH", str(folder))
    imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
    assert isinstance(imdb, VocFolderDataset)
    assert imdb.classes == ("__background__", "Stop Sign")
    assert imdb.image_path_at(0) == str(folder / "photo 1.png")
    assert imdb.image_path_at(1) == str(folder / "b.jpg")
    gt = imdb.gt_roidb()
    np.testing.assert_array_equal(gt[0]["boxes"], [[0, 0, 9, 9]])
    assert gt[1]["boxes"].shape == (0, 4)


def test_voc_devkit_layout_anywhere_by_image_set(tmp_path):
    root = tmp_path / "somewhere" / "VOC"
    for name, cls in (("x", "cat"), ("y", "dog"), ("z", "cat")):
        image(root / "JPEGImages" / f"{name}.jpg", 30, 20)
        os.makedirs(root / "Annotations", exist_ok=True)
        (root / "Annotations" / f"{name}.xml").write_text(
            XML.format(
                file=f"{name}.jpg", w=30, h=20, objects=OBJ.format(n=cls, a=2, b=2, c=8, d=9)
            )
        )
    os.makedirs(root / "ImageSets" / "Main")
    (root / "ImageSets" / "Main" / "train.txt").write_text("z\nx\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("y\n")
    cfg = cfg_for(
        tmp_path,
        "DATASET.TRAIN_PATH",
        str(root / "ImageSets" / "Main" / "train.txt"),
        "DATASET.TEST_PATH",
        str(root / "ImageSets" / "Main" / "test.txt"),
    )
    train = get_imdb("path_train", cfg.DATA_DIR, cfg)
    test = get_imdb("path_test", cfg.DATA_DIR, cfg)
    assert train.image_index == ["z", "x"] and train.classes == ("__background__", "cat")
    # the test set takes the training classes, so "dog" is unknown there (warned and skipped)
    assert test.classes == train.classes and test.gt_roidb()[0]["boxes"].shape == (0, 4)
    whole = get_imdb("path_train", cfg.DATA_DIR, cfg_for(tmp_path, "DATASET.TRAIN_PATH", str(root)))
    assert whole.image_index == ["x", "y", "z"]
    assert whole.classes == ("__background__", "cat", "dog")


# ---------------------------------------------------------------- split, formats, errors


def test_held_out_split_is_seeded_disjoint_and_complete():
    train, test = held_out_split(50, 0.2, seed=3)
    assert len(test) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))
    again = held_out_split(50, 0.2, seed=3)
    assert again[1].tolist() == test.tolist()
    assert held_out_split(50, 0.2, seed=4)[1].tolist() != test.tolist()
    assert len(held_out_split(3, 0.01, 0)[1]) == 1 and len(held_out_split(3, 0.99, 0)[0]) == 1
    assert len(held_out_split(7, 0.0, 0)[1]) == 0
    with pytest.raises(ValueError, match="fraction"):
        held_out_split(5, 1.0, 0)
    with pytest.raises(ValueError, match="1 image"):
        held_out_split(1, 0.5, 0)


def test_path_split_through_the_config(tmp_path):
    out = str(tmp_path / "sh")
    export_shapes(out, "csv", {"train": 10}, seed=0)
    keys = ["DATASET.TRAIN_PATH", os.path.join(out, "train.csv"), "DATASET.VAL_FRACTION", 0.3]
    cfg = cfg_for(tmp_path, *keys)
    train = get_imdb("path_train", cfg.DATA_DIR, cfg)
    test = get_imdb("path_test", cfg.DATA_DIR, cfg)
    assert (train.num_images, test.num_images) == (7, 3)
    assert not set(train.image_index) & set(test.image_index)
    assert train.classes == test.classes
    other = cfg_for(tmp_path, *keys, "DATASET.SPLIT_SEED", 1)
    assert get_imdb("path_test", other.DATA_DIR, other).image_index != test.image_index
    with pytest.raises(ValueError, match="VAL_FRACTION"):
        get_imdb("path_test", cfg.DATA_DIR, cfg_for(tmp_path, *keys[:2]))
    with pytest.raises(ValueError, match="set it to 0"):
        get_imdb("path_train", cfg.DATA_DIR, cfg_for(tmp_path, *keys, "DATASET.TEST_PATH", "x"))
    with pytest.raises(ValueError, match="TRAIN_PATH"):
        get_imdb("path_train", cfg.DATA_DIR, cfg_for(tmp_path))


def test_format_detection(tmp_path):
    assert detect_format("a/b.JSON") == "coco" and detect_format("x.csv") == "csv"
    assert detect_format(str(tmp_path)) == "voc" and detect_format("Main/train.txt") == "voc"
    assert detect_format("labels.txt", "csv") == "csv"
    with pytest.raises(ValueError, match="DATASET.FORMAT"):
        detect_format("labels.xyz")


def test_shapes_exports_agree_across_formats(tmp_path):
    boxes = {}
    for fmt, rel in (("voc", ""), ("coco", "train.json"), ("csv", "train.csv")):
        out = str(tmp_path / fmt)
        export_shapes(out, fmt, {"train": 4, "test": 2}, seed=1)
        cfg = cfg_for(
            tmp_path,
            "DATASET.TRAIN_PATH",
            os.path.join(out, rel) if rel else os.path.join(out, "ImageSets", "Main", "train.txt"),
        )
        imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
        assert imdb.num_images == 4
        boxes[fmt] = [
            (e["boxes"].tolist(), [imdb.classes[c] for c in e["gt_classes"]])
            for e in imdb.gt_roidb()
        ]
        assert os.path.isfile(imdb.image_path_at(3))
    assert boxes["voc"] == boxes["coco"] == boxes["csv"]
    assert sum(len(b) for b, _ in boxes["voc"]) > 4


def test_path_flags_set_the_dataset_keys():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        [
            "--dataset",
            "csv",
            "--train-data",
            "a.csv",
            "--test_data",
            "b.csv",
            "--image-root",
            "imgs",
            "--classes_file",
            "c.txt",
            "--set",
            "DATASET.SPLIT_SEED",
            "5",
        ]
    )
    ds = build_config(args).DATASET
    assert (ds.TRAIN, ds.TEST, ds.FORMAT) == ("path_train", "path_test", "csv")
    assert (ds.TRAIN_PATH, ds.TEST_PATH, ds.IMAGE_ROOT) == ("a.csv", "b.csv", "imgs")
    assert (ds.CLASSES_FILE, ds.VAL_FRACTION, ds.SPLIT_SEED) == ("c.txt", 0.0, 5)
    args = parser.parse_args(
        ["--dataset", "coco_json", "--val-fraction", "0.25", "--format", "auto"]
    )
    ds = build_config(args).DATASET
    assert (ds.FORMAT, ds.VAL_FRACTION) == ("auto", 0.25)


def test_coco_category_id_zero_with_annotations_is_a_class(tmp_path):
    image(tmp_path / "a.jpg", 50, 40)
    data = {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 50, "height": 40}],
        "categories": [{"id": 0, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 0, "bbox": [2, 3, 20, 10]},
            {"id": 2, "image_id": 0, "category_id": 3, "bbox": [25, 5, 20, 30]},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    cfg = cfg_for(tmp_path, "DATASET.TRAIN_PATH", str(tmp_path / "ann.json"))
    imdb = get_imdb("path_train", cfg.DATA_DIR, cfg)
    assert imdb.classes == ("__background__", "cat", "dog")
    assert imdb.label_to_category_id == {1: 0, 2: 3} and imdb.image_ids == [0]
    gt = imdb.gt_roidb()[0]
    np.testing.assert_array_equal(gt["boxes"], [[2, 3, 21, 12], [25, 5, 44, 34]])
    assert gt["gt_classes"].tolist() == [1, 2]
    all_boxes = [
        [np.zeros((0, 5), np.float32)],
        [np.array([[2, 3, 21, 12, 0.9]], np.float32)],
        [np.array([[0, 0, 10, 10, 0.5]], np.float32)],
    ]  # the dog is missed
    stats = coco_evaluate(all_boxes, imdb.coco, imdb.image_ids, imdb.label_to_category_id)
    assert stats["AP"] == pytest.approx(0.5)  # cat AP 1, dog AP 0
