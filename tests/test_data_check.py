"""The anchor-fit numbers on hand-made boxes, and the dataset check command."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from fasterrcnn.commands import data as data_cmd
from fasterrcnn.data.anchor_fit import (
    anchor_shapes,
    best_anchor_iou,
    fit_by_size,
    resized_box_sizes,
    shape_iou,
    suggest_anchors,
)
from fasterrcnn.data.report import dataset_stats
from fasterrcnn.rpn.boxes import box_iou


def test_reference_anchor_shapes():
    # the 9 anchors of py-faster-rcnn (DESIGN.md): [-84,-40,99,55] is 184 x 96, and so on
    np.testing.assert_array_equal(
        anchor_shapes(16, (8, 16, 32), (0.5, 1, 2)),
        [
            [184, 96],
            [368, 192],
            [736, 384],
            [128, 128],
            [256, 256],
            [512, 512],
            [88, 176],
            [176, 352],
            [352, 704],
        ],
    )


def test_shape_iou_by_hand_and_against_box_iou():
    anchors = anchor_shapes(16, (8, 16, 32), (0.5, 1, 2))
    boxes = np.array([[128, 128], [64, 64], [100, 50], [184, 96], [90, 180]], np.float64)
    best = best_anchor_iou(boxes[:, 0], boxes[:, 1], anchors)
    expected = [
        1.0,  # the 128 x 128 anchor itself
        64 * 64 / (88 * 176),  # 0.264 (beats the 128 x 128 square's 0.25)
        100 * 50 / (128 * 128),  # 0.305 (beats 184 x 96: 5000 / 17664 = 0.283)
        1.0,
        88 * 176 / (90 * 180),
    ]  # inside the box: inter = the 88 x 176 anchor
    np.testing.assert_allclose(best, expected)
    # the closed form equals box_iou (+1 convention) of boxes centred on one point
    rng = np.random.default_rng(0)
    wh = rng.uniform(2, 300, size=(40, 2))

    def centred(s):
        s = torch.as_tensor(s, dtype=torch.float64)
        return torch.stack(
            [-(s[:, 0] - 1) / 2, -(s[:, 1] - 1) / 2, (s[:, 0] - 1) / 2, (s[:, 1] - 1) / 2], dim=1
        )

    np.testing.assert_allclose(
        shape_iou(wh, anchors), box_iou(centred(wh), centred(anchors)).numpy(), rtol=1e-12
    )


def test_resized_sizes_follow_the_loader_scaling():
    entry = {"width": 200, "height": 100, "boxes": np.array([[0, 0, 9, 19]], np.float32)}
    # scale 600 / 100 = 6 is capped by MAX_SIZE 1000 / 200 = 5; scale 50 / 100 = 0.5
    w, h = resized_box_sizes([entry], (600, 50), 1000)
    np.testing.assert_allclose(w, [9 * 5 + 1, 9 * 0.5 + 1])
    np.testing.assert_allclose(h, [19 * 5 + 1, 19 * 0.5 + 1])


def test_fit_by_size_buckets():
    anchors = anchor_shapes(16, (8,), (1.0,))  # one 128 x 128 anchor
    w = np.array([20.0, 40, 128, 100, 300])
    h = w.copy()
    best = best_anchor_iou(w, h, anchors)
    np.testing.assert_allclose(best, [400 / 16384, 1600 / 16384, 1, 10000 / 16384, 16384 / 90000])
    rows = fit_by_size(w, h, best, positive_overlap=0.6)
    assert [(r.low, r.high, r.boxes) for r in rows] == [
        (16, 32, 1),
        (32, 64, 1),
        (64, 128, 1),
        (128, 256, 1),
        (256, 512, 1),
        (0, math.inf, 5),
    ]
    assert rows[2].frac_positive == 1.0 and rows[3].frac_half == 1.0
    assert rows[-1].frac_positive == pytest.approx(2 / 5)  # 1.0 and 0.61
    assert rows[-1].frac_half == pytest.approx(2 / 5)
    assert rows[-1].median_iou == pytest.approx(16384 / 90000)  # the 300 px box


def test_suggested_anchors_cover_small_boxes():
    """Boxes of 12-40 px are missed by the reference anchors (>= 88 px) and covered by the
    suggestion, whose coverage is recomputed here from its own anchors."""
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(12), np.log(40), 500))
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2), 500))
    w, h = sizes / np.sqrt(aspect), sizes * np.sqrt(aspect)
    reference = anchor_shapes(16, (8, 16, 32), (0.5, 1, 2))
    assert (best_anchor_iou(w, h, reference) >= 0.5).mean() == 0.0
    found = suggest_anchors(w, h, 16, positive_overlap=0.7)
    iou = best_anchor_iou(w, h, anchor_shapes(16, found.scales, found.ratios))
    assert found.coverage >= 0.95 and found.coverage == pytest.approx((iou >= 0.5).mean())
    assert found.coverage_positive == pytest.approx((iou >= 0.7).mean())
    assert max(found.scales) * 16 < 80 and found.num_anchors <= 9
    with pytest.raises(ValueError, match="no boxes"):
        suggest_anchors(np.zeros(0), np.zeros(0), 16, 0.7)


def test_dataset_stats_counts():
    roidb = [
        {
            "image": "a.jpg",
            "width": 100,
            "height": 20,
            "gt_classes": np.array([1, 1, 2]),
            "boxes": np.array([[0, 0, 9, 19], [0, 0, 9, 9], [0, 0, 19, 9]], np.float32),
        },
        {
            "image": "b.jpg",
            "width": 50,
            "height": 50,
            "gt_classes": np.zeros(0, np.int64),
            "boxes": np.zeros((0, 4), np.float32),
        },
    ]
    stats = dataset_stats(roidb, ("__background__", "cat", "dog"), (0.5, 2.0))
    assert stats.boxes_per_class == {"cat": 2, "dog": 1}
    assert stats.images_per_class == {"cat": 1, "dog": 1}
    assert stats.images_without_boxes == ["b.jpg"] and stats.images_outside_ratio == 1
    assert stats.box_aspect[0] == 0.5 and stats.box_aspect[-1] == 2.0
    assert stats.image_aspect[-1] == 5.0


def test_check_command_reports_bad_input(tmp_path, capsys):
    """A CSV with a truncated image, a box past the border, a zero-area box and an image
    without boxes: each reported with its file; exit status 1 for the unusable image."""
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), (rng.random((60, 80, 3)) * 255).astype(np.uint8))
    data = (tmp_path / "c.jpg").read_bytes()
    (tmp_path / "c.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "labels.csv").write_text(
        "a.jpg,10,10,40,30,cat\na.jpg,50,5,95,30,dog\nb.jpg,5,5,5,20,cat\nb.jpg,,,,,\n"
        "c.jpg,1,1,20,20,dog\n"
    )
    out = tmp_path / "out"
    # fmt: off
    argv = [
        "check", "--dataset", "csv", "--train-data", str(tmp_path / "labels.csv"), "--out",
        str(out), "--num_images", "2", "--workers", "0", "--set", "TRAIN.SCALES", "[60]",
        "TRAIN.MAX_SIZE", "1000", "DATA_DIR", str(tmp_path / "data"), "MAX_NUM_GT_BOXES", "1",
    ]
    # fmt: on
    assert data_cmd.main(argv) == 1
    text = capsys.readouterr().out
    report = json.loads((out / "path_train_report.json").read_text())
    assert report["images"] == 3 and report["boxes_per_class"] == {"cat": 1, "dog": 2}
    assert [b["path"] for b in report["bad_images"]] == [str(tmp_path / "c.jpg")]
    assert any(
        "labels.csv (a.jpg): box 1 (dog)" in m and "clipped" in m for m in report["boxes_repaired"]
    )
    assert any(
        "labels.csv (b.jpg): box 0 (cat)" in m and m.endswith("skipped")
        for m in report["annotations_dropped"]
    )
    assert report["images_without_boxes"] == [str(tmp_path / "b.jpg")]
    assert report["images_over_max_num_gt_boxes"] == [str(tmp_path / "a.jpg")]
    assert "c.jpg: truncated or corrupt" in text and "### Anchor fit" in text
    total = report["anchor_fit"][-1]
    assert total["boxes"] == 3 and total["high"] is None
    sheet = cv2.imread(report["contact_sheet"])
    assert sheet is not None and sheet.shape[0] >= 320


def test_check_command_on_shapes_export_passes(tmp_path, capsys):
    out = tmp_path / "coco"
    assert (
        data_cmd.main(
            ["shapes", "--format", "coco", "--out", str(out), "--num_train", "6", "--num_test", "2"]
        )
        == 0
    )
    argv = [
        "check",
        "--dataset",
        "coco_json",
        "--train_data",
        str(out / "train.json"),
        "--test_data",
        str(out / "test.json"),
        "--cfg",
        "cfgs/shapes.yml",
        "--out",
        str(tmp_path / "report"),
        "--num_images",
        "0",
        "--set",
        "DATA_DIR",
        str(tmp_path / "data"),
    ]
    assert data_cmd.main(argv) == 0
    text = capsys.readouterr().out
    assert "## path_train" in text and "## path_test" in text
    report = json.loads((tmp_path / "report" / "path_test_report.json").read_text())
    assert report["images"] == 2 and not report["bad_images"]
    assert set(report["classes"]) == {"circle", "square", "triangle", "star", "cross"}


def test_ground_truth_is_drawn_with_names_only():
    from fasterrcnn.vis import draw_detections

    canvas = np.zeros((60, 120, 3), np.uint8)
    boxes = np.array([[10, 30, 50, 55]], np.float32)
    names = ("__background__", "cat")
    plain = draw_detections(canvas, {"boxes": boxes, "labels": [1]}, class_names=names)
    scored = draw_detections(
        canvas, {"boxes": boxes, "labels": [1], "scores": [1.0]}, class_names=names
    )
    # same box; the label "cat" is narrower than "cat: 1.00"
    np.testing.assert_array_equal(plain[30:56, 10], scored[30:56, 10])
    label_width = [int((im[:30].sum(axis=2) > 0).any(axis=0).sum()) for im in (plain, scored)]
    assert 0 < label_width[0] < label_width[1]
