"""Loading of the compiled extension ``fasterrcnn._C`` and backend selection.

The extension is optional: when it is missing (no compiler, not built) every op uses its
pure-torch fallback.  ``FASTERRCNN_OPS=torch`` forces the fallback; it is read at call time
(under ``torch.compile``, when the function is traced).  Loading the extension registers the
``torch.ops.fasterrcnn`` operators; ``torch.ops.fasterrcnn_torch`` are the fallbacks.
"""

import importlib
import logging
import os
from types import ModuleType
from typing import Optional, Union

import torch

_LOG = logging.getLogger(__name__)

#: dtypes the compiled kernels are instantiated for; other dtypes use the fallback, except
#: float16 / bfloat16 under autocast (the operators' autocast kernels compute them in float32).
KERNEL_DTYPES = (torch.float32, torch.float64)
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


def _load_extension() -> Optional[ModuleType]:
    try:
        return importlib.import_module("fasterrcnn._C")
    except ImportError as exc:
        _LOG.debug("fasterrcnn._C not available, using the pure-torch ops: %s", exc)
        return None


_C = _load_extension()


def extension() -> Optional[ModuleType]:
    """The compiled extension module, or None when it is not built."""
    return _C


def backend(device: Union[torch.device, str, None] = None) -> str:
    """Which implementation the ops use for tensors on ``device`` (default: CPU).

    Returns 'cpp' (compiled CPU kernels), 'cuda' (compiled CUDA kernels) or 'torch'
    (pure-torch fallback; always the answer when ``FASTERRCNN_OPS=torch``).
    """
    if os.environ.get("FASTERRCNN_OPS", "").strip().lower() == "torch" or _C is None:
        return "torch"
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cpu":
        return "cpp"
    if dev.type == "cuda" and _C.has_cuda():
        return "cuda"
    return "torch"


def use_kernels(*tensors: torch.Tensor) -> bool:
    """True when the compiled kernels handle these tensors (device and dtype supported)."""
    first = tensors[0]
    if backend(first.device) == "torch":
        return False
    return first.dtype in KERNEL_DTYPES or (
        first.dtype in AUTOCAST_DTYPES and torch.is_autocast_enabled(first.device.type)
    )


def operators(tensor: torch.Tensor) -> torch._ops._OpNamespace:
    """``torch.ops.fasterrcnn`` when the compiled kernels handle ``tensor`` (its device and
    dtype), else ``torch.ops.fasterrcnn_torch`` (the pure-torch fallbacks, same schemas)."""
    return torch.ops.fasterrcnn if use_kernels(tensor) else torch.ops.fasterrcnn_torch
