"""Reference anchors and their shifts over a feature map."""

import torch

from fasterrcnn.rpn.anchors import generate_anchors, shift_anchors

REFERENCE_9 = [
    [-84, -40, 99, 55],
    [-176, -88, 191, 103],
    [-360, -184, 375, 199],
    [-56, -56, 71, 71],
    [-120, -120, 135, 135],
    [-248, -248, 263, 263],
    [-36, -80, 51, 95],
    [-80, -168, 95, 183],
    [-168, -344, 183, 359],
]


def test_default_anchors_are_the_reference_nine():
    anchors = generate_anchors()
    assert anchors.dtype == torch.float32
    assert anchors.tolist() == REFERENCE_9


def test_other_scales_and_ratios_hand_case():
    # base 16, ratio 1, scale 2: a 32x32 box around centre 7.5.
    assert generate_anchors(16, (1.0,), (2.0,)).tolist() == [[-8, -8, 23, 23]]
    # base 9, ratio 0.5: w = round(sqrt(162)) = 13, h = round(6.5) = 6 (half to even, not 7),
    # centre 4; then scales 1 and 2 (26 x 12).
    assert generate_anchors(9, (0.5,), (1.0, 2.0)).tolist() == [
        [-2.0, 1.5, 10.0, 6.5],
        [-8.5, -1.5, 16.5, 9.5],
    ]
    # Order: ratio-major, scale-minor.
    four = generate_anchors(16, (0.5, 1.0, 2.0), (4.0, 8.0, 16.0, 32.0))
    assert four.shape == (12, 4)
    assert four[1:4].tolist() == REFERENCE_9[0:3]
    assert four[5:8].tolist() == REFERENCE_9[3:6]


def test_shift_anchors_count_order_and_ends():
    base = generate_anchors()
    anchors = shift_anchors(base, 38, 50, 16)
    assert anchors.shape == (38 * 50 * 9, 4)
    assert anchors.dtype == torch.float32
    assert torch.equal(anchors[:9], base)
    last = torch.tensor(REFERENCE_9[8], dtype=torch.float32) + torch.tensor([49 * 16, 37 * 16] * 2)
    assert anchors[-1].tolist() == last.tolist() == [616, 248, 967, 951]
    # Row (y * W + x) * A + a: x varies before y.
    for y, x, a in [(0, 1, 0), (1, 0, 4), (7, 23, 8)]:
        row = (y * 50 + x) * 9 + a
        shift = torch.tensor([16 * x, 16 * y] * 2)
        expected = torch.tensor(REFERENCE_9[a], dtype=torch.float32) + shift
        assert anchors[row].tolist() == expected.tolist()


def test_shift_anchors_follow_dtype():
    base = generate_anchors(16, (1.0,), (1.0,)).double()
    anchors = shift_anchors(base, 2, 3, 10)
    assert anchors.dtype == torch.float64
    assert anchors.tolist() == [
        [0, 0, 15, 15],
        [10, 0, 25, 15],
        [20, 0, 35, 15],
        [0, 10, 15, 25],
        [10, 10, 25, 25],
        [20, 10, 35, 25],
    ]
