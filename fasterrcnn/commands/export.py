"""Export a trained detector for deployment: an ONNX model or a ``.pt2`` (torch.export) archive.

The exported graph takes a preprocessed image (``fasterrcnn.data.prepare_test_image``: resized,
normalised, ``im_data (1, 3, H, W)`` with any H, W, and ``im_info (1, 3)``) and returns fixed-size
``boxes (1, D, 4)``, ``scores (1, D)``, ``labels (1, D)`` and ``counts (1,)`` (D =
TEST.MAX_PER_IMAGE); the config and class names are stored in the file.

    python tools/export.py --checkpoint models/res18/shapes/faster_rcnn_1_1_1300.pth \
        --format onnx --output models/shapes.onnx
    python tools/export.py --checkpoint models/res18/shapes/faster_rcnn_1_1_1300.pth \
        --format pt2 --output models/shapes.pt2 --set TEST.SCORE_THRESH 0.05
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fasterrcnn.cli import (
    add_device_arguments,
    add_set_argument,
    device_from_args,
    setup_logging,
)
from fasterrcnn.deploy.export import export_program, onnx_ops, save_onnx, save_pt2
from fasterrcnn.engine.inference import load_model_from_checkpoint

LOGGER = logging.getLogger("export")

WRITERS = {"onnx": save_onnx, "pt2": save_pt2}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a Faster R-CNN to ONNX or .pt2")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (.pth)")
    parser.add_argument(
        "--format",
        required=True,
        choices=sorted(WRITERS),
        help="onnx (onnxruntime, dynamo exporter) or pt2 (torch.export archive)",
    )
    parser.add_argument("--output", required=True, help="file to write")
    add_set_argument(
        parser,
        "test-time config overrides baked into the export, e.g. --set TEST.SCORE_THRESH 0.05",
    )
    add_device_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # the optimizer logs every rewrite
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"--checkpoint: no such file: {args.checkpoint}")
    model, cfg, classes = load_model_from_checkpoint(
        args.checkpoint, device_from_args(args), args.set_cfgs
    )
    if args.format == "onnx":
        onnx_ops().check_onnx_exportable(cfg)
    LOGGER.info(
        "exporting %s (%s pooling) with dynamic height and width", args.checkpoint, cfg.POOLING_MODE
    )
    program = export_program(model)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    WRITERS[args.format](program, args.output, cfg, classes)
    LOGGER.info("wrote %s (%s, %d classes)", args.output, args.format, len(classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
