"""The aspect-ratio-grouped batch sampler."""

import numpy as np
import pytest

from fasterrcnn.data import AspectRatioBatchSampler
from fasterrcnn.data.batch_dataset import group_target_ratios


def positions(sampler):
    return [[p for p, _ in batch] for batch in sampler]


@pytest.mark.parametrize("n,bs", [(10, 3), (12, 4), (7, 1), (5, 8)])
def test_batches_are_groups_and_cover_every_image_once(n, bs):
    sampler = AspectRatioBatchSampler(n, bs, seed=0)
    batches = positions(sampler)
    assert len(batches) == len(sampler) == -(-n // bs)
    for batch in batches:  # one ratio group: consecutive positions starting at a multiple of bs
        assert batch[0] % bs == 0 and batch == list(range(batch[0], batch[0] + len(batch)))
    flat = sorted(p for b in batches for p in b)
    assert flat == list(range(n))
    short = [b for b in batches if len(b) < bs]
    assert len(short) == (1 if n % bs else 0)
    assert all(e == 0 for batch in sampler for _, e in batch)


def test_batch_of_one_group_shares_a_ratio_range():
    ratio_list = np.array([0.5, 0.5, 0.7, 0.9, 1.0, 1.2, 1.5, 2.0, 2.0])
    sampler = AspectRatioBatchSampler(len(ratio_list), 3, seed=1)
    targets = group_target_ratios(ratio_list, 3)
    np.testing.assert_allclose(targets, [0.5, 1.0, 2.0])  # all < 1: smallest; crossing 1: 1
    for batch in positions(sampler):
        assert len({p // 3 for p in batch}) == 1


def test_seed_and_epoch_change_order_deterministically():
    def order(seed, epoch):
        s = AspectRatioBatchSampler(100, 2, seed=seed)
        s.set_epoch(epoch)
        return positions(s)

    assert order(3, 0) == order(3, 0)
    assert order(3, 0) != order(4, 0)
    assert order(3, 0) != order(3, 1)
    assert sorted(map(tuple, order(3, 1))) == sorted(map(tuple, order(3, 0)))
    s = AspectRatioBatchSampler(100, 2, seed=3)
    s.set_epoch(1)
    assert all(e == 1 for batch in s for _, e in batch)


def test_start_batch_resume_equals_tail():
    full = list(AspectRatioBatchSampler(23, 4, seed=5, epoch=2))
    resumed = AspectRatioBatchSampler(23, 4, seed=5, epoch=2, start_batch=4)
    assert len(resumed) == len(full) - 4
    assert list(resumed) == full[4:]
    resumed.set_epoch(3)  # the next epoch starts from its beginning
    assert list(resumed) == list(AspectRatioBatchSampler(23, 4, seed=5, epoch=3))
    with pytest.raises(ValueError):
        AspectRatioBatchSampler(23, 4, seed=5, start_batch=7)


@pytest.mark.parametrize("n,bs,world", [(24, 2, 3), (25, 2, 4), (3, 1, 5)])
def test_rank_shards_disjoint_and_covering(n, bs, world):
    shards = [
        positions(AspectRatioBatchSampler(n, bs, seed=9, rank=r, world_size=world))
        for r in range(world)
    ]
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    groups = -(-n // bs)
    all_batches = [tuple(b) for s in shards for b in s]
    assert len(all_batches) == -(-groups // world) * world
    assert sorted(p for b in set(all_batches) for p in b) == list(range(n))
    if groups % world == 0:
        assert len(set(all_batches)) == len(all_batches)  # disjoint: no padding needed
    else:  # padding repeats only as many batches as were needed
        assert len(all_batches) - len(set(all_batches)) == len(all_batches) - groups


def test_invalid_rank():
    with pytest.raises(ValueError):
        AspectRatioBatchSampler(10, 2, seed=0, rank=2, world_size=2)
