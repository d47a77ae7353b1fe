"""Box maths (+1 convention): IoU, encode / decode, clipping, areas."""

import math

import torch

from fasterrcnn.rpn.boxes import box_area, box_iou, clip_boxes, decode_boxes, encode_boxes


def _t(rows, dtype=torch.float32):
    return torch.tensor(rows, dtype=dtype)


def test_box_area_uses_plus_one():
    assert box_area(_t([[0, 0, 9, 4], [3, 3, 3, 3]])).tolist() == [50.0, 1.0]


def test_box_iou_hand_values():
    a = _t([[0, 0, 9, 9], [0, 0, 19, 19]])
    b = _t([[5, 5, 14, 14], [9, 0, 18, 9], [0, 0, 9, 9], [20, 20, 29, 29]])
    iou = box_iou(a, b)
    # [0,0,9,9] vs [5,5,14,14]: 5x5 / (100 + 100 - 25); vs [9,0,18,9]: one shared column 1x10.
    expected = _t(
        [
            [25 / 175, 10 / 190, 1.0, 0.0],
            [100 / 400, 100 / 400, 100 / 400, 0.0],
        ]
    )
    torch.testing.assert_close(iou, expected)


def test_box_iou_padding_rows_give_zero_not_nan():
    a = _t([[0, 0, 9, 9], [0, 0, 0, 0]])
    b = _t([[0, 0, 9, 9], [0, 0, 0, 0], [0, 0, 0, 0]])
    iou = box_iou(a, b)
    assert torch.isfinite(iou).all()
    # Without the mask, [0,0,9,9] vs the all-zero row would be 1 / 100.
    assert iou.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_box_iou_batched_broadcast():
    anchors = _t([[0, 0, 9, 9], [10, 10, 19, 19]])
    gt = torch.stack([_t([[0, 0, 9, 9], [0, 0, 0, 0]]), _t([[10, 10, 19, 19], [0, 0, 4, 9]])])
    iou = box_iou(anchors, gt)
    assert iou.shape == (2, 2, 2)
    torch.testing.assert_close(iou, _t([[[1, 0], [0, 0]], [[0, 0.5], [1, 0]]]))


def test_encode_hand_case():
    ex = _t([[0, 0, 9, 9]])
    gt = _t([[5, 0, 24, 9]])
    torch.testing.assert_close(encode_boxes(ex, gt), _t([[1.0, 0.0, math.log(2.0), 0.0]]))


def test_decode_hand_case_no_minus_one():
    boxes = _t([[0, 0, 9, 9]])
    deltas = _t([[0.1, -0.2, math.log(2.0), 0.0]])
    # w = h = 10, centre (5, 5): centre (6, 3), size 20 x 10.
    torch.testing.assert_close(decode_boxes(boxes, deltas), _t([[-4.0, -2.0, 16.0, 8.0]]))


def test_decode_zero_deltas_shifts_x2_y2_by_one():
    boxes = _t([[0, 0, 9, 9], [3.5, -2, 40, 7]], torch.float64)
    out = decode_boxes(boxes, torch.zeros(2, 4, dtype=torch.float64))
    torch.testing.assert_close(out, boxes + _t([0, 0, 1, 1], torch.float64), rtol=0, atol=1e-12)


def test_encode_decode_round_trip_float64():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 100
    ex = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 60], 1)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 100
    gt = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 60], 1)
    deltas = encode_boxes(ex, gt)
    assert deltas.dtype == torch.float64
    decoded = decode_boxes(ex, deltas)
    one = torch.tensor([0, 0, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(decoded, gt + one, rtol=0, atol=1e-9)
    torch.testing.assert_close(encode_boxes(ex, decoded - one), deltas, rtol=0, atol=1e-9)


def test_decode_multiple_delta_sets_and_broadcast():
    anchors = _t([[0, 0, 9, 9], [10, 20, 29, 59]])
    d1 = _t([[0.1, 0.2, 0.3, -0.1], [0.0, 0.5, -0.2, 0.0]])
    d2 = _t([[-0.3, 0.0, 0.1, 0.2], [0.2, -0.1, 0.0, 0.4]])
    both = torch.cat([d1, d2], 1)
    out = decode_boxes(anchors, both)
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[:, :4], decode_boxes(anchors, d1))
    torch.testing.assert_close(out[:, 4:], decode_boxes(anchors, d2))
    batched = decode_boxes(anchors, torch.stack([d1, d2]))
    assert batched.shape == (2, 2, 4)
    torch.testing.assert_close(batched[1], decode_boxes(anchors, d2))


def test_decode_huge_deltas_clamped_finite():
    boxes = _t([[0, 0, 15, 15]])
    out = decode_boxes(boxes, _t([[0.0, 0.0, 1e4, 1e30]]))
    assert torch.isfinite(out).all()
    # dw, dh are clamped at log(1000/16): a 16-pixel box grows to 1000 pixels around centre 8.
    torch.testing.assert_close(out, _t([[-492.0, -492.0, 508.0, 508.0]]))


def test_clip_boxes_per_image():
    boxes = _t([[[-5, -3, 25, 40, 2, 2, 100, 9]], [[-5, -3, 25, 40, 2, 2, 100, 9]]])
    im_info = _t([[10, 20, 1.0], [30, 5, 2.0]])
    out = clip_boxes(boxes, im_info)
    expected = _t([[[0, 0, 19, 9, 2, 2, 19, 9]], [[0, 0, 4, 29, 2, 2, 4, 9]]])
    assert torch.equal(out, expected)
    assert boxes[0, 0, 0] == -5  # input left untouched
