"""Dataset classes on tiny trees written into tmp_path: VOC, COCO, custom, the factory, cache."""

import json
import logging
import os

import cv2
import numpy as np
import pytest

from fasterrcnn.config import load_config
from fasterrcnn.data import (
    VOC_CLASSES,
    CocoDataset,
    CustomDataset,
    PascalVoc,
    UnknownDatasetError,
    get_imdb,
)

VOC_XML = """<annotation>
  <folder>VOC2007</folder><filename>{name}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
VOC_OBJ = """<object><name>{cls}</name><pose>Left</pose><truncated>0</truncated>
  <difficult>{diff}</difficult>
  <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def write_voc(root, image_set, images, ext=".jpg"):
    """images: {id: (w, h, [(cls, x1, y1, x2, y2, difficult) 1-based])}."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, (w, h, objs) in images.items():
        cv2.imwrite(os.path.join(root, "JPEGImages", name + ext), np.zeros((h, w, 3), np.uint8))
        text = "".join(
            VOC_OBJ.format(cls=c, x1=a, y1=b, x2=x, y2=y, diff=d) for c, a, b, x, y, d in objs
        )
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write(VOC_XML.format(name=name, w=w, h=h, objects=text))
    with open(os.path.join(root, "ImageSets", "Main", image_set + ".txt"), "w") as f:
        f.write("\n".join(images) + "\n")


def test_voc_parsing_difficult_float_and_one_based(tmp_path):
    root = tmp_path / "VOCdevkit2007" / "VOC2007"
    write_voc(
        str(root),
        "trainval",
        {
            "000001": (50, 40, [("dog", 1, 2, 30, 20, 0), ("person", 10.5, 3, 20.25, 39, 1)]),
            "000002": (60, 30, [("car", 5, 5, 60, 30, 0)]),
        },
    )
    imdb = get_imdb("voc_2007_trainval", str(tmp_path))
    assert isinstance(imdb, PascalVoc)
    assert imdb.classes == ("__background__",) + VOC_CLASSES and imdb.num_classes == 21
    assert imdb.image_index == ["000001", "000002"]
    assert imdb.image_path_at(1) == str(root / "JPEGImages" / "000002.jpg")
    gt = imdb.gt_roidb()
    e = gt[0]
    assert (e["width"], e["height"], e["flipped"]) == (50, 40, False)
    assert e["boxes"].dtype == np.float32
    np.testing.assert_array_equal(e["boxes"], [[0, 1, 29, 19], [9.5, 2, 19.25, 38]])
    np.testing.assert_array_equal(
        e["gt_classes"], [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    )
    np.testing.assert_array_equal(e["difficult"], [False, True])
    # the box touching the far border: 1-based 60/30 -> 0-based 59/29, no clipping needed
    np.testing.assert_array_equal(gt[1]["boxes"], [[4, 4, 59, 29]])
    ann = imdb.annotations()
    assert len(ann) == 2 and ann[0]["difficult"].tolist() == [False, True]


def test_voc_archive_layout_and_0712_union(tmp_path):
    write_voc(
        str(tmp_path / "VOCdevkit" / "VOC2007"),
        "trainval",
        {"a": (20, 20, [("cat", 1, 1, 5, 5, 0)])},
    )
    write_voc(
        str(tmp_path / "VOCdevkit" / "VOC2012"),
        "trainval",
        {"b": (20, 20, [("cow", 1, 1, 5, 5, 0)]), "c": (20, 20, [("cow", 2, 2, 9, 9, 0)])},
    )
    imdb = get_imdb("voc_0712_trainval", str(tmp_path))
    assert imdb.num_images == 3 and imdb.image_index == ["a", "b", "c"]
    assert imdb.image_path_at(2).endswith(os.path.join("VOC2012", "JPEGImages", "c.jpg"))
    assert [int(e["gt_classes"][0]) for e in imdb.gt_roidb()] == [
        VOC_CLASSES.index("cat") + 1,
        VOC_CLASSES.index("cow") + 1,
        VOC_CLASSES.index("cow") + 1,
    ]


def test_voc_missing_dataset_names_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOCdevkit2012"):
        get_imdb("voc_2012_trainval", str(tmp_path))


def write_coco(tmp_path, split="val2017"):
    ann_dir = tmp_path / "coco" / "annotations"
    ann_dir.mkdir(parents=True)
    data = {
        "images": [
            {"id": 42, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 7, "file_name": "b.jpg", "width": 50, "height": 50},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 5, "name": "airplane"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 42,
                "category_id": 90,
                "bbox": [10, 20, 30, 40],
                "area": 1200,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 42,
                "category_id": 1,
                "bbox": [0, 0, 100, 80],
                "area": 8000,
                "iscrowd": 1,
            },
            {
                "id": 3,
                "image_id": 7,
                "category_id": 5,
                "bbox": [5.5, 6, 10, 10.5],
                "area": 105,
                "iscrowd": 0,
            },
        ],
    }
    with open(ann_dir / f"instances_{split}.json", "w") as f:
        json.dump(data, f)


def test_coco_parsing_crowd_and_category_round_trip(tmp_path):
    write_coco(tmp_path)
    imdb = get_imdb("coco_2017_val", str(tmp_path))
    assert isinstance(imdb, CocoDataset)
    # categories sorted by id: 1 person, 5 airplane, 90 toothbrush
    assert imdb.classes == ("__background__", "person", "airplane", "toothbrush")
    assert imdb.label_to_category_id == {1: 1, 2: 5, 3: 90}
    assert all(imdb.category_id_to_label[imdb.label_to_category_id[c]] == c for c in (1, 2, 3))
    assert imdb.image_index == [7, 42] and imdb.image_ids == [7, 42]
    assert imdb.coco.imgs[42]["file_name"] == "a.jpg"
    assert imdb.image_path_at(1) == os.path.join(
        str(tmp_path), "coco", "images", "val2017", "a.jpg"
    )
    gt = imdb.gt_roidb()
    np.testing.assert_allclose(gt[0]["boxes"], [[5.5, 6, 14.5, 15.5]])
    assert gt[0]["gt_classes"].tolist() == [2]
    # image 42: the crowd box is left out of training
    np.testing.assert_array_equal(gt[1]["boxes"], [[10, 20, 39, 59]])
    assert gt[1]["gt_classes"].tolist() == [3] and (gt[1]["width"], gt[1]["height"]) == (100, 80)
    ann = imdb.annotations()
    assert ann[1]["gt_classes"].tolist() == [3, 1] and ann[1]["difficult"].tolist() == [False, True]


def test_coco_minival_images_live_in_val2014(tmp_path):
    write_coco(tmp_path, "minival2014")
    imdb = get_imdb("coco_2014_minival", str(tmp_path))
    assert os.path.join("images", "val2014", "b.jpg") in imdb.image_path_at(0)


def test_custom_classes_from_file_and_config(tmp_path):
    write_voc(
        str(tmp_path / "custom"),
        "train",
        {"x": (30, 30, [("gear", 1, 1, 10, 10, 0), ("bolt", 5, 5, 20, 25, 0)])},
        ext=".png",
    )
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("bolt\n\ngear\n")
    cfg = load_config(None, ["DATASET.CLASSES_FILE", str(classes_file)])
    imdb = get_imdb("custom_train", str(tmp_path), cfg)
    assert isinstance(imdb, CustomDataset)
    assert imdb.classes == ("__background__", "bolt", "gear")
    assert imdb.image_path_at(0).endswith("x.png")
    assert imdb.gt_roidb()[0]["gt_classes"].tolist() == [2, 1]
    cfg2 = load_config(None, ["DATASET.CLASSES", "[gear, bolt]"])
    imdb2 = get_imdb("custom_train", str(tmp_path), cfg2)
    assert imdb2.classes == ("__background__", "gear", "bolt")
    assert imdb2.gt_roidb()[0]["gt_classes"].tolist() == [1, 2]
    imdb3 = get_imdb("custom_train", str(tmp_path), classes=["bolt", "gear"])
    assert imdb3.classes == imdb.classes
    with pytest.raises(ValueError, match="classes"):
        get_imdb("custom_train", str(tmp_path))
    both = load_config(None, ["DATASET.CLASSES", "[a]", "DATASET.CLASSES_FILE", str(classes_file)])
    with pytest.raises(ValueError, match="only one"):
        get_imdb("custom_train", str(tmp_path), both)


def test_get_imdb_unknown_name_lists_known(tmp_path):
    with pytest.raises(UnknownDatasetError) as info:
        get_imdb("voc_2009_trainval", str(tmp_path))
    message = str(info.value)
    for name in (
        "voc_2007_trainval",
        "voc_0712_trainval",
        "coco_2014_minival",
        "coco_2017_val",
        "custom_<imageset>",
        "shapes_train",
        "shapes_test",
    ):
        assert name in message


def test_cache_is_read_and_rebuilt_when_stale(tmp_path, caplog):
    root = tmp_path / "VOCdevkit2007" / "VOC2007"
    write_voc(str(root), "test", {"a": (20, 20, [("cat", 1, 1, 5, 5, 0)])})
    with caplog.at_level(logging.INFO):
        first = get_imdb("voc_2007_test", str(tmp_path)).gt_roidb()
        assert "cached in" in caplog.text
        caplog.clear()
        again = get_imdb("voc_2007_test", str(tmp_path)).gt_roidb()
        assert "read from cache" in caplog.text
    np.testing.assert_array_equal(first[0]["boxes"], again[0]["boxes"])
    assert len(os.listdir(tmp_path / "cache")) == 1
    assert not any(f.endswith(".pkl") for f in os.listdir(tmp_path / "cache"))
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmax>5</xmax>", "<xmax>15</xmax>"))
    os.utime(xml, ns=(os.stat(xml).st_atime_ns, os.stat(xml).st_mtime_ns + 10**9))
    stale = get_imdb("voc_2007_test", str(tmp_path)).gt_roidb()
    np.testing.assert_array_equal(stale[0]["boxes"], [[0, 0, 14, 4]])
    assert len(os.listdir(tmp_path / "cache")) == 1
