"""The training loop without the detector: host reads per iteration, non-finite batches, AMP.

A :class:`StubDetector` replaces FasterRCNN so that every host read counted comes from the
trainer (its step, loss scaler, optimizer, clipping and log), not from the model.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from trainer_testing import HostReadCounter, StubDetector, stub_batches, stub_cfg

from fasterrcnn.commands.train import parse_args
from fasterrcnn.engine import amp
from fasterrcnn.engine.amp import amp_dtype
from fasterrcnn.engine.trainer import NonFiniteLossError, Trainer, TrainOptions

ITERS = 12
INTERVAL = 4
CLASSES = ("__background__", "a")


def stub_trainer(tmp_path, device, cfg=None, amp=None, poison_at=None, iters=ITERS):
    model = StubDetector(poison_at).to(device)
    batches = stub_batches(iters, device)
    options = TrainOptions(
        save_dir=str(tmp_path), device=str(device), disp_interval=INTERVAL, amp=amp, progress=False
    )
    return Trainer(
        cfg or stub_cfg(), model, lambda epoch, start: batches[start:], iters, CLASSES, options
    )


def test_counter_sees_host_reads(monkeypatch):
    counter = HostReadCounter(monkeypatch)
    value = torch.ones(2)
    value.sum().item(), value.tolist(), bool(value[0]), float(value[1])
    assert counter.calls == ["item", "tolist", "__bool__", "__float__"]


@pytest.mark.parametrize(
    "policy,amp", [("stop", None), ("skip", None), ("stop", "bf16"), ("stop", "fp16")]
)
def test_one_host_read_per_iteration_and_one_per_display_interval(
    tmp_path, monkeypatch, device, policy, amp
):
    """The step reads back one flag pair; the log reads the pending losses every INTERVAL.
    (float16 autocast and its GradScaler exist on the CPU too.)"""
    trainer = stub_trainer(tmp_path, device, stub_cfg("TRAIN.NONFINITE_POLICY", policy), amp)
    records = []
    trainer.log.listeners.append(lambda step, record: records.append(step))
    counter = HostReadCounter(monkeypatch)
    trainer._run_epoch()
    assert trainer.state.global_step == ITERS
    assert records == list(range(1, ITERS + 1))
    assert len(counter.calls) == ITERS + ITERS // INTERVAL, counter.calls
    assert counter.calls.count("tolist") == ITERS + ITERS // INTERVAL


def test_the_log_reads_back_only_at_the_interval(tmp_path, monkeypatch, device):
    trainer = stub_trainer(tmp_path, device, iters=INTERVAL - 1)
    counter = HostReadCounter(monkeypatch)
    batches = stub_batches(INTERVAL - 1, device)
    for batch in batches:
        losses = trainer._train_step(batch)
        trainer.log.step(losses, trainer.state.global_step, 0.1, 0.0, 0.0)
        assert not trainer.log.due(trainer.state.global_step)
    assert len(counter.calls) == INTERVAL - 1  # the steps' flags only
    trainer._flush_log()
    assert len(counter.calls) == INTERVAL


def test_non_finite_loss_stops_with_the_images(tmp_path, device):
    trainer = stub_trainer(tmp_path, device, poison_at=3)
    with pytest.raises(NonFiniteLossError, match=r"iteration 2 .*rcnn_box=nan.*img2a\.jpg"):
        trainer.train()
    assert trainer.state.global_step == 2


def test_non_finite_loss_skip_leaves_weights_and_buffers(tmp_path, device):
    trainer = stub_trainer(
        tmp_path, device, stub_cfg("TRAIN.NONFINITE_POLICY", "skip"), poison_at=2
    )
    batches = stub_batches(3, device)
    trainer._train_step(batches[0])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer._train_step(batches[1]) is None
    assert trainer.state.skipped_batches == 1 and trainer.state.global_step == 1
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert trainer._train_step(batches[2]) is not None and trainer.state.global_step == 2
    assert not torch.equal(trainer.model.weight, before["weight"])


def test_float16_overflow_skips_the_step_and_lowers_the_scale(tmp_path, device):
    trainer = stub_trainer(tmp_path, device, amp="fp16")
    assert trainer.scaler.is_enabled()
    batch = stub_batches(1, device)[0]
    handle = trainer.model.weight.register_hook(lambda grad: grad * float("inf"))
    before = trainer.model.weight.detach().clone()
    scale = trainer.scaler.get_scale()
    assert trainer._train_step(batch) is None  # the stop policy does not stop an overflow
    handle.remove()
    assert trainer.scaler.get_scale() == scale / 2 and trainer.state.global_step == 0
    assert torch.equal(trainer.model.weight.detach(), before)
    assert trainer._train_step(batch) is not None and trainer.state.global_step == 1


def test_amp_dtypes(monkeypatch):
    monkeypatch.setattr(amp, "cpu_has_fast", lambda dtype: True)
    assert amp_dtype(None, "cuda") is None and amp_dtype(False, "cpu") is None
    assert amp_dtype("none", "cpu") is None and amp_dtype("fp32", "cuda") is None
    assert amp_dtype(True, "cuda") == amp_dtype("auto", "cuda") == torch.float16
    assert amp_dtype(True, "cpu") == amp_dtype("auto", "cpu") == torch.bfloat16
    assert amp_dtype("bf16", "cuda") == amp_dtype("bfloat16", "cpu") == torch.bfloat16
    assert amp_dtype("fp16", "cpu") == amp_dtype("float16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        amp_dtype("int8", "cpu")


def test_amp_on_a_cpu_without_fast_low_precision_convolutions(monkeypatch, caplog):
    """A bare --amp (or TRAIN.AMP auto) trains in float32 there, saying so (bfloat16
    convolutions take the reference path, 18x slower than float32 on an AVX2 CPU); an explicit
    dtype is kept, with a warning."""
    monkeypatch.setattr(amp, "cpu_has_fast", lambda dtype: False)
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.amp")
    assert amp_dtype(True, "cpu") is None
    assert "no fast bfloat16 convolutions" in caplog.text
    assert amp_dtype("bf16", "cpu") == torch.bfloat16
    assert "many times slower than float32" in caplog.text
    assert amp_dtype(True, "cuda") == torch.float16


def test_amp_float16_on_the_cpu_warns_even_where_onednn_has_it(monkeypatch, caplog):
    """oneDNN's float16 check passes on AVX512-FP16 CPUs whose float16 convolution gradients
    are still many times slower than bfloat16 ones."""
    monkeypatch.setattr(amp, "cpu_has_fast", lambda dtype: True)
    caplog.set_level(logging.WARNING, logger="fasterrcnn.engine.amp")
    assert amp_dtype("bf16", "cpu") == torch.bfloat16
    assert caplog.text == ""
    assert amp_dtype("fp16", "cpu") == torch.float16
    assert "prefer --amp bf16" in caplog.text
    caplog.clear()
    assert amp_dtype("fp16", "cuda") == torch.float16
    assert caplog.text == ""


def test_cpu_capability_matches_the_convolution_path():
    """Where cpu_has_fast(bfloat16) is False, a bfloat16 convolution really takes the slow path."""
    from torch.profiler import ProfilerActivity, profile

    conv = torch.nn.Conv2d(3, 4, 3)
    with (
        profile(activities=[ProfilerActivity.CPU]) as prof,
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        conv(torch.randn(1, 3, 8, 8))
    slow = any("slow_conv2d" in event.key for event in prof.key_averages())
    assert slow == (not amp.cpu_has_fast(torch.bfloat16))


def test_amp_flag_takes_an_optional_dtype():
    assert parse_args([]).amp is None
    assert parse_args(["--amp"]).amp == "auto"
    assert parse_args(["--amp", "bf16", "--bs", "2"]).amp == "bf16"
    assert parse_args(["--amp", "--bs", "2"]).amp == "auto"
    assert parse_args(["--amp", "none"]).amp == "none"
    with pytest.raises(SystemExit):
        parse_args(["--amp", "int8"])


@pytest.mark.parametrize("amp,scaled", [(None, False), ("bf16", False), ("fp16", True)])
def test_grad_scaler_only_for_float16(tmp_path, device, amp, scaled):
    trainer = stub_trainer(tmp_path, device, amp=amp)
    assert trainer.scaler.is_enabled() == scaled
    losses = trainer._train_step(stub_batches(1, device)[0])
    assert all(math.isfinite(float(v)) for v in losses.values())
