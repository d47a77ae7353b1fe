"""Train a Faster R-CNN detector (faster-rcnn.pytorch's trainval_net.py, same flags).

Examples:
    python tools/trainval_net.py                                   # shapes, cfgs/shapes.yml
    python tools/trainval_net.py --dataset pascal_voc --net res101 --bs 1 --lr 1e-3 \
        --lr_decay_step 5 --epochs 7 --pretrained data/pretrained_model/resnet101_caffe.pth \
        --device cuda
    torchrun --nproc_per_node 4 tools/trainval_net.py --dataset coco --net res101 --ls ...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

from fasterrcnn.cli import (
    add_config_arguments,
    add_device_arguments,
    build_config,
    device_from_args,
    resolve_checkpoint,
    setup_logging,
)
from fasterrcnn.engine.amp import AMP_DTYPES
from fasterrcnn.engine.distributed import DistInfo, init_distributed, shutdown
from fasterrcnn.engine.training_run import build_training_run

LOGGER = logging.getLogger("trainval_net")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a Faster R-CNN network")
    add_config_arguments(parser)
    parser.add_argument(
        "--bs", type=int, default=None, help="images per batch (TRAIN.IMS_PER_BATCH)"
    )
    parser.add_argument("--nw", type=int, default=None, help="data loader workers")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate")
    parser.add_argument(
        "--lr_decay_step",
        type=int,
        nargs="+",
        default=None,
        help="epochs after which the learning rate decays",
    )
    parser.add_argument("--lr_decay_gamma", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs")
    parser.add_argument(
        "--start_epoch",
        type=int,
        default=1,
        help="first epoch (1-based) of a fresh run: the schedule starts there",
    )
    parser.add_argument("--o", dest="optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument(
        "--save_dir", default="models", help="checkpoints go to <dir>/<net>/<dataset>"
    )
    parser.add_argument("--s", dest="session", type=int, default=1, help="training session")
    parser.add_argument("--r", dest="resume", action="store_true", help="resume a checkpoint")
    parser.add_argument("--checksession", type=int, default=1)
    parser.add_argument("--checkepoch", type=int, default=1)
    parser.add_argument("--checkpoint", type=int, default=0, help="iteration of the checkpoint")
    parser.add_argument(
        "--resume_path", default=None, help="checkpoint file to resume (implies --r)"
    )
    parser.add_argument(
        "--cag", dest="class_agnostic", action="store_true", help="class-agnostic box regression"
    )
    add_device_arguments(parser)
    parser.add_argument(
        "--mGPUs",
        action="store_true",
        help="all visible GPUs in one process (DataParallel); prefer torchrun",
    )
    parser.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        default=None,
        choices=("auto", "none") + tuple(AMP_DTYPES),
        metavar="DTYPE",
        help="mixed precision: bare --amp is float16 (+ GradScaler) on CUDA, "
        "bfloat16 on a CPU with fast bfloat16; --amp bf16 | fp16 (GradScaler for fp16 only); "
        "--amp none trains in float32 (default: the config's TRAIN.AMP)",
    )
    parser.add_argument("--use_tfb", action="store_true", help="TensorBoard scalars")
    parser.add_argument(
        "--disp_interval", type=int, default=None, help="iterations between log lines"
    )
    parser.add_argument("--seed", type=int, default=None, help="RNG_SEED")
    parser.add_argument("--pretrained", default=None, help="ImageNet weights file for the backbone")
    parser.add_argument("--max_iters", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def flag_overrides(args: argparse.Namespace) -> list:
    """Config overrides ``[KEY, value, ...]`` (Python values) for the flags that were given."""
    pairs = [
        ("TRAIN.IMS_PER_BATCH", args.bs),
        ("TRAIN.NUM_WORKERS", args.nw),
        ("TRAIN.LEARNING_RATE", args.lr),
        ("TRAIN.LR_DECAY_GAMMA", args.lr_decay_gamma),
        ("TRAIN.EPOCHS", args.epochs),
        ("TRAIN.OPTIMIZER", args.optimizer),
        ("TRAIN.DISPLAY", args.disp_interval),
        ("RNG_SEED", args.seed),
        ("BACKBONE.PRETRAINED", args.pretrained),
        ("TRAIN.MAX_ITERS", args.max_iters),
        ("TRAIN.LR_DECAY_STEPS", args.lr_decay_step),
        ("CLASS_AGNOSTIC", True if args.class_agnostic else None),
    ]
    return [item for key, value in pairs if value is not None for item in (key, value)]


def main(argv=None) -> int:
    args = parse_args(argv)
    device = device_from_args(args)
    dist_info = init_distributed(torch.device(device).type)
    try:
        return _train(args, device, dist_info)
    finally:
        shutdown(dist_info)


def _train(args: argparse.Namespace, device: str, dist_info: DistInfo) -> int:
    setup_logging(verbose=dist_info.is_main)
    cfg = build_config(args, flag_overrides(args))
    output_dir = os.path.join(args.save_dir, cfg.NET, args.dataset)
    resume = None
    if args.resume or args.resume_path:
        resume = resolve_checkpoint(
            args.resume_path,
            args.save_dir,
            cfg.NET,
            args.dataset,
            args.checksession,
            args.checkepoch,
            args.checkpoint,
        )
    run = build_training_run(
        cfg,
        output_dir=output_dir,
        session=args.session,
        device=device,
        dist_info=dist_info,
        multi_gpu=args.mGPUs,
        amp=args.amp,
        use_tfb=args.use_tfb,
        progress=not args.quiet,
        resume=resume,
        start_epoch=args.start_epoch,
    )
    last = run.train()
    if dist_info.is_main:
        LOGGER.info("training done; last checkpoint: %s", last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
