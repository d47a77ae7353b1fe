"""End to end: a small from-scratch model overfits one synthetic image and then detects it."""

import pytest
import torch

from fasterrcnn.config import load_config
from fasterrcnn.model import build_model
from fasterrcnn.rpn import box_iou

ITERATIONS = 300

# fmt: off
OVERRIDES = [
    "NET", "res18", "BACKBONE.WIDTH_MULT", "0.25", "BACKBONE.NORM", "bn",
    "RESNET.FIXED_BLOCKS", "0", "ANCHOR_SCALES", "[2, 4]", "PIXEL_STDS", "[57.4, 57.1, 58.4]",
    "BACKBONE.STYLE", "pytorch", "RPN_CHANNELS", "64", "TRAIN.BATCH_SIZE", "32",
    "TRAIN.RPN_BATCHSIZE", "64", "TRAIN.BG_THRESH_LO", "0.0", "TRAIN.RPN_PRE_NMS_TOP_N", "300",
    "TRAIN.RPN_POST_NMS_TOP_N", "64", "TRAIN.RPN_MIN_SIZE", "4", "TEST.RPN_PRE_NMS_TOP_N", "300",
    "TEST.RPN_POST_NMS_TOP_N", "32", "TEST.RPN_MIN_SIZE", "4",
]
# fmt: on

# Two filled rectangles (+1 convention boxes) in BGR on a grey 128x128 background.
OBJECTS = [
    ([20.0, 30.0, 59.0, 89.0], 1, (40.0, 40.0, 220.0)),
    ([72.0, 18.0, 115.0, 55.0], 2, (220.0, 60.0, 30.0)),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _image(cfg):
    img = torch.full((3, 128, 128), 128.0)
    gt = torch.zeros(1, 4, 5)
    for i, (box, label, colour) in enumerate(OBJECTS):
        x1, y1, x2, y2 = (int(v) for v in box)
        img[:, y1 : y2 + 1, x1 : x2 + 1] = torch.tensor(colour).view(3, 1, 1)
        gt[0, i] = torch.tensor(box + [float(label)])
    means = torch.tensor(cfg.PIXEL_MEANS).view(3, 1, 1)
    stds = torch.tensor(cfg.PIXEL_STDS).view(3, 1, 1)
    im_data = ((img - means) / stds).unsqueeze(0)
    im_info = torch.tensor([[128.0, 128.0, 1.0]])
    return im_data, im_info, gt, torch.tensor([len(OBJECTS)])


@pytest.mark.slow
def test_overfit_one_image():
    cfg = load_config(None, OVERRIDES)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=3)
    im_data, im_info, gt, num = _image(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    history = []
    for _ in range(ITERATIONS):
        losses = model(im_data, im_info, gt, num)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    # Early on all sampled fg RoIs can be gt boxes (zero box targets), so compare the end of
    # training with the largest loss of the first 20 iterations.
    for name in history[0]:
        start = max(h[name] for h in history[:20])
        end = sum(h[name] for h in history[-10:]) / 10
        assert end < 0.3 * start, (name, start, end)

    model.eval()
    with torch.no_grad():
        detections = model.postprocess(*model(im_data, im_info), im_info)[0]
    for box, label, _ in OBJECTS:
        same_class = detections["labels"] == label
        assert same_class.any(), label
        best = int(torch.argmax(torch.where(same_class, detections["scores"], -1.0)))
        assert detections["scores"][best] > 0.5
        iou = box_iou(torch.tensor([box]), detections["boxes"][best : best + 1])
        assert iou.item() > 0.7, (label, detections["boxes"][best])
