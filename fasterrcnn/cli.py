"""What the command-line tools share: dataset presets, config assembly, checkpoint look-up.

The tools translate their flags into config overrides (``KEY VALUE`` pairs) applied in this
order: the YAML file, the dataset preset, the individual flags, then ``--set`` — so ``--set``
always wins.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from fasterrcnn.checkpoint import find_checkpoint
from fasterrcnn.config import Config, load_config


@dataclass(frozen=True)
class DatasetPreset:
    """The reference's ``--dataset`` choices: which imdbs to train and test on, and their extras."""

    train: str
    test: str
    overrides: Tuple[str, ...] = ()


DATASET_PRESETS: Dict[str, DatasetPreset] = {
    "shapes": DatasetPreset("shapes_train", "shapes_test"),
    "pascal_voc": DatasetPreset(
        "voc_2007_trainval",
        "voc_2007_test",
        ("ANCHOR_SCALES", "[8, 16, 32]", "MAX_NUM_GT_BOXES", "20"),
    ),
    "pascal_voc_0712": DatasetPreset(
        "voc_0712_trainval",
        "voc_2007_test",
        ("ANCHOR_SCALES", "[8, 16, 32]", "MAX_NUM_GT_BOXES", "20"),
    ),
    "coco": DatasetPreset(
        "coco_2014_train+coco_2014_valminusminival",
        "coco_2014_minival",
        ("ANCHOR_SCALES", "[4, 8, 16, 32]", "MAX_NUM_GT_BOXES", "50"),
    ),
    "coco_2017": DatasetPreset(
        "coco_2017_train",
        "coco_2017_val",
        ("ANCHOR_SCALES", "[4, 8, 16, 32]", "MAX_NUM_GT_BOXES", "50"),
    ),
    "custom": DatasetPreset("custom_trainval", "custom_test"),
    "coco_json": DatasetPreset("path_train", "path_test", ("DATASET.FORMAT", "coco")),
    "voc_folder": DatasetPreset("path_train", "path_test", ("DATASET.FORMAT", "voc")),
    "csv": DatasetPreset("path_train", "path_test", ("DATASET.FORMAT", "csv")),
}

# fmt: off
LARGE_SCALE_OVERRIDES = (
    "TRAIN.SCALES", "[800]", "TRAIN.MAX_SIZE", "1200", "TEST.SCALES", "[800]",
    "TEST.MAX_SIZE", "1200",
)
# fmt: on


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY VALUE ...`` into ``args.set_cfgs``; repeated flags add to the earlier ones."""
    parser.add_argument(
        "--set",
        dest="set_cfgs",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY VALUE",
        help=help_text,
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--cfg, --dataset, --net, --ls and --set, common to every tool."""
    parser.add_argument(
        "--cfg",
        dest="cfg_file",
        default=None,
        help="YAML file, or the name of a packaged config such as shapes or "
        "res101 (default: <net>, or shapes for the shapes dataset)",
    )
    parser.add_argument(
        "--dataset",
        default="shapes",
        choices=sorted(DATASET_PRESETS),
        help="dataset preset (default: the generated shapes set)",
    )
    parser.add_argument(
        "--net", default=None, help="backbone: vgg16, res18, res34, res50, res101, res152"
    )
    parser.add_argument(
        "--ls",
        dest="large_scale",
        action="store_true",
        help="large scale: short side 800, long side at most 1200",
    )
    add_data_path_arguments(parser)
    add_set_argument(parser, "config overrides applied last, e.g. --set TRAIN.SCALES [400]")


_DATA_PATH_FLAGS = (
    (
        "train_data",
        "DATASET.TRAIN_PATH",
        "training annotations: COCO json, VOC folder or image-set file, or CSV list",
    ),
    (
        "test_data",
        "DATASET.TEST_PATH",
        "test annotations (default: a held-out --val_fraction of --train_data)",
    ),
    (
        "image_root",
        "DATASET.IMAGE_ROOT",
        "folder the image paths are relative to (default: the annotation file's folder)",
    ),
    (
        "test_image_root",
        "DATASET.TEST_IMAGE_ROOT",
        "image root of --test_data (default: --image_root)",
    ),
    ("format", "DATASET.FORMAT", "coco, voc, csv or auto (from the path; the default)"),
    (
        "val_fraction",
        "DATASET.VAL_FRACTION",
        "fraction of --train_data held out as the test set (seeded by DATASET.SPLIT_SEED)",
    ),
    (
        "classes_file",
        "DATASET.CLASSES_FILE",
        "class names (one per line, or name,id rows): fixes their order (default: from the data)",
    ),
)


def add_data_path_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for a dataset given by path (``--dataset coco_json|voc_folder|csv``); each sets a
    DATASET key and takes dashes or underscores (``--train-data`` or ``--train_data``)."""
    for name, key, text in _DATA_PATH_FLAGS:
        kwargs: Dict[str, Any] = {"type": float} if name == "val_fraction" else {}
        if name == "format":
            kwargs = {"choices": ("auto", "coco", "voc", "csv")}
        parser.add_argument(
            f"--{name}",
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=f"{text} ({key})",
            **kwargs,
        )


def data_path_overrides(args: argparse.Namespace) -> List[Any]:
    """Config overrides ``[KEY, value, ...]`` for the dataset-path flags that were given."""
    return [
        item
        for name, key, _ in _DATA_PATH_FLAGS
        if getattr(args, name, None) is not None
        for item in (key, getattr(args, name))
    ]


def default_cfg_file(dataset: str, net: Optional[str]) -> str:
    """The reference's choice of config when --cfg is not given: a packaged config's name."""
    if net is None:
        return "shapes" if dataset == "shapes" else "res101"
    return net


def build_config(args: argparse.Namespace, flag_overrides: Sequence[Any] = ()) -> Config:
    """The run's config from the YAML file, the dataset preset, flags and --set."""
    cfg_file = args.cfg_file or default_cfg_file(args.dataset, args.net)
    preset = DATASET_PRESETS[args.dataset]
    overrides: List[Any] = ["DATASET.TRAIN", preset.train, "DATASET.TEST", preset.test]
    overrides += list(preset.overrides)
    if args.net is not None:
        overrides += ["NET", args.net]
    if args.large_scale:
        overrides += list(LARGE_SCALE_OVERRIDES)
    overrides += data_path_overrides(args)
    overrides += list(flag_overrides)
    overrides += list(args.set_cfgs)
    return load_config(cfg_file, overrides)


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """A checkpoint given by path, or by the reference's session/epoch/iteration triple."""
    parser.add_argument(
        "--load_dir",
        "--save_dir",
        dest="load_dir",
        default="models",
        help="folder holding <net>/<dataset>/faster_rcnn_S_E_I.pth",
    )
    parser.add_argument("--checkpoint_path", default=None, help="checkpoint file")
    parser.add_argument("--checksession", type=int, default=1)
    parser.add_argument("--checkepoch", type=int, default=1)
    parser.add_argument("--checkpoint", type=int, default=0, help="iteration of the checkpoint")


def resolve_checkpoint(
    path: Optional[str],
    load_dir: str,
    net: str,
    dataset: str,
    session: int,
    epoch: int,
    iteration: int,
) -> str:
    """The checkpoint file: ``path`` when given, else the reference's naming under load_dir."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return path
    return find_checkpoint(os.path.join(load_dir, net, dataset), session, epoch, iteration)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and the reference's --cuda shortcut."""
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--cuda", action="store_true", help="shortcut for --device cuda")


def device_from_args(args: argparse.Namespace) -> str:
    """The device to run on: --cuda, else --device, else CUDA when available, else the CPU."""
    if args.cuda:
        return "cuda"
    if args.device:
        return args.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def setup_logging(verbose: bool = True) -> None:
    """Log lines with a time stamp to stderr."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
