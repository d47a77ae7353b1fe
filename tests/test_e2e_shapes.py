"""End to end on the generated shapes set: train briefly, the losses fall, mAP clears a bar.

A shortened version of the README's first command (tools/quickstart.sh): a narrower network at
a smaller scale for a few hundred iterations.  The bar is far below what the full recipe reaches
(see the README) but far above chance: an untrained detector scores about 0.
"""

from pathlib import Path

import numpy as np

from fasterrcnn.config import load_config
from fasterrcnn.data import TestImageDataset, get_imdb
from fasterrcnn.engine.inference import detect_dataset, load_model_from_checkpoint
from fasterrcnn.engine.training_run import build_training_run
from fasterrcnn.eval import voc_evaluate

SHAPES_YML = Path(__file__).resolve().parents[1] / "cfgs" / "shapes.yml"
ITERATIONS = 400
MAP_BAR = 0.25


def test_short_training_learns_to_detect_shapes(tmp_path):
    overrides = [
        "DATA_DIR", str(tmp_path / "data"),
        "DATASET.SHAPES_NUM_TRAIN", 200, "DATASET.SHAPES_NUM_TEST", 40,
        "TRAIN.SCALES", [192], "TRAIN.MAX_SIZE", 320, "TEST.SCALES", [192], "TEST.MAX_SIZE", 320,
        "TRAIN.MAX_ITERS", ITERATIONS, "TRAIN.EPOCHS", 100, "TRAIN.LR_DECAY_STEPS", [100],
        "TRAIN.WARMUP_ITERS", 50, "TRAIN.DISPLAY", 100,
    ]
    cfg = load_config(str(SHAPES_YML), overrides)
    trainer = build_training_run(cfg, output_dir=str(tmp_path / "models"), progress=False)
    checkpoint = trainer.train()

    losses = np.array([record["loss"] for record in trainer.state.history])
    assert len(losses) == ITERATIONS and np.isfinite(losses).all()
    assert losses[-50:].mean() < 0.6 * losses[:20].mean(), (losses[:20].mean(), losses[-50:].mean())

    model, test_cfg, classes = load_model_from_checkpoint(checkpoint)
    imdb = get_imdb(cfg.DATASET.TEST, cfg.DATA_DIR, cfg=cfg)
    all_boxes, _ = detect_dataset(model, TestImageDataset(imdb, test_cfg), progress=False)
    result = voc_evaluate(all_boxes, imdb.annotations(), classes)
    assert result["map"] > MAP_BAR, result
