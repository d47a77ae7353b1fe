"""Training throughput of the real loop (loader + trainer + model) per precision.

Runs ``fasterrcnn.engine.training_run.build_training_run`` on a config (default: the generated
shapes set of ``cfgs/shapes.yml``) for ``--warmup`` + ``--iters`` iterations per precision,
interleaving the precisions ``--repeats`` times, and prints per precision the images/s of the
timed iterations (wall clock between iterations, loader included), the median seconds waiting
for data and in the training step, and, on CUDA with ``--sync-debug``, the host
synchronisations per iteration of the whole loop (model included) counted by
``torch.cuda.set_sync_debug_mode``.

Usage:
    PYTHONPATH=. python tools/bench_train.py --device cpu --amp none bf16 --iters 10
    PYTHONPATH=. python tools/bench_train.py --device cuda --amp none fp16 bf16 --bs 8 \
        --nw 4 --iters 100 --sync-debug
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional

import torch

from fasterrcnn.config import Config, load_config
from fasterrcnn.engine.training_run import build_training_run

LOG = logging.getLogger("bench_train")
DEFAULT_CFG = "cfgs/shapes.yml"


def run_once(
    cfg: Config, device: str, amp: Optional[str], warmup: int, iters: int, sync_debug: bool
) -> Dict[str, float]:
    """images/s, median data and compute seconds (and syncs per iteration) of one run."""
    stamps: List[float] = []
    data: List[float] = []
    compute: List[float] = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
        trainer = build_training_run(cfg, out, device=device, amp=amp, progress=False)
        record = trainer.log.step

        def timed(losses, step, lr, data_s, compute_s):
            stamps.append(time.perf_counter())
            data.append(data_s)
            compute.append(compute_s)
            if len(stamps) == warmup + 1 and sync_debug:
                torch.cuda.set_sync_debug_mode("warn")
            record(losses, step, lr, data_s, compute_s)

        trainer.log.step = timed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
        if sync_debug:
            torch.cuda.set_sync_debug_mode(0)
    timed_stamps = stamps[warmup:]
    images = cfg.TRAIN.IMS_PER_BATCH * (len(timed_stamps) - 1)
    result = {
        "images_per_s": images / max(timed_stamps[-1] - timed_stamps[0], 1e-9),
        "data_s": statistics.median(data[warmup:]),
        "compute_s": statistics.median(compute[warmup:]),
    }
    if sync_debug:
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        result["syncs_per_iter"] = syncs / max(len(timed_stamps) - 1, 1)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default=DEFAULT_CFG)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY VALUE")
    parser.add_argument("--data-dir", default=None, help="DATA_DIR (default: a temporary one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--amp", nargs="+", default=["none", "auto"], help="precisions: none, auto, bf16, fp16"
    )
    parser.add_argument("--bs", type=int, default=None, help="TRAIN.IMS_PER_BATCH")
    parser.add_argument("--nw", type=int, default=None, help="TRAIN.NUM_WORKERS")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--num-train", type=int, default=200, help="generated shapes images")
    parser.add_argument(
        "--sync-debug", action="store_true", help="count host syncs per iteration (CUDA only)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sync_debug = args.sync_debug and torch.device(args.device).type == "cuda"
    with tempfile.TemporaryDirectory(prefix="bench_train_data_") as tmp:
        # fmt: off
        overrides = [
            "DATA_DIR", args.data_dir or tmp, "DATASET.SHAPES_NUM_TRAIN", args.num_train,
            "TRAIN.MAX_ITERS", args.warmup + args.iters, "TRAIN.EPOCHS", 1000,
            "TRAIN.DISPLAY", 10**9,
        ]
        # fmt: on
        if args.bs:
            overrides += ["TRAIN.IMS_PER_BATCH", args.bs]
        if args.nw is not None:
            overrides += ["TRAIN.NUM_WORKERS", args.nw]
        cfg = load_config(args.cfg, overrides + list(args.set))
        results: Dict[str, List[Dict[str, float]]] = {amp: [] for amp in args.amp}
        for _ in range(args.repeats):
            for amp in args.amp:
                results[amp].append(
                    run_once(
                        cfg,
                        args.device,
                        None if amp == "none" else amp,
                        args.warmup,
                        args.iters,
                        sync_debug,
                    )
                )
    print(
        f"### training loop: {args.cfg}, {cfg.NET}, batch {cfg.TRAIN.IMS_PER_BATCH}, "
        f"{cfg.TRAIN.NUM_WORKERS} workers, device {args.device}, "
        f"{torch.get_num_threads()} threads, {args.iters} timed iterations x "
        f"{args.repeats}\n"
    )
    print("| precision | images/s | data s (median) | step s (median) | syncs/iteration |")
    print("|---|---:|---:|---:|---:|")
    for amp, runs in results.items():
        rate = " / ".join(f"{r['images_per_s']:.1f}" for r in runs)
        syncs = " / ".join(f"{r['syncs_per_iter']:.1f}" for r in runs) if sync_debug else "-"
        print(
            f"| {amp} | {rate} | {statistics.median(r['data_s'] for r in runs):.4f} | "
            f"{statistics.median(r['compute_s'] for r in runs):.4f} | {syncs} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
