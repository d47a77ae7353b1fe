"""torch.distributed set-up for multi-process training launched by ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; when they are present the process group is
started with gloo on the CPU and nccl on CUDA.  Only rank 0 logs, evaluates and writes
checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the torchrun environment variables are set."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun prepared; a single process gets the default DistInfo."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    )
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def all_ranks_agree(flags: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise AND of the boolean ``flags`` over every rank, computed where the flags are
    (a MIN all-reduce on the rank's GPU with nccl: no host synchronisation); ``flags`` itself in
    a single process.  Every rank must call it: use it for decisions all ranks have to take
    alike, such as skipping a batch whose loss is not finite on some rank (DDP would otherwise
    wait forever in the backward of the ranks that did not skip)."""
    if not info.enabled:
        return flags.bool()
    value = flags.to(torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value.bool()


def all_ranks_true(flag: bool, info: DistInfo, device: torch.device = torch.device("cpu")) -> bool:
    """True when ``flag`` is true on every rank (:func:`all_ranks_agree` of one flag, read
    back).  ``device``: where the one-element tensor lives (the rank's GPU with nccl)."""
    if not info.enabled:
        return bool(flag)
    return bool(all_ranks_agree(torch.tensor([flag], device=device), info).item())


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group when one was started, also under a one-process torchrun (NCCL
    warns at exit about a group that was never destroyed); a no-op otherwise.  ``info`` is the
    process's :class:`DistInfo` (kept for symmetry with :func:`init_distributed`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
