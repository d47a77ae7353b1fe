"""Horizontal-flip test-time augmentation (TEST.FLIP): the mirroring of images, RoIs and deltas,
and the detector's flipped inference (both passes' rows, mirror symmetry of the detections)."""

import pytest
import torch
from conftest import TINY_MODEL

from fasterrcnn.config import load_config
from fasterrcnn.model import build_model
from fasterrcnn.model.flip import mirror_images, unmirror_outputs
from fasterrcnn.rpn.boxes import decode_boxes

TINY = ["NET", "res18"] + TINY_MODEL + ["TEST.SCORE_THRESH", "0.05"]


def test_mirror_images_mirrors_each_image_within_its_own_width():
    """Image 0 fills all 5 columns, image 1 only 3 (then padding, which stays in place)."""
    im_data = torch.arange(2 * 2 * 2 * 5, dtype=torch.float32).view(2, 2, 2, 5)
    im_info = torch.tensor([[2.0, 5.0, 1.0], [2.0, 3.0, 1.0]])

    mirrored = mirror_images(im_data, im_info)

    assert torch.equal(mirrored[0], im_data[0].flip(-1))
    assert torch.equal(mirrored[1, :, :, :3], im_data[1, :, :, :3].flip(-1))
    assert torch.equal(mirrored[1, :, :, 3:], im_data[1, :, :, 3:])
    assert torch.equal(mirror_images(mirrored, im_info), im_data)


def test_unmirror_outputs_hand_case():
    """Width 10: RoI x 2..5 -> 4..7; the horizontal centre delta of each class changes sign
    (normalised with mean 0.05 and std 0.1: d -> -d - 1); the padded row stays zero."""
    rois = torch.tensor([[[0.0, 2.0, 1.0, 5.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    cls_prob = torch.tensor([[[0.2, 0.8], [0.0, 0.0]]])
    bbox_pred = torch.zeros(1, 2, 8)
    bbox_pred[0, 0] = torch.tensor([0.5, 0.25, 0.1, 0.2, 1.5, -0.5, 0.3, 0.4])
    im_info = torch.tensor([[6.0, 10.0, 1.0]])

    got_rois, got_pred = unmirror_outputs(
        rois, cls_prob, bbox_pred, im_info, True, (0.05, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)
    )

    assert got_rois.tolist() == [[[0.0, 4.0, 1.0, 7.0, 4.0], [0.0] * 5]]
    expected = [-1.5, 0.25, 0.1, 0.2, -2.5, -0.5, 0.3, 0.4]
    assert got_pred[0, 0].tolist() == pytest.approx(expected)
    assert got_pred[0, 1].tolist() == [0.0] * 8


@pytest.mark.parametrize("unnormalize", [True, False])
def test_unmirrored_outputs_decode_to_the_mirror_of_the_mirrored_pass_boxes(unnormalize):
    """float64, random RoIs and deltas, nonzero means: decoding the unmirrored RoIs and deltas
    gives the mirrored pass's decoded boxes reflected about the image (x -> w - x, as decoded
    boxes carry the reference's x2 + 1)."""
    gen = torch.Generator().manual_seed(0)
    width = 97.0
    x1 = torch.rand(1, 50, generator=gen, dtype=torch.float64) * 60
    y1 = torch.rand(1, 50, generator=gen, dtype=torch.float64) * 40
    size = 2 + torch.rand(1, 50, 2, generator=gen, dtype=torch.float64) * 30
    rois = torch.stack((torch.zeros_like(x1), x1, y1, x1 + size[..., 0], y1 + size[..., 1]), dim=2)
    cls_prob = torch.rand(1, 50, 3, generator=gen, dtype=torch.float64)
    bbox_pred = torch.randn(1, 50, 12, generator=gen, dtype=torch.float64) * 0.5
    means, stds = (0.02, -0.01, 0.03, 0.0), (0.1, 0.1, 0.2, 0.2)
    im_info = torch.tensor([[70.0, width, 1.0]], dtype=torch.float64)

    def decoded(boxes, deltas):
        deltas = deltas.unflatten(-1, (-1, 4))
        if unnormalize:
            deltas = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
        return decode_boxes(boxes, deltas.flatten(2)).unflatten(-1, (-1, 4))

    in_mirror_frame = decoded(rois[..., 1:], bbox_pred)
    back_rois, back_pred = unmirror_outputs(
        rois, cls_prob, bbox_pred, im_info, unnormalize, means, stds
    )
    in_original_frame = decoded(back_rois[..., 1:], back_pred)

    reflected = torch.stack(
        (
            width - in_mirror_frame[..., 2],
            in_mirror_frame[..., 1],
            width - in_mirror_frame[..., 0],
            in_mirror_frame[..., 3],
        ),
        dim=-1,
    )
    torch.testing.assert_close(in_original_frame, reflected, rtol=0, atol=1e-9)


def _flip_model():
    torch.manual_seed(0)
    model = build_model(load_config(None, TINY + ["TEST.FLIP", "true"]), 3).eval()
    plain = build_model(load_config(None, TINY), 3).eval()
    plain.load_state_dict(model.state_dict())
    return model, plain


def test_flipped_eval_outputs_are_the_plain_pass_then_the_mirrored_one():
    model, plain = _flip_model()
    gen = torch.Generator().manual_seed(1)
    im_data = torch.randn(1, 3, 64, 96, generator=gen)
    im_info = torch.tensor([[64.0, 96.0, 1.0]])

    with torch.no_grad():
        rois, cls_prob, bbox_pred = model(im_data, im_info)
        plain_out = plain(im_data, im_info)
        mirrored = plain(mirror_images(im_data, im_info), im_info)

    num_props = plain_out[0].shape[1]
    assert rois.shape == (1, 2 * num_props, 5)
    for got, expected in zip((rois, cls_prob, bbox_pred), plain_out):
        assert torch.equal(got[:, :num_props], expected)
    assert torch.equal(cls_prob[:, num_props:], mirrored[1])
    real = mirrored[1].sum(dim=2) > 0
    assert real.any()
    x1, x2 = mirrored[0][..., 1], mirrored[0][..., 3]
    torch.testing.assert_close(rois[:, num_props:, 1][real], (95.0 - x2)[real])
    torch.testing.assert_close(rois[:, num_props:, 3][real], (95.0 - x1)[real])


def test_flipped_detections_of_the_mirror_image_are_the_mirrored_detections():
    """The union of a pass and the mirrored pass is mirror symmetric: detecting on the mirror
    image gives the same scores and labels, and the reflected boxes (x -> w - x: decoded boxes
    carry the reference's x2 + 1) for the boxes that clipping to [0, w - 1] touches in neither
    frame (1 < x1, x2 < w - 1)."""
    model, _ = _flip_model()
    gen = torch.Generator().manual_seed(2)
    im_data = torch.randn(1, 3, 64, 96, generator=gen)
    im_info = torch.tensor([[64.0, 96.0, 1.0]])

    with torch.no_grad():
        det = model.detect(im_data, im_info, max_per_image=0)
        mirror_det = model.detect(mirror_images(im_data, im_info), im_info, max_per_image=0)

    count = int(det.num_detections[0])
    assert count > 0 and int(mirror_det.num_detections[0]) == count
    by_score = {
        (round(float(score), 5), int(label)): box
        for score, label, box in zip(
            mirror_det.scores[0, :count], mirror_det.labels[0, :count], mirror_det.boxes[0]
        )
    }
    assert len(by_score) == count
    compared = 0
    for score, label, box in zip(det.scores[0, :count], det.labels[0, :count], det.boxes[0]):
        mirror_box = by_score[(round(float(score), 5), int(label))]
        if 1 < box[0] and box[2] < 95:
            reflected = torch.stack((96.0 - box[2], box[1], 96.0 - box[0], box[3]))
            torch.testing.assert_close(mirror_box, reflected, rtol=0, atol=1e-3)
            compared += 1
    assert compared > 0
