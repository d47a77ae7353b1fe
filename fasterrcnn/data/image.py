"""Image reading, scaling and normalisation shared by training and test.

:func:`read_image` is the one image reader of the library: training, ``test_net`` (and its
``--vis`` drawings), ``demo`` and ``Detector.predict`` on a path all read files through it, so one
file gives the same pixels, hence the same boxes, everywhere.  Its policy:

* EXIF orientation is ignored: pixels are used as stored in the file.  Annotations (VOC XML
  sizes, COCO ``width``/``height``, the image check) describe the stored pixels, and a camera's
  rotation flag applied in one place and not another moves every box;
* grayscale images are replicated to three channels; an alpha channel is dropped (the colour
  channels as stored, not composited); 16-bit images keep their top 8 bits (``value >> 8``);
* a missing, empty or undecodable file raises an ``OSError`` naming it.

Images are OpenCV BGR.  A scale maps the short side to the target size unless the long side
would then exceed ``max_size`` (the reference's rule: ``round(scale * long) > max_size``), in
which case the long side becomes ``max_size``.  Normalisation subtracts ``PIXEL_MEANS`` and
divides by ``PIXEL_STDS`` (both BGR), after resizing in float32 as the reference does.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple, Union

import cv2
import numpy as np

_READ_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """(H,W,3) uint8 BGR pixels of an image file, as the module docstring's policy says.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it).
        OSError: the file is empty or cannot be decoded (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    if os.path.getsize(path) == 0:
        raise OSError(f"cannot read image {path}: the file is empty (0 bytes)")
    image = cv2.imread(path, _READ_FLAGS)
    if image is None or image.size == 0:
        raise OSError(
            f"cannot read image {path}: not a decodable image (unknown format or corrupt file)"
        )
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


def resize_normalize(
    image: np.ndarray, scale: float, means: Sequence[float], stds: Sequence[float]
) -> np.ndarray:
    """(h,w,3) float32: ``image`` resized by ``scale`` (bilinear), means subtracted, divided by
    stds."""
    height, width = scaled_size(image.shape[0], image.shape[1], scale)
    data = image.astype(np.float32)
    if (height, width) != image.shape[:2]:
        data = cv2.resize(data, (width, height), interpolation=cv2.INTER_LINEAR)
    data -= np.asarray(means, dtype=np.float32)
    data /= np.asarray(stds, dtype=np.float32)
    return data
