"""Mixed precision choices: which dtype ``--amp [DTYPE]`` means on a device.

On the CPU, autocast pays only where oneDNN has low-precision convolutions for the processor
(bfloat16: AVX512-BW/VL/DQ or Arm BF16; float16: AVX512-FP16 or AMX).  Elsewhere PyTorch falls
back to its reference convolution (``aten::_slow_conv2d_*``): on an AVX2-only CPU a training
step of ``cfgs/shapes.yml`` took 19.1 s of CPU under bfloat16 autocast against 1.05 s in
float32.  So a bare ``--amp`` on such a CPU trains in float32, and an explicit dtype warns.
oneDNN's float16 check passes on a CPU with AVX512-FP16, yet there the gradients of a float16
convolution were 30-70x the bfloat16 ones (4x128x28x28, 3x3: backward 4.3 s vs 0.13 s on a
Xeon with AVX512-FP16 and AMX-BF16), so ``--amp fp16`` on the CPU always warns.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

import torch

LOGGER = logging.getLogger(__name__)

AMP_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
"""Names ``--amp`` accepts; ``auto`` (or a bare ``--amp``) picks per device, ``none`` is float32."""

OFF = ("none", "off", "fp32", "float32")
"""Names of float32 training (no autocast)."""

AmpSetting = Union[bool, str, None]


def cpu_has_fast(dtype: torch.dtype) -> bool:
    """True when oneDNN runs ``dtype`` convolutions natively on this CPU (the check PyTorch's
    convolution makes before leaving its slow reference path)."""
    name = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }[dtype]
    check = getattr(torch.ops.mkldnn, name, None)
    return check is None or bool(check())


def amp_dtype(amp: AmpSetting, device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype of an AMP setting, or None for float32.

    Args:
        amp: None / False / a name of :data:`OFF` (float32), True / ``"auto"`` (float16 on
            CUDA; bfloat16 on a CPU with fast bfloat16 convolutions, else float32 with an
            info line), or a name of
            :data:`AMP_DTYPES` (honoured; a warning on a CPU without fast convolutions in it).
        device_type: ``"cuda"`` or ``"cpu"``.
    """
    if amp is None or amp is False or str(amp).lower() in OFF:
        return None
    if amp is True or amp == "auto":
        if device_type == "cuda":
            return torch.float16
        if cpu_has_fast(torch.bfloat16):
            return torch.bfloat16
        LOGGER.info(
            "amp auto: this CPU has no fast bfloat16 convolutions (oneDNN needs "
            "AVX512 or Arm BF16); training in float32"
        )
        return None
    dtype = AMP_DTYPES.get(str(amp).lower())
    if dtype is None:
        raise ValueError(f"--amp: unknown precision {amp!r}; choose auto, {', '.join(AMP_DTYPES)}")
    if device_type == "cpu" and not cpu_has_fast(dtype):
        LOGGER.warning(
            "--amp %s: this CPU has no fast %s convolutions; PyTorch falls back to "
            "a reference convolution, many times slower than float32",
            amp,
            str(dtype).replace("torch.", ""),
        )
    elif device_type == "cpu" and dtype == torch.float16:
        LOGGER.warning(
            "--amp %s on the CPU: float16 convolution gradients can be many times slower than "
            "bfloat16 ones even where oneDNN has float16 convolutions; prefer --amp bf16",
            amp,
        )
    return dtype
