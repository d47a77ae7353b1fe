"""Shared fixtures: a tiny generated shapes dataset and a tiny model config for engine tests."""

import os
from pathlib import Path

import pytest
import torch

from fasterrcnn import ops
from fasterrcnn.config import load_config
from fasterrcnn.data import ensure_shapes
from fasterrcnn.ops._ext import extension

TINY_SHAPES = {"num_train": 12, "num_test": 6, "seed": 0}


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """DATA_DIR holding a 12-train / 6-test shapes set, generated once per test session."""
    data_dir = tmp_path_factory.mktemp("data")
    ensure_shapes(str(data_dir), **TINY_SHAPES)
    return str(data_dir)


# fmt: off
TINY_MODEL = [
    "BACKBONE.WIDTH_MULT", "0.125", "RPN_CHANNELS", "16", "ANCHOR_SCALES", "[1, 2, 4]",
    "TRAIN.BATCH_SIZE", "16", "TRAIN.RPN_BATCHSIZE", "32", "TRAIN.RPN_PRE_NMS_TOP_N", "200",
    "TRAIN.RPN_POST_NMS_TOP_N", "40", "TRAIN.RPN_MIN_SIZE", "2", "TEST.RPN_PRE_NMS_TOP_N", "200",
    "TEST.RPN_POST_NMS_TOP_N", "30", "TEST.RPN_MIN_SIZE", "2",
]
# fmt: on
"""Overrides for a model on synthetic tensors of about 64x96 px: an eighth-width backbone, 16
RPN channels, small anchors and few proposals and RoIs (any NET)."""


def tiny_overrides(data_dir: str):
    """A quarter-width ResNet-18 at 128 px with few RoIs: a training step takes ~0.1 s.

    With flips, the 12 training images make 12 batches of 2 per epoch."""
    # fmt: off
    return [
        "DATA_DIR", data_dir, "DATASET.SHAPES_NUM_TRAIN", TINY_SHAPES["num_train"],
        "DATASET.SHAPES_NUM_TEST", TINY_SHAPES["num_test"], "BACKBONE.WIDTH_MULT", 0.25,
        "RPN_CHANNELS", 32, "TRAIN.SCALES", [128], "TRAIN.MAX_SIZE", 200, "TEST.SCALES", [128],
        "TEST.MAX_SIZE", 200, "TRAIN.BATCH_SIZE", 16, "TRAIN.RPN_BATCHSIZE", 64,
        "TRAIN.RPN_PRE_NMS_TOP_N", 300, "TRAIN.RPN_POST_NMS_TOP_N", 50,
        "TEST.RPN_PRE_NMS_TOP_N", 300, "TEST.RPN_POST_NMS_TOP_N", 30, "ANCHOR_SCALES", [1, 2, 4],
        "TRAIN.IMS_PER_BATCH", 2, "TRAIN.WARMUP_ITERS", 0, "TRAIN.DISPLAY", 1000,
        "TRAIN.USE_FLIPPED", True,
    ]
    # fmt: on


def train_tiny_checkpoint(save_dir, data_dir: str, iters: int, session: int = 1) -> Path:
    """Train the :func:`tiny_overrides` model for ``iters`` iterations (batch 2) through the
    train command and return its checkpoint, ``save_dir/res18/shapes/faster_rcnn_S_1_N.pth``."""
    from fasterrcnn.commands import train

    argv = [
        "--dataset", "shapes", "--save_dir", str(save_dir), "--max_iters", str(iters),
        "--quiet", "--device", "cpu", "--s", str(session), "--bs", "2",
        "--set", *(str(v) for v in tiny_overrides(data_dir)),
    ]  # fmt: skip
    assert train.main(argv) == 0
    path = Path(save_dir) / "res18" / "shapes" / f"faster_rcnn_{session}_1_{iters}.pth"
    assert path.is_file()
    return path


@pytest.fixture
def tiny_cfg(tiny_data_dir):
    """cfgs/shapes.yml shrunk by :func:`tiny_overrides`."""
    from pathlib import Path

    shapes_yml = Path(__file__).resolve().parents[1] / "cfgs" / "shapes.yml"
    return load_config(str(shapes_yml), tiny_overrides(tiny_data_dir))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests single-threaded (tiny models are faster so on a busy 2-core machine).

    Request it per test, from a module-scoped fixture, or for a whole module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; the thread count is restored after
    the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["cpp", "torch"])
def backend(request, monkeypatch):
    """Run a test with the compiled CPU kernels ('cpp') or the pure-torch fallback ('torch')."""
    if request.param == "torch":
        monkeypatch.setenv("FASTERRCNN_OPS", "torch")
    else:
        monkeypatch.delenv("FASTERRCNN_OPS", raising=False)
        if extension() is None and os.environ.get("FASTERRCNN_ALLOW_NO_EXT") != "1":
            pytest.fail("fasterrcnn._C is not built (set FASTERRCNN_ALLOW_NO_EXT=1 to allow)")
    expected = "cpp" if request.param == "cpp" and extension() is not None else "torch"
    assert ops.backend() == expected
    return request.param


def _devices() -> list:
    """The CPU always; CUDA as a second parameter, skipped with the reason where there is none."""
    cuda = pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available"),
        ],
    )
    return ["cpu", cuda]


@pytest.fixture(params=_devices())
def device(request) -> torch.device:
    """Run a test on every available device: 'cpu', and 'cuda' where a GPU is present."""
    return torch.device(request.param)
