"""A seeded held-out split of one annotated set into training and test images."""

from __future__ import annotations

from typing import Tuple

import numpy as np


def held_out_split(num_images: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of ``num_images`` images, each sorted ascending.

    ``round(fraction * num_images)`` images (at least 1 and at most ``num_images - 1``) are
    drawn for testing with ``numpy.random.default_rng(seed)``: the same images, seed and
    fraction always give the same split, on every machine.  ``fraction == 0`` keeps every image
    for training.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``, or a split of fewer than two images.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    everything = np.arange(num_images, dtype=np.int64)
    if fraction == 0.0:
        return everything, np.zeros(0, dtype=np.int64)
    if num_images < 2:
        raise ValueError(f"cannot hold out a test split from {num_images} image(s)")
    num_test = min(max(int(round(fraction * num_images)), 1), num_images - 1)
    order = np.random.default_rng(int(seed)).permutation(num_images)
    return np.sort(order[num_test:]), np.sort(order[:num_test])
