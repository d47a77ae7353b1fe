"""End to end on the generated shapes set: train briefly, the losses fall, mAP clears a bar.

A shortened version of the README's first command (tools/quickstart.sh): the same network and
solver (cfgs/shapes.yml: Adam, cosine over the run) at a smaller scale on fewer images for 400
iterations (about 2.5 minutes on 2 cores).  Measured here: test mAP 0.669 with this recipe
(stride-8 features, up to 3/4 foreground RoIs; 160 s), 0.498 with the stride-16 one (half
foreground; 137 s), 0.523 with Adam 1e-3 and 32 RoIs per image (190 s), 0.21 with SGD and step
decay.  The bar, 0.55, sits about 0.12 below the measured value (float differences between CPUs
change the run a little); the stride-16 recipe and the SGD one fail it."""

from pathlib import Path

import numpy as np
import pytest

from fasterrcnn.config import load_config
from fasterrcnn.data import TestImageDataset, get_imdb
from fasterrcnn.engine.inference import detect_dataset, load_model_from_checkpoint
from fasterrcnn.engine.training_run import build_training_run
from fasterrcnn.eval import voc_evaluate

SHAPES_YML = Path(__file__).resolve().parents[1] / "cfgs" / "shapes.yml"
ITERATIONS = 400
MAP_BAR = 0.55


@pytest.mark.slow
def test_short_training_learns_to_detect_shapes(tmp_path):
    # fmt: off
    overrides = [
        "DATA_DIR", str(tmp_path / "data"), "DATASET.SHAPES_NUM_TRAIN", 200,
        "DATASET.SHAPES_NUM_TEST", 40, "TRAIN.SCALES", [192], "TRAIN.MAX_SIZE", 320,
        "TEST.SCALES", [192], "TEST.MAX_SIZE", 320, "TRAIN.MAX_ITERS", ITERATIONS,
        "TRAIN.EPOCHS", ITERATIONS // 50, "TRAIN.WARMUP_ITERS", 50,
        "TRAIN.DISPLAY", 100,
    ]
    # fmt: on
    cfg = load_config(str(SHAPES_YML), overrides)
    trainer = build_training_run(cfg, output_dir=str(tmp_path / "models"), progress=False)
    recorded = []
    trainer.log.listeners.append(lambda step, record: recorded.append(record["loss"]))
    checkpoint = trainer.train()

    losses = np.array(recorded)
    assert len(losses) == ITERATIONS and np.isfinite(losses).all()
    assert losses[-50:].mean() < 0.6 * losses[:20].mean(), (losses[:20].mean(), losses[-50:].mean())

    model, test_cfg, classes = load_model_from_checkpoint(checkpoint)
    imdb = get_imdb(cfg.DATASET.TEST, cfg.DATA_DIR, cfg=cfg)
    all_boxes, _ = detect_dataset(model, TestImageDataset(imdb, test_cfg), progress=False)
    result = voc_evaluate(all_boxes, imdb.annotations(), classes)
    assert result["map"] > MAP_BAR, result
