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
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])  # most rows missing
    (tmp_path / "no_eoi.jpg").write_bytes(data[:-2])
    png = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    return tmp_path


def test_truncated_jpeg_decodes_silently_with_opencv(image_dir):
    """Why the check exists: OpenCV returns a gray-filled image and only libjpeg's stderr
    warning (without a file name) tells."""
    image = cv2.imread(str(image_dir / "cut.jpg"))
    assert image is not None and image.shape == (90, 120, 3)


def test_every_bad_file_is_reported_in_order(image_dir):
    names = [
        "good.jpg",
        "cut.jpg",
        "good.png",
        "empty.jpg",
        "text.jpg",
        "missing.jpg",
        "no_eoi.jpg",
        "cut.png",
    ]
    problems = check_image_files([str(image_dir / n) for n in names])
    assert [p.path for p in problems] == [
        str(image_dir / n) for n in names if not n.startswith("good")
    ]
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
    assert problems == [
        ImageProblem(
            paths[1], "decoded size is 120x90 (width x height) but the annotation says 90x120"
        )
    ]
    with pytest.raises(ValueError, match="1 entries for 2 paths"):
        check_image_files(paths, [(120, 90)])


def test_threads_give_the_same_report(image_dir):
    paths = sorted(str(p) for p in image_dir.iterdir()) * 3
    assert check_image_files(paths, workers=3) == check_image_files(paths, workers=0)
    with pytest.raises(ValueError, match="workers"):
        check_image_files(paths, workers=-1)


HEADER = "<annotation><size><width>{w}</width><height>{h}</height></size>"
BOX = (
    "<object><name>a</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>5</ymin>"
    "<xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>"
)


def custom_set(tmp_path, sizes):
    """A custom VOC-layout set: {stem: annotated (w, h)}; every image is a real 120x90 JPEG."""
    root = tmp_path / "custom"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, (w, h) in sizes.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), noisy_image(seed=len(stem)))
        (root / "Annotations" / f"{stem}.xml").write_text(HEADER.format(w=w, h=h) + BOX)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(sizes) + "\n")
    return root / "JPEGImages"


def roidb_cfg(tmp_path, *overrides):
    from fasterrcnn.config import load_config

    return load_config(
        None,
        # fmt: off
        [
            "DATA_DIR",
            str(tmp_path),
            "DATASET.CLASSES",
            "[a]",
            "TRAIN.USE_FLIPPED",
            "false",
            *overrides,
        ],
        # fmt: on
    )


def test_training_roidb_stops_with_one_report_naming_every_bad_image(tmp_path, capfd):
    from fasterrcnn.data import BadImagesError, combined_roidb

    images = custom_set(
        tmp_path, {"ok": (120, 90), "cut": (120, 90), "big": (200, 90), "empty": (120, 90)}
    )
    data = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 3])
    (images / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImagesError) as info:
        combined_roidb("custom_train", roidb_cfg(tmp_path))
    message = str(info.value)
    assert "custom_train: 3 of 4 images cannot be used" in message
    assert f"{images / 'cut.jpg'}: truncated" in message
    assert f"{images / 'big.jpg'}: decoded size is 120x90" in message
    assert f"{images / 'empty.jpg'}: empty file" in message
    assert "DATA_CHECK.ON_BAD_IMAGE skip" in message
    assert "Premature end of JPEG" not in capfd.readouterr().err


def test_skip_leaves_bad_images_out_and_a_second_build_reads_the_cache(
    tmp_path, caplog, monkeypatch
):
    import logging

    from fasterrcnn.data import cache, combined_roidb

    images = custom_set(tmp_path, {"ok": (120, 90), "cut": (120, 90)})
    data = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[:-40])
    cfg = roidb_cfg(tmp_path, "DATA_CHECK.ON_BAD_IMAGE", "skip", "DATA_CHECK.WORKERS", "2")
    with caplog.at_level(logging.WARNING):
        _, roidb, _, _ = combined_roidb("custom_train", cfg)
    assert [e["image"] for e in roidb] == [str(images / "ok.jpg")]
    assert "1 of 2 images failed the image check" in caplog.text
    assert f"{images / 'cut.jpg'}: truncated" in caplog.text

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image check ran again despite the cache")

    monkeypatch.setattr(cache, "check_image_files", no_decoding)
    _, again, _, _ = combined_roidb("custom_train", cfg)
    assert [e["image"] for e in again] == [str(images / "ok.jpg")]
    (images / "cut.jpg").write_bytes(data)  # repaired: new size and mtime, a new check
    with pytest.raises(AssertionError, match="ran again"):
        combined_roidb("custom_train", cfg)
    monkeypatch.undo()
    _, repaired, _, _ = combined_roidb("custom_train", cfg)
    assert len(repaired) == 2
