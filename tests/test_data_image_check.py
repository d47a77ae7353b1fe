"""The image check: every bad file found by decoding it fully, named with its problem."""

import cv2
import numpy as np
import pytest

from fasterrcnn.data.image_check import ImageProblem, check_image_files


def noisy_image(height=90, width=120, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((height, width, 3)) * 255).astype(np.uint8), (5, 5), 2)


@pytest.fixture
def image_dir(tmp_path):
    good = noisy_image()
    cv2.imwrite(str(tmp_path / "good.jpg"), good)
    cv2.imwrite(str(tmp_path / "good.png"), good)
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 3])  # most rows missing
    (tmp_path / "no_eoi.jpg").write_bytes(data[:-2])
    png = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:len(png) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    return tmp_path


def test_truncated_jpeg_decodes_silently_with_opencv(image_dir):
    """Why the check exists: OpenCV returns a gray-filled image and only libjpeg's stderr
    warning (without a file name) tells."""
    image = cv2.imread(str(image_dir / "cut.jpg"))
    assert image is not None and image.shape == (90, 120, 3)


def test_every_bad_file_is_reported_in_order(image_dir):
    names = ["good.jpg", "cut.jpg", "good.png", "empty.jpg", "text.jpg", "missing.jpg",
             "no_eoi.jpg", "cut.png"]
    problems = check_image_files([str(image_dir / n) for n in names])
    assert [p.path for p in problems] == [str(image_dir / n) for n in names
                                          if not n.startswith("good")]
    by_name = {p.path.rsplit("/", 1)[1]: p.problem for p in problems}
    assert "truncated" in by_name["cut.jpg"] and "truncated" in by_name["no_eoi.jpg"]
    assert "truncated" in by_name["cut.png"]
    assert by_name["empty.jpg"] == "empty file (0 bytes)"
    assert "not a decodable image" in by_name["text.jpg"]
    assert by_name["missing.jpg"] == "missing file"
    assert all(isinstance(p, ImageProblem) for p in problems)


def test_size_disagreeing_with_the_annotation(image_dir):
    paths = [str(image_dir / "good.jpg"), str(image_dir / "good.png")]
    assert check_image_files(paths, [(120, 90), (120, 90)]) == []
    problems = check_image_files(paths, [(120, 90), (90, 120)])
    assert problems == [ImageProblem(paths[1], "decoded size is 120x90 (width x height) but "
                                               "the annotation says 90x120")]
    with pytest.raises(ValueError, match="1 entries for 2 paths"):
        check_image_files(paths, [(120, 90)])


def test_threads_give_the_same_report(image_dir):
    paths = sorted(str(p) for p in image_dir.iterdir()) * 3
    assert check_image_files(paths, workers=3) == check_image_files(paths, workers=0)
    with pytest.raises(ValueError, match="workers"):
        check_image_files(paths, workers=-1)
