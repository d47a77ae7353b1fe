"""Distributed data-parallel training on the CPU (gloo, 2 processes).

Gradient equivalence: one step of 2 ranks x 1 image under DistributedDataParallel must give the
gradients of 1 process x 2 images.  That holds when (a) the model does not mix images (GroupNorm
here; frozen BN would do too, trainable BN would not) and (b) both runs sample the same anchors
and RoIs.  The ranks' sampling generators differ (the trainer seeds RNG_SEED + rank) and a
single process draws image 1's samples after image 0's, so instead of aligning generator
streams the config makes the sampling cover everything, which no draw can change:

* anchor target layer: RPN_BATCHSIZE larger than the number of anchors (no subsampling) and
  RPN_NEGATIVE_OVERLAP == RPN_POSITIVE_OVERLAP, so every inside anchor is fg or bg and both
  images (same size) have the same number of sampled anchors.  ``rpn_cls`` is a mean over the
  batch's sampled anchors, which equals the mean of the per-image means only then;
* proposal target layer: RPN_POST_NMS_TOP_N proposals per image (the random-init RPN yields more
  than that after NMS), every candidate fg or bg (BG_THRESH_LO 0, BG_THRESH_HI == FG_THRESH),
  FG_FRACTION 1 and BATCH_SIZE = proposals + gt boxes, so each image's RoIs are all its
  candidates (drawn as a permutation; the losses are order-free).

The comparison runs in float64, so 1e-5 leaves no room for a real difference to hide.

The same 2-rank run checks ``all_ranks_true`` (the collective AND a DDP trainer needs to skip a
non-finite batch on all ranks alike).  The short 2-rank training goes through
``tools/trainval_net.py`` with the environment torchrun sets; a single process then resumes its
checkpoint.
"""

from __future__ import annotations

import os
import socket
from typing import Dict, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from trainer_testing import StubDetector, stub_batches, stub_cfg

from fasterrcnn.config import Config, load_config
from fasterrcnn.engine.distributed import (
    DistInfo,
    all_ranks_agree,
    all_ranks_true,
    init_distributed,
    shutdown,
)
from fasterrcnn.engine.trainer import NonFiniteLossError, Trainer, TrainOptions
from fasterrcnn.model import build_model

PROPOSALS = 12
GT_PER_IMAGE = 2
HEIGHT, WIDTH = 64, 96
NUM_CLASSES = 4

# fmt: off
EXACT_SAMPLING = [
    "NET", "res18", "BACKBONE.WIDTH_MULT", "0.125", "BACKBONE.NORM", "gn",
    "BACKBONE.STYLE", "pytorch", "RESNET.FIXED_BLOCKS", "0", "PIXEL_STDS", "[57.4, 57.1, 58.4]",
    "RPN_CHANNELS", "16", "ANCHOR_SCALES", "[1, 2, 4]", "TRAIN.RPN_BATCHSIZE", "1000000",
    "TRAIN.RPN_POSITIVE_OVERLAP", "0.5", "TRAIN.RPN_NEGATIVE_OVERLAP", "0.5",
    "TRAIN.RPN_PRE_NMS_TOP_N", "300", "TRAIN.RPN_POST_NMS_TOP_N", str(PROPOSALS),
    "TRAIN.RPN_MIN_SIZE", "2", "TRAIN.FG_FRACTION", "1.0", "TRAIN.FG_THRESH", "0.5",
    "TRAIN.BG_THRESH_HI", "0.5", "TRAIN.BG_THRESH_LO", "0.0",
    "TRAIN.BATCH_SIZE", str(PROPOSALS + GT_PER_IMAGE),
]
# fmt: on


pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_env(rank: int, world_size: int, port: int) -> Dict[str, str]:
    """The variables torchrun sets for one worker."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def exact_cfg() -> Config:
    return load_config(None, EXACT_SAMPLING)


def two_images():
    """Two different float64 images of one size, each with GT_PER_IMAGE different gt boxes."""
    gen = torch.Generator().manual_seed(7)
    im_data = torch.randn(2, 3, HEIGHT, WIDTH, generator=gen, dtype=torch.float64)
    im_info = torch.tensor([[HEIGHT, WIDTH, 1.0]] * 2, dtype=torch.float64)
    gt_boxes = torch.tensor(
        [
            [[4.0, 6.0, 40.0, 50.0, 1.0], [50.0, 10.0, 90.0, 40.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
            [
                [30.0, 20.0, 70.0, 60.0, 3.0],
                [2.0, 30.0, 28.0, 62.0, 1.0],
                [0.0, 0.0, 0.0, 0.0, 0.0],
            ],
        ],
        dtype=torch.float64,
    )
    num_boxes = torch.tensor([GT_PER_IMAGE, GT_PER_IMAGE])
    return im_data, im_info, gt_boxes, num_boxes


def fresh_model(cfg: Config) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES).double()
    model.train()
    return model


def gradients(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {
        name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None
    }


def loss_and_grads(module: nn.Module, model: nn.Module, batch) -> Dict[str, torch.Tensor]:
    losses = module(*batch)
    sum(losses.values()).backward()
    return gradients(model)


def _ddp_step_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(torchrun_env(rank, world_size, port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        assert info == DistInfo(rank, world_size, rank) and dist.get_backend() == "gloo"
        cfg = exact_cfg()
        model = fresh_model(cfg)
        model.generator.manual_seed(cfg.RNG_SEED + rank)  # as the training run seeds it
        ddp = nn.parallel.DistributedDataParallel(model)
        batch = tuple(t[rank : rank + 1] for t in two_images())
        sampled = (model.rpn.anchor_target_layer, model.roi_head.proposal_target_layer)
        counts: List[int] = []
        sampled[0].register_forward_hook(
            lambda m, a, out: counts.append(int((out.labels != -1).sum()))
        )
        sampled[1].register_forward_hook(lambda m, a, out: counts.append(out[0].shape[1]))
        grads = loss_and_grads(ddp, model, batch)
        agree = [
            all_ranks_true(True, info),
            all_ranks_true(rank != 1, info),
            all_ranks_true(False, info),
        ]
        torch.save(
            {"grads": grads, "counts": counts, "agree": agree},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        shutdown(info)


@pytest.mark.slow
def test_two_ranks_of_one_image_equal_one_process_of_two(tmp_path):
    world_size = 2
    mp.spawn(
        _ddp_step_worker,
        args=(world_size, free_port(), str(tmp_path)),
        nprocs=world_size,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]

    cfg = exact_cfg()
    model = fresh_model(cfg)
    expected = loss_and_grads(model, model, two_images())
    # Each image: all its inside anchors sampled (same count), all its candidates as RoIs.
    anchor_counts = [r["counts"][0] for r in ranks]
    assert anchor_counts[0] == anchor_counts[1] > 0
    assert [r["counts"][1] for r in ranks] == [PROPOSALS + GT_PER_IMAGE] * world_size

    for r in ranks:  # DDP averaged the gradients: every rank holds the same ones
        assert r["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(
                r["grads"][name], grad, rtol=1e-5, atol=1e-9, msg=f"gradient of {name}"
            )

    # all_ranks_true is a collective AND: rank 1 saying False makes every rank see False.
    assert [r["agree"] for r in ranks] == [[True, False, False]] * world_size

    # Not vacuous: one image alone gives clearly different gradients.
    alone = loss_and_grads(
        model_alone := fresh_model(cfg), model_alone, tuple(t[:1] for t in two_images())
    )
    diff = max(float((alone[n] - expected[n]).abs().max()) for n in expected)
    assert diff > 1e-3


def test_all_ranks_true_in_one_process_is_the_flag():
    assert all_ranks_true(True, DistInfo()) and not all_ranks_true(False, DistInfo())
    flags = torch.tensor([True, False])
    assert all_ranks_agree(flags, DistInfo()).tolist() == [True, False]


def _non_finite_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Rank 1 alone sees a NaN loss on its 2nd batch; both ranks must take the same decision."""
    os.environ.update(torchrun_env(rank, world_size, port))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        results = {}
        for policy in ("skip", "stop"):
            model = StubDetector(poison_at=2 if rank == 1 else None)
            batches = stub_batches(3)
            options = TrainOptions(save_dir=out_dir, disp_interval=1, progress=False)
            trainer = Trainer(
                stub_cfg("TRAIN.NONFINITE_POLICY", policy, "TRAIN.MAX_ITERS", 2),
                model,
                lambda epoch, start, b=batches: b[start:],
                len(batches),
                ("__background__", "a"),
                options,
                dist_info=info,
                wrapped=nn.parallel.DistributedDataParallel(model),
            )
            try:
                trainer._run_epoch()
                outcome = "ran"
            except NonFiniteLossError:
                outcome = "stopped"
            results[policy] = [
                outcome,
                trainer.state.skipped_batches,
                trainer.state.global_step,
                model.weight.detach().clone(),
            ]
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown(info)


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_is_skipped_or_stops_on_every_rank(tmp_path):
    world_size = 2
    mp.spawn(
        _non_finite_worker,
        args=(world_size, free_port(), str(tmp_path)),
        nprocs=world_size,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    for r in ranks:
        assert r["skip"][:3] == ["ran", 1, 2]  # batch 2 skipped everywhere, batch 3 stepped
        assert r["stop"][:3] == ["stopped", 0, 1]
    assert torch.equal(ranks[0]["skip"][3], ranks[1]["skip"][3])
    assert torch.isfinite(ranks[0]["skip"][3]).all()


# --------------------------------------------------------------------------- training run
# fmt: off
TRAIN_ARGS = [
    "--dataset", "shapes", "--quiet", "--device", "cpu", "--bs", "1", "--nw", "0", "--set",
    "DATASET.SHAPES_NUM_TRAIN", "8", "DATASET.SHAPES_NUM_TEST", "2", "TRAIN.SCALES", "[96]",
    "TRAIN.MAX_SIZE", "160", "TEST.SCALES", "[96]", "TEST.MAX_SIZE", "160",
    "BACKBONE.WIDTH_MULT", "0.125", "BACKBONE.NORM", "gn", "RPN_CHANNELS", "16",
    "TRAIN.BATCH_SIZE", "16", "TRAIN.RPN_BATCHSIZE", "32", "TRAIN.USE_FLIPPED", "False",
    "TRAIN.RPN_PRE_NMS_TOP_N", "200", "TRAIN.RPN_POST_NMS_TOP_N", "40", "TRAIN.WARMUP_ITERS", "0",
    "TRAIN.DISPLAY", "1",
]
# fmt: on


def _train_args(tmp_path, *extra: str) -> List[str]:
    return (
        ["--save_dir", str(tmp_path / "models")]
        + list(extra)
        + TRAIN_ARGS
        + ["DATA_DIR", str(tmp_path / "data")]
    )


def _trainval_worker(rank: int, world_size: int, port: int, argv: List[str]) -> None:
    os.environ.update(torchrun_env(rank, world_size, port))
    torch.set_num_threads(1)
    from fasterrcnn.commands import train as trainval_net

    assert trainval_net.main(argv) == 0


def _checkpoints(tmp_path) -> List[str]:
    found = []
    for root, _, files in os.walk(tmp_path / "models"):
        found += [os.path.join(root, f) for f in files if f.endswith(".pth")]
    return sorted(found, key=os.path.getmtime)


@pytest.mark.slow
def test_two_rank_training_checkpoint_resumes_in_one_process(tmp_path):
    world_size = 2  # both ranks ask for the shapes set: its generation is safe concurrently
    mp.spawn(
        _trainval_worker,
        args=(world_size, free_port(), _train_args(tmp_path, "--max_iters", "2")),
        nprocs=world_size,
        join=True,
    )
    saved = _checkpoints(tmp_path)
    assert len(saved) == 1, saved
    first = torch.load(saved[0], map_location="cpu", weights_only=True)
    assert first["global_step"] == 2

    from fasterrcnn.commands import train as trainval_net

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert key not in os.environ
    # One process takes half the images per step of two ranks: the 2 saved steps count as 4.
    assert first["images_per_step"] == 2
    assert (
        trainval_net.main(_train_args(tmp_path, "--max_iters", "5", "--resume_path", saved[0])) == 0
    )
    resumed = torch.load(_checkpoints(tmp_path)[-1], map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 5 and resumed["images_per_step"] == 1
    changed = [
        k
        for k, v in first["model"].items()
        if v.is_floating_point() and not torch.equal(v, resumed["model"][k])
    ]
    assert changed, "the resumed step did not update the weights"
    assert resumed["model"].keys() == first["model"].keys()
    assert not any(k.startswith("module.") for k in first["model"])


def test_one_process_torchrun_group_is_destroyed(monkeypatch):
    for key, value in torchrun_env(0, 1, free_port()).items():
        monkeypatch.setenv(key, value)
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0) and dist.is_initialized() and not info.enabled
    shutdown(info)
    assert not dist.is_initialized()


def test_trainval_net_leaves_the_group_when_training_raises(monkeypatch, tmp_path):
    from fasterrcnn.commands import train as trainval_net

    calls = []
    monkeypatch.setattr(trainval_net, "shutdown", calls.append)
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        trainval_net.main(["--device", "cpu", "--resume_path", missing])
    assert calls == [DistInfo()]
