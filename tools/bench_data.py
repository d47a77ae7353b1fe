"""Throughput of the training loader against the training step that consumes it.

For each worker count, images/s of ``fasterrcnn.data.build_train_loader`` over the training set
of a config (default: the generated shapes dataset of ``cfgs/shapes.yml``), and, for
comparison, images/s of a training step (forward + backward + optimizer step) of that config's
model at the same batch size on batches taken from the loader beforehand.  A loader faster than
the step keeps the model busy; a slower one is the bottleneck.

Loader rates exclude the first batch (worker start-up), which is reported on its own.  The
machine may be shared: numbers are noisy, compare them within one run.

Usage: PYTHONPATH=. python tools/bench_data.py --workers 0 1 2 --batches 30 --train-iters 5
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

from fasterrcnn.config import Config, load_config
from fasterrcnn.data import build_train_loader, combined_roidb
from fasterrcnn.engine.optim import build_optimizer
from fasterrcnn.model import build_model

LOG = logging.getLogger("bench_data")
DEFAULT_CFG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "cfgs", "shapes.yml"
)


def loader_rate(loader: Iterable, batches: int) -> Tuple[float, float, int]:
    """(seconds to the first batch, images/s over the next ``batches`` batches, images seen)."""
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    images = 0
    start = time.perf_counter()
    for _, batch in zip(range(batches), iterator):
        images += batch[0].shape[0]
    elapsed = time.perf_counter() - start
    return first, images / max(elapsed, 1e-9), images


def train_rate(
    cfg: Config, num_classes: int, batches: Sequence, warmup: int
) -> Tuple[float, float]:
    """(images/s, median seconds per step) of training steps on ``batches`` after ``warmup``
    untimed steps; the optimizer is the config's (``build_optimizer``)."""
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg, num_classes)
    model.train()
    optimizer = build_optimizer(model, cfg)
    times: List[float] = []
    images = 0
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        losses = model(*batch[:4])
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            images += batch[0].shape[0]
    return images / sum(times), statistics.median(times)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=DEFAULT_CFG, help="config file (default shapes.yml)")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY VALUE", help="config overrides"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="DATA_DIR (default: a temporary directory; shapes is generated)",
    )
    parser.add_argument(
        "--bs", type=int, default=None, help="images per batch (default TRAIN.IMS_PER_BATCH)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=30, help="timed loader batches")
    parser.add_argument("--train-iters", type=int, default=5, help="timed training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        data_dir = args.data_dir or tmp
        cfg = load_config(args.cfg, ["DATA_DIR", data_dir] + list(args.set))
        batch_size = args.bs or cfg.TRAIN.IMS_PER_BATCH
        start = time.perf_counter()
        imdb, roidb, ratio_list, ratio_index = combined_roidb(cfg.DATASET.TRAIN, cfg, True)
        LOG.info(
            "%s: %d roidb entries ready in %.1f s",
            cfg.DATASET.TRAIN,
            len(roidb),
            time.perf_counter() - start,
        )

        def loader(workers: int):
            return build_train_loader(
                cfg,
                roidb,
                ratio_list,
                ratio_index,
                batch_size=batch_size,
                num_workers=workers,
                seed=cfg.RNG_SEED,
            )

        rows = []
        for workers in args.workers:
            first, rate, images = loader_rate(loader(workers), args.batches)
            rows.append((workers, first, rate, images))
            LOG.info("%d workers: first batch %.2f s, %.1f images/s", workers, first, rate)
        warmup = 1
        batches = [b for _, b in zip(range(args.train_iters + warmup), loader(0))]
        step_rate, step_s = train_rate(cfg, imdb.num_classes, batches, warmup)
    shape = tuple(batches[0][0].shape)
    print(
        f"### training loader vs training step: {os.path.basename(args.cfg)} ({cfg.NET}, "
        f"{imdb.name}), batch {batch_size}, first batch {shape}, "
        f"torch threads {torch.get_num_threads()}\n"
    )
    print("| source | images/s | first batch (s) | loader / step |")
    print("|---|---:|---:|---:|")
    for workers, first, rate, images in rows:
        print(
            f"| loader, {workers} workers ({images} images) | {rate:.1f} | {first:.2f} | "
            f"{rate / step_rate:.1f}x |"
        )
    print(
        f"| training step ({len(batches) - warmup} steps, median {step_s:.2f} s) | "
        f"{step_rate:.1f} | - | 1.0x |"
    )


if __name__ == "__main__":
    sys.exit(main())
