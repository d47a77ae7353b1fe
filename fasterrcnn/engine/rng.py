"""Random number generator states for checkpoints: the sampling generator, torch's CPU and CUDA.

States are byte tensors (``torch.Generator.get_state()``, ``torch.get_rng_state()``,
``torch.cuda.get_rng_state_all()``), so a checkpoint holding them loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Union

import torch

LOGGER = logging.getLogger(__name__)

RngState = Dict[str, Union[torch.Tensor, List[torch.Tensor]]]


def capture_rng_state(sampling: torch.Generator) -> RngState:
    """``{"sampling", "torch"[, "cuda"]}``: the model's sampling generator, torch's CPU
    generator and, when this process has initialised CUDA, the generator of every device."""
    state: RngState = {"sampling": sampling.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(
    state: RngState, sampling: torch.Generator, source: str = "checkpoint"
) -> None:
    """Put back what :func:`capture_rng_state` saved.  CUDA states are restored on the devices
    present (a warning when their number differs; an info line when CUDA is absent here).
    ``source`` names the file in those messages."""
    sampling.set_state(state["sampling"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if not cuda:
        return
    if not torch.cuda.is_available():
        LOGGER.info("%s holds CUDA random states; CUDA is not available here: not restored", source)
        return
    count = torch.cuda.device_count()
    if len(cuda) != count:
        LOGGER.warning(
            "%s holds the CUDA random states of %d devices, %d are visible: restoring the first %d",
            source,
            len(cuda),
            count,
            min(len(cuda), count),
        )
    for index, device_state in enumerate(cuda[:count]):
        torch.cuda.set_rng_state(device_state, index)
