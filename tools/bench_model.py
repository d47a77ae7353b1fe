"""Benchmark our ResNet-C4 Faster R-CNN against the same architecture assembled from
``torchvision.models.detection.FasterRCNN``.

Both models: ResNet conv1..layer3 as the stride-16 backbone (FrozenBatchNorm, conv1 + layer1
frozen as RESNET.FIXED_BLOCKS 1, the config's caffe/pytorch style), a 3x3 RPN conv of
RPN_CHANNELS, 9 anchors (sizes 128/256/512 x ratios 0.5/1/2 on one map), RoIAlign 7x7 with
adaptive sampling, layer4 + spatial mean as the box head (2048-d), the reference's RPN and RoI
sampling numbers and test post-processing, random initialisation, then :func:`calibrate` so
that the random RPN and predictors neither saturate nor collapse the proposals (both models
fill RPN_POST_NMS_TOP_N, as trained ones do).

Measured (times in one process, the two models' runs interleaved so that load from other
processes on a shared machine hits both alike; peak memory of each phase in its own spawned
process):

* inference: uint8 (H,W,3) BGR image -> detections (our ``prepare_test_image`` + forward +
  ``postprocess``; torchvision: float tensor -> ``GeneralizedRCNNTransform`` -> detections);
* training step: batch 1, a few gt boxes, forward + backward + SGD step (momentum, weight
  decay) with learning rate 0: the update arithmetic runs but the weights stay put, so every
  timed step does the same work (with a random model a real step soon collapses torchvision's
  proposals to a handful of RoIs, while ours always samples TRAIN.BATCH_SIZE).

Peak memory: CUDA ``torch.cuda.max_memory_allocated``; CPU the resident-set high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` before the phase; ``ru_maxrss`` where that
is unavailable) minus the resident set before the phase.  Our per-stage time shares come from
forward hooks on the stage modules (exclusive times: a stage excludes its hooked children).

``--amp bf16`` (or ``fp16``) runs both models' timed phases under the same
``torch.autocast`` (the precision ``TRAIN.AMP auto`` trains in on a CPU with fast bfloat16
convolutions); float32 by default.

``--deploy`` instead compares ways to run our inference graph (:class:`ExportableDetector`:
preprocessed image -> fixed-size detections; preprocessing not timed): eager, ``torch.compile``
(default mode, dynamic shapes off) and onnxruntime's CPUExecutionProvider (with as many
intra-op threads as torch uses) on the model exported by ``tools/export.py``.

Usage: PYTHONPATH=. python tools/bench_model.py --net res50 --device cpu --iters 3 --warmup 1
       PYTHONPATH=. python tools/bench_model.py --net res50 --amp bf16 --iters 5 --no-memory
       PYTHONPATH=. python tools/bench_model.py --deploy --net shapes --height 256 --width 341
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections import OrderedDict
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet
from torchvision.models.detection import FasterRCNN as TVFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from fasterrcnn.config import Config, load_config
from fasterrcnn.data import prepare_test_image
from fasterrcnn.model import FasterRCNN, build_model

LOG = logging.getLogger("bench_model")
CFG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "cfgs")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``--amp`` choices: the autocast dtype both models run under (None: float32)."""
NUM_CLASSES = 21
"""VOC: 20 classes and the background."""
GT_BOXES = (
    (48.0, 64.0, 300.0, 400.0, 3.0),
    (350.0, 120.0, 700.0, 380.0, 7.0),
    (500.0, 300.0, 620.0, 560.0, 12.0),
)
"""A few ground-truth boxes ``[x1, y1, x2, y2, class]`` (pixels of a 600x800 image)."""
STAGES = (
    "backbone",
    "rpn + proposal layer",
    "target layers",
    "roi pooling",
    "head",
    "losses + other",
    "postprocess",
    "backward + step",
)


# ----------------------------------------------------------------------------- inputs
def test_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random-ish (height, width, 3) uint8 BGR image: smooth random blobs plus noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 32 + 1, width // 32 + 1, generator=gen) * 255.0
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noisy = smooth + torch.randn(1, 3, height, width, generator=gen) * 12.0
    return noisy.clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()


def scaled_gt(height: int, width: int) -> Tensor:
    """``GT_BOXES`` scaled from 600x800 to (height, width): ``(G, 5)`` float32."""
    gt = torch.tensor(GT_BOXES, dtype=torch.float32)
    gt[:, [0, 2]] *= width / 800.0
    gt[:, [1, 3]] *= height / 600.0
    return gt


# ----------------------------------------------------------------------------- torchvision
class _RPNHead(nn.Module):
    """torchvision's RPNHead interface with our widths: 3x3 conv to ``hidden`` + ReLU, 1x1 convs
    to A objectness logits and 4A deltas (torchvision's own head keeps ``in_channels``)."""

    def __init__(self, in_channels: int, hidden: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.cls_logits = nn.Conv2d(hidden, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(hidden, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        hidden = [F.relu(self.conv(f)) for f in features]
        return [self.cls_logits(h) for h in hidden], [self.bbox_pred(h) for h in hidden]


class _Layer4Mean(nn.Module):
    """Box head: layer4 then the spatial mean, (K, 1024, 7, 7) -> (K, 2048)."""

    def __init__(self, layer4: nn.Module) -> None:
        super().__init__()
        self.layer4 = layer4

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(x).mean(dim=(2, 3))


def _caffe_style(resnet: tv_resnet.ResNet) -> None:
    """Our ``caffe`` style on a torchvision ResNet: the stride on each stage's first 1x1 conv,
    stem max-pool without padding, rounding up."""
    resnet.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for layer in (resnet.layer2, resnet.layer3, resnet.layer4):
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)


def build_torchvision(cfg: Config, num_classes: int) -> TVFasterRCNN:
    """Our ``cfg`` architecture and numbers assembled from torchvision's detection parts."""
    ctor = {"res50": tv_resnet.resnet50, "res101": tv_resnet.resnet101}[cfg.NET]
    resnet = ctor(weights=None, norm_layer=FrozenBatchNorm2d)
    if cfg.BACKBONE.STYLE == "caffe":
        _caffe_style(resnet)
    backbone = nn.Sequential(
        OrderedDict(
            (name, getattr(resnet, name))
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        )
    )
    frozen = ["conv1", "bn1"] + [f"layer{i}" for i in range(1, cfg.RESNET.FIXED_BLOCKS + 1)]
    for name in frozen:
        for param in getattr(backbone, name).parameters():
            param.requires_grad_(False)
    backbone.out_channels = 1024
    sizes = tuple(float(s * cfg.FEAT_STRIDE) for s in cfg.ANCHOR_SCALES)
    anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=(tuple(cfg.ANCHOR_RATIOS),))
    num_anchors = len(sizes) * len(cfg.ANCHOR_RATIOS)
    # torchvision normalises (x - mean) / std; fed 0-255 BGR tensors these are our statistics.
    train, test = cfg.TRAIN, cfg.TEST
    return TVFasterRCNN(
        backbone,
        num_classes=None,
        min_size=test.SCALES[0],
        max_size=test.MAX_SIZE,
        image_mean=list(cfg.PIXEL_MEANS),
        image_std=list(cfg.PIXEL_STDS),
        rpn_anchor_generator=anchors,
        rpn_head=_RPNHead(1024, cfg.RPN_CHANNELS, num_anchors),
        rpn_pre_nms_top_n_train=train.RPN_PRE_NMS_TOP_N,
        rpn_pre_nms_top_n_test=test.RPN_PRE_NMS_TOP_N,
        rpn_post_nms_top_n_train=train.RPN_POST_NMS_TOP_N,
        rpn_post_nms_top_n_test=test.RPN_POST_NMS_TOP_N,
        rpn_nms_thresh=train.RPN_NMS_THRESH,
        rpn_fg_iou_thresh=train.RPN_POSITIVE_OVERLAP,
        rpn_bg_iou_thresh=train.RPN_NEGATIVE_OVERLAP,
        rpn_batch_size_per_image=train.RPN_BATCHSIZE,
        rpn_positive_fraction=train.RPN_FG_FRACTION,
        box_roi_pool=MultiScaleRoIAlign(["0"], cfg.POOLING_SIZE, sampling_ratio=0),
        box_head=_Layer4Mean(resnet.layer4),
        box_predictor=FastRCNNPredictor(2048, num_classes),
        box_score_thresh=test.SCORE_THRESH,
        box_nms_thresh=test.NMS,
        box_detections_per_img=test.MAX_PER_IMAGE,
        box_fg_iou_thresh=train.FG_THRESH,
        box_bg_iou_thresh=train.BG_THRESH_HI,
        box_batch_size_per_image=train.BATCH_SIZE,
        box_positive_fraction=train.FG_FRACTION,
        bbox_reg_weights=tuple(1.0 / s for s in train.BBOX_NORMALIZE_STDS),
    )


# ----------------------------------------------------------------------------- measuring
class StageTimer:
    """Exclusive wall time of hooked modules: a stage's time excludes the hooked modules it
    calls.  ``sync`` runs before each clock read (CUDA synchronisation)."""

    def __init__(self, stages: Dict[str, List[nn.Module]], sync: Callable[[], None]) -> None:
        self.sync = sync
        self.totals: Dict[str, float] = {name: 0.0 for name in stages}
        self._stack: List[List] = []
        self._handles = []
        for name, modules in stages.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._enter(name)))
                self._handles.append(module.register_forward_hook(self._leave()))

    def _enter(self, name: str):
        def hook(module, args):
            self.sync()
            self._stack.append([name, time.perf_counter(), 0.0])

        return hook

    def _leave(self):
        def hook(module, args, output):
            self.sync()
            name, start, children = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.totals[name] += elapsed - children
            if self._stack:
                self._stack[-1][2] += elapsed

        return hook

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def our_stages(model: FasterRCNN) -> Dict[str, List[nn.Module]]:
    """The modules of each of our stages (the proposal layer is part of the RPN stage)."""
    head = model.roi_head
    return {
        "backbone": [model.base],
        "rpn + proposal layer": [model.rpn],
        "target layers": [model.rpn.anchor_target_layer, model.roi_head.proposal_target_layer],
        "roi pooling": [head.pooler],
        "head": [head.top, head.cls_score, head.bbox_pred],
    }


def _proc_status(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of a phase above the memory in use when it starts, in bytes."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0
        self.hwm_reset = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.base = _proc_status("VmRSS") or 0

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.base
        hwm = _proc_status("VmHWM") if self.hwm_reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, hwm - self.base)


def _sync_fn(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@contextlib.contextmanager
def _stage(timer: Optional[StageTimer], name: str, sync: Callable[[], None]) -> Iterator[None]:
    """Adds the block's time to ``timer[name]``; does nothing (no synchronisation) without one."""
    if timer is None:
        yield
        return
    sync()
    start = time.perf_counter()
    yield
    sync()
    timer.add(name, time.perf_counter() - start)


def _ours_steps(
    model: FasterRCNN,
    cfg: Config,
    image: np.ndarray,
    device: torch.device,
    timer_ref: List[Optional[StageTimer]],
):
    """(inference, training step) closures of our model."""
    gt = scaled_gt(*image.shape[:2])
    max_gt = cfg.MAX_NUM_GT_BOXES
    sync = _sync_fn(device)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            im_data, im_info = prepare_test_image(image, cfg)
            im_data, im_info = im_data.to(device), im_info.to(device)
            rois, cls_prob, bbox_pred = model(im_data, im_info)
            with _stage(timer_ref[0], "postprocess", sync):
                model.postprocess(rois, cls_prob, bbox_pred, im_info)

    # A training image at the training scale: our own preprocessing, outside the timed step
    # (the loader prepares it in training).
    train_data, train_info = prepare_test_image(image, cfg)
    train_data, train_info = train_data.to(device), train_info.to(device)
    scale = float(train_info[0, 2])
    gt_boxes = torch.zeros(1, max_gt, 5)
    gt_boxes[0, : len(gt), :4] = gt[:, :4] * scale
    gt_boxes[0, : len(gt), 4] = gt[:, 4]
    gt_boxes = gt_boxes.to(device)
    num_boxes = torch.tensor([len(gt)], device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)

    def train_step() -> None:
        model.train()
        losses = model(train_data, train_info, gt_boxes, num_boxes)
        total = sum(losses.values())
        with _stage(timer_ref[0], "backward + step", sync):
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()

    return infer, train_step


def _tv_steps(model: TVFasterRCNN, image: np.ndarray, device: torch.device):
    """(inference, training step) closures of the torchvision model."""
    gt = scaled_gt(*image.shape[:2])
    target = {"boxes": gt[:, :4].to(device), "labels": gt[:, 4].long().to(device)}
    train_tensor = torch.from_numpy(image).permute(2, 0, 1).float().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            tensor = torch.from_numpy(image).to(device).permute(2, 0, 1).float()
            model([tensor])

    def train_step() -> None:
        model.train()
        losses = model([train_tensor], [target])
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return infer, train_step


def _under_autocast(
    step: Callable[[], None], device: torch.device, dtype: torch.dtype
) -> Callable[[], None]:
    """``step`` run under ``torch.autocast(device.type, dtype)``."""

    def run() -> None:
        with torch.autocast(device.type, dtype=dtype):
            step()

    return run


def _rms_of_outputs(modules: List[nn.Module], run: Callable[[], None]) -> List[float]:
    """Root mean square of each module's output over one call of ``run``."""
    seen: List[float] = [0.0] * len(modules)

    def capture(i: int):
        def hook(module, args, output):
            seen[i] = float(output.detach().float().pow(2).mean().sqrt())

        return hook

    handles = [m.register_forward_hook(capture(i)) for i, m in enumerate(modules)]
    with torch.no_grad():
        run()
    for handle in handles:
        handle.remove()
    return seen


@torch.no_grad()
def calibrate(
    feature_modules: List[nn.Module], scaled_layers: List[List[nn.Module]], run: Callable[[], None]
) -> None:
    """Divide the weights of ``scaled_layers[i]`` by the output RMS of ``feature_modules[i]``.

    A randomly initialised backbone fed 0-255 pixels gives features of a huge scale, so the RPN
    saturates and its proposals collapse to a handful of boxes; a trained model fills
    RPN_POST_NMS_TOP_N.  Scaling the layers that read the backbone (RPN conv) and the box head
    (predictors) makes logits and deltas moderate, so both models do realistic work.
    """
    for features, layers in zip(feature_modules, scaled_layers):
        (rms,) = _rms_of_outputs([features], run)
        for layer in layers:
            layer.weight.div_(max(rms, 1e-6))


class Bench:
    """Both models built (and calibrated) for one config, with their step closures."""

    def __init__(
        self,
        impls: Tuple[str, ...],
        net: str,
        device: torch.device,
        height: int,
        width: int,
        amp: Optional[torch.dtype] = None,
    ) -> None:
        torch.manual_seed(0)
        self.device = device
        self.sync = _sync_fn(device)
        side = f"[{min(height, width)}]"
        cfg = load_config(
            os.path.join(CFG_DIR, f"{net}.yml"), ["TEST.SCALES", side, "TRAIN.SCALES", side]
        )
        image = test_image(height, width)
        self.timer_ref: List[Optional[StageTimer]] = [None]
        self.steps: Dict[Tuple[str, str], Callable[[], None]] = {}
        self.ours: Optional[FasterRCNN] = None
        if "ours" in impls:
            model = build_model(cfg, NUM_CLASSES).to(device)
            infer, train_step = _ours_steps(model, cfg, image, device, self.timer_ref)
            head = model.roi_head
            calibrate(
                [model.base, head.top], [[model.rpn.conv], [head.cls_score, head.bbox_pred]], infer
            )
            self.steps[("ours", "inference")], self.steps[("ours", "train")] = infer, train_step
            self.ours = model
        if "torchvision" in impls:
            tv = build_torchvision(cfg, NUM_CLASSES).to(device)
            infer, train_step = _tv_steps(tv, image, device)
            heads = tv.roi_heads
            calibrate(
                [tv.backbone, heads.box_head],
                [
                    [tv.rpn.head.conv],
                    [heads.box_predictor.cls_score, heads.box_predictor.bbox_pred],
                ],
                infer,
            )
            self.steps[("torchvision", "inference")] = infer
            self.steps[("torchvision", "train")] = train_step
        if amp is not None:
            self.steps = {key: _under_autocast(run, device, amp) for key, run in self.steps.items()}

    def timed(self, key: Tuple[str, str]) -> float:
        self.sync()
        start = time.perf_counter()
        self.steps[key]()
        self.sync()
        return time.perf_counter() - start

    def interleaved(
        self, impls: Tuple[str, ...], mode: str, warmup: int, iters: int
    ) -> Dict[str, List[float]]:
        """``iters`` timed runs of each implementation, alternating them (and their order) run
        by run so that load from other processes hits both alike."""
        for _ in range(warmup):
            for impl in impls:
                self.steps[(impl, mode)]()
        times: Dict[str, List[float]] = {impl: [] for impl in impls}
        for i in range(iters):
            for impl in impls if i % 2 == 0 else impls[::-1]:
                times[impl].append(self.timed((impl, mode)))
        return times

    def stage_shares(self, mode: str, iters: int) -> Dict[str, float]:
        """Our time share of each stage over ``iters`` hooked runs."""
        assert self.ours is not None
        timer = StageTimer(our_stages(self.ours), self.sync)
        self.timer_ref[0] = timer
        total = sum(self.timed(("ours", mode)) for _ in range(iters))
        timer.remove()
        self.timer_ref[0] = None
        totals = dict(timer.totals)
        totals["losses + other"] = total - sum(totals.values())
        return {name: value / total for name, value in totals.items()}

    def profile(self, key: Tuple[str, str], rows: int) -> str:
        """The top ``rows`` ops of one profiled run."""
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with torch_profile(activities=activities) as prof:
            self.timed(key)
        sort = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        return prof.key_averages().table(sort_by=sort, row_limit=rows)


def peak_memory(
    impl: str,
    mode: str,
    net: str,
    device_name: str,
    height: int,
    width: int,
    amp: Optional[torch.dtype] = None,
) -> int:
    """Peak memory (bytes above the memory in use at its start) of one run after a warm-up."""
    bench = Bench((impl,), net, torch.device(device_name), height, width, amp)
    step = bench.steps[(impl, mode)]
    step()
    meter = MemoryMeter(bench.device)
    meter.start()
    step()
    return meter.peak()


def _child(queue, args) -> None:
    try:
        queue.put(("ok", peak_memory(*args)))
    except BaseException as exc:  # report any failure to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def peak_memory_isolated(args: Tuple) -> int:
    """:func:`peak_memory` in a fresh spawned process (that phase alone)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, args))
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"memory child {args[:2]} failed: {payload}")
    return payload


# ----------------------------------------------------------------------------- deployment
def deploy_steps(net: str, height: int, width: int, onnx_path: str) -> Dict[str, Callable]:
    """Inference closures of our calibrated model: eager, torch.compile and onnxruntime.

    Exporting and compiling happen here (the first compiled call compiles), outside the timing.
    """
    from fasterrcnn.deploy.export import ExportableDetector, export_program, save_onnx
    from fasterrcnn.deploy.runtime import ExportedDetector

    bench = Bench(("ours",), net, torch.device("cpu"), height, width)
    model = bench.ours.eval()
    cfg = model.cfg
    im_data, im_info = prepare_test_image(test_image(height, width), cfg)
    module = ExportableDetector(model)
    compiled = torch.compile(module, dynamic=False)
    save_onnx(export_program(model), onnx_path, cfg, ["__background__"] * NUM_CLASSES)
    session = ExportedDetector.from_onnx(onnx_path, threads=torch.get_num_threads())
    arrays = (im_data.numpy(), im_info.numpy())

    @torch.no_grad()
    def eager() -> None:
        module(im_data, im_info)

    @torch.no_grad()
    def compiled_run() -> None:
        compiled(im_data, im_info)

    def onnxruntime_run() -> None:
        session.run(*arrays)

    compiled_run()
    return {"eager": eager, "compiled": compiled_run, "onnxruntime": onnxruntime_run}


def deploy_report(args: argparse.Namespace, times: Dict[str, List[float]]) -> str:
    """The markdown table of the deployment runtimes, with ratios to eager."""
    eager = statistics.median(times["eager"])
    lines = [
        f"### {args.net} inference, cpu, {args.height}x{args.width} image, median of "
        f"{args.iters} interleaved runs (threads: {torch.get_num_threads()})",
        "",
        "| runtime | s / image | / eager (ratio of medians) | median of per-run ratios |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in times.items():
        pairs = statistics.median(t / e for t, e in zip(runs, times["eager"]))
        lines.append(
            f"| {name} | {statistics.median(runs):.3f} | "
            f"{statistics.median(runs) / eager:.2f} | {pairs:.2f} |"
        )
    return "\n".join(lines)


def run_deploy(args: argparse.Namespace) -> str:
    """Time the deployment runtimes interleaved, run by run (alternating their order)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        steps = deploy_steps(args.net, args.height, args.width, os.path.join(tmp, "model.onnx"))
        names = list(steps)
        for _ in range(args.warmup):
            for name in names:
                steps[name]()
        times: Dict[str, List[float]] = {name: [] for name in names}
        for i in range(args.iters):
            for name in names if i % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - start)
    for name, runs in times.items():
        LOG.info("%s: %s s", name, ", ".join(f"{t:.3f}" for t in runs))
    return deploy_report(args, times)


# ----------------------------------------------------------------------------- report
def _mib(nbytes: Optional[int]) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.0f}"


def report(
    args: argparse.Namespace,
    times: Dict[Tuple[str, str], List[float]],
    peaks: Dict[Tuple[str, str], Optional[int]],
    shares: Dict[str, Dict[str, float]],
) -> str:
    """The markdown tables."""
    lines = [
        f"### {args.net}, {args.device}, {args.height}x{args.width} image, batch 1, "
        f"{'float32' if args.amp == 'none' else args.amp + ' autocast'}, median of "
        f"{args.iters} interleaved runs (torch threads: {torch.get_num_threads()})",
        "",
        "| phase | ours (s) | torchvision (s) | ours / torchvision (ratio of medians) "
        "| median of per-pair ratios | ours peak (MiB) | torchvision peak (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, label in (("inference", "inference / image"), ("train", "training step")):
        ours, tv = times[("ours", mode)], times[("torchvision", mode)]
        pairs = statistics.median(o / t for o, t in zip(ours, tv))
        lines.append(
            f"| {label} | {statistics.median(ours):.3f} | {statistics.median(tv):.3f} | "
            f"{statistics.median(ours) / statistics.median(tv):.2f} | {pairs:.2f} | "
            f"{_mib(peaks.get(('ours', mode)))} | {_mib(peaks.get(('torchvision', mode)))} |"
        )
    lines += [
        "",
        "Our time shares by stage (separate hooked runs; exclusive times):",
        "",
        "| stage | inference | training step |",
        "|---|---:|---:|",
    ]
    for stage in STAGES:
        cells = [
            f"{100 * st[stage]:.1f}%" if stage in st else "-"
            for st in (shares["inference"], shares["train"])
        ]
        lines.append(f"| {stage} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--net",
        choices=("res50", "res101", "shapes"),
        default="res50",
        help="shapes (cfgs/shapes.yml, the quickstart model): --deploy only",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--iters", type=int, default=3, help="timed runs per phase and model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also log the top N ops of one profiled run of each phase",
    )
    parser.add_argument(
        "--amp",
        choices=tuple(AMP_DTYPES),
        default="none",
        help="run both models' timed phases under this autocast (none: float32)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory runs (one spawned process per phase)",
    )
    parser.add_argument(
        "--deploy",
        action="store_true",
        help="instead: our CPU inference eager vs torch.compile vs onnxruntime",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    if args.net == "shapes" and not args.deploy:
        parser.error("--net shapes has no torchvision counterpart: use it with --deploy")
    if args.deploy:
        if args.device != "cpu":
            parser.error("--deploy measures CPU inference: use --device cpu")
        logging.getLogger("onnxscript").setLevel(logging.WARNING)
        print(run_deploy(args))
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA requested but not available")
    impls = ("ours", "torchvision")
    amp = AMP_DTYPES[args.amp]
    bench = Bench(impls, args.net, device, args.height, args.width, amp)
    times: Dict[Tuple[str, str], List[float]] = {}
    shares: Dict[str, Dict[str, float]] = {}
    for mode in ("inference", "train"):
        for impl, runs in bench.interleaved(impls, mode, args.warmup, args.iters).items():
            times[(impl, mode)] = runs
            LOG.info("%s %s: %s s", impl, mode, ", ".join(f"{t:.2f}" for t in runs))
        shares[mode] = bench.stage_shares(mode, args.iters)
        for impl in impls if args.profile else ():
            LOG.info("top ops, %s %s:\n%s", impl, mode, bench.profile((impl, mode), args.profile))
    del bench
    peaks: Dict[Tuple[str, str], Optional[int]] = {}
    if not args.no_memory:
        for impl in impls:
            for mode in ("inference", "train"):
                peaks[(impl, mode)] = peak_memory_isolated(
                    (impl, mode, args.net, args.device, args.height, args.width, amp)
                )
    print(report(args, times, peaks, shares))


if __name__ == "__main__":
    sys.exit(main())
