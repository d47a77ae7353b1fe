"""The roidb: flips, difficult boxes, filtering, aspect ratios."""

import logging
import os

import cv2
import numpy as np

from fasterrcnn.config import load_config
from fasterrcnn.data import combined_roidb, flip_entry
from fasterrcnn.data.roidb import rank_roidb_ratio
from fasterrcnn.data.voc_xml import write_voc_xml


def test_flip_hand_case():
    entry = dict(
        image="x.jpg",
        width=100,
        height=50,
        flipped=False,
        boxes=np.array([[10, 5, 29, 20], [0, 0, 99, 49]], np.float32),
        gt_classes=np.array([1, 2]),
        difficult=np.array([False, False]),
    )
    flipped = flip_entry(entry)
    # x1' = W - x2 - 1 = 100 - 29 - 1 = 70, x2' = 100 - 10 - 1 = 89; the full box maps onto itself
    np.testing.assert_array_equal(flipped["boxes"], [[70, 5, 89, 20], [0, 0, 99, 49]])
    assert flipped["flipped"] and not entry["flipped"]
    np.testing.assert_array_equal(entry["boxes"][0], [10, 5, 29, 20])
    np.testing.assert_array_equal(flip_entry(flipped)["boxes"], entry["boxes"])


def write_tree(root, images):
    """images: {id: (w, h, [(cls, box 0-based, difficult)])} in a VOC layout under root."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, (w, h, objs) in images.items():
        cv2.imwrite(os.path.join(root, "JPEGImages", name + ".jpg"), np.zeros((h, w, 3), np.uint8))
        write_voc_xml(os.path.join(root, "Annotations", name + ".xml"), name + ".jpg", w, h, objs)
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("\n".join(images) + "\n")


def make_cfg(tmp_path, *overrides):
    return load_config(None, ["DATA_DIR", str(tmp_path), "DATASET.CLASSES", "[a, b]", *overrides])


def test_training_roidb_flips_drops_difficult_and_empty(tmp_path, caplog):
    write_tree(
        str(tmp_path / "custom"),
        {
            "wide": (300, 100, [("a", [10, 10, 50, 50], False), ("b", [60, 10, 90, 40], True)]),
            "onlyhard": (100, 100, [("a", [10, 10, 50, 50], True)]),
            "empty": (100, 100, []),
            "tall": (40, 100, [("b", [0, 0, 39, 99], False)]),
        },
    )
    cfg = make_cfg(tmp_path)
    with caplog.at_level(logging.INFO):
        imdb, roidb, ratio_list, ratio_index = combined_roidb("custom_train", cfg)
    assert "2 of 4 images have no (usable) boxes" in caplog.text
    assert imdb.name == "custom_train"
    assert len(roidb) == 4  # wide, tall and their flips
    assert [os.path.basename(e["image"]) for e in roidb] == ["wide.jpg", "tall.jpg"] * 2
    assert [e["flipped"] for e in roidb] == [False, False, True, True]
    np.testing.assert_array_equal(roidb[0]["boxes"], [[10, 10, 50, 50]])
    np.testing.assert_array_equal(roidb[2]["boxes"], [[249, 10, 289, 50]])
    # ratios: wide 3 -> clamped to 2 (need_crop), tall 0.4 -> 0.5 (need_crop)
    np.testing.assert_allclose(ratio_list, [0.5, 0.5, 2, 2])
    assert sorted(ratio_index[:2].tolist()) == [1, 3] and sorted(ratio_index[2:].tolist()) == [0, 2]
    assert all(e["need_crop"] for e in roidb)

    keep_hard = make_cfg(tmp_path, "TRAIN.USE_DIFFICULT", "true", "TRAIN.USE_FLIPPED", "false")
    _, roidb, _, _ = combined_roidb(["custom_train"], keep_hard)
    assert len(roidb) == 3  # onlyhard now has a box; empty still left out
    assert roidb[0]["difficult"].tolist() == [False, True]

    _, every, _, _ = combined_roidb("custom_train", cfg, training=False)
    assert len(every) == 4 and not any(e["flipped"] for e in every)


def test_ratio_clamp_and_stable_sort():
    cfg = load_config(None, ["TRAIN.ASPECT_RATIO_MIN", "0.5", "TRAIN.ASPECT_RATIO_MAX", "2.0"])
    sizes = [(100, 100), (300, 100), (100, 300), (150, 100), (100, 100), (199, 100)]
    roidb = [dict(width=w, height=h) for w, h in sizes]
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)
    np.testing.assert_allclose(ratio_list, [0.5, 1, 1, 1.5, 1.99, 2])
    assert ratio_index.tolist() == [2, 0, 4, 3, 5, 1]
    assert [e["need_crop"] for e in roidb] == [False, True, True, False, False, False]


def test_missing_image_left_out_with_warning(tmp_path, caplog):
    write_tree(
        str(tmp_path / "custom"),
        {
            "ok": (50, 50, [("a", [1, 1, 20, 20], False)]),
            "gone": (50, 50, [("a", [1, 1, 20, 20], False)]),
        },
    )
    os.remove(tmp_path / "custom" / "JPEGImages" / "gone.jpg")
    with caplog.at_level(logging.WARNING):
        _, roidb, _, _ = combined_roidb("custom_train", make_cfg(tmp_path))
    assert len(roidb) == 2 and all(e["image"].endswith("ok.jpg") for e in roidb)
    assert "gone.jpg is missing" in caplog.text
