"""DataLoaders: the ratio-grouped training loader and the test-time image path.

Training batches are :class:`TrainBatch` named tuples ``(im_data (B,3,H,W), im_info (B,3),
gt_boxes (B,MAX_NUM_GT_BOXES,5), num_boxes (B,) int64, image_paths)`` where ``image_paths`` (a
5th element, for error messages) lists each image's file.  ``batch[:4]`` is the model input.
Images of a batch are zero-padded at the bottom/right to the batch's largest height and width;
``im_info`` keeps each image's own (ratio-padded) size and scale.
"""

from __future__ import annotations

import random
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fasterrcnn.config import Config
from fasterrcnn.data.batch_dataset import RoIBatchDataset, Sample
from fasterrcnn.data.image import image_scale, read_image, resize_normalize
from fasterrcnn.data.imdb import Imdb
from fasterrcnn.data.sampler import AspectRatioBatchSampler, mix_seed


class TrainBatch(NamedTuple):
    """A training batch; see the module docstring."""

    im_data: torch.Tensor
    im_info: torch.Tensor
    gt_boxes: torch.Tensor
    num_boxes: torch.Tensor
    image_paths: List[str]


def collate_batch(samples: Sequence[Sample]) -> TrainBatch:
    """Stack samples, zero-padding images to the largest height and width of the batch."""
    height = max(s.im_data.shape[1] for s in samples)
    width = max(s.im_data.shape[2] for s in samples)
    im_data = samples[0].im_data.new_zeros((len(samples), 3, height, width))
    for b, s in enumerate(samples):
        im_data[b, :, : s.im_data.shape[1], : s.im_data.shape[2]] = s.im_data
    return TrainBatch(
        im_data,
        torch.stack([s.im_info for s in samples]),
        torch.stack([s.gt_boxes for s in samples]),
        torch.stack([s.num_boxes for s in samples]),
        [s.image for s in samples],
    )


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed
    (itself fixed by the loader's generator).  The loader draws nothing from them; this only
    keeps third-party code in the workers reproducible.  (OpenCV's thread count is left alone:
    ``cv2.setNumThreads`` in a forked worker can deadlock on the parent's thread pool.)"""
    seed = torch.initial_seed() % (1 << 32)
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(
    cfg: Config,
    roidb: Sequence[dict],
    ratio_list: np.ndarray,
    ratio_index: np.ndarray,
    batch_size: int,
    num_workers: int,
    seed: int,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """The training DataLoader yielding :class:`TrainBatch`.

    Its ``batch_sampler`` is an :class:`AspectRatioBatchSampler`: call
    ``loader.batch_sampler.set_epoch(e)`` before each new epoch (``start_batch`` applies to the
    first epoch only).  Batches do not depend on ``num_workers``.  Workers persist across
    epochs (reuse the loader: iterating it again does not fork new ones); ``pin_memory`` (for
    a CUDA device) makes ``.to(device, non_blocking=True)`` an asynchronous copy.
    """
    dataset = RoIBatchDataset(roidb, ratio_list, ratio_index, cfg, batch_size, seed)
    sampler = AspectRatioBatchSampler(
        len(roidb), batch_size, seed, epoch, start_batch, rank, world_size
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_batch,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(mix_seed(seed, rank)),
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


def prepare_test_image(image_bgr: np.ndarray, cfg: Config) -> Tuple[torch.Tensor, torch.Tensor]:
    """A test image as model input, at ``TEST.SCALES[0]`` with the long side capped at
    ``TEST.MAX_SIZE``.

    Args:
        image_bgr: (H,W,3) uint8 BGR (a 2-D grayscale image is expanded to 3 channels).

    Returns:
        im_data (1,3,h,w) float32 normalised; im_info (1,3) float32 [h, w, scale].  Boxes
        predicted on it are divided by ``scale`` to return to the original pixels.

    Raises:
        ValueError: the image is not (H,W,3) / (H,W), or has no pixels (0 x W or H x 0).
    """
    image = np.asarray(image_bgr)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H,W,3) BGR image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            f"the image is empty ({image.shape[1]}x{image.shape[0]} pixels): "
            "there is nothing to detect objects in"
        )
    scale = image_scale(image.shape[0], image.shape[1], cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE)
    data = resize_normalize(image, scale, cfg.PIXEL_MEANS, cfg.PIXEL_STDS)
    im_data = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 0, 1)))[None]
    im_info = torch.tensor([[data.shape[0], data.shape[1], scale]], dtype=torch.float32)
    return im_data, im_info


class TestImageDataset(Dataset):
    """The imdb's images in ``image_index`` order (no flips) for testing.

    ``dataset[i]`` -> (im_data (1,3,h,w), im_info (1,3), i, (height, width)) as
    :func:`prepare_test_image`, with the original image's size (to clip boxes to it); use it
    with ``DataLoader(dataset, batch_size=None, ...)``.  An unreadable image raises OSError
    naming the file.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, imdb: Imdb, cfg: Config) -> None:
        self.imdb = imdb
        self.cfg = cfg

    def __len__(self) -> int:
        return self.imdb.num_images

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor, int, Tuple[int, int]]:
        image = read_image(self.imdb.image_path_at(i))
        im_data, im_info = prepare_test_image(image, self.cfg)
        return im_data, im_info, i, (image.shape[0], image.shape[1])
