"""The training log: smoothed losses, data and compute time, throughput, ETA, learning rate.

The trainer hands over each step's losses as one 1-D tensor on the device; they stay there until
the display interval is reached, when all the pending steps are read back with a single
``tolist()`` (one host synchronisation per interval, none per step).  Every read-back step goes
to the listeners (TensorBoard, tests) and into fixed-size windows whose medians are what the log
shows, so a single bad batch does not swing the line and no loss history grows with the run.

Output: when the stream is a terminal, a tqdm progress bar per epoch (log lines are routed
above it); otherwise (a redirected log, CI) plain log lines only, one per display interval.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import statistics
import sys
from collections import deque
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import torch

LOGGER = logging.getLogger("fasterrcnn.engine.trainer")

StepListener = Callable[[int, Dict[str, float]], None]
"""``listener(step, record)``: ``record`` maps each loss name (and ``lr``) to its value."""


class WindowMedian:
    """The median of the last ``window`` values (older ones fall out of a fixed-size deque)."""

    def __init__(self, window: int = 20) -> None:
        if window <= 0:
            raise ValueError(f"the smoothing window must be positive, got {window}")
        self._values: deque = deque(maxlen=window)

    def update(self, value: float) -> None:
        self._values.append(float(value))

    def __len__(self) -> int:
        return len(self._values)

    @property
    def median(self) -> float:
        """The median of the window; NaN while it is empty."""
        return statistics.median(self._values) if self._values else math.nan


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (days are written out past 24 hours); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=round(seconds)))


def format_line(
    where: str,
    losses: Dict[str, float],
    lr: float,
    data_s: float,
    compute_s: float,
    images_per_s: float,
    eta_s: float,
) -> str:
    """One log line: the total ``loss`` first, then the other losses in brackets.

    Example: ``[epoch 1][iter 20/600] loss 1.2345 (rpn_cls 0.1234, rpn_box 0.0456),
    lr 2.00e-02, data 0.003 s, compute 0.251 s, 15.8 img/s, eta 0:10:02``.
    """
    parts = [f"{name} {value:.4f}" for name, value in losses.items() if name != "loss"]
    total = f"loss {losses['loss']:.4f} " if "loss" in losses else ""
    return (
        f"{where} {total}({', '.join(parts)}), lr {lr:.2e}, data {data_s:.3f} s, "
        f"compute {compute_s:.3f} s, {images_per_s:.1f} img/s, eta {format_eta(eta_s)}"
    )


class TrainingLog:
    """Collects per-step losses on the device and timings on the host; logs every ``interval``.

    Args:
        interval: steps between read-backs and log lines (TRAIN.DISPLAY / --disp_interval).
        window: steps in the median windows.
        enabled: False on ranks other than 0 (nothing is kept, read back or printed).
        progress: show a tqdm bar when ``stream`` is a terminal.
        stream: where the bar goes (default ``sys.stderr``, where the log handler writes).
    """

    def __init__(
        self,
        interval: int,
        window: int = 20,
        enabled: bool = True,
        progress: bool = True,
        stream: Optional[TextIO] = None,
    ) -> None:
        self.interval = max(int(interval), 1)
        self.window = window
        self.enabled = enabled
        self.progress = progress
        self.stream = stream
        self.listeners: List[StepListener] = []
        self._names: Sequence[str] = ()
        self._pending: List[Tuple[int, torch.Tensor, float]] = []
        self._losses: Dict[str, WindowMedian] = {}
        self._data = WindowMedian(window)
        self._compute = WindowMedian(window)
        self._bar = None

    def uses_bar(self) -> bool:
        """True when a progress bar is drawn: progress wanted and the stream is a terminal."""
        stream = self.stream if self.stream is not None else sys.stderr
        isatty = getattr(stream, "isatty", None)
        return self.enabled and self.progress and callable(isatty) and bool(isatty())

    @contextlib.contextmanager
    def epoch(self, description: str, done: int, total: int) -> Iterator[None]:
        """Around one epoch: on a terminal, a bar (at ``done`` of ``total``) with the log lines
        routed above it; elsewhere nothing (the log lines are the progress)."""
        if not self.uses_bar():
            yield
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        stream = self.stream if self.stream is not None else sys.stderr
        with (
            logging_redirect_tqdm(),
            tqdm(
                total=total,
                initial=done,
                desc=description,
                file=stream,
                mininterval=1.0,
                leave=False,
            ) as bar,
        ):
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def step(
        self,
        losses: Optional[Dict[str, torch.Tensor]],
        step: int,
        lr: float,
        data_s: float,
        compute_s: float,
    ) -> None:
        """Record one iteration.

        Args:
            losses: name -> detached scalar loss on the device, or None for a skipped batch
                (its time still counts).  They are stacked on the device, not read back.
            step: the optimizer steps done after this iteration.
            lr: the learning rate the step used.
            data_s, compute_s: seconds waiting for the batch, and in the training step.
        """
        if not self.enabled:
            return
        self._data.update(data_s)
        self._compute.update(compute_s)
        if losses is not None:
            self._names = tuple(losses)
            self._pending.append((step, torch.stack(list(losses.values())), lr))
        if self._bar is not None:
            self._bar.update(1)

    def medians(self) -> Dict[str, float]:
        """The smoothed losses: each loss's median over the last ``window`` read-back steps."""
        return {name: meter.median for name, meter in self._losses.items()}

    def due(self, step: int) -> bool:
        """True when steps are pending and ``step`` ends a display interval."""
        return bool(self._pending) and step % self.interval == 0

    def flush(self, where: str, images_per_step: int, remaining_iters: int) -> None:
        """Read the pending losses back (one host sync), feed the listeners and windows, and
        log one line.  ``where`` prefixes the line; ``remaining_iters`` gives the ETA."""
        if not (self.enabled and self._pending):
            return
        rows = torch.stack([values for _, values, _ in self._pending]).tolist()
        for (step, _, lr), row in zip(self._pending, rows):
            record = dict(zip(self._names, row))
            for name, value in record.items():
                self._losses.setdefault(name, WindowMedian(self.window)).update(value)
            record["lr"] = lr
            for listener in self.listeners:
                listener(step, record)
        lr = self._pending[-1][2]
        self._pending.clear()
        medians = self.medians()
        iteration_s = self._data.median + self._compute.median
        images_per_s = images_per_step / iteration_s if iteration_s > 0 else math.nan
        line = format_line(
            where,
            medians,
            lr,
            self._data.median,
            self._compute.median,
            images_per_s,
            remaining_iters * iteration_s,
        )
        LOGGER.info("%s", line)
        if self._bar is not None:
            self._bar.set_postfix(
                {"loss": f"{medians.get('loss', math.nan):.4f}", "lr": f"{lr:.2e}"}, refresh=False
            )
