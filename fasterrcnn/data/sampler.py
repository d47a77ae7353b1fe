"""The aspect-ratio-grouped batch sampler.

Images are taken in ratio order (``ratio_index`` of :mod:`.roidb`); group ``g`` is the
consecutive positions ``[g * batch_size, (g + 1) * batch_size)``, as in the reference, so the
images of a batch have neighbouring aspect ratios and share one target ratio.  When the number
of images is not a multiple of the batch size, the last group is shorter: it is yielded as a
smaller batch (nothing is dropped).

Each epoch the order of the groups is shuffled by a ``torch.Generator`` seeded from
``(seed, epoch)``.  For distributed training the shuffled list is padded to a multiple of
``world_size`` by repeating its first groups (only when it is not a multiple already), and rank
``r`` takes groups ``r, r + world_size, ...``: the ranks' batches are disjoint apart from that
padding, and together cover every image once per epoch.  ``start_batch`` skips the first
batches of this rank's epoch, for an exact resume mid-epoch.

The sampler yields lists of ``(position, epoch)`` pairs; ``position`` indexes the ratio order
and :class:`~fasterrcnn.data.batch_dataset.RoIBatchDataset` maps it to a roidb entry.
"""

from __future__ import annotations

from typing import Iterator, List, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler


def num_groups(num_images: int, batch_size: int) -> int:
    """Number of ratio groups (batches per epoch over all ranks)."""
    return (num_images + batch_size - 1) // batch_size


def group_of(position: int, batch_size: int) -> int:
    """The group of a position in ratio order."""
    return position // batch_size


def mix_seed(*values: int) -> int:
    """A 63-bit seed derived from non-negative integers (stable across runs and platforms)."""
    return int(
        np.random.SeedSequence([int(v) for v in values])
        .generate_state(2, np.uint32)
        .astype(np.uint64)
        .dot([1 << 31, 1])
    )


class AspectRatioBatchSampler(Sampler[List[Tuple[int, int]]]):
    """Batches of one ratio group each; see the module docstring.

    Args:
        num_images: number of roidb entries.
        batch_size: images per batch (any positive number).
        seed: shuffling seed (non-negative).
        epoch, start_batch: where to start; ``set_epoch`` moves on.
        rank, world_size: this process's shard.
    """

    def __init__(
        self,
        num_images: int,
        batch_size: int,
        seed: int,
        epoch: int = 0,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_images <= 0 or batch_size <= 0:
            raise ValueError("num_images and batch_size must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.num_images = num_images
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.set_epoch(epoch, start_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use the shuffle of ``epoch`` and start at its batch ``start_batch`` (0: the start)."""
        if not 0 <= start_batch <= self.batches_per_epoch():
            raise ValueError(f"start_batch {start_batch} outside 0..{self.batches_per_epoch()}")
        self.epoch = epoch
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        """Batches this rank gets in a full epoch."""
        return (
            num_groups(self.num_images, self.batch_size) + self.world_size - 1
        ) // self.world_size

    def epoch_batches(self) -> List[List[int]]:
        """This rank's batches (lists of positions in ratio order) for the whole epoch."""
        groups = num_groups(self.num_images, self.batch_size)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(groups, generator=generator).tolist()
        padded = self.batches_per_epoch() * self.world_size
        order += [order[i % groups] for i in range(padded - groups)]
        return [
            list(range(g * self.batch_size, min((g + 1) * self.batch_size, self.num_images)))
            for g in order[self.rank :: self.world_size]
        ]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for batch in self.epoch_batches()[self.start_batch :]:
            yield [(position, self.epoch) for position in batch]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch
