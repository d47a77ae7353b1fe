"""Evaluate a trained detector on a test set (faster-rcnn.pytorch's test_net.py).

VOC-layout datasets (pascal_voc, custom, shapes) and datasets by path (VOC folders, CSV lists)
are scored with the VOC devkit's AP: 11-point for VOC2007 (and by default for the others), the
area under the precision envelope with --no_07_metric.  COCO and COCO-json datasets by path are
scored with pycocotools' COCOeval.  A checkpoint trained on a dataset by path is tested on its
held-out split (or DATASET.TEST_PATH) by default; --test_data FILE tests on another file, read
with the checkpoint's class names.

    python tools/test_net.py --dataset shapes --net res18 --checksession 1 --checkepoch 4 \
        --checkpoint 600
    python tools/test_net.py --checkpoint_path models/res18/shapes/faster_rcnn_1_1_1300.pth --vis
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import cv2

from fasterrcnn.checkpoint import check_classes
from fasterrcnn.cli import (
    DATASET_PRESETS,
    add_checkpoint_arguments,
    add_data_path_arguments,
    add_device_arguments,
    add_set_argument,
    data_path_overrides,
    device_from_args,
    resolve_checkpoint,
    setup_logging,
)
from fasterrcnn.data import TestImageDataset, get_imdb
from fasterrcnn.data.image import read_image
from fasterrcnn.engine.inference import (
    detect_dataset,
    load_model_from_checkpoint,
    save_detections,
)
from fasterrcnn.eval import coco_evaluate, format_ap_table, voc_evaluate
from fasterrcnn.vis import draw_detections

LOGGER = logging.getLogger("test_net")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test a Faster R-CNN network")
    parser.add_argument(
        "--dataset",
        default=None,
        choices=sorted(DATASET_PRESETS),
        help="dataset preset (default: the test set the checkpoint's config names)",
    )
    parser.add_argument("--imdb", default=None, help="test imdb name, e.g. voc_2007_test")
    parser.add_argument("--net", default="res18", help="backbone folder for the checkpoint triple")
    add_checkpoint_arguments(parser)
    parser.add_argument("--output_dir", default="output", help="detections and results go here")
    add_device_arguments(parser)
    parser.add_argument("--nw", type=int, default=0, help="image loading workers")
    parser.add_argument(
        "--use_07_metric",
        dest="use_07_metric",
        action="store_true",
        default=None,
        help="11-point VOC2007 AP (default for VOC2007 and generated sets)",
    )
    parser.add_argument(
        "--no_07_metric",
        dest="use_07_metric",
        action="store_false",
        help="area under the precision envelope (VOC2010+)",
    )
    parser.add_argument("--vis", action="store_true", help="write the images with detections")
    parser.add_argument("--vis_thresh", type=float, default=0.5, help="score threshold for --vis")
    add_data_path_arguments(parser)
    add_set_argument(parser, "test-time config overrides, e.g. --set TEST.SCALES [400]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    device = device_from_args(args)
    dataset_folder = args.dataset or "shapes"
    path = resolve_checkpoint(
        args.checkpoint_path,
        args.load_dir,
        args.net,
        dataset_folder,
        args.checksession,
        args.checkepoch,
        args.checkpoint,
    )
    overrides = data_path_overrides(args) + list(args.set_cfgs)
    model, cfg, classes = load_model_from_checkpoint(path, device, overrides)
    preset_test = DATASET_PRESETS[args.dataset].test if args.dataset else cfg.DATASET.TEST
    imdb_name = args.imdb or preset_test
    imdb = get_imdb(imdb_name, cfg.DATA_DIR, cfg=cfg, classes=classes)
    check_classes(classes, imdb.classes, path, f"the test set {imdb_name}")
    LOGGER.info(
        "testing %s on %s (%d images) on %s", path, imdb_name, len(imdb.image_index), device
    )

    dataset = TestImageDataset(imdb, cfg)
    all_boxes, images_per_s = detect_dataset(
        model, dataset, device, num_workers=args.nw, progress=not args.quiet
    )
    output_dir = os.path.join(args.output_dir, imdb_name)
    os.makedirs(output_dir, exist_ok=True)
    save_detections(os.path.join(output_dir, "detections.npz"), all_boxes)

    results = evaluate(imdb, imdb_name, all_boxes, classes, args.use_07_metric, output_dir)
    results["images_per_s"] = images_per_s
    results["checkpoint"] = path
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    LOGGER.info("%.2f images/s on %s", images_per_s, device)
    if args.vis:
        write_visualisations(
            imdb, all_boxes, classes, os.path.join(output_dir, "vis"), args.vis_thresh
        )
    return 0


def evaluate(imdb, imdb_name: str, all_boxes, classes, use_07_metric, output_dir: str) -> dict:
    """VOC AP table for VOC-layout sets, COCO AP for COCO; printed and returned.

    With the 11-point metric the result also holds ``map_area`` / ``ap_area``, the area under
    the precision envelope (VOC2010+): the 11-point AP of a class whose recall stays below 1
    is at most 10/11, however good the detections above that recall are."""
    if getattr(imdb, "coco", None) is not None:
        stats = coco_evaluate(
            all_boxes,
            imdb.coco,
            imdb.image_ids,
            imdb.label_to_category_id,
            output_json=os.path.join(output_dir, "coco_results.json"),
        )
        table = "\n".join(f"| {k} | {v:.4f} |" for k, v in stats.items() if k != "stats")
        print("| metric | value |\n|---|---|\n" + table)
        return {"coco": dict(stats)}
    if use_07_metric is None:
        use_07_metric = "2012" not in imdb_name
    result = voc_evaluate(all_boxes, imdb.annotations(), classes, use_07_metric=use_07_metric)
    print(format_ap_table(result, classes))
    summary = {"map": result["map"], "ap": result["ap"], "use_07_metric": use_07_metric}
    if use_07_metric:
        LOGGER.info("mAP as the area under the precision envelope: %.2f", 100 * result["map_area"])
        summary.update(map_area=result["map_area"], ap_area=result["ap_area"])
    return summary


def write_visualisations(imdb, all_boxes, classes, vis_dir: str, thresh: float) -> None:
    """Every test image with its detections above ``thresh`` drawn."""
    os.makedirs(vis_dir, exist_ok=True)
    for i in range(len(imdb.image_index)):
        image_path = imdb.image_path_at(i)
        try:
            image = read_image(image_path)
        except OSError as err:
            LOGGER.warning("%s: no --vis image", err)
            continue
        boxes, scores, labels = [], [], []
        for c in range(1, len(classes)):
            for row in all_boxes[c][i]:
                boxes.append(row[:4])
                scores.append(row[4])
                labels.append(c)
        drawn = draw_detections(
            image,
            {"boxes": boxes, "scores": scores, "labels": labels},
            class_names=classes,
            score_thresh=thresh,
        )
        cv2.imwrite(os.path.join(vis_dir, os.path.basename(image_path)), drawn)
    LOGGER.info("wrote %d images with detections to %s", len(imdb.image_index), vis_dir)


if __name__ == "__main__":
    sys.exit(main())
