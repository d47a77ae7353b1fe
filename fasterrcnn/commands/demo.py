"""Draw a detector's detections on every image of a folder (faster-rcnn.pytorch's demo.py).

For each image IMG.ext in --image_dir it writes IMG_det.jpg (boxes, class names, scores) and
IMG.json (the detections) to --output_dir.  Images that share a stem (x.jpg and x.png) keep their
extension in the output names (x_jpg_det.jpg, x_png.json, ...), so no output overwrites another.
Images are read by :func:`fasterrcnn.data.image.read_image` (EXIF orientation ignored, as in
training and test_net).  Class names come from the checkpoint.

    python tools/demo.py --image_dir data/shapes/JPEGImages --checkpoint_path \
        models/res18/shapes/faster_rcnn_1_1_1300.pth --output_dir output/demo
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from typing import List, Sequence

import cv2

from fasterrcnn.cli import (
    add_checkpoint_arguments,
    add_device_arguments,
    device_from_args,
    resolve_checkpoint,
    setup_logging,
)
from fasterrcnn.data.image import read_image
from fasterrcnn.detector import Detector
from fasterrcnn.vis import draw_detections

LOGGER = logging.getLogger("demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a Faster R-CNN detector on a folder")
    parser.add_argument("--image_dir", required=True, help="folder of images")
    parser.add_argument("--output_dir", default="output/demo", help="drawn images and JSON")
    parser.add_argument(
        "--dataset", default="shapes", help="dataset folder of the checkpoint triple"
    )
    parser.add_argument("--net", default="res18", help="backbone folder of the checkpoint triple")
    add_checkpoint_arguments(parser)
    parser.add_argument("--thresh", type=float, default=0.5, help="score threshold")
    parser.add_argument("--max_images", type=int, default=0, help="stop after N images (0: all)")
    add_device_arguments(parser)
    return parser.parse_args(argv)


def list_images(image_dir: str) -> list:
    """Image files of a folder, sorted by name."""
    if not os.path.isdir(image_dir):
        raise NotADirectoryError(f"--image_dir is not a folder: {image_dir}")
    return sorted(
        os.path.join(image_dir, name)
        for name in os.listdir(image_dir)
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def output_stems(image_paths: Sequence[str]) -> List[str]:
    """The output name stem of each image: its file stem, or ``stem_ext`` for a stem that
    several images share; a clash left after that (``x.jpg`` next to ``x_jpg.png``) gets a
    counter, ``x_jpg_2``."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in image_paths]
    shared = Counter(stems)
    names: List[str] = []
    taken = set()
    for path, stem in zip(image_paths, stems):
        name = stem
        if shared[stem] > 1:
            name = f"{stem}_{os.path.splitext(path)[1].lstrip('.')}"
        unique, count = name, 1
        while unique in taken:
            count += 1
            unique = f"{name}_{count}"
        taken.add(unique)
        names.append(unique)
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    device = device_from_args(args)
    path = resolve_checkpoint(
        args.checkpoint_path,
        args.load_dir,
        args.net,
        args.dataset,
        args.checksession,
        args.checkepoch,
        args.checkpoint,
    )
    detector = Detector.from_checkpoint(path, device=device)
    images = list_images(args.image_dir)
    if args.max_images > 0:
        images = images[: args.max_images]
    if not images:
        LOGGER.warning("no images in %s", args.image_dir)
        return 0
    os.makedirs(args.output_dir, exist_ok=True)
    written = 0
    for image_path, stem in zip(images, output_stems(images)):
        try:
            image = read_image(image_path)
        except OSError as err:
            LOGGER.warning("%s; skipped", err)
            continue
        result = detector.predict(image, score_thresh=args.thresh)
        drawn = draw_detections(image, result, class_names=detector.classes)
        cv2.imwrite(os.path.join(args.output_dir, f"{stem}_det.jpg"), drawn)
        records = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "label": int(label),
                "class_name": name,
            }
            for box, score, label, name in zip(
                result["boxes"], result["scores"], result["labels"], result["class_names"]
            )
        ]
        with open(os.path.join(args.output_dir, f"{stem}.json"), "w", encoding="utf-8") as handle:
            json.dump({"image": image_path, "detections": records}, handle, indent=1)
        written += 1
    LOGGER.info("wrote %d images with detections to %s", written, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
