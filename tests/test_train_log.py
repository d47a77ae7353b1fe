"""The training log: window medians, line format, read-back interval, terminal vs redirected."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch
from trainer_testing import StubDetector, stub_batches, stub_cfg

from fasterrcnn.engine.train_log import TrainingLog, WindowMedian, format_eta, format_line
from fasterrcnn.engine.trainer import Trainer, TrainOptions


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def losses(total: float, rpn: float = 0.5) -> dict:
    return {"rpn_cls": torch.tensor(rpn), "loss": torch.tensor(total)}


def test_window_median_keeps_only_the_window():
    meter = WindowMedian(window=3)
    assert math.isnan(meter.median)
    for value in (1.0, 100.0, 2.0, 3.0):
        meter.update(value)
    assert len(meter) == 3 and meter.median == 3.0  # median of 100, 2, 3: the 1 fell out
    meter.update(1000.0)
    assert meter.median == 3.0  # 2, 3, 1000: one outlier does not move it
    with pytest.raises(ValueError, match="window must be positive"):
        WindowMedian(0)


def test_format_eta():
    assert format_eta(0) == "0:00:00"
    assert format_eta(3725.4) == "1:02:05"
    assert format_eta(90000) == "1 day, 1:00:00"
    assert format_eta(math.nan) == "?" and format_eta(-1) == "?"


def test_format_line():
    line = format_line(
        "[session 1][epoch 2][iter 20/600]",
        {"rpn_cls": 0.12345, "rcnn_box": 0.5, "loss": 1.25},
        0.02,
        0.0031,
        0.2514,
        15.84,
        602,
    )
    assert line == (
        "[session 1][epoch 2][iter 20/600] loss 1.2500 (rpn_cls 0.1235, "
        "rcnn_box 0.5000), lr 2.00e-02, data 0.003 s, compute 0.251 s, "
        "15.8 img/s, eta 0:10:02"
    )


def test_flush_gives_every_step_to_listeners_and_logs_medians(caplog):
    log = TrainingLog(interval=2, window=3, stream=io.StringIO())
    seen = []
    log.listeners.append(lambda step, record: seen.append((step, record)))
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.trainer")
    totals = [1.0, 2.0, 10.0, 4.0]
    for step, total in enumerate(totals, start=1):
        log.step(losses(total), step, lr=0.01 * step, data_s=0.1, compute_s=0.3)
        if log.due(step):
            log.flush(f"[iter {step}]", images_per_step=4, remaining_iters=10)
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    assert [r["loss"] for _, r in seen] == totals and seen[2][1]["lr"] == pytest.approx(0.03)
    assert log.medians() == {"rpn_cls": 0.5, "loss": 4.0}  # median of 2, 10, 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[1] == (
        "[iter 4] loss 4.0000 (rpn_cls 0.5000), lr 4.00e-02, data 0.100 s, "
        "compute 0.300 s, 10.0 img/s, eta 0:00:04"
    )


def test_skipped_batches_count_time_but_no_losses():
    log = TrainingLog(interval=1, window=5, stream=io.StringIO())
    log.step(None, 0, 0.1, 0.5, 0.5)
    assert not log.due(0)
    log.step(losses(2.0), 1, 0.1, 0.5, 0.5)
    assert log.due(1)


def test_disabled_log_keeps_nothing(caplog):
    log = TrainingLog(interval=1, enabled=False, stream=FakeTerminal())
    log.step(losses(1.0), 1, 0.1, 0.0, 0.0)
    assert not log.due(1) and not log.uses_bar()
    log.flush("[x]", 1, 0)
    assert caplog.records == []


def test_terminal_gets_a_bar_a_redirected_stream_plain_lines(caplog):
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.trainer")
    for stream, bar in ((io.StringIO(), False), (FakeTerminal(), True)):
        caplog.clear()
        log = TrainingLog(interval=2, stream=stream)
        assert log.uses_bar() == bar
        with log.epoch("epoch 1", 0, 4):
            for step in range(1, 5):
                log.step(losses(1.0), step, 0.1, 0.0, 0.01)
                if log.due(step):
                    log.flush(f"[iter {step}/4]", 2, 4 - step)
        assert len(caplog.records) == 2 and "eta" in caplog.records[0].getMessage()
        written = stream.getvalue()
        assert ("epoch 1:" in written and "0/4" in written) if bar else written == ""
    assert not TrainingLog(interval=1, progress=False, stream=FakeTerminal()).uses_bar()


def test_trainer_off_a_terminal_logs_plain_lines_and_no_progress_frames(tmp_path, caplog, capsys):
    """Under pytest stderr is captured (not a terminal): no tqdm frame may reach it."""
    caplog.set_level(logging.INFO, logger="fasterrcnn.engine.trainer")
    batches = stub_batches(6)
    options = TrainOptions(save_dir=str(tmp_path), disp_interval=3, progress=True)
    trainer = Trainer(
        stub_cfg(),
        StubDetector(),
        lambda epoch, start: batches[start:],
        6,
        ("__background__", "a"),
        options,
    )
    trainer.train()
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "it/s" not in captured.err
    lines = [r.getMessage() for r in caplog.records if "eta" in r.getMessage()]
    assert [line.split(" loss")[0] for line in lines] == [
        "[session 1][epoch 1][iter 3/6]",
        "[session 1][epoch 1][iter 6/6]",
    ]
    assert "lr 1.00e-03" in lines[0] and "img/s" in lines[0]
