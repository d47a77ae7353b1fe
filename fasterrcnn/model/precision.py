"""Precision rules under mixed precision (``torch.autocast``).

The networks may run in bfloat16/float16, but box maths, sampling, RoI pooling and losses stay in
float32: bfloat16 keeps 8 bits of mantissa, i.e. steps of 4 pixels at 1000 pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16/bfloat16 (an autocast output), else ``x`` unchanged
    (float32 and float64 models keep their dtype)."""
    return x.float() if x.dtype in LOW_PRECISION else x


def autocast_disabled(device_type: str) -> torch.autocast:
    """A context in which autocast is off for ``device_type`` (ops run in their inputs' dtype)."""
    return torch.autocast(device_type=device_type, enabled=False)
