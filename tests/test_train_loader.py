"""The training loader the trainer reuses: persistent workers follow ``set_epoch``."""

from __future__ import annotations

import logging

import pytest
import torch

from fasterrcnn.config import apply_overrides
from fasterrcnn.data import build_train_loader, combined_roidb
from fasterrcnn.engine.training_run import build_training_run


def _epochs(cfg, workers: int):
    """Batches of epoch 0 cut after 3 (as MAX_ITERS cuts it), resumed at 3, then epoch 1."""
    imdb, roidb, ratio_list, ratio_index = combined_roidb(cfg.DATASET.TRAIN, cfg, True)
    loader = build_train_loader(
        cfg, roidb, ratio_list, ratio_index, batch_size=2, num_workers=workers, seed=1
    )
    assert loader.persistent_workers == (workers > 0) and not loader.pin_memory
    seen = []
    for start, epoch, stop in ((0, 0, 3), (3, 0, None), (0, 1, None)):
        loader.batch_sampler.set_epoch(epoch, start)
        for i, batch in enumerate(loader):
            if i == stop:
                break
            seen.append((batch.image_paths, batch.im_data.sum().item()))
    return seen


def test_persistent_workers_give_the_batches_of_the_main_process(tiny_cfg, one_thread):
    in_process = _epochs(tiny_cfg, 0)
    assert len(in_process) == 24  # 12 batches per epoch with flips
    assert _epochs(tiny_cfg, 1) == in_process


@pytest.mark.parametrize("flips", [True, False])
def test_flips_are_mentioned_only_when_on(tiny_cfg, tmp_path, caplog, flips):
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.training_run")
    cfg = apply_overrides(tiny_cfg, ["TRAIN.USE_FLIPPED", flips])
    trainer = build_training_run(cfg, output_dir=str(tmp_path), progress=False)
    line = next(r.getMessage() for r in caplog.records if "training images" in r.getMessage())
    assert ("(with flips)" in line) == flips
    assert line.startswith(f"shapes_train: {12 * (2 if flips else 1)} training images")
    assert trainer.iters_per_epoch == (12 if flips else 6)
    assert isinstance(trainer.loader_factory(0, 2), torch.utils.data.DataLoader)
