"""Training runs resume exactly, stop on non-finite losses, and write reference-named files."""

import os

import pytest
import torch

from fasterrcnn.checkpoint import PARTIAL_SUFFIX, load_checkpoint
from fasterrcnn.config import apply_overrides
from fasterrcnn.engine.trainer import NonFiniteLossError
from fasterrcnn.engine.training_run import build_training_run


def _run(cfg, save_dir, max_iters, resume=None, device="cpu", noise=False):
    cfg = apply_overrides(cfg, ["TRAIN.MAX_ITERS", max_iters])
    trainer = build_training_run(
        cfg, output_dir=str(save_dir), progress=False, resume=resume, device=str(device)
    )
    if noise:
        _draw_from_device_rng(trainer, torch.device(device))
    path = trainer.train()
    return trainer, path


def _draw_from_device_rng(trainer, device):
    """Scale a loss by a draw from the device's default generator each step, as dropout would:
    the weights then depend on that stream, which a resume must continue."""
    forward = trainer.model.forward

    def noisy(*args, **kwargs):
        losses = forward(*args, **kwargs)
        losses["rcnn_cls"] = losses["rcnn_cls"] * (1 + 0.5 * torch.rand((), device=device))
        return losses

    trainer.model.forward = noisy


def _device_rng_state(device):
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


@pytest.mark.parametrize("total", [4, pytest.param(8, marks=pytest.mark.slow)])
def test_stop_and_resume_gives_identical_weights(tiny_cfg, tmp_path, one_thread, total, device):
    # 12 images + flips at batch 2 = 12 iterations per epoch; total 8 with EPOCHS 1 and the
    # checkpoint-every-3 setting crosses several mid-epoch checkpoints.
    cfg = apply_overrides(tiny_cfg, ["TRAIN.CHECKPOINT_EVERY_ITERS", 3])
    straight, _ = _run(cfg, tmp_path / "straight", total, device=device, noise=True)
    straight_rng = _device_rng_state(device)
    _, half_path = _run(cfg, tmp_path / "split", total // 2, device=device, noise=True)
    resumed, _ = _run(cfg, tmp_path / "split2", total, resume=half_path, device=device, noise=True)
    assert torch.equal(_device_rng_state(device), straight_rng)
    assert straight.state.global_step == resumed.state.global_step == total
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if device.type == "cuda":  # atomics in CUDA backward kernels: not bitwise
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(straight.model.generator.get_state(), resumed.model.generator.get_state())
    opt_a, opt_b = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert opt_a["state"] and opt_a["state"].keys() == opt_b["state"].keys()
    for pid, state in opt_a["state"].items():
        # Adam's moments and step (cfgs/shapes.yml), SGD's momentum buffer.
        assert state.keys() == opt_b["state"][pid].keys()
        for name, value in state.items():
            torch.testing.assert_close(
                value,
                opt_b["state"][pid][name],
                rtol=1e-4 if device.type == "cuda" else 0,
                atol=1e-6 if device.type == "cuda" else 0,
            )


@pytest.mark.slow
def test_resume_across_an_epoch_boundary(tiny_cfg, tmp_path, one_thread):
    # fmt: off
    cfg = apply_overrides(tiny_cfg, ["TRAIN.EPOCHS", 2, "TRAIN.LR_SCHEDULE", "step",
                                     "TRAIN.LR_DECAY_STEPS", [1]])
    # fmt: on
    straight, _ = _run(cfg, tmp_path / "a", 14)
    first, epoch_path = _run(cfg, tmp_path / "b", 12)
    assert os.path.basename(epoch_path) == "faster_rcnn_1_1_12.pth"
    resumed, _ = _run(cfg, tmp_path / "c", 14, resume=epoch_path)
    assert resumed.state.epoch == 1 and resumed.state.batch == 2
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.TRAIN.LEARNING_RATE * 0.1)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_checkpoint_contents(tiny_cfg, tmp_path, one_thread, device):
    trainer, path = _run(tiny_cfg, tmp_path, 2, device=device)
    assert os.path.basename(path) == "faster_rcnn_1_1_2.pth"
    ckpt = load_checkpoint(path)
    assert ckpt["classes"][0] == "__background__" and len(ckpt["classes"]) == 6
    assert ckpt["epoch"] == 0 and ckpt["iteration"] == 2 and ckpt["global_step"] == 2
    assert ckpt["config"]["BACKBONE"]["WIDTH_MULT"] == 0.25
    rng = ckpt["rng"]
    assert {"sampling", "torch"} <= set(rng) <= {"sampling", "torch", "cuda"}
    if device.type == "cuda":
        assert len(rng["cuda"]) == torch.cuda.device_count()
        assert torch.equal(rng["cuda"][device.index or 0], torch.cuda.get_rng_state(device))
    assert torch.equal(rng["torch"], torch.get_rng_state())
    assert [n for n in os.listdir(tmp_path) if n.endswith(PARTIAL_SUFFIX)] == []


def _poison(trainer, at_call):
    """Make the model return a NaN rcnn_box loss on its ``at_call``-th forward."""
    forward = trainer.model.forward
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        losses = forward(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at_call:
            losses["rcnn_box"] = losses["rcnn_box"] * float("nan")
        return losses

    trainer.model.forward = poisoned


def test_non_finite_loss_stops_and_names_the_images(tiny_cfg, tmp_path, one_thread):
    cfg = apply_overrides(tiny_cfg, ["TRAIN.MAX_ITERS", 4])
    trainer = build_training_run(cfg, output_dir=str(tmp_path), progress=False)
    _poison(trainer, at_call=2)
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 .*rcnn_box=nan.*images: .*\.jpg"):
        trainer.train()


def test_non_finite_loss_skip_policy_leaves_weights_alone(tiny_cfg, tmp_path, one_thread):
    cfg = apply_overrides(tiny_cfg, ["TRAIN.MAX_ITERS", 2, "TRAIN.NONFINITE_POLICY", "skip"])
    trainer = build_training_run(cfg, output_dir=str(tmp_path), progress=False)
    _poison(trainer, at_call=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches = iter(trainer.loader_factory(0, 0))
    trainer._train_step(next(batches))
    assert trainer.state.skipped_batches == 1 and trainer.state.global_step == 0
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    trainer._train_step(next(batches))
    assert trainer.state.global_step == 1
