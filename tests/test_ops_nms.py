"""fasterrcnn.ops.nms / batched_nms vs torchvision.ops: identical kept indices."""

import pytest
import torch
import torchvision

from fasterrcnn import ops
from fasterrcnn.ops import fallback


def random_boxes(n, generator, dtype=torch.float32, size=200.0):
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size * 0.3 + 1.0
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_boxes(n, generator, dtype=torch.float32):
    """Dense clusters: jittered copies of a few boxes, many IoUs near every threshold."""
    centres = torch.tensor(
        [[10.0, 10.0, 60.0, 50.0], [40.0, 30.0, 90.0, 100.0], [42.0, 28.0, 95.0, 97.0]],
        dtype=torch.float64,
    )
    pick = torch.randint(0, 3, (n,), generator=generator)
    jitter = (torch.rand(n, 4, generator=generator, dtype=torch.float64) - 0.5) * 16.0
    return (centres[pick] + jitter).to(dtype)


def distinct_scores(n, generator, dtype=torch.float32):
    return (torch.randperm(n, generator=generator).to(torch.float64) / n).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_nms_matches_torchvision(backend, dtype, iou_threshold, kind):
    gen = torch.Generator().manual_seed(int(iou_threshold * 10))
    n = 700 if kind == "random" else 400  # > one fallback block, several 64-box blocks
    boxes = random_boxes(n, gen, dtype) if kind == "random" else clustered_boxes(n, gen, dtype)
    scores = distinct_scores(n, gen, dtype)
    keep = ops.nms(boxes, scores, iou_threshold)
    expected = torchvision.ops.nms(boxes, scores, iou_threshold)
    assert keep.dtype == torch.int64
    assert 1 < keep.numel() < n
    assert torch.equal(keep, expected)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_torchvision(backend, iou_threshold):
    gen = torch.Generator().manual_seed(3)
    boxes = torch.cat([random_boxes(300, gen), clustered_boxes(300, gen)])
    scores = distinct_scores(600, gen)
    idxs = torch.randint(0, 5, (600,), generator=gen)
    keep = ops.batched_nms(boxes, scores, idxs, iou_threshold)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold))
    # kept boxes of one class never overlap above the threshold; different classes may
    kept_boxes, kept_idxs = boxes[keep], idxs[keep]
    iou = torchvision.ops.box_iou(kept_boxes, kept_boxes).fill_diagonal_(0.0)
    same_class = kept_idxs[:, None] == kept_idxs[None, :]
    assert not bool((iou[same_class] > iou_threshold).any())
    assert bool((iou[~same_class] > iou_threshold).any())


def test_hand_computed(backend):
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # score 0.9, kept
            [1.0, 0.0, 11.0, 10.0],  # IoU 90/110 = 0.818 with box 0: removed
            [5.0, 0.0, 15.0, 10.0],  # IoU 50/150 = 0.333 with box 0: kept
            [20.0, 20.0, 30.0, 30.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert ops.nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert ops.nms(boxes, scores, 0.3).tolist() == [3, 0]
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.3).tolist() == [3, 0, 1]


def test_empty(backend):
    empty = torch.zeros(0, 4)
    for keep in (
        ops.nms(empty, torch.zeros(0), 0.5),
        ops.batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5),
    ):
        assert keep.dtype == torch.int64 and keep.shape == (0,)


def test_noncontiguous(backend):
    gen = torch.Generator().manual_seed(9)
    boxes = random_boxes(300, gen).t().contiguous().t()
    scores = distinct_scores(600, gen)[::2]
    assert not boxes.is_contiguous() and not scores.is_contiguous()
    assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))


def test_fallback_matches_compiled(backend):
    gen = torch.Generator().manual_seed(21)
    boxes = torch.cat([random_boxes(500, gen), clustered_boxes(500, gen)])
    scores = distinct_scores(1000, gen)
    assert torch.equal(ops.nms(boxes, scores, 0.7), fallback.nms(boxes, scores, 0.7))


def mask_to_keep(mask, scores):
    """Indices of a keep mask in the order nms returns them: decreasing score, ties by index."""
    kept = torch.nonzero(mask).squeeze(1)
    order = torch.sort(scores[kept], descending=True, stable=True).indices
    return kept[order]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_nms_mask_matches_nms(backend, dtype, iou_threshold, kind):
    gen = torch.Generator().manual_seed(int(iou_threshold * 10) + 40)
    n = 600 if kind == "random" else 300
    boxes = random_boxes(n, gen, dtype) if kind == "random" else clustered_boxes(n, gen, dtype)
    scores = distinct_scores(n, gen, dtype)
    mask = ops.nms_mask(boxes, scores, iou_threshold)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    expected = torchvision.ops.nms(boxes, scores, iou_threshold)
    assert 0 < int(mask.sum()) < n
    assert torch.equal(mask_to_keep(mask, scores), expected)


def test_nms_mask_degenerate(backend):
    # equal scores (input order decides), identical boxes, zero-area boxes (IoU 0/0 = NaN is
    # never > threshold: they survive), and one box
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 5.0, 5.0, 5.0],
            [5.0, 5.0, 5.0, 5.0],
            [0.0, 0.0, 10.0, 10.0],
            [20.0, 0.0, 30.0, 9.0],
        ]
    )
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9, 0.7, 0.5])
    mask = ops.nms_mask(boxes, scores, 0.5)
    assert mask.tolist() == [False, False, True, True, True, True]
    assert torch.equal(mask_to_keep(mask, scores), torchvision.ops.nms(boxes, scores, 0.5))
    assert ops.nms_mask(boxes[:1], scores[:1], 0.5).tolist() == [True]
    empty = ops.nms_mask(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.bool and empty.shape == (0,)


def test_batched_nms_mask_matches_batched_nms(backend):
    gen = torch.Generator().manual_seed(8)
    boxes = torch.cat([random_boxes(200, gen), clustered_boxes(200, gen)])
    scores = distinct_scores(400, gen)
    idxs = torch.randint(0, 4, (400,), generator=gen)
    mask = ops.batched_nms_mask(boxes, scores, idxs, 0.5)
    assert mask.shape == (400,)
    assert torch.equal(
        mask_to_keep(mask, scores), torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    )
    empty = ops.batched_nms_mask(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5
    )
    assert empty.shape == (0,) and empty.dtype == torch.bool


def test_nms_mask_argument_errors():
    boxes, scores = torch.rand(5, 4), torch.rand(5)
    with pytest.raises(ValueError, match=r"nms_mask: scores must have shape \(N,\)"):
        ops.nms_mask(boxes, scores[:4], 0.5)
    with pytest.raises(ValueError, match=r"nms_mask: boxes must have shape \(N,4\)"):
        ops.nms_mask(boxes[:, :3], scores, 0.5)
    with pytest.raises(ValueError, match="batched_nms_mask: idxs"):
        ops.batched_nms_mask(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5)


@pytest.mark.parametrize("n", [0, 1, 70, 3000])
def test_nms_and_mask_on_device(device, n):
    """Every device: nms and nms_mask agree with torchvision (on CPU) across several 64-box
    blocks of the CUDA bitmask and its on-device scan."""
    gen = torch.Generator().manual_seed(n)
    boxes = torch.cat([random_boxes(n - n // 2, gen), clustered_boxes(n // 2, gen)])
    scores = distinct_scores(n, gen)
    expected = torchvision.ops.nms(boxes, scores, 0.6)
    keep = ops.nms(boxes.to(device), scores.to(device), 0.6)
    mask = ops.nms_mask(boxes.to(device), scores.to(device), 0.6)
    assert keep.device.type == mask.device.type == device.type
    assert torch.equal(keep.cpu(), expected)
    assert torch.equal(mask_to_keep(mask.cpu(), scores), expected)
