"""Look at a dataset before training on it (``fasterrcnn-data``, tools/data.py).

``check``: for the training and test sets of a config (any ``--dataset``; with
``--train_data`` / ``--test_data`` a COCO json, VOC folder or CSV list by path) print

* a table of images, boxes and images per class, images without boxes, box sizes after the
  training resize, box and image aspect ratios, images with more than MAX_NUM_GT_BOXES boxes;
* the bad input: images that are missing, truncated or corrupt or whose size differs from the
  annotation (every file is decoded), boxes repaired (clipped) or dropped and other skipped
  annotations, each with its file;
* the anchor fit: for the config's anchors, the fraction of boxes whose best shape-only IoU
  (anchor centred on the box) reaches TRAIN.RPN_POSITIVE_OVERLAP and 0.5, by box size, and
  ANCHOR_SCALES / ANCHOR_RATIOS that cover at least 95% of the boxes at 0.5, with their
  coverage;

and write ``<out>/<set>_contact_sheet.png`` (random images with their boxes and class names)
and ``<out>/<set>_report.json``.  The exit status is 1 when an image cannot be used or a set
has no box, else 0.

``shapes``: write the generated shapes dataset as a COCO json, CSV list or VOC folder.

    python tools/data.py check --dataset coco_json --train_data ann.json --val_fraction 0.2
    python tools/data.py shapes --format csv --out data/shapes_csv
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Sequence

import cv2
import numpy as np

from fasterrcnn.cli import add_config_arguments, build_config, setup_logging
from fasterrcnn.config import Config
from fasterrcnn.data import get_imdb
from fasterrcnn.data.anchor_fit import (
    anchor_shapes,
    best_anchor_iou,
    fit_by_size,
    resized_box_sizes,
    suggest_anchors,
)
from fasterrcnn.data.image_check import check_image_files
from fasterrcnn.data.report import (
    DataWarnings,
    collect_data_warnings,
    contact_sheet,
    dataset_stats,
    quantiles,
)
from fasterrcnn.data.shapes_export import EXPORT_FORMATS, export_shapes

LOGGER = logging.getLogger("data")
COVERAGE_TARGET = 0.95
"""Fraction of boxes the suggested anchors should reach IoU 0.5 with."""
MAX_LISTED = 30
"""Bad files listed one by one per kind; the rest are counted."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Check a dataset, or write the shapes set")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="statistics, bad input, contact sheet, anchor fit")
    add_config_arguments(check)
    check.add_argument(
        "--split",
        choices=("train", "test", "both"),
        default="both",
        help="which set(s) of the config to check (both: test when it exists)",
    )
    check.add_argument(
        "--out", default="output/data_check", help="folder for the contact sheets and JSON reports"
    )
    check.add_argument(
        "--num_images",
        "--num-images",
        type=int,
        default=16,
        help="images on the contact sheet (0: none)",
    )
    check.add_argument("--seed", type=int, default=0, help="which random images are drawn")
    check.add_argument("--workers", type=int, default=2, help="image decoding threads")
    shapes = sub.add_parser("shapes", help="write the generated shapes set in a format")
    shapes.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--num_train", "--num-train", type=int, default=600)
    shapes.add_argument("--num_test", "--num-test", type=int, default=150)
    shapes.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _has_test_set(cfg: Config) -> bool:
    if cfg.DATASET.TEST.startswith("path_"):
        return bool(cfg.DATASET.TEST_PATH) or cfg.DATASET.VAL_FRACTION > 0
    return True


def check_set(name: str, cfg: Config, args: argparse.Namespace) -> dict:
    """Read one imdb of the config and build its report (see the module docstring)."""
    warnings = DataWarnings()
    with collect_data_warnings(warnings):
        imdb = get_imdb(name, cfg.DATA_DIR, cfg)
        roidb = imdb.gt_roidb(use_cache=False)
    sizes = [
        (e["width"], e["height"]) if e["width"] > 0 and e["height"] > 0 else None for e in roidb
    ]
    problems = check_image_files([str(e["image"]) for e in roidb], sizes, workers=args.workers)
    stats = dataset_stats(
        roidb, imdb.classes, (cfg.TRAIN.ASPECT_RATIO_MIN, cfg.TRAIN.ASPECT_RATIO_MAX)
    )
    widths, heights = resized_box_sizes(roidb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    anchors = anchor_shapes(cfg.FEAT_STRIDE, cfg.ANCHOR_SCALES, cfg.ANCHOR_RATIOS)
    best = best_anchor_iou(widths, heights, anchors)
    positive = cfg.TRAIN.RPN_POSITIVE_OVERLAP
    report = {
        "set": name,
        "imdb": repr(imdb),
        "classes": list(imdb.classes[1:]),
        "images": stats.images,
        "images_without_boxes": stats.images_without_boxes,
        "boxes_per_class": stats.boxes_per_class,
        "images_per_class": stats.images_per_class,
        "box_size_after_resize": quantiles(np.sqrt(widths * heights)),
        "box_aspect_h_over_w": stats.box_aspect,
        "image_aspect_w_over_h": stats.image_aspect,
        "images_outside_ratio_range": stats.images_outside_ratio,
        "images_over_max_num_gt_boxes": [
            str(e["image"]) for e in roidb if len(e["boxes"]) > cfg.MAX_NUM_GT_BOXES
        ],
        "bad_images": [{"path": p.path, "problem": p.problem} for p in problems],
        "boxes_repaired": warnings.repaired,
        "annotations_dropped": warnings.dropped,
        "other_warnings": warnings.other,
        "anchor_fit": [
            vars(row) | {"high": None if np.isinf(row.high) else row.high}
            for row in fit_by_size(widths, heights, best, positive)
        ],
    }
    if len(widths):
        found = suggest_anchors(widths, heights, cfg.FEAT_STRIDE, positive, COVERAGE_TARGET)
        report["suggested_anchors"] = {
            "ANCHOR_SCALES": list(found.scales),
            "ANCHOR_RATIOS": list(found.ratios),
            "num_anchors": found.num_anchors,
            "coverage_iou_0.5": found.coverage,
            "coverage_positive_overlap": found.coverage_positive,
        }
    os.makedirs(args.out, exist_ok=True)
    if args.num_images > 0 and roidb:
        try:
            sheet = contact_sheet(roidb, imdb.classes, args.num_images, args.seed)
            report["contact_sheet"] = os.path.join(args.out, f"{name}_contact_sheet.png")
            cv2.imwrite(report["contact_sheet"], sheet)
        except ValueError:
            report["contact_sheet"] = None
    with open(os.path.join(args.out, f"{name}_report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    return report


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _listed(title: str, lines: Sequence[str]) -> List[str]:
    out = [f"{title}: {len(lines)}"]
    out += [f"  {line}" for line in lines[:MAX_LISTED]]
    if len(lines) > MAX_LISTED:
        out.append(f"  ... and {len(lines) - MAX_LISTED} more (see the JSON report)")
    return out


def format_report(report: dict, cfg: Config) -> str:
    """The report as Markdown-style text."""
    lines = [f"## {report['set']}: {report['imdb']}", ""]
    without = report["images_without_boxes"]
    lines += [
        f"images: {report['images']}, without boxes: {len(without)}",
        "",
        "| class | boxes | images |",
        "|---|---:|---:|",
    ]
    for name in report["classes"]:
        lines.append(
            f"| {name} | {report['boxes_per_class'][name]} | {report['images_per_class'][name]} |"
        )
    lines.append(
        f"| **all** | {sum(report['boxes_per_class'].values())} | "
        f"{report['images'] - len(without)} |"
    )
    fmt = " | ".join
    lines += [
        "",
        "| | min | p5 | median | p95 | max |",
        "|---|---:|---:|---:|---:|---:|",
        f"| box size sqrt(w*h) after resize (px) | "
        f"{fmt(f'{v:.1f}' for v in report['box_size_after_resize'])} |",
        f"| box aspect h/w | {fmt(f'{v:.2f}' for v in report['box_aspect_h_over_w'])} |",
        f"| image aspect w/h | {fmt(f'{v:.2f}' for v in report['image_aspect_w_over_h'])} |",
        "",
        f"resize: TRAIN.SCALES {list(cfg.TRAIN.SCALES)}, TRAIN.MAX_SIZE "
        f"{cfg.TRAIN.MAX_SIZE}; images with w/h outside [{cfg.TRAIN.ASPECT_RATIO_MIN}, "
        f"{cfg.TRAIN.ASPECT_RATIO_MAX}] (cropped in training): "
        f"{report['images_outside_ratio_range']}",
        "",
        "### Bad input",
        "",
    ]
    lines += _listed(
        "images that cannot be used", [f"{b['path']}: {b['problem']}" for b in report["bad_images"]]
    )
    lines += _listed("boxes repaired (clipped to the image)", report["boxes_repaired"])
    lines += _listed("boxes or annotations dropped", report["annotations_dropped"])
    lines += _listed("other warnings", report["other_warnings"])
    lines += _listed("images without boxes (left out of training)", without)
    lines += _listed(
        f"images with more than MAX_NUM_GT_BOXES={cfg.MAX_NUM_GT_BOXES} boxes (a "
        "random subset of that many is trained on each time)",
        report["images_over_max_num_gt_boxes"],
    )
    positive = cfg.TRAIN.RPN_POSITIVE_OVERLAP
    lines += [
        "",
        "### Anchor fit",
        "",
        f"ANCHOR_SCALES {list(cfg.ANCHOR_SCALES)}, ANCHOR_RATIOS "
        f"{list(cfg.ANCHOR_RATIOS)}, FEAT_STRIDE {cfg.FEAT_STRIDE}: best IoU of each box "
        "with an anchor of the same centre (shape only; anchors on the stride grid reach "
        "less), sizes after the training resize.",
        "",
        f"| box size (px) | boxes | IoU >= {positive:g} | IoU >= 0.5 | median IoU |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["anchor_fit"]:
        span = (
            "all"
            if row["low"] == 0 and row["high"] is None
            else f"{row['low']:g}-{row['high']:g}"
            if row["high"] is not None
            else f">= {row['low']:g}"
        )
        lines.append(
            f"| {span} | {row['boxes']} | {_pct(row['frac_positive'])} | "
            f"{_pct(row['frac_half'])} | {row['median_iou']:.2f} |"
        )
    found = report.get("suggested_anchors")
    current = report["anchor_fit"][-1]["frac_half"]
    if found and current >= COVERAGE_TARGET:
        lines += [
            "",
            f"the configured anchors cover {_pct(current)} of the boxes at IoU >= 0.5 "
            f"(>= {_pct(COVERAGE_TARGET)}): keep them.  The fewest anchors that would: "
            f"ANCHOR_SCALES {found['ANCHOR_SCALES']} ANCHOR_RATIOS "
            f"{found['ANCHOR_RATIOS']} ({_pct(found['coverage_iou_0.5'])} at 0.5, "
            f"{_pct(found['coverage_positive_overlap'])} at {positive:g})",
        ]
    elif found:
        reached = (
            "covers"
            if found["coverage_iou_0.5"] >= COVERAGE_TARGET
            else f"is the best found; it does not reach {_pct(COVERAGE_TARGET)}:"
        )
        lines += [
            "",
            f"suggested: --set ANCHOR_SCALES {found['ANCHOR_SCALES']} ANCHOR_RATIOS "
            f"{found['ANCHOR_RATIOS']} ({found['num_anchors']} anchors) {reached} "
            f"{_pct(found['coverage_iou_0.5'])} of the boxes at IoU >= 0.5, "
            f"{_pct(found['coverage_positive_overlap'])} at >= {positive:g}",
        ]
    if report.get("contact_sheet"):
        lines += ["", f"contact sheet: {report['contact_sheet']}"]
    return "\n".join(lines) + "\n"


def run_check(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    names: Dict[str, str] = {"train": cfg.DATASET.TRAIN, "test": cfg.DATASET.TEST}
    splits = ["train", "test"] if args.split == "both" else [args.split]
    if args.split == "both" and not _has_test_set(cfg):
        splits = ["train"]
    status = 0
    for split in splits:
        report = check_set(names[split], cfg, args)
        print(format_report(report, cfg))
        if report["bad_images"] or not sum(report["boxes_per_class"].values()):
            status = 1
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.command == "shapes":
        export_shapes(
            args.out, args.format, {"train": args.num_train, "test": args.num_test}, args.seed
        )
        LOGGER.info(
            "wrote the shapes set (%d train, %d test) as %s to %s",
            args.num_train,
            args.num_test,
            args.format,
            args.out,
        )
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
