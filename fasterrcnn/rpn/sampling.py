"""Fixed-size random sampling for the target layers: no host round trip, no data-dependent shape.

Every draw comes from a CPU ``torch.Generator`` (so a run is reproducible on any device and a
resumed run continues the stream) as one block of float64 uniforms of a size fixed by the input
shapes, whatever the data; the selection itself runs on the device of the inputs:

* a uniform random subset of ``k`` candidates without replacement is the ``k`` candidates of
  largest key (``topk`` of random keys over a mask);
* a draw with replacement from a candidate pool of size ``n`` picks the ``floor(u * n)``-th
  candidate in index order.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor


@torch.compiler.disable
def uniform_keys(generator: torch.Generator, shape: Sequence[int], device: torch.device) -> Tensor:
    """``shape`` float64 uniforms in ``[0, 1)`` from the CPU ``generator``, moved to ``device``.

    The one place a target layer touches the generator; ``torch.compile`` runs it eagerly (a
    ``torch.Generator`` cannot enter a graph), the copy to ``device`` is a host-to-device copy.
    """
    return torch.rand(tuple(shape), generator=generator, dtype=torch.float64).to(device)


def select_random(
    candidates: Tensor, counts: Union[Tensor, int], keys: Tensor, limit: int
) -> Tensor:
    """Choose ``min(counts[b], number of candidates)`` candidates of each row uniformly at random.

    Args:
        candidates: ``(B, N)`` bool.
        counts: ``(B,)`` int64 or an int: how many to keep per row (at most ``limit``).
        keys: ``(B, N)`` float uniforms in ``[0, 1)`` (see :func:`uniform_keys`).
        limit: a static upper bound of ``counts``.

    Returns:
        ``(B, N)`` bool mask of the chosen candidates (a subset of ``candidates``).
    """
    order = ordered_random(candidates, keys, limit)
    rank = torch.arange(order.shape[1], device=candidates.device).view(1, -1)
    counts = torch.as_tensor(counts, device=candidates.device).view(-1, 1)
    chosen = (rank < counts) & torch.gather(candidates, 1, order)
    return torch.zeros_like(candidates).scatter(1, order, chosen)


def ordered_random(candidates: Tensor, keys: Tensor, k: int) -> Tensor:
    """``(B, min(k, N))`` indices of each row's candidates in a uniformly random order (first
    the candidates, then non-candidates); only the first ``candidates[b].sum()`` are meaningful."""
    masked = torch.where(candidates, keys, -1.0)
    return torch.topk(masked, min(k, candidates.shape[1]), dim=1).indices


def nth_candidate(candidates: Tensor, n: Tensor) -> Tensor:
    """Index of the ``n[b, j]``-th (0-based, in index order) candidate of row ``b``.

    Args:
        candidates: ``(B, N)`` bool.
        n: ``(B, R)`` int64; entries ``>=`` the row's number of candidates give an arbitrary
            index in ``[0, N)``.

    Returns:
        ``(B, R)`` int64.
    """
    cumulative = candidates.long().cumsum(dim=1)
    index = torch.searchsorted(cumulative, (n + 1).contiguous())
    return index.clamp(max=candidates.shape[1] - 1)


def draw_with_replacement(candidates: Tensor, uniforms: Tensor) -> Tensor:
    """``(B, R)`` candidate indices drawn uniformly with replacement from each row's candidates
    (``uniforms`` ``(B, R)`` in ``[0, 1)``); arbitrary indices for rows without candidates."""
    count = candidates.sum(dim=1, keepdim=True)
    n = (uniforms * count.to(uniforms.dtype)).floor().long()
    return nth_candidate(candidates, torch.minimum(n, (count - 1).clamp(min=0)))
