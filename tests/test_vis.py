"""draw_detections: draws on a copy, at the box edges, with a fixed colour per class."""

import numpy as np
import pytest
import torch

from fasterrcnn.vis import class_color, draw_detections


def _image():
    return np.full((60, 80, 3), 100, dtype=np.uint8)


def _detections(label=1, score=0.93):
    return dict(
        boxes=np.array([[20.0, 25.0, 50.0, 55.0]]),
        scores=np.array([score]),
        labels=np.array([label]),
    )


def test_draws_box_edges_on_a_copy():
    image = _image()
    before = image.copy()
    out = draw_detections(image, _detections(), class_names=["__background__", "cat"])
    np.testing.assert_array_equal(image, before)
    assert out is not image and out.dtype == np.uint8 and out.shape == image.shape
    color = class_color(1)
    for x, y in [(20, 40), (50, 40), (35, 55)]:  # left, right, bottom edges
        assert tuple(int(v) for v in out[y, x]) == color
    assert (out[40, 35] == before[40, 35]).all()  # box interior untouched
    assert (out[:25] != before[:25]).any()  # label drawn above the box


def test_colour_per_class_is_stable_and_distinct():
    # hue = label * 0.618034 (mod 1), saturation 0.85, value 0.95, as BGR: label 0 is red
    # (255 * (0.95, 0.1425, 0.1425)); label 1 has hue 0.618 (sector 3 of 6): blue 0.95, red 0.1425,
    # green 0.95 * (1 - 0.85 * 0.708) = 0.378
    assert class_color(0) == (36, 36, 242)
    assert class_color(1) == (242, 96, 36)
    assert class_color(np.int64(3)) == class_color(torch.tensor(3)) == class_color(3)
    colors = [class_color(k) for k in range(1, 21)]
    assert len(set(colors)) == 20
    first = draw_detections(_image(), _detections(label=2))
    second = draw_detections(_image(), _detections(label=2))
    np.testing.assert_array_equal(first, second)
    assert tuple(int(v) for v in first[40, 20]) == class_color(2)
    other = draw_detections(_image(), _detections(label=3))
    assert tuple(int(v) for v in other[40, 20]) == class_color(3) != class_color(2)


def test_torch_inputs_match_numpy():
    det = _detections()
    as_torch = {k: torch.from_numpy(v) for k, v in det.items()}
    np.testing.assert_array_equal(
        draw_detections(_image(), det), draw_detections(_image(), as_torch)
    )


def test_names_change_the_label_and_threshold_hides_boxes():
    plain = draw_detections(_image(), _detections())
    named = draw_detections(_image(), dict(_detections(), names=["a long name"]))
    assert (plain[:25] != named[:25]).any()
    from_dict = draw_detections(_image(), dict(_detections(), class_names=["bg", "a long name"]))
    np.testing.assert_array_equal(named, from_dict)
    hidden = draw_detections(_image(), _detections(score=0.3), score_thresh=0.5)
    np.testing.assert_array_equal(hidden, _image())


def test_rejects_non_uint8_image():
    with pytest.raises(ValueError, match="uint8"):
        draw_detections(_image().astype(np.float32), _detections())
