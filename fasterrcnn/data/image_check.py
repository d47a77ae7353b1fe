"""Decode every image of a dataset once and report the files that cannot be trained on.

``check_image_files(paths, expected_sizes=None, workers=0)`` returns one :class:`ImageProblem`
per bad file, in the order of ``paths``:

* a missing file, or a zero-byte file;
* a file that is not a decodable image (unknown format, corrupt header);
* a truncated or corrupt image: the whole file is decoded with Pillow (``Image.load()``), which
  raises where libjpeg would only print "Premature end of JPEG file" without a file name
  (measured: a JPEG missing anything from its last 2 bytes to half its data is reported, baseline
  and progressive alike; so is a PNG missing image data);
* an image whose decoded size (width x height, pixels as stored: EXIF orientation ignored, as
  :func:`fasterrcnn.data.image.read_image` does) differs from the annotation's.

Decoding runs in ``workers`` threads (Pillow releases the GIL while decoding); ``workers=0``
decodes in the calling thread.  Nothing is cached here: :func:`fasterrcnn.data.cache.
cached_image_problems` stores the result next to the roidb cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ImageProblem:
    """Why the image at ``path`` cannot be used (``problem`` is one sentence)."""

    path: str
    problem: str


def check_image_file(path: str, expected_size: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """The problem of one image file, or None when it decodes fully.

    Args:
        path: the image file.
        expected_size: (width, height) the annotation gives, or None to skip the size check.
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError:
        return "missing file"
    try:
        with Image.open(path) as image:
            size = image.size
            image.load()
    except UnidentifiedImageError:
        return "not a decodable image (unknown format or corrupt header)"
    except Image.DecompressionBombError as err:
        return f"too large to decode safely ({err})"
    except (OSError, ValueError, SyntaxError) as err:
        return f"truncated or corrupt image data ({err})"
    if size[0] <= 0 or size[1] <= 0:
        return f"decodes to an empty {size[0]}x{size[1]} image"
    if expected_size is not None and tuple(int(v) for v in expected_size) != tuple(size):
        return (
            f"decoded size is {size[0]}x{size[1]} (width x height) but the annotation says "
            f"{int(expected_size[0])}x{int(expected_size[1])}"
        )
    return None


def check_image_files(
    paths: Sequence[str],
    expected_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    workers: int = 0,
) -> List[ImageProblem]:
    """Decode every file of ``paths``; the problems found, in the order of ``paths``.

    Args:
        paths: image files.
        expected_sizes: per path the annotated (width, height), or None for no size check.
        workers: decoding threads; 0 decodes in the calling thread.

    Raises:
        ValueError: ``expected_sizes`` does not have one entry per path, or ``workers < 0``.
    """
    paths = [os.fspath(p) for p in paths]
    sizes: Sequence[Optional[Tuple[int, int]]] = [None] * len(paths)
    if expected_sizes is not None:
        if len(expected_sizes) != len(paths):
            raise ValueError(
                f"expected_sizes has {len(expected_sizes)} entries for {len(paths)} paths"
            )
        sizes = expected_sizes
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        found = [check_image_file(p, s) for p, s in zip(paths, sizes)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(check_image_file, paths, sizes))
    return [ImageProblem(p, problem) for p, problem in zip(paths, found) if problem is not None]


def format_problems(problems: Sequence[ImageProblem]) -> str:
    """One line per problem: ``path: problem``."""
    return "\n".join(f"  {p.path}: {p.problem}" for p in problems)
