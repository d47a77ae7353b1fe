"""The training loop: one object that owns the model, optimizer, schedule and checkpoints.

A run is a sequence of epochs; within an epoch the ratio-grouped loader gives batches in an order
fixed by (seed, epoch).  The trainer's position is (epoch, batch): checkpoints store it with
every piece of state that shapes the rest of the run (weights, optimizer moments, schedule,
the sampling generator, torch's CPU and CUDA generators), so a resumed run continues exactly.

The loop keeps the host out of the device's way: batches are copied with ``non_blocking`` (the
loader pins them when the device is CUDA), losses stay on the device until the display interval
(:mod:`.train_log`), and each iteration reads back exactly one small tensor — the finiteness of
the loss and of the gradient norm, agreed by all ranks — because skipping or stopping on a
non-finite batch and advancing the schedule are host decisions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import torch
from torch import nn

from fasterrcnn.checkpoint import (
    check_classes,
    check_resumable,
    checkpoint_name,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from fasterrcnn.config import Config, config_to_dict
from fasterrcnn.engine.amp import AmpSetting, amp_dtype
from fasterrcnn.engine.distributed import DistInfo, all_ranks_agree
from fasterrcnn.engine.optim import build_optimizer, build_scheduler
from fasterrcnn.engine.rng import capture_rng_state, restore_rng_state
from fasterrcnn.engine.train_log import TrainingLog

LOGGER = logging.getLogger(__name__)

LoaderFactory = Callable[[int, int], Iterable]
"""``loader_factory(epoch, start_batch)`` -> iterable of batches of that epoch from start_batch."""


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite and TRAIN.NONFINITE_POLICY is 'stop'."""


@dataclass
class TrainOptions:
    """Run options that are not part of the model's config (they come from the command line).

    ``amp``: see :func:`fasterrcnn.engine.amp.amp_dtype` (True: float16 on CUDA, bfloat16 on the
    CPU; ``"bf16"``, ``"fp16"``).  ``progress``: a progress bar when stderr is a terminal (plain
    log lines otherwise).  ``smoothing_window``: steps in the logged loss medians.
    """

    save_dir: str
    session: int = 1
    device: str = "cpu"
    disp_interval: int = 10
    use_tfb: bool = False
    amp: AmpSetting = None
    progress: bool = True
    smoothing_window: int = 20


@dataclass
class TrainState:
    """Where the run stands: the epoch in progress (0-based) and the batches done in it."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    skipped_batches: int = 0
    last_checkpoint: Optional[str] = None


class Trainer:
    """Trains a FasterRCNN on batches ``(im_data, im_info, gt_boxes, num_boxes[, image_ids])``.

    Args:
        cfg: the run's config (TRAIN.* solver and schedule options are read here).
        model: the FasterRCNN (unwrapped; DDP/DataParallel wrapping is passed as ``wrapped``).
        loader_factory: builds the loader of an epoch from a start batch.
        iters_per_epoch: batches per epoch for this process.
        classes: class names, stored in checkpoints.
        options: save directory, session, device and logging options.
        dist_info: the process's rank; only rank 0 logs and saves.
        wrapped: the module to call (a DistributedDataParallel or DataParallel around ``model``).
    """

    def __init__(
        self,
        cfg: Config,
        model: nn.Module,
        loader_factory: LoaderFactory,
        iters_per_epoch: int,
        classes: Sequence[str],
        options: TrainOptions,
        dist_info: DistInfo = DistInfo(),
        wrapped: Optional[nn.Module] = None,
    ):
        if iters_per_epoch <= 0:
            raise ValueError("the training set gives no batch: check the dataset and batch size")
        self.cfg = cfg
        self.model = model
        self.wrapped = wrapped if wrapped is not None else model
        self.loader_factory = loader_factory
        self.iters_per_epoch = iters_per_epoch
        self.classes = list(classes)
        self.options = options
        self.dist_info = dist_info
        self.device = torch.device(options.device)
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, iters_per_epoch)
        self.state = TrainState()
        self.amp_dtype = amp_dtype(options.amp, self.device.type)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.log = TrainingLog(
            options.disp_interval,
            options.smoothing_window,
            enabled=dist_info.is_main,
            progress=options.progress,
        )
        self.writer = self._make_writer()
        if self.writer is not None:
            self.log.listeners.append(self._write_scalars)

    def finished(self) -> bool:
        """True after TRAIN.EPOCHS epochs, or TRAIN.MAX_ITERS optimizer steps when that is set."""
        max_iters = self.cfg.TRAIN.MAX_ITERS
        return self.state.epoch >= self.cfg.TRAIN.EPOCHS or (
            max_iters > 0 and self.state.global_step >= max_iters
        )

    def resume(self, path: str) -> None:
        """Load a checkpoint written by :meth:`save` and continue from its position."""
        ckpt = load_checkpoint(path, map_location="cpu")
        check_resumable(ckpt, path)
        check_classes(
            ckpt.get("classes", self.classes),
            self.classes,
            path,
            f"this run's dataset {self.cfg.DATASET.TRAIN}",
        )
        load_model_state(self.model, ckpt["model"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(
            epoch=ckpt["epoch"],
            batch=ckpt["iteration"],
            global_step=ckpt["global_step"],
            skipped_batches=ckpt.get("skipped_batches", 0),
            last_checkpoint=path,
        )
        restore_rng_state(ckpt["rng"], self.model.generator, path)
        saved_images = ckpt["images_per_step"]
        if saved_images != self.images_per_step:
            epoch_done = ckpt["iteration"] >= ckpt["iters_per_epoch"]
            self._rescale_position(saved_images, path)
            if epoch_done:
                self.state.batch = self.iters_per_epoch
        elif self.dist_info.enabled:
            self._reseed_sampling()
        if self.state.batch >= self.iters_per_epoch:
            self.state.epoch += 1
            self.state.batch = 0
        LOGGER.info(
            "resumed from %s at epoch %d, batch %d (step %d)",
            path,
            self.state.epoch + 1,
            self.state.batch,
            self.state.global_step,
        )

    @property
    def images_per_step(self) -> int:
        """Images one optimizer step consumes across all ranks."""
        return self.cfg.TRAIN.IMS_PER_BATCH * self.dist_info.world_size

    def _rescale_position(self, saved_images: int, path: str) -> None:
        """Map a checkpoint's position to this run's batch size and world size by images seen.

        The data order after the position then differs from the saved run's (the sampler
        shards batches by world size), so this resume is close, not exact.
        """
        ratio = saved_images / self.images_per_step
        self.state.batch = min(round(self.state.batch * ratio), self.iters_per_epoch)
        self.state.global_step = round(self.state.global_step * ratio)
        self._set_schedule_position(self.state.global_step)
        self._reseed_sampling()
        LOGGER.warning(
            "%s was written with %d images per step, this run takes %d: resuming "
            "at the same number of images seen (batch %d, step %d); the data order "
            "from here differs from the original run's",
            path,
            saved_images,
            self.images_per_step,
            self.state.batch,
            self.state.global_step,
        )

    def _reseed_sampling(self) -> None:
        """A sampling stream of this rank at this step (the checkpoint holds rank 0's only)."""
        self.model.generator.manual_seed(
            self.cfg.RNG_SEED + 1000003 * self.state.global_step + self.dist_info.rank
        )

    def _set_schedule_position(self, step: int) -> None:
        self.scheduler.last_epoch = step
        for group, base_lr, factor in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas
        ):
            group["lr"] = base_lr * factor(step)

    def start_at_epoch(self, epoch: int) -> None:
        """Start a fresh run at ``epoch`` (0-based): the schedule and data order jump there."""
        self.state = TrainState(epoch=epoch, global_step=epoch * self.iters_per_epoch)
        self._set_schedule_position(self.state.global_step)

    def train(self) -> Optional[str]:
        """Run to the end of the schedule; returns the path of the last checkpoint written."""
        self.wrapped.train()
        try:
            while not self.finished():
                finished_epoch = self._run_epoch()
                if finished_epoch:
                    self.state.epoch += 1
                    self.state.batch = 0
                    self.save(completed_epoch=True)
                else:
                    self.save()
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.state.last_checkpoint

    def save(self, completed_epoch: bool = False) -> Optional[str]:
        """Write a checkpoint (rank 0 only) named as the reference names them."""
        if not self.dist_info.is_main:
            return None
        epoch = self.state.epoch if completed_epoch else self.state.epoch + 1
        batch = self.iters_per_epoch if completed_epoch else self.state.batch
        path = os.path.join(
            self.options.save_dir, checkpoint_name(self.options.session, epoch, batch)
        )
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch - 1,
            "iteration": batch,
            "global_step": self.state.global_step,
            "images_per_step": self.images_per_step,
            "iters_per_epoch": self.iters_per_epoch,
            "skipped_batches": self.state.skipped_batches,
            "config": config_to_dict(self.cfg),
            "classes": self.classes,
            "session": self.options.session,
            "rng": capture_rng_state(self.model.generator),
        }
        os.makedirs(self.options.save_dir, exist_ok=True)
        save_checkpoint(state, path)
        self.state.last_checkpoint = path
        LOGGER.info("saved checkpoint %s", path)
        return path

    def _run_epoch(self) -> bool:
        """Train from the current position to the end of the epoch or of the schedule."""
        loader = self.loader_factory(self.state.epoch, self.state.batch)
        every = self.cfg.TRAIN.CHECKPOINT_EVERY_ITERS
        with self.log.epoch(
            f"epoch {self.state.epoch + 1}", self.state.batch, self.iters_per_epoch
        ):
            tick = time.perf_counter()
            for batch in loader:
                loaded = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                losses = self._train_step(batch)
                self.state.batch += 1
                self.log.step(
                    losses,
                    self.state.global_step,
                    lr,
                    data_s=loaded - tick,
                    compute_s=time.perf_counter() - loaded,
                )
                if self.log.due(self.state.global_step):
                    self._flush_log()
                if self.finished():
                    break
                if (
                    every > 0
                    and self.state.global_step % every == 0
                    and self.state.batch < self.iters_per_epoch
                ):
                    self.save()
                tick = time.perf_counter()
            self._flush_log()
        return self.state.batch >= self.iters_per_epoch

    def _train_step(self, batch: Sequence) -> Optional[Dict[str, torch.Tensor]]:
        """One iteration; returns its detached losses (on the device, with the total as
        ``loss``), or None when the batch was skipped."""
        im_data, im_info, gt_boxes, num_boxes = (
            t.to(self.device, non_blocking=True) for t in batch[:4]
        )
        image_ids = batch[4] if len(batch) > 4 else None
        buffers = self._snapshot_buffers()
        with self._autocast():
            outputs = self.wrapped(im_data, im_info, gt_boxes, num_boxes)
        losses = {name: value.float().mean() for name, value in outputs.items()}
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = self._unscale_and_clip()
        loss_ok, grads_ok = self._finite_flags(loss, grad_norm)
        if not (loss_ok and grads_ok):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
                if loss_ok:
                    LOGGER.info(
                        "float16 gradients overflowed at step %d: step skipped, loss scale lowered",
                        self.state.global_step,
                    )
                    return None
            self._non_finite(
                losses if not loss_ok else {"grad_norm": grad_norm, **losses}, image_ids, buffers
            )
            return None
        self.optimizer.step()  # gradients are unscaled and known finite: no scaler.step sync
        if self.scaler.is_enabled():
            self.scaler.update()
        self.scheduler.step()
        self.state.global_step += 1
        losses["loss"] = loss
        return {name: value.detach() for name, value in losses.items()}

    def _unscale_and_clip(self) -> Optional[torch.Tensor]:
        """Unscale float16 gradients and clip them at TRAIN.CLIP_GRAD_NORM; their total norm
        (a device scalar), or None when neither clipping nor a loss scaler needs it."""
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.TRAIN.CLIP_GRAD_NORM > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.TRAIN.CLIP_GRAD_NORM)
        if self.scaler.is_enabled():
            return torch.nn.utils.get_total_norm([p.grad for p in params])
        return None

    def _finite_flags(
        self, loss: torch.Tensor, grad_norm: Optional[torch.Tensor]
    ) -> Tuple[bool, bool]:
        """(loss finite, gradients finite), agreed by every rank: the step's one host read."""
        grads_ok = (
            torch.isfinite(grad_norm)
            if grad_norm is not None
            else torch.ones((), dtype=torch.bool, device=loss.device)
        )
        flags = torch.stack([torch.isfinite(loss.detach()), grads_ok.to(loss.device)])
        loss_ok, grads_finite = all_ranks_agree(flags, self.dist_info).tolist()
        return bool(loss_ok), bool(grads_finite)

    def _snapshot_buffers(self) -> Optional[Dict[str, torch.Tensor]]:
        """Copies of the BatchNorm statistics, restored when a batch is skipped."""
        if self.cfg.TRAIN.NONFINITE_POLICY != "skip":
            return None
        return {name: buf.detach().clone() for name, buf in self.model.named_buffers()}

    def _non_finite(
        self, losses: Dict[str, torch.Tensor], image_ids, buffers: Optional[Dict[str, torch.Tensor]]
    ) -> None:
        values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        where = (
            f"epoch {self.state.epoch + 1}, iteration {self.state.batch} "
            f"(step {self.state.global_step})"
        )
        images = ", ".join(str(i) for i in image_ids) if image_ids is not None else "unknown"
        message = f"non-finite loss at {where}: {values}; images: {images}"
        if self.cfg.TRAIN.NONFINITE_POLICY == "stop":
            raise NonFiniteLossError(message + " (set TRAIN.NONFINITE_POLICY skip to skip)")
        current = dict(self.model.named_buffers())
        for name, saved in (buffers or {}).items():
            current[name].copy_(saved)
        self.state.skipped_batches += 1
        LOGGER.warning("%s; batch skipped (%d so far)", message, self.state.skipped_batches)

    def _flush_log(self) -> None:
        where = (
            f"[session {self.options.session}][epoch {self.state.epoch + 1}]"
            f"[iter {self.state.batch}/{self.iters_per_epoch}]"
        )
        self.log.flush(where, self.images_per_step, self._remaining_iters())

    def _remaining_iters(self) -> int:
        """Iterations left to the end of the schedule (TRAIN.EPOCHS, capped by MAX_ITERS)."""
        done = self.state.epoch * self.iters_per_epoch + self.state.batch
        remaining = self.cfg.TRAIN.EPOCHS * self.iters_per_epoch - done
        if self.cfg.TRAIN.MAX_ITERS > 0:
            remaining = min(remaining, self.cfg.TRAIN.MAX_ITERS - self.state.global_step)
        return max(remaining, 0)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _write_scalars(self, step: int, record: Dict[str, float]) -> None:
        for name, value in record.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def _make_writer(self):
        if not (self.options.use_tfb and self.dist_info.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=os.path.join(self.options.save_dir, "tensorboard"))
