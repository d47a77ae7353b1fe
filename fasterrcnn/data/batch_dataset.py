"""The training dataset: one roidb entry -> one image of a ratio-grouped batch.

For the entry at ratio-order position ``p`` of epoch ``e`` (keys come from
:class:`~fasterrcnn.data.sampler.AspectRatioBatchSampler`):

1. read the image (OpenCV, BGR); flip it horizontally when the entry is ``flipped`` (its boxes
   are flipped already in the roidb);
2. when the entry's aspect ratio is outside ``[TRAIN.ASPECT_RATIO_MIN, MAX]`` (``need_crop``),
   crop the long side, in original pixels, to the clamped ratio.  The window keeps all boxes
   when their extent fits (offset drawn uniformly among the windows that do), otherwise it lies
   inside the boxes' extent; boxes are shifted and clipped to it;
3. scale by the batch's scale: ``TRAIN.SCALES[k]`` for the short side, the long side capped at
   ``TRAIN.MAX_SIZE`` (see :mod:`.image`); ``k`` is drawn from ``(seed, epoch, group)`` so the
   whole batch shares it; boxes are multiplied by the scale;
4. subtract ``PIXEL_MEANS``, divide by ``PIXEL_STDS``;
5. pad with zeros (bottom or right) to the group's target ratio, chosen as the reference does:
   a group whose ratios are all below 1 takes its smallest ratio, all above 1 its largest,
   otherwise 1.  ``im_info = [padded height, padded width, scale]``.

Boxes whose corners end less than one pixel apart after the crop are dropped (see
:mod:`.validate`).  More than ``MAX_NUM_GT_BOXES`` boxes: a random subset of that many is kept
(drawn from ``(seed, epoch, entry)``, original order) and a warning names the image.
Random draws never use global state, so results do not depend on workers.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from fasterrcnn.config import Config
from fasterrcnn.data.image import image_scale, read_image, resize_normalize
from fasterrcnn.data.sampler import group_of, num_groups
from fasterrcnn.data.validate import degenerate

logger = logging.getLogger(__name__)

_SCALE_STREAM, _CROP_STREAM, _SUBSET_STREAM = 0, 1, 2


class Sample(NamedTuple):
    """One training image.

    im_data (3,H,W) float32 normalised BGR; im_info (3,) float32 [H, W, scale];
    gt_boxes (MAX_NUM_GT_BOXES,5) float32 [x1,y1,x2,y2,class] in resized pixels (+1 convention),
    zero rows after num_boxes; num_boxes () int64; image: the file path.
    """

    im_data: torch.Tensor
    im_info: torch.Tensor
    gt_boxes: torch.Tensor
    num_boxes: torch.Tensor
    image: str


def group_target_ratios(ratio_list: np.ndarray, batch_size: int) -> np.ndarray:
    """(num_groups,) target aspect ratio of each group of the sorted ``ratio_list``."""
    ratio_list = np.asarray(ratio_list, dtype=np.float64)
    out = np.ones(num_groups(len(ratio_list), batch_size), dtype=np.float64)
    for g in range(len(out)):
        first, last = (
            ratio_list[g * batch_size],
            ratio_list[min((g + 1) * batch_size, len(ratio_list)) - 1],
        )
        if last < 1:
            out[g] = first
        elif first > 1:
            out[g] = last
    return out


def crop_offset(length: int, size: int, lo: float, hi: float, rng: np.random.Generator) -> int:
    """Start of a window of ``size`` pixels in ``[0, length)`` for boxes spanning ``[lo, hi]``.

    When ``hi - lo + 1 <= size`` every start keeping ``[lo, hi]`` inside is equally likely;
    otherwise the window lies inside ``[lo, hi]``.  Offsets are integers.
    """
    last = length - size
    if last <= 0:
        return 0
    need_lo, need_hi = int(math.ceil(hi)) - size + 1, int(math.floor(lo))
    if need_lo > need_hi:
        need_lo, need_hi = need_hi, need_lo
    start, stop = max(0, need_lo), min(last, need_hi)
    if start > stop:
        start = stop = min(max(0, need_lo), last)
    return int(rng.integers(start, stop + 1))


class RoIBatchDataset(Dataset):
    """Training images for the ratio-grouped loader; see the module docstring.

    Args:
        roidb: entries of :mod:`.roidb` (with ``need_crop``).
        ratio_list, ratio_index: from :func:`~fasterrcnn.data.roidb.combined_roidb`.
        cfg: the config (TRAIN.SCALES, TRAIN.MAX_SIZE, TRAIN.ASPECT_RATIO_*, PIXEL_MEANS,
            PIXEL_STDS, MAX_NUM_GT_BOXES).
        batch_size: the sampler's batch size (defines the groups).
        seed: seed of the per-batch scale and per-image crop draws.

    Items: ``dataset[(position, epoch)]`` or ``dataset[position]`` (epoch 0) -> :class:`Sample`.
    """

    def __init__(
        self,
        roidb: Sequence[dict],
        ratio_list: np.ndarray,
        ratio_index: np.ndarray,
        cfg: Config,
        batch_size: int,
        seed: int = 0,
    ) -> None:
        self.roidb = roidb
        self.ratio_index = np.asarray(ratio_index, dtype=np.int64)
        self.cfg = cfg
        self.batch_size = batch_size
        self.seed = seed
        self.target_ratios = group_target_ratios(ratio_list, batch_size)

    def __len__(self) -> int:
        return len(self.roidb)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Sample:
        position, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        position, epoch = int(position), int(epoch)
        index = int(self.ratio_index[position])
        group = group_of(position, self.batch_size)
        entry = self.roidb[index]
        cfg = self.cfg
        image = read_image(entry["image"])
        if image.shape[:2] != (entry["height"], entry["width"]):
            raise ValueError(
                f"image {entry['image']} is {image.shape[1]}x{image.shape[0]} but "
                f"its annotation says {entry['width']}x{entry['height']}"
            )
        if entry.get("flipped", False):
            image = image[:, ::-1]
        boxes = np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 4).copy()
        classes = np.asarray(entry["gt_classes"], dtype=np.int64).copy()
        if entry.get("need_crop", False):
            image, boxes = self._crop(image, boxes, self._rng(_CROP_STREAM, epoch, index))
            keep = ~degenerate(boxes)
            boxes, classes = boxes[keep], classes[keep]
        scales = cfg.TRAIN.SCALES
        target = scales[int(self._rng(_SCALE_STREAM, epoch, group).integers(len(scales)))]
        scale = image_scale(image.shape[0], image.shape[1], target, cfg.TRAIN.MAX_SIZE)
        data = resize_normalize(image, scale, cfg.PIXEL_MEANS, cfg.PIXEL_STDS)
        data = self._pad_to_ratio(data, self.target_ratios[group])
        boxes = boxes * np.float32(scale)
        if len(boxes) > cfg.MAX_NUM_GT_BOXES:
            logger.warning(
                "%s: %d boxes, more than MAX_NUM_GT_BOXES=%d: keeping a random %d",
                entry["image"],
                len(boxes),
                cfg.MAX_NUM_GT_BOXES,
                cfg.MAX_NUM_GT_BOXES,
            )
            rng = self._rng(_SUBSET_STREAM, epoch, index)
            keep = np.sort(rng.choice(len(boxes), cfg.MAX_NUM_GT_BOXES, replace=False))
            boxes, classes = boxes[keep], classes[keep]
        gt_boxes = np.zeros((cfg.MAX_NUM_GT_BOXES, 5), dtype=np.float32)
        gt_boxes[: len(boxes), :4] = boxes
        gt_boxes[: len(boxes), 4] = classes
        im_info = np.array([data.shape[0], data.shape[1], scale], dtype=np.float32)
        return Sample(
            torch.from_numpy(np.ascontiguousarray(data.transpose(2, 0, 1))),
            torch.from_numpy(im_info),
            torch.from_numpy(gt_boxes),
            torch.tensor(len(boxes), dtype=torch.int64),
            entry["image"],
        )

    def _rng(self, stream: int, epoch: int, item: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, epoch, item])

    def _crop(
        self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Crop the long side to the clamped aspect ratio; boxes shifted and clipped."""
        height, width = image.shape[:2]
        lo_ratio, hi_ratio = self.cfg.TRAIN.ASPECT_RATIO_MIN, self.cfg.TRAIN.ASPECT_RATIO_MAX
        boxes = boxes.copy()
        if width > hi_ratio * height:
            size = max(1, int(math.floor(height * hi_ratio)))
            start = crop_offset(width, size, *self._extent(boxes, 0, width), rng)
            image = image[:, start : start + size]
            boxes[:, 0::2] = np.clip(boxes[:, 0::2] - start, 0, size - 1)
        elif width < lo_ratio * height:
            size = max(1, int(math.floor(width / lo_ratio)))
            start = crop_offset(height, size, *self._extent(boxes, 1, height), rng)
            image = image[start : start + size]
            boxes[:, 1::2] = np.clip(boxes[:, 1::2] - start, 0, size - 1)
        return image, boxes

    @staticmethod
    def _extent(boxes: np.ndarray, axis: int, length: int) -> Tuple[float, float]:
        if len(boxes) == 0:
            return 0.0, float(length - 1)
        return float(boxes[:, axis].min()), float(boxes[:, axis + 2].max())

    @staticmethod
    def _pad_to_ratio(data: np.ndarray, ratio: float) -> np.ndarray:
        height, width = data.shape[:2]
        new_width = max(width, int(math.ceil(height * ratio - 1e-6)))
        new_height = max(height, int(math.ceil(width / ratio - 1e-6)))
        if (new_height, new_width) == (height, width):
            return data
        padded = np.zeros((new_height, new_width, 3), dtype=np.float32)
        padded[:height, :width] = data
        return padded
