"""``python -m fasterrcnn.inspect --checkpoint PATH --image IMG --out DIR``: trace one image
through a trained model and write the shapes table (``shapes.txt``, also printed) and the
figures (PNG): the anchors of one feature cell, the top proposals, the detections, and with
``--gt X1 Y1 X2 Y2 LABEL`` (repeatable, original-image pixels) the positive / negative anchors
and the sampled RoIs."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

import torch

from fasterrcnn.cli import (
    add_device_arguments,
    add_set_argument,
    device_from_args,
    setup_logging,
)
from fasterrcnn.data.image import read_image
from fasterrcnn.detector import Detector
from fasterrcnn.inspect.trace import trace

LOGGER = logging.getLogger("inspect")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fasterrcnn.inspect",
        description="Show every stage of a Faster R-CNN on one image",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint of tools/trainval_net.py")
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("--out", required=True, help="output folder for the table and figures")
    parser.add_argument(
        "--gt",
        nargs=5,
        action="append",
        type=float,
        default=[],
        metavar=("X1", "Y1", "X2", "Y2", "LABEL"),
        help="a ground-truth box (repeat the flag for more): adds the anchor "
        "labels and the sampled RoIs",
    )
    parser.add_argument("--top_k", type=int, default=20, help="proposals to draw")
    parser.add_argument(
        "--thresh",
        type=float,
        default=None,
        help="detection score threshold (default TEST.DETECT_SCORE_THRESH)",
    )
    add_set_argument(parser, "override test-time config keys of the checkpoint's config")
    add_device_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        from fasterrcnn.inspect.draw import save_all
    except ImportError as error:
        raise SystemExit(
            f"the figures need matplotlib: pip install matplotlib ({error})"
        ) from error
    detector = Detector.from_checkpoint(
        args.checkpoint, device=device_from_args(args), overrides=args.set_cfgs
    )
    image = read_image(args.image)
    targets = None
    if args.gt:
        gt = torch.tensor(args.gt, dtype=torch.float32)
        targets = {"boxes": gt[:, :4], "labels": gt[:, 4].long()}
    result = trace(detector.model, image, targets, score_thresh=args.thresh)
    print(result.format_shapes())
    paths = save_all(result, args.out, detector.classes, top_k=args.top_k)
    LOGGER.info("wrote %s", ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
