"""REFERENCE_NMS: the proposal layer against a float64 re-implementation of faster-rcnn.pytorch's
proposal layer (sequential NMS with +1 areas), and the default mode's zero-area filter."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.rpn import ProposalLayer, generate_anchors, shift_anchors

CFGS = Path(__file__).resolve().parents[1] / "cfgs"


def _reference_nms(boxes: np.ndarray, thresh: float) -> list:
    """py-faster-rcnn's ``py_cpu_nms`` on score-sorted boxes: +1 areas, suppress IoU > thresh."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.arange(len(boxes))
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return keep


def _reference_proposals(scores, deltas, anchors, im_info, pre_n, post_n, thresh):
    """faster-rcnn.pytorch's ``_ProposalLayer.forward`` in float64 numpy: bbox_transform_inv
    (no delta clamp), clip, sort by score, pre-NMS top-N, NMS (+1), post-NMS top-N, zero
    padding; no min-size filter (the reference disabled it)."""
    batch = scores.shape[0]
    out = np.zeros((batch, post_n, 5))
    counts = []
    w = anchors[:, 2] - anchors[:, 0] + 1.0
    h = anchors[:, 3] - anchors[:, 1] + 1.0
    cx = anchors[:, 0] + 0.5 * w
    cy = anchors[:, 1] + 0.5 * h
    for b in range(batch):
        d = deltas[b]
        pcx, pcy = d[:, 0] * w + cx, d[:, 1] * h + cy
        pw, ph = np.exp(d[:, 2]) * w, np.exp(d[:, 3]) * h
        boxes = np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], 1)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, im_info[b, 1] - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, im_info[b, 0] - 1)
        order = np.argsort(-scores[b], kind="stable")[:pre_n]
        keep = _reference_nms(boxes[order], thresh)[:post_n]
        out[b, :, 0] = b
        out[b, : len(keep), 1:] = boxes[order][keep]
        counts.append(len(keep))
    return out, counts


def _inputs(seed: int, batch: int = 2, height: int = 12, width: int = 16):
    """Reference anchors of a ``height x width`` map, random scores and deltas; some deltas are
    large so that boxes leave the image and clip to zero area at the border."""
    gen = torch.Generator().manual_seed(seed)
    base = generate_anchors(16, (0.5, 1.0, 2.0), (2.0, 4.0, 8.0))
    anchors = shift_anchors(base, height, width, 16).double()
    n = anchors.shape[0]
    scores = torch.rand(batch, n, generator=gen, dtype=torch.float64)
    deltas = torch.randn(batch, n, 4, generator=gen, dtype=torch.float64) * 0.3
    far = torch.rand(batch, n, generator=gen) < 0.1
    deltas[..., 0] = torch.where(far, deltas[..., 0] * 40, deltas[..., 0])
    im_info = torch.tensor(
        [[height * 16.0, width * 16.0, 1.0], [height * 14.0, width * 15.0, 1.2]],
        dtype=torch.float64,
    )[:batch]
    return scores, deltas, anchors, im_info


# fmt: off
REFERENCE = [
    "REFERENCE_NMS", "true", "TRAIN.RPN_MIN_SIZE", "0", "TRAIN.RPN_PRE_NMS_TOP_N", "1200",
    "TRAIN.RPN_POST_NMS_TOP_N", "300", "TRAIN.RPN_NMS_THRESH", "0.7",
]
# fmt: on


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_mode_equals_faster_rcnn_pytorch_box_for_box(seed):
    scores, deltas, anchors, im_info = _inputs(seed)
    layer = ProposalLayer.from_config(load_config(None, REFERENCE))
    rois, num = layer(scores, deltas, anchors, im_info, True)
    expected, counts = _reference_proposals(
        scores.numpy(), deltas.numpy(), anchors.numpy(), im_info.numpy(), 1200, 300, 0.7
    )
    assert num.tolist() == counts
    # The same boxes in the same order (decode rounding aside).
    torch.testing.assert_close(rois, torch.from_numpy(expected), rtol=0.0, atol=1e-9)
    # The inputs exercise the difference: zero-area boxes reach the reference's NMS.
    kept = rois[..., 1:]
    zero_area = (kept[..., 2] == kept[..., 0]) | (kept[..., 3] == kept[..., 1])
    assert zero_area.any()


def test_default_mode_differs_and_drops_zero_area_boxes():
    scores, deltas, anchors, im_info = _inputs(0)
    default = ["REFERENCE_NMS", "false"] + REFERENCE[2:]
    rois, num = ProposalLayer.from_config(load_config(None, default))(
        scores, deltas, anchors, im_info, True
    )
    reference, _ = ProposalLayer.from_config(load_config(None, REFERENCE))(
        scores, deltas, anchors, im_info, True
    )
    assert not torch.equal(rois, reference)
    for b in range(2):
        kept = rois[b, : int(num[b]), 1:]
        assert int(num[b]) > 50
        assert ((kept[:, 2] > kept[:, 0]) & (kept[:, 3] > kept[:, 1])).all()


def test_reference_configs_turn_it_on():
    assert load_config(None, []).REFERENCE_NMS is False
    for name in ("vgg16", "res50", "res101", "res101_ls"):
        assert load_config(str(CFGS / f"{name}.yml"), []).REFERENCE_NMS is True, name
    assert load_config(str(CFGS / "shapes.yml"), []).REFERENCE_NMS is False
