"""The reference solver: double bias learning rate without decay, warm-up and step decay."""

import math

import pytest
import torch
from torch import nn

from fasterrcnn.config import load_config
from fasterrcnn.engine.optim import build_optimizer, build_scheduler, lr_factor


def _model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1, bias=False))
    model[0].weight.requires_grad_(False)
    return model


def test_biases_get_double_lr_and_no_decay():
    cfg = load_config(None, ["TRAIN.LEARNING_RATE", "0.01", "TRAIN.WEIGHT_DECAY", "0.0005"])
    model = _model()
    optimizer = build_optimizer(model, cfg)
    weights, biases = optimizer.param_groups
    assert weights["lr"] == 0.01 and weights["weight_decay"] == 0.0005
    assert biases["lr"] == 0.02 and biases["weight_decay"] == 0.0
    assert {id(p) for p in biases["params"]} == {id(model[0].bias), id(model[1].bias)}
    assert {id(p) for p in weights["params"]} == {id(model[1].weight), id(model[2].weight)}
    assert optimizer.defaults["momentum"] == 0.9


def test_single_bias_lr_with_decay_and_adam():
    cfg = load_config(
        None, ["TRAIN.DOUBLE_BIAS", "false", "TRAIN.BIAS_DECAY", "true", "TRAIN.OPTIMIZER", "adam"]
    )
    optimizer = build_optimizer(_model(), cfg)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[1]["lr"] == cfg.TRAIN.LEARNING_RATE
    assert optimizer.param_groups[1]["weight_decay"] == cfg.TRAIN.WEIGHT_DECAY


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_fused_step_matches_the_loop_implementation(optimizer_name):
    cfg = load_config(None, ["TRAIN.OPTIMIZER", optimizer_name, "TRAIN.WEIGHT_DECAY", "0.01"])
    torch.manual_seed(0)
    fused_model, loop_model = _model(), _model()
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, cfg)
    assert fused.defaults["fused"] is True
    loop_cls = torch.optim.Adam if optimizer_name == "adam" else torch.optim.SGD
    extra = {} if optimizer_name == "adam" else {"momentum": cfg.TRAIN.MOMENTUM}
    # only params, lr and weight decay: a copied group would carry fused=True along
    loop_params = dict(zip(map(id, fused_model.parameters()), loop_model.parameters()))
    loop = loop_cls(
        [
            {
                "params": [loop_params[id(p)] for p in g["params"]],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
            }
            for g in fused.param_groups
        ],
        foreach=False,
        **extra,
    )
    assert not any(g["fused"] for g in loop.param_groups)
    start = {name: p.detach().clone() for name, p in fused_model.named_parameters()}
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for (name, a), b in zip(fused_model.named_parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(fused_model[2].weight, start["2.weight"])
    assert torch.equal(fused_model[0].weight, start["0.weight"])


def test_warmup_then_step_decay():
    cfg = load_config(
        None,
        # fmt: off
        [
            "TRAIN.LR_DECAY_STEPS",
            "[2, 3]",
            "TRAIN.LR_DECAY_GAMMA",
            "0.1",
            "TRAIN.WARMUP_ITERS",
            "4",
            "TRAIN.WARMUP_FACTOR",
            "0.2",
        ],
        # fmt: on
    )
    factor = lr_factor(cfg, iters_per_epoch=10)
    assert factor(0) == pytest.approx(0.2)
    assert factor(2) == pytest.approx(0.2 * 0.5 + 0.5)
    assert factor(4) == 1.0 and factor(19) == 1.0
    assert factor(20) == pytest.approx(0.1) and factor(29) == pytest.approx(0.1)
    assert factor(30) == pytest.approx(0.01)


def test_scheduler_scales_each_group():
    cfg = load_config(None, ["TRAIN.LR_DECAY_STEPS", "[1]", "TRAIN.LEARNING_RATE", "0.1"])
    optimizer = build_optimizer(_model(), cfg)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch=2)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.02])


def test_warmup_then_cosine_to_zero_over_the_run():
    # fmt: off
    overrides = ["TRAIN.LR_SCHEDULE", "cosine", "TRAIN.EPOCHS", "2",
                 "TRAIN.WARMUP_ITERS", "4", "TRAIN.WARMUP_FACTOR", "0.5"]
    # fmt: on
    factor = lr_factor(load_config(None, overrides), iters_per_epoch=10)
    # 20 iterations in all: cos(pi * step / 20) halved and lifted; the warm-up multiplies it.
    assert factor(0) == pytest.approx(0.5)
    assert factor(2) == pytest.approx((0.5 * 0.5 + 0.5) * 0.5 * (1 + math.cos(math.pi / 10)))
    assert factor(10) == pytest.approx(0.5)
    assert factor(15) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))
    assert factor(20) == pytest.approx(0.0, abs=1e-12)
    assert factor(25) == pytest.approx(0.0, abs=1e-12)
    # MAX_ITERS only stops the run (a resumed run continues the same schedule).
    stopped = lr_factor(load_config(None, overrides + ["TRAIN.MAX_ITERS", "8"]), 10)
    assert all(stopped(step) == factor(step) for step in range(25))


def test_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        load_config(None, ["TRAIN.LR_SCHEDULE", "poly"])
