"""Assemble a training run from a config: data, model, device placement, wrappers, trainer."""

from __future__ import annotations

import logging
import os
from typing import Optional

import torch
from torch import nn

from fasterrcnn.checkpoint import load_weights, remove_stale_partials
from fasterrcnn.config import Config, dump_config
from fasterrcnn.data import build_train_loader, combined_roidb
from fasterrcnn.engine.amp import AmpSetting
from fasterrcnn.engine.distributed import DistInfo
from fasterrcnn.engine.trainer import Trainer, TrainOptions
from fasterrcnn.model import build_model

LOGGER = logging.getLogger(__name__)


def build_training_run(
    cfg: Config,
    output_dir: str,
    session: int = 1,
    device: str = "cpu",
    dist_info: DistInfo = DistInfo(),
    multi_gpu: bool = False,
    amp: AmpSetting = None,
    use_tfb: bool = False,
    progress: bool = True,
    resume: Optional[str] = None,
    start_epoch: int = 1,
) -> Trainer:
    """A :class:`Trainer` ready to ``train()``.

    Args:
        cfg: the config; DATASET.TRAIN names the imdb(s) ('+'-joined for a union).
        output_dir: where checkpoints (and TensorBoard logs) go.
        session: the reference's session number, part of checkpoint names.
        device: 'cpu', 'cuda' or 'cuda:N'; under torchrun each rank uses its local GPU.
        dist_info: rank and world size when launched by torchrun.
        multi_gpu: wrap in DataParallel over every visible GPU (single process).
        amp: mixed precision: None (the config's TRAIN.AMP), ``"none"`` (float32), True /
            ``"auto"`` (float16 on CUDA, bfloat16 on a CPU with fast bfloat16), ``"bf16"`` or
            ``"fp16"``.
        progress: a progress bar when stderr is a terminal (plain log lines otherwise).
        resume: a checkpoint to continue from (a whole training state; for weights alone,
            ``TRAIN.INIT_WEIGHTS`` starts a fresh run from them).
        start_epoch: 1-based epoch where a fresh run's schedule starts (ignored when resuming).
    """
    if dist_info.enabled and torch.device(device).type == "cuda":
        device = f"cuda:{dist_info.local_rank}"
    imdb, roidb, ratio_list, ratio_index = combined_roidb(cfg.DATASET.TRAIN, cfg, training=True)
    LOGGER.info(
        "%s: %d training images%s of %d classes",
        cfg.DATASET.TRAIN,
        len(roidb),
        " (with flips)" if cfg.TRAIN.USE_FLIPPED else "",
        imdb.num_classes,
    )
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg, imdb.num_classes)
    if cfg.TRAIN.INIT_WEIGHTS and resume is None:
        load_weights(model, cfg.TRAIN.INIT_WEIGHTS, imdb.classes)
    model.generator.manual_seed(cfg.RNG_SEED + dist_info.rank)
    torch.manual_seed(cfg.RNG_SEED + dist_info.rank)
    model.to(device)
    wrapped = _wrap(model, device, dist_info, multi_gpu)

    loader = build_train_loader(
        cfg,
        roidb,
        ratio_list,
        ratio_index,
        batch_size=cfg.TRAIN.IMS_PER_BATCH,
        num_workers=cfg.TRAIN.NUM_WORKERS,
        seed=cfg.RNG_SEED,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        pin_memory=torch.device(device).type == "cuda",
    )

    def loader_factory(epoch: int, start_batch: int):
        """The one loader (its workers persist), moved to ``epoch`` from ``start_batch``."""
        loader.batch_sampler.set_epoch(epoch, start_batch)
        return loader

    iters_per_epoch = loader.batch_sampler.batches_per_epoch()
    options = TrainOptions(
        save_dir=output_dir,
        session=session,
        device=device,
        disp_interval=cfg.TRAIN.DISPLAY,
        use_tfb=use_tfb,
        amp=cfg.TRAIN.AMP if amp is None else amp,
        progress=progress,
    )
    trainer = Trainer(
        cfg,
        model,
        loader_factory,
        iters_per_epoch,
        imdb.classes,
        options,
        dist_info=dist_info,
        wrapped=wrapped,
    )
    if resume is not None:
        trainer.resume(resume)
    elif start_epoch > 1:
        trainer.start_at_epoch(start_epoch - 1)
    if dist_info.is_main:
        os.makedirs(output_dir, exist_ok=True)
        remove_stale_partials(output_dir)
        config_path = os.path.join(output_dir, f"config_{session}.yml")
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(dump_config(cfg))
        LOGGER.info("config written to %s", config_path)
    return trainer


def _wrap(model: nn.Module, device: str, dist_info: DistInfo, multi_gpu: bool) -> nn.Module:
    """DistributedDataParallel under torchrun, DataParallel with --mGPUs, else the model."""
    if dist_info.enabled:
        device_ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if multi_gpu and torch.cuda.device_count() > 1:
        return nn.DataParallel(model)
    return model
