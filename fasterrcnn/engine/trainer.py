"""The training loop: one object that owns the model, optimizer, schedule and checkpoints.

A run is a sequence of epochs; within an epoch the ratio-grouped loader gives batches in an order
fixed by (seed, epoch).  The trainer's position is (epoch, batch): checkpoints store it with
every piece of state that shapes the rest of the run (weights, optimizer moments, schedule,
the sampling generator, torch's global RNG), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence

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
from fasterrcnn.engine.distributed import DistInfo, all_ranks_true
from fasterrcnn.engine.optim import build_optimizer, build_scheduler

LOGGER = logging.getLogger(__name__)

LoaderFactory = Callable[[int, int], Iterable]
"""``loader_factory(epoch, start_batch)`` -> iterable of batches of that epoch from start_batch."""


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite and TRAIN.NONFINITE_POLICY is 'stop'."""


@dataclass
class TrainOptions:
    """Run options that are not part of the model's config (they come from the command line)."""

    save_dir: str
    session: int = 1
    device: str = "cpu"
    disp_interval: int = 10
    use_tfb: bool = False
    amp: bool = False
    progress: bool = True


@dataclass
class TrainState:
    """Where the run stands: the epoch in progress (0-based) and the batches done in it."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    skipped_batches: int = 0
    last_checkpoint: Optional[str] = None
    history: List[Dict[str, float]] = field(default_factory=list)


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

    def __init__(self, cfg: Config, model: nn.Module, loader_factory: LoaderFactory,
                 iters_per_epoch: int, classes: Sequence[str], options: TrainOptions,
                 dist_info: DistInfo = DistInfo(), wrapped: Optional[nn.Module] = None):
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
        self.scaler = torch.amp.GradScaler("cuda",
                                           enabled=options.amp and self.device.type == "cuda")
        self.writer = self._make_writer()

    def finished(self) -> bool:
        """True after TRAIN.EPOCHS epochs, or TRAIN.MAX_ITERS optimizer steps when that is set."""
        max_iters = self.cfg.TRAIN.MAX_ITERS
        return self.state.epoch >= self.cfg.TRAIN.EPOCHS or (
            max_iters > 0 and self.state.global_step >= max_iters)

    def resume(self, path: str) -> None:
        """Load a checkpoint written by :meth:`save` and continue from its position."""
        ckpt = load_checkpoint(path, map_location="cpu")
        check_resumable(ckpt, path)
        check_classes(ckpt.get("classes", self.classes), self.classes, path,
                      f"this run's dataset {self.cfg.DATASET.TRAIN}")
        load_model_state(self.model, ckpt["model"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(epoch=ckpt["epoch"], batch=ckpt["iteration"],
                                global_step=ckpt["global_step"],
                                skipped_batches=ckpt.get("skipped_batches", 0),
                                last_checkpoint=path)
        rng = ckpt["rng"]
        self.model.generator.set_state(rng["sampling"])
        torch.set_rng_state(rng["torch"])
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
        LOGGER.info("resumed from %s at epoch %d, batch %d (step %d)", path,
                    self.state.epoch + 1, self.state.batch, self.state.global_step)

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
        LOGGER.warning("%s was written with %d images per step, this run takes %d: resuming "
                       "at the same number of images seen (batch %d, step %d); the data order "
                       "from here differs from the original run's", path, saved_images,
                       self.images_per_step, self.state.batch, self.state.global_step)

    def _reseed_sampling(self) -> None:
        """A sampling stream of this rank at this step (the checkpoint holds rank 0's only)."""
        self.model.generator.manual_seed(
            self.cfg.RNG_SEED + 1000003 * self.state.global_step + self.dist_info.rank)

    def _set_schedule_position(self, step: int) -> None:
        self.scheduler.last_epoch = step
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                          self.scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(step)

    def start_at_epoch(self, epoch: int) -> None:
        """Start a fresh run at ``epoch`` (0-based): the schedule and data order jump there."""
        self.state = TrainState(epoch=epoch, global_step=epoch * self.iters_per_epoch)
        self._set_schedule_position(self.state.global_step)

    def train(self) -> Optional[str]:
        """Run to the end of the schedule; returns the path of the last checkpoint written."""
        self.wrapped.train()
        while not self.finished():
            finished_epoch = self._run_epoch()
            if finished_epoch:
                self.state.epoch += 1
                self.state.batch = 0
                self.save(completed_epoch=True)
            else:
                self.save()
        if self.writer is not None:
            self.writer.close()
        return self.state.last_checkpoint

    def save(self, completed_epoch: bool = False) -> Optional[str]:
        """Write a checkpoint (rank 0 only) named as the reference names them."""
        if not self.dist_info.is_main:
            return None
        epoch = self.state.epoch if completed_epoch else self.state.epoch + 1
        batch = self.iters_per_epoch if completed_epoch else self.state.batch
        path = os.path.join(self.options.save_dir,
                            checkpoint_name(self.options.session, epoch, batch))
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
            "rng": {"sampling": self.model.generator.get_state(), "torch": torch.get_rng_state()},
        }
        os.makedirs(self.options.save_dir, exist_ok=True)
        save_checkpoint(state, path)
        self.state.last_checkpoint = path
        LOGGER.info("saved checkpoint %s", path)
        return path

    def _run_epoch(self) -> bool:
        """Train from the current position to the end of the epoch or of the schedule."""
        loader = self.loader_factory(self.state.epoch, self.state.batch)
        progress = self._progress_bar()
        every = self.cfg.TRAIN.CHECKPOINT_EVERY_ITERS
        for batch in loader:
            self._train_step(batch, progress)
            self.state.batch += 1
            if self.finished():
                break
            if every > 0 and self.state.global_step % every == 0 and \
                    self.state.batch < self.iters_per_epoch:
                self.save()
        if progress is not None:
            progress.close()
        return self.state.batch >= self.iters_per_epoch

    def _train_step(self, batch: Sequence, progress) -> None:
        started = time.perf_counter()
        im_data, im_info, gt_boxes, num_boxes = (t.to(self.device) for t in batch[:4])
        image_ids = batch[4] if len(batch) > 4 else None
        buffers = self._snapshot_buffers()
        with self._autocast():
            losses = self.wrapped(im_data, im_info, gt_boxes, num_boxes)
        losses = {name: value.float().mean() for name, value in losses.items()}
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        if not all_ranks_true(bool(torch.isfinite(loss)), self.dist_info, self.device):
            self._non_finite(losses, image_ids, buffers)
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.TRAIN.CLIP_GRAD_NORM) \
            if self.cfg.TRAIN.CLIP_GRAD_NORM > 0 else torch.tensor(0.0)
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite({"grad_norm": grad_norm, **losses}, image_ids, buffers)
            return
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
            LOGGER.info("float16 gradients overflowed: step skipped, loss scale lowered")
            return
        self.scheduler.step()
        self.state.global_step += 1
        self._report(losses, loss, im_data.shape[0], time.perf_counter() - started, progress)

    def _snapshot_buffers(self) -> Optional[Dict[str, torch.Tensor]]:
        """Copies of the BatchNorm statistics, restored when a batch is skipped."""
        if self.cfg.TRAIN.NONFINITE_POLICY != "skip":
            return None
        return {name: buf.detach().clone() for name, buf in self.model.named_buffers()}

    def _non_finite(self, losses: Dict[str, torch.Tensor], image_ids,
                    buffers: Optional[Dict[str, torch.Tensor]]) -> None:
        values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        where = (f"epoch {self.state.epoch + 1}, iteration {self.state.batch} "
                 f"(step {self.state.global_step})")
        images = ", ".join(str(i) for i in image_ids) if image_ids is not None else "unknown"
        message = f"non-finite loss at {where}: {values}; images: {images}"
        if self.cfg.TRAIN.NONFINITE_POLICY == "stop":
            raise NonFiniteLossError(message + " (set TRAIN.NONFINITE_POLICY skip to skip)")
        current = dict(self.model.named_buffers())
        for name, saved in (buffers or {}).items():
            current[name].copy_(saved)
        self.state.skipped_batches += 1
        LOGGER.warning("%s; batch skipped (%d so far)", message, self.state.skipped_batches)

    def _report(self, losses: Dict[str, torch.Tensor], loss: torch.Tensor, batch_size: int,
                seconds: float, progress) -> None:
        if not self.dist_info.is_main:
            return
        record = {name: float(value.detach()) for name, value in losses.items()}
        record["loss"] = float(loss.detach())
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["images_per_s"] = batch_size * self.dist_info.world_size / max(seconds, 1e-9)
        self.state.history.append(record)
        step = self.state.global_step
        if progress is not None:
            progress.update(1)
            progress.set_postfix({k: f"{v:.3g}" for k, v in record.items()}, refresh=False)
        if self.writer is not None:
            for name, value in record.items():
                self.writer.add_scalar(f"train/{name}", value, step)
        if step % max(self.options.disp_interval, 1) == 0:
            LOGGER.info("[session %d][epoch %d][iter %d/%d] loss %.4f, rpn_cls %.4f, "
                        "rpn_box %.4f, rcnn_cls %.4f, rcnn_box %.4f, lr %.2e, %.1f img/s",
                        self.options.session, self.state.epoch + 1, self.state.batch + 1,
                        self.iters_per_epoch, record["loss"], record["rpn_cls"],
                        record["rpn_box"], record["rcnn_cls"], record["rcnn_box"], record["lr"],
                        record["images_per_s"])

    def _autocast(self):
        if not self.options.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _progress_bar(self):
        if not (self.options.progress and self.dist_info.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=self.iters_per_epoch, initial=self.state.batch,
                    desc=f"epoch {self.state.epoch + 1}", mininterval=2.0, leave=False)

    def _make_writer(self):
        if not (self.options.use_tfb and self.dist_info.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=os.path.join(self.options.save_dir, "tensorboard"))

