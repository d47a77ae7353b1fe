"""One image reader everywhere (EXIF orientation ignored), boxes clipped to the original image,
clear errors for empty images, distinct demo outputs for inputs sharing a stem."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fasterrcnn import Detector
from fasterrcnn.checkpoint import save_checkpoint
from fasterrcnn.commands import demo
from fasterrcnn.commands import test as test_net
from fasterrcnn.config import apply_overrides, config_to_dict
from fasterrcnn.data import RoIBatchDataset, TestImageDataset, prepare_test_image
from fasterrcnn.data.image import read_image
from fasterrcnn.data.roidb import rank_roidb_ratio
from fasterrcnn.engine.inference import detect_dataset
from fasterrcnn.model import build_model
from fasterrcnn.model.transform import clip_to_original

CLASSES = ["__background__", "circle", "square", "triangle", "star", "cross"]
STORED_H, STORED_W = 48, 80


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny model whose boxes grow 2.7x around every RoI, so many reach the
    border of the image."""
    from conftest import tiny_overrides

    from fasterrcnn.config import load_config

    data_dir = tmp_path_factory.mktemp("unused")
    cfg = load_config(
        None,
        tiny_overrides(str(data_dir))
        # fmt: off
        + [
            "NET",
            "res18",
            "BACKBONE.NORM",
            "bn",
            "BACKBONE.STYLE",
            "pytorch",
            "POOLING_MODE",
            "align",
            "TEST.SCORE_THRESH",
            0.0,
            "RESNET.FIXED_BLOCKS",
            0,
        ],
        # fmt: on
    )
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASSES))
    with torch.no_grad():
        model.roi_head.bbox_pred.weight.zero_()
        model.roi_head.bbox_pred.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 5.0]).repeat(len(CLASSES)))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(
        {"model": model.state_dict(), "config": config_to_dict(cfg), "classes": CLASSES}, path
    )
    return str(path)


@pytest.fixture
def rotated_jpeg(tmp_path):
    """A JPEG stored 80 wide x 48 high whose EXIF orientation (6) asks viewers to rotate it."""
    rng = np.random.default_rng(1)
    bgr = cv2.GaussianBlur((rng.random((STORED_H, STORED_W, 3)) * 255).astype(np.uint8), (5, 5), 2)
    bgr[10:30, 5:25] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "images" / "rotated.jpg"
    path.parent.mkdir()
    Image.fromarray(bgr[:, :, ::-1]).save(path, exif=exif.tobytes(), quality=95)
    assert cv2.imread(str(path)).shape[:2] == (STORED_W, STORED_H)  # OpenCV's default rotates
    return path


def test_read_image_ignores_exif_and_names_bad_files(rotated_jpeg, tmp_path):
    image = read_image(rotated_jpeg)
    assert image.shape == (STORED_H, STORED_W, 3) and image.dtype == np.uint8
    with Image.open(rotated_jpeg) as pil:
        np.testing.assert_array_equal(image, np.asarray(pil.convert("RGB"))[:, :, ::-1])
    gray16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(str(tmp_path / "g16.png"))
    assert out.shape == (3, 4, 3) and (out == (gray16 >> 8)[:, :, None]).all()
    rgba = np.dstack([np.full((3, 4, 3), (10, 20, 30), np.uint8), np.zeros((3, 4), np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert (read_image(str(tmp_path / "rgba.png")) == (10, 20, 30)).all()
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image(str(tmp_path / "nope.jpg"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(OSError, match="empty.jpg.*empty"):
        read_image(str(tmp_path / "empty.jpg"))
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(OSError, match="text.png.*not a decodable image"):
        read_image(str(tmp_path / "text.png"))


def test_every_entry_point_reads_the_same_pixels_and_boxes(checkpoint, rotated_jpeg, tmp_path):
    det = Detector.from_checkpoint(checkpoint)
    cfg = det.cfg
    stored = read_image(rotated_jpeg)
    expected_data, expected_info = prepare_test_image(stored, cfg)
    # test_net keeps every score above TEST.SCORE_THRESH: compare at that threshold
    reference = det.predict(stored, score_thresh=cfg.TEST.SCORE_THRESH)
    assert len(reference["boxes"]) > 0

    from_path = det.predict(str(rotated_jpeg), score_thresh=cfg.TEST.SCORE_THRESH)  # a path
    np.testing.assert_array_equal(from_path["boxes"], reference["boxes"])

    class OneImage:  # test_net's dataset
        num_images = 1
        image_index = ["rotated"]

        def image_path_at(self, i):
            return str(rotated_jpeg)

    im_data, im_info, _, size = TestImageDataset(OneImage(), cfg)[0]
    assert size == (STORED_H, STORED_W)
    torch.testing.assert_close(im_data, expected_data, rtol=0, atol=0)
    torch.testing.assert_close(im_info, expected_info, rtol=0, atol=0)
    all_boxes, _ = detect_dataset(det.model, TestImageDataset(OneImage(), cfg), progress=False)
    from_test_net = np.vstack([all_boxes[c][0][:, :4] for c in range(1, len(CLASSES))])
    np.testing.assert_allclose(
        np.sort(from_test_net, axis=0), np.sort(reference["boxes"], axis=0), atol=1e-4
    )

    entry = dict(
        image=str(rotated_jpeg),
        width=STORED_W,
        height=STORED_H,
        flipped=False,
        boxes=np.array([[5, 10, 24, 29]], np.float32),
        gt_classes=np.array([1]),
        difficult=np.zeros(1, bool),
    )
    train_cfg = apply_overrides(cfg, ["TRAIN.SCALES", "[48]", "TRAIN.MAX_SIZE", "1000"])
    ratio_list, ratio_index = rank_roidb_ratio([entry], train_cfg)
    sample = RoIBatchDataset([entry], ratio_list, ratio_index, train_cfg, 1)[0]  # training
    means = np.asarray(cfg.PIXEL_MEANS, np.float32)
    stds = np.asarray(cfg.PIXEL_STDS, np.float32)
    np.testing.assert_allclose(
        sample.im_data.numpy().transpose(1, 2, 0),
        (stored.astype(np.float32) - means) / stds,
        atol=1e-5,
    )

    out = tmp_path / "demo"
    assert (
        demo.main(
            [
                "--image_dir",
                str(rotated_jpeg.parent),
                "--output_dir",
                str(out),
                "--checkpoint_path",
                checkpoint,
                "--thresh",
                "0.0",
            ]
        )
        == 0
    )
    record = json.loads((out / "rotated.json").read_text())
    np.testing.assert_allclose(
        [d["box"] for d in record["detections"]], reference["boxes"], atol=0.01
    )
    assert (
        cv2.imread(
            str(out / "rotated_det.jpg"), cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR
        ).shape
        == stored.shape
    )

    vis = tmp_path / "vis"
    test_net.write_visualisations(OneImage(), all_boxes, CLASSES, str(vis), 0.0)
    assert (
        cv2.imread(str(vis / "rotated.jpg"), cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR).shape
        == stored.shape
    )


def test_boxes_are_clipped_to_an_image_scaled_up_for_inference(checkpoint):
    det = Detector.from_checkpoint(checkpoint)
    height, width = 30, 50  # scaled by 200 / 50 = 4 for inference (MAX_SIZE 200)
    image = np.random.default_rng(2).integers(0, 255, (height, width, 3), dtype=np.uint8)
    _, im_info = prepare_test_image(image, det.cfg)
    assert float(im_info[0, 2]) == 4.0
    boxes = det.predict(image)["boxes"]
    assert len(boxes) > 0
    assert (boxes >= 0).all()
    assert boxes[:, 2].max() == width - 1 and (boxes[:, 2] <= width - 1).all()
    assert boxes[:, 3].max() == height - 1 and (boxes[:, 3] <= height - 1).all()


def test_clip_to_original_hand_case():
    detection = {
        "boxes": torch.tensor([[-0.5, 2.0, 49.77, 29.4], [3.0, -1.0, 10.0, 31.0]]),
        "scores": torch.tensor([0.9, 0.8]),
    }
    clipped = clip_to_original(detection, height=30, width=50)
    torch.testing.assert_close(
        clipped["boxes"], torch.tensor([[0.0, 2.0, 49.0, 29.0], [3.0, 0.0, 10.0, 29.0]])
    )
    assert clipped["scores"] is detection["scores"]
    empty = clip_to_original({"boxes": torch.zeros((0, 4))}, 30, 50)
    assert empty["boxes"].shape == (0, 4)


def test_predict_on_an_empty_image_says_so(checkpoint):
    det = Detector.from_checkpoint(checkpoint)
    for shape in ((0, 0, 3), (0, 10, 3), (10, 0, 3)):
        with pytest.raises(ValueError, match=r"image is empty \(\d+x\d+ pixels\)"):
            det.predict(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="image is empty"):
        prepare_test_image(np.zeros((10, 0), np.uint8), det.cfg)


def test_demo_inputs_sharing_a_stem_get_distinct_outputs(checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name in ("x.jpg", "x.png", "y.jpg"):
        cv2.imwrite(str(images / name), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert (
        demo.main(
            [
                "--image_dir",
                str(images),
                "--output_dir",
                str(out),
                "--checkpoint_path",
                checkpoint,
                "--thresh",
                "0.0",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "x_jpg.json",
        "x_jpg_det.jpg",
        "x_png.json",
        "x_png_det.jpg",
        "y.json",
        "y_det.jpg",
    ]
    assert json.loads((out / "x_png.json").read_text())["image"].endswith("x.png")
    assert demo.output_stems(["a/x.jpg", "a/x_jpg.png", "a/x.png", "b/x.jpg"]) == [
        "x_jpg",
        "x_jpg_2",
        "x_png",
        "x_jpg_3",
    ]
