"""Mixed precision choices: which dtype ``--amp [DTYPE]`` means on a device."""

from __future__ import annotations

from typing import Optional, Union

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}
"""Names ``--amp`` accepts; ``auto`` (or a bare ``--amp``) picks per device."""

AmpSetting = Union[bool, str, None]


def amp_dtype(amp: AmpSetting, device_type: str) -> Optional[torch.dtype]:
    """The autocast dtype of an AMP setting, or None for float32.

    Args:
        amp: None / False (off), True / ``"auto"`` (float16 on CUDA, bfloat16 elsewhere), or a
            name of :data:`AMP_DTYPES`.
        device_type: ``"cuda"`` or ``"cpu"``.
    """
    if amp is None or amp is False:
        return None
    if amp is True or amp == "auto":
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    dtype = AMP_DTYPES.get(str(amp).lower())
    if dtype is None:
        raise ValueError(f"--amp: unknown precision {amp!r}; choose auto, "
                         f"{', '.join(AMP_DTYPES)}")
    return dtype
