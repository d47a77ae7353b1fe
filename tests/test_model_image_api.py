"""The one-call model API (torchvision's contract) and its ImageTransform."""

import numpy as np
import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.data import prepare_test_image
from fasterrcnn.model import build_model
from fasterrcnn.model.image_api import detect
from fasterrcnn.model.transform import ImageTransform

NUM_CLASSES = 4


def _cfg(overrides=()):
    return load_config(
        None,
        # fmt: off
        [
            "NET",
            "res18",
            "BACKBONE.WIDTH_MULT",
            0.0625,
            "RPN_CHANNELS",
            16,
            "TEST.SCALES",
            [128],
            "TEST.MAX_SIZE",
            200,
            "TRAIN.SCALES",
            [96, 128],
            "TRAIN.MAX_SIZE",
            200,
            "TRAIN.BATCH_SIZE",
            16,
            "TRAIN.RPN_BATCHSIZE",
            32,
            "TEST.RPN_POST_NMS_TOP_N",
            30,
            "TRAIN.RPN_POST_NMS_TOP_N",
            40,
            "ANCHOR_SCALES",
            [2, 4, 8],
        ]
        # fmt: on
        + list(overrides),
    )


def _model(overrides=()):
    torch.manual_seed(0)
    return build_model(_cfg(overrides), NUM_CLASSES).eval()


def _image(height, width, seed=0):
    return (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)


def _reference_detections(model, image, score_thresh, max_per_image):
    """The three-call path: prepare_test_image, forward, postprocess."""
    im_data, im_info = prepare_test_image(image, model.cfg)
    rois, cls_prob, bbox_pred = model(im_data, im_info)
    return model.postprocess(
        rois, cls_prob, bbox_pred, im_info, score_thresh=score_thresh, max_per_image=max_per_image
    )[0]


def test_eval_one_call_equals_the_three_calls(one_thread):
    model = _model()
    image = _image(90, 150)
    with torch.no_grad():
        (out,) = model([image])
        ref = _reference_detections(model, image, 0.05, 100)
    height, width = image.shape[:2]
    ref_boxes = ref["boxes"].clone()
    ref_boxes[:, 0::2] = ref_boxes[:, 0::2].clamp(0, width - 1)
    ref_boxes[:, 1::2] = ref_boxes[:, 1::2].clamp(0, height - 1)
    assert len(out["boxes"]) > 0
    torch.testing.assert_close(out["boxes"], ref_boxes, rtol=0, atol=0)
    torch.testing.assert_close(out["scores"], ref["scores"], rtol=0, atol=0)
    assert torch.equal(out["labels"], ref["labels"]) and out["labels"].dtype == torch.int64
    assert bool((out["scores"] > 0.05).all()) and len(out["boxes"]) <= 100
    assert float(out["boxes"][:, 0::2].max()) <= width - 1
    assert float(out["boxes"][:, 1::2].max()) <= height - 1
    assert float(out["boxes"].min()) >= 0


def test_rgb_tensors_match_bgr_arrays(one_thread):
    model = _model()
    image = _image(90, 150)
    rgb_float = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
    rgb_uint8 = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
    with torch.no_grad():
        from_array, from_float, from_uint8 = (model([x])[0] for x in (image, rgb_float, rgb_uint8))
    torch.testing.assert_close(from_uint8["boxes"], from_array["boxes"], rtol=0, atol=0)
    n = min(5, len(from_array["scores"]))
    torch.testing.assert_close(
        from_float["scores"][:n], from_array["scores"][:n], rtol=0, atol=1e-3
    )


def test_batch_of_different_sizes():
    transform = ImageTransform((100.0, 110.0, 120.0), test_scale=128, test_max_size=200)
    transform.eval()
    small, wide = _image(64, 64), _image(100, 400, seed=1)
    batch = transform([small, wide])
    # 64x64 -> scale 2 -> 128x128; 100x400 -> 1.28 would give 512 > 200, so 0.5 -> 50x200.
    torch.testing.assert_close(
        batch.im_info, torch.tensor([[128.0, 128.0, 2.0], [50.0, 200.0, 0.5]])
    )
    assert batch.im_data.shape == (2, 3, 128, 200)
    assert bool((batch.im_data[0, :, :, 128:] == 0).all())
    assert bool((batch.im_data[1, :, 50:] == 0).all())
    ref, _ = prepare_test_image(wide, _cfg(["PIXEL_MEANS", [100.0, 110.0, 120.0]]))
    torch.testing.assert_close(batch.im_data[1:, :, :50], ref, rtol=0, atol=0)
    assert batch.original_sizes == [(64, 64), (100, 400)]


def test_targets_are_scaled_and_padded():
    transform = ImageTransform((0.0, 0.0, 0.0), test_scale=128, test_max_size=200)
    transform.eval()
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 31.0, 15.0], [8.0, 8.0, 9.0, 9.0]]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    batch = transform([_image(64, 64), _image(64, 64)], targets, num_classes=NUM_CLASSES)
    expected = torch.zeros(2, 2, 5)
    expected[0] = torch.tensor([[0.0, 0.0, 62.0, 30.0, 1.0], [16.0, 16.0, 18.0, 18.0, 3.0]])
    torch.testing.assert_close(batch.gt_boxes, expected)
    assert batch.num_boxes.tolist() == [2, 0]


def test_training_one_call_equals_the_reference_entry(one_thread):
    model = _model()
    model.train()
    images = [_image(90, 150), _image(120, 100, seed=2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])},
        {
            "boxes": torch.tensor([[5.0, 5.0, 50.0, 40.0], [30.0, 60.0, 90.0, 110.0]]),
            "labels": torch.tensor([1, 3]),
        },
    ]
    start = model.generator.get_state()
    losses = model(images, targets)
    assert set(losses) == {"rpn_cls", "rpn_box", "rcnn_cls", "rcnn_box"}
    losses["rcnn_cls"].backward()
    assert model.roi_head.cls_score.weight.grad is not None
    # Same batch through the reference entry, with the generator at the same point:
    model.generator.set_state(start)
    batch = model.transform(images, targets, model.generator, NUM_CLASSES)
    scale = float(batch.im_info[0, 2])  # a TRAIN.SCALES short side
    assert min(abs(scale - 96 / 90), abs(scale - 128 / 90)) < 1e-6
    ref = model(batch.im_data, batch.im_info, batch.gt_boxes, batch.num_boxes)
    for name in losses:
        torch.testing.assert_close(losses[name], ref[name])


def test_thresholds_are_configurable(one_thread):
    image = _image(90, 150)
    model = _model(["TEST.DETECT_SCORE_THRESH", 0.0, "TEST.MAX_PER_IMAGE", 7])
    with torch.no_grad():
        (capped,) = model([image])
        everything = detect(model, [image], score_thresh=0.0, detections_per_img=0)[0]
        above = detect(model, [image], score_thresh=0.2)[0]
    assert len(capped["scores"]) == 7 and len(everything["scores"]) > 7
    torch.testing.assert_close(capped["scores"], everything["scores"][:7])
    kept = everything["scores"] > 0.2
    assert len(above["scores"]) == min(7, int(kept.sum()))
    model.transform.score_thresh = 0.2
    with torch.no_grad():
        torch.testing.assert_close(model([image])[0]["scores"], above["scores"])
    assert _model().transform.score_thresh == 0.05  # torchvision's default


def test_bad_inputs_are_named():
    model = _model()
    with pytest.raises(ValueError, match=r"images\[1\].*uint8"):
        model([_image(20, 20), np.zeros((20, 20, 3), np.float32)])
    with pytest.raises(ValueError, match=r"images\[0\].*\(3, H, W\)"):
        model([torch.zeros(20, 20, 3)])
    with pytest.raises(TypeError, match=r"images\[0\].*unsupported image type"):
        model(["photo.jpg"])
    with pytest.raises(ValueError, match="non-empty list"):
        model([])
    with pytest.raises(ValueError, match="im_info"):
        model(torch.zeros(1, 3, 32, 32))
    model.train()
    with pytest.raises(ValueError, match="training mode needs targets"):
        model([_image(20, 20)])
    bad_label = [{"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([4])}]
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] must be in 1 \.\. 3"):
        model([_image(20, 20)], bad_label)
    flipped = [{"boxes": torch.tensor([[5.0, 0.0, 1.0, 5.0]]), "labels": torch.tensor([1])}]
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\].*x2 >= x1"):
        model([_image(20, 20)], flipped)
    with pytest.raises(ValueError, match="2 targets for 1 images"):
        model([_image(20, 20)], bad_label * 2)


def test_detector_is_a_thin_layer_with_torchvision_defaults(one_thread):
    from PIL import Image

    from fasterrcnn import Detector

    model = _model()
    det = Detector(model, model.cfg, ["__background__", "a", "b", "c"])
    image = _image(90, 150)
    result = det.predict(image)
    with torch.no_grad():
        (expected,) = model([image])
    np.testing.assert_array_equal(result["boxes"], expected["boxes"].numpy())
    assert bool((result["scores"] > 0.05).all())
    assert result["class_names"] == [det.classes[i] for i in result["labels"]]
    pil = det.predict(Image.fromarray(image[:, :, ::-1].copy()), score_thresh=0.0)
    assert len(pil["scores"]) > len(result["scores"]) and len(pil["scores"]) <= 100
    assert len(det.predict(image, score_thresh=0.0, detections_per_img=3)["scores"]) == 3
