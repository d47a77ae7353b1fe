"""Fixed-size random sampling for the target layers: no host round trip, no data-dependent shape.

Randomness: once per training forward, :func:`draw_seed` takes one 32-bit seed from the model's
CPU ``torch.Generator`` (so a run is reproducible, a resumed run continues the stream, and each
distributed rank has its own); every random number of the iteration is then a counter-based hash
of ``(seed, stream, index)`` (:func:`uniform_keys`), computed on the device with integer tensor
maths: the same numbers on CPU and CUDA, compiled or eager, whatever the data.  The selection
runs on the device of the inputs:

* a uniform random subset of ``k`` candidates without replacement is the ``k`` candidates of
  largest key (``topk`` of random keys over a mask);
* a draw with replacement from a candidate pool of size ``n`` picks the ``floor(u * n)``-th
  candidate in index order.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF


@torch.compiler.disable
def draw_seed(generator: torch.Generator, device: torch.device) -> Tensor:
    """A 0-dim int64 seed in ``[0, 2**32)`` from the CPU ``generator``, on ``device``.

    The one place the training forward touches the generator: ``torch.compile`` runs it eagerly
    (a ``torch.Generator`` cannot enter a graph: one graph break at the top of the forward); the
    copy to ``device`` is a host-to-device copy, not a synchronisation.
    """
    return torch.randint(0, 2**32, (), generator=generator, dtype=torch.int64).to(device)


def _mul32(x: Tensor, factor: int) -> Tensor:
    """``x * factor mod 2**32`` for ``x`` in ``[0, 2**32)`` without int64 overflow."""
    low, high = factor & 0xFFFF, factor >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (xorshift-multiply, "lowbias32") of ``x`` in
    ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniform_keys(seed: Tensor, stream: int, shape: Sequence[int]) -> Tensor:
    """``shape`` float64 uniforms in ``[0, 1)`` (53 random bits), on the device of ``seed``.

    Element ``i`` (row-major) of stream ``stream`` is a hash of ``(seed, stream, i)``: distinct
    elements get distinct values (no ties), and a prefix of the shape's leading dimension gets
    the same values in a larger batch.
    """
    count = 1
    for size in shape:
        count *= size
    base = _hash32((seed + 0x9E3779B9 * (stream + 1)) & _MASK32)
    index = torch.arange(count, device=seed.device, dtype=torch.int64)
    high = _hash32(base ^ index)
    low = _hash32(high ^ 0x5BD1E995)
    bits = (high << 21) | (low >> 11)
    return (bits.to(torch.float64) * 2.0**-53).view(tuple(shape))


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
