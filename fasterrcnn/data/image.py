"""Image reading, scaling and normalisation shared by training and test.

Images are OpenCV BGR.  A scale maps the short side to the target size unless the long side
would then exceed ``max_size`` (the reference's rule: ``round(scale * long) > max_size``), in
which case the long side becomes ``max_size``.  Normalisation subtracts ``PIXEL_MEANS`` and
divides by ``PIXEL_STDS`` (both BGR), after resizing in float32 as the reference does.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

_READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: str) -> np.ndarray:
    """(H,W,3) uint8 BGR (EXIF orientation ignored: pixels as stored, like the annotations).

    Raises:
        OSError naming the file when it is missing or cannot be decoded.
    """
    image = cv2.imread(path, _READ_FLAGS)
    if image is None:
        raise OSError(f"cannot read image {path} (missing or not a decodable image)")
    return image


def image_scale(height: int, width: int, target_size: int, max_size: int) -> float:
    """The resize factor for an image of this size."""
    short, long_ = min(height, width), max(height, width)
    scale = float(target_size) / float(short)
    if np.round(scale * long_) > max_size:
        scale = float(max_size) / float(long_)
    return scale


def scaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    """(height, width) after resizing by ``scale`` (rounded, at least 1)."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_normalize(image: np.ndarray, scale: float, means: Sequence[float],
                     stds: Sequence[float]) -> np.ndarray:
    """(h,w,3) float32: ``image`` resized by ``scale`` (bilinear), means subtracted, divided by
    stds."""
    height, width = scaled_size(image.shape[0], image.shape[1], scale)
    data = image.astype(np.float32)
    if (height, width) != image.shape[:2]:
        data = cv2.resize(data, (width, height), interpolation=cv2.INTER_LINEAR)
    data -= np.asarray(means, dtype=np.float32)
    data /= np.asarray(stds, dtype=np.float32)
    return data
