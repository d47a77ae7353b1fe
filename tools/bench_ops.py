"""Benchmark fasterrcnn.ops (compiled kernels and the pure-torch fallback) against
torchvision.ops on proposal-layer / RoI-head sized inputs, on the CPU or a CUDA device.  Prints a
markdown table of median times and the ratio ours / theirs (< 1 means faster than torchvision).

Usage: python tools/bench_ops.py [--repeats 5] [--threads N] [--only roi_pool] [--device cuda]
"""

import argparse
import logging
import os
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torchvision

from fasterrcnn import ops
from fasterrcnn.ops import fallback

LOG = logging.getLogger("bench_ops")
IMAGE_H, IMAGE_W, STRIDE = 600, 800, 16
FEAT_H, FEAT_W = 38, 50  # ceil(600 / 16), 800 / 16


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of fn in ms; on CUDA synchronised before and after each call."""

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def proposal_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,4) boxes [x1,y1,x2,y2] inside a 600x800 image, sizes 16..320 px: heavy overlap."""
    centre = torch.rand(n, 2, generator=gen) * torch.tensor([IMAGE_W, IMAGE_H])
    size = 16.0 + torch.rand(n, 2, generator=gen) * 304.0
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    return torch.stack(
        [
            boxes[:, 0].clamp(0, IMAGE_W - 1),
            boxes[:, 1].clamp(0, IMAGE_H - 1),
            boxes[:, 2].clamp(0, IMAGE_W - 1),
            boxes[:, 3].clamp(0, IMAGE_H - 1),
        ],
        1,
    )


def roi_inputs(gen: torch.Generator):
    """Stride-16 map of a 600x800 image (2,1024,38,50) and 256 proposals from both images."""
    feat = torch.randn(2, 1024, FEAT_H, FEAT_W, generator=gen)
    rois = torch.cat(
        [torch.randint(0, 2, (256, 1), generator=gen).float(), proposal_boxes(256, gen)], dim=1
    )
    return feat, rois


def fwd_bwd(op: Callable[[torch.Tensor], torch.Tensor], feat: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x = feat.detach().requires_grad_(True)
        out = op(x)
        out.backward(torch.ones_like(out))

    return run


def with_backend(name: Optional[str], fn: Callable[[], None]) -> Callable[[], None]:
    """Run fn with FASTERRCNN_OPS=torch when name == 'torch'."""

    def run() -> None:
        old = os.environ.get("FASTERRCNN_OPS")
        if name == "torch":
            os.environ["FASTERRCNN_OPS"] = "torch"
        try:
            fn()
        finally:
            if old is None:
                os.environ.pop("FASTERRCNN_OPS", None)
            else:
                os.environ["FASTERRCNN_OPS"] = old

    return run


def crop_reference(feat: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """The F.affine_grid + F.grid_sample + max_pool path of faster-rcnn.pytorch (per image)."""
    return fallback.roi_crop(feat, rois, (size, size), 1.0 / STRIDE, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", default="", help="run only the rows whose name contains this")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--boxes",
        type=int,
        nargs="+",
        default=[12000, 6000],
        help="NMS sizes (the GPU issue measures 6000 12000 30000)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    device = torch.device(args.device)
    feat, rois = (t.to(device) for t in roi_inputs(gen))
    scale = 1.0 / STRIDE
    rows: List[Dict[str, object]] = []

    def add(name: str, ours: Callable[[], object], theirs: Callable[[], object]) -> None:
        if args.only not in name:
            return
        cpp_ms = median_ms(with_backend("cpp", ours), args.repeats, device)
        torch_ms = median_ms(with_backend("torch", ours), args.repeats, device)
        ref_ms = median_ms(theirs, args.repeats, device)
        rows.append(dict(name=name, cpp=cpp_ms, torch=torch_ms, ref=ref_ms))
        LOG.info(
            "%s: cpp %.1f ms, torch %.1f ms, reference %.1f ms", name, cpp_ms, torch_ms, ref_ms
        )

    for n in args.boxes:
        boxes = proposal_boxes(n, gen).to(device)
        scores = torch.rand(n, generator=gen).to(device)
        add(
            f"nms {n} boxes (0.7)",
            lambda b=boxes, s=scores: ops.nms(b, s, 0.7),
            lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.7),
        )
        add(
            f"nms_mask {n} boxes (0.7, vs nms)",
            lambda b=boxes, s=scores: ops.nms_mask(b, s, 0.7),
            lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.7),
        )
    for size in (7, 14):
        add(
            f"roi_align fwd+bwd 256 RoIs {size}x{size}",
            fwd_bwd(lambda x, s=size: ops.roi_align(x, rois, s, scale, 0), feat),
            fwd_bwd(lambda x, s=size: torchvision.ops.roi_align(x, rois, s, scale, 0), feat),
        )
    for size in (7, 14):
        add(
            f"roi_pool fwd+bwd 256 RoIs {size}x{size}",
            fwd_bwd(lambda x, s=size: ops.roi_pool(x, rois, s, scale), feat),
            fwd_bwd(lambda x, s=size: torchvision.ops.roi_pool(x, rois, s, scale), feat),
        )
    add(
        "roi_crop fwd+bwd 256 RoIs 7x7 (vs affine_grid+grid_sample)",
        fwd_bwd(lambda x: ops.roi_crop(x, rois, 7, scale), feat),
        fwd_bwd(lambda x: crop_reference(x, rois, 7), feat),
    )

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"\n{where}, feature map {tuple(feat.shape)}, median of {args.repeats}\n")
    compiled = ops.backend(device)
    print(
        f"| op | ours {compiled} (ms) | ours torch (ms) | reference (ms) | {compiled} / ref "
        "| torch / ref |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['cpp']:.1f} | {r['torch']:.1f} | {r['ref']:.1f} | "
            f"{r['cpp'] / r['ref']:.2f} | {r['torch'] / r['ref']:.2f} |"
        )


if __name__ == "__main__":
    main()
