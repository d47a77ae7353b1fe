"""The training batch dataset, the collate function, the DataLoader and the test-time path."""

import logging
import math

import cv2
import numpy as np
import torch

from fasterrcnn.config import load_config
from fasterrcnn.data import RoIBatchDataset, build_train_loader, collate_batch, prepare_test_image
from fasterrcnn.data import loader as loader_module
from fasterrcnn.data.batch_dataset import crop_offset
from fasterrcnn.data.roidb import rank_roidb_ratio


def ramp_image(path, height, width):
    """PNG whose blue channel is x % 256 and green channel x // 256 (red: y % 256)."""
    xs = np.arange(width)[None, :].repeat(height, 0)
    ys = np.arange(height)[:, None].repeat(width, 1)
    image = np.stack([xs % 256, xs // 256, ys % 256], axis=2).astype(np.uint8)
    cv2.imwrite(str(path), image)
    return image


def entry(path, width, height, boxes, classes=None, flipped=False):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return dict(
        image=str(path),
        width=width,
        height=height,
        boxes=boxes,
        flipped=flipped,
        gt_classes=np.array(classes if classes is not None else [1] * len(boxes)),
        difficult=np.zeros(len(boxes), bool),
    )


def dataset(roidb, cfg, batch_size=1, seed=0):
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)
    return RoIBatchDataset(roidb, ratio_list, ratio_index, cfg, batch_size, seed)


def raw_cfg(*overrides):
    """Means 0, stds 1: im_data holds the raw pixel values."""
    return load_config(None, ["PIXEL_MEANS", "[0, 0, 0]", *overrides])


def test_scaling_short_side_and_long_side_cap(tmp_path):
    cfg = load_config(None, [])  # SCALES (600,), MAX_SIZE 1000
    ramp_image(tmp_path / "a.png", 300, 400)
    ramp_image(tmp_path / "b.png", 250, 500)
    ds = dataset([entry(tmp_path / "a.png", 400, 300, [[10, 20, 109, 219]], [3])], cfg)
    s = ds[0]
    # 300x400: scale 600/300 = 2 -> 600x800 (800 <= 1000)
    assert tuple(s.im_data.shape) == (3, 600, 800)
    np.testing.assert_allclose(s.im_info.numpy(), [600, 800, 2])
    assert s.num_boxes.dtype == torch.int64 and int(s.num_boxes) == 1
    np.testing.assert_allclose(s.gt_boxes[0].numpy(), [20, 40, 218, 438, 3])
    assert tuple(s.gt_boxes.shape) == (cfg.MAX_NUM_GT_BOXES, 5) and s.gt_boxes[1:].abs().sum() == 0
    # 250x500: 600/250 = 2.4 would give 1200 > 1000 -> scale 1000/500 = 2 -> 500x1000
    ds = dataset([entry(tmp_path / "b.png", 500, 250, [[0, 0, 10, 10]])], cfg)
    assert tuple(ds[0].im_data.shape) == (3, 500, 1000)
    np.testing.assert_allclose(ds[0].im_info.numpy(), [500, 1000, 2])


def test_pixel_means_and_stds(tmp_path):
    cv2.imwrite(str(tmp_path / "c.png"), np.full((20, 30, 3), (10, 20, 30), np.uint8))
    cfg = load_config(
        None, ["TRAIN.SCALES", "[20]", "PIXEL_MEANS", "[1, 2, 3]", "PIXEL_STDS", "[3, 6, 9]"]
    )
    s = dataset([entry(tmp_path / "c.png", 30, 20, [[1, 1, 5, 5]])], cfg)[0]
    for c, expected in enumerate([(10 - 1) / 3, (20 - 2) / 6, (30 - 3) / 9]):
        np.testing.assert_allclose(s.im_data[c].numpy(), expected, rtol=1e-6)
    default = load_config(None, ["TRAIN.SCALES", "[20]"])
    s = dataset([entry(tmp_path / "c.png", 30, 20, [[1, 1, 5, 5]])], default)[0]
    np.testing.assert_allclose(
        s.im_data[:, 0, 0].numpy(),
        np.array([10, 20, 30]) - np.array(default.PIXEL_MEANS),
        rtol=1e-5,
    )


def test_flipped_entry_flips_the_image(tmp_path):
    ramp_image(tmp_path / "r.png", 10, 20)
    cfg = raw_cfg("TRAIN.SCALES", "[10]")
    s = dataset([entry(tmp_path / "r.png", 20, 10, [[0, 0, 9, 9]], flipped=True)], cfg)[0]
    np.testing.assert_array_equal(s.im_data[0, 0].numpy(), np.arange(19, -1, -1))


def test_crop_keeps_boxes_and_shifts_exactly(tmp_path):
    ramp_image(tmp_path / "w.png", 100, 400)  # ratio 4 > 2: crop the width to 200
    cfg = raw_cfg("TRAIN.SCALES", "[100]")  # scale 1
    boxes = [[150, 10, 250, 60], [170, 20, 230, 90]]
    ds = dataset([entry(tmp_path / "w.png", 400, 100, boxes, [1, 2])], cfg)
    starts = set()
    for epoch in range(12):
        s = ds[(0, epoch)]
        assert tuple(s.im_data.shape) == (3, 100, 200)
        np.testing.assert_allclose(s.im_info.numpy(), [100, 200, 1])
        start = int(s.im_data[0, 0, 0]) + 256 * int(s.im_data[1, 0, 0])
        np.testing.assert_array_equal(s.im_data[0, 5].numpy(), (np.arange(200) + start) % 256)
        # every window keeping [150, 250] inside starts in [250 - 199, 150]
        assert 51 <= start <= 150
        starts.add(start)
        assert int(s.num_boxes) == 2
        expected = np.array(boxes, np.float32) - [start, 0, start, 0]
        np.testing.assert_array_equal(s.gt_boxes[:2, :4].numpy(), expected)
        np.testing.assert_array_equal(s.gt_boxes[:2, 4].numpy(), [1, 2])
    assert len(starts) > 1  # offsets differ between epochs
    assert ds[(0, 3)].im_data.equal(ds[(0, 3)].im_data)  # and are deterministic


def test_crop_of_tall_image(tmp_path):
    ramp_image(tmp_path / "t.png", 200, 50)  # ratio 0.25 < 0.5: crop the height to 100
    cfg = raw_cfg("TRAIN.SCALES", "[50]")
    ds = dataset([entry(tmp_path / "t.png", 50, 200, [[5, 120, 40, 160]])], cfg)
    for epoch in range(5):
        s = ds[(0, epoch)]
        assert tuple(s.im_data.shape) == (3, 100, 50)
        start = int(s.im_data[2, 0, 0])
        assert 61 <= start <= 100
        np.testing.assert_array_equal(s.gt_boxes[0, :4].numpy(), [5, 120 - start, 40, 160 - start])


def test_crop_offset_rules():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = crop_offset(400, 200, 150, 250, rng)  # fits: keep [150, 250]
        assert 51 <= s <= 150
        s = crop_offset(400, 200, 50, 350, rng)  # too long: window inside [50, 350]
        assert 50 <= s and s + 199 <= 350
        s = crop_offset(400, 200, 0, 30, rng)
        assert s == 0
        s = crop_offset(400, 200, 390, 399, rng)
        assert s == 200
    assert crop_offset(100, 100, 0, 99, rng) == 0


def test_padding_to_group_ratio_and_collate(tmp_path):
    ramp_image(tmp_path / "a.png", 100, 190)
    ramp_image(tmp_path / "b.png", 100, 200)
    cfg = raw_cfg("TRAIN.SCALES", "[100]", "TRAIN.MAX_SIZE", "150")
    roidb = [
        entry(tmp_path / "a.png", 190, 100, [[0, 0, 189, 99]]),
        entry(tmp_path / "b.png", 200, 100, [[0, 0, 199, 99]]),
    ]
    ds = dataset(roidb, cfg, batch_size=2)  # one group, ratios 1.9 and 2 -> target 2
    a, b = ds[0], ds[1]
    # a: scale 150/190, 100x190 -> 79x150, padded to ratio 2: 79x158
    assert tuple(a.im_data.shape) == (3, 79, 158)
    np.testing.assert_allclose(a.im_info.numpy(), [79, 158, 150 / 190], rtol=1e-6)
    assert a.im_data[:, :, 150:].abs().sum() == 0 and a.im_data[0, :, 149].abs().sum() > 0
    np.testing.assert_allclose(
        a.gt_boxes[0, :4].numpy(), np.array([0, 0, 189, 99]) * 150 / 190, rtol=1e-6
    )
    # b: scale 0.75 -> 75x150, already ratio 2
    assert tuple(b.im_data.shape) == (3, 75, 150)
    batch = collate_batch([a, b])
    assert tuple(batch.im_data.shape) == (2, 3, 79, 158)
    assert batch.im_data[1, :, 75:].abs().sum() == 0
    assert batch.im_data[1, :, :, 150:].abs().sum() == 0
    assert torch.equal(batch.im_data[1, :, :75, :150], b.im_data)
    np.testing.assert_allclose(
        batch.im_info.numpy(), [[79, 158, 150 / 190], [75, 150, 0.75]], rtol=1e-6
    )
    assert batch.num_boxes.tolist() == [1, 1] and batch.num_boxes.dtype == torch.int64
    assert batch.image_paths == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_max_num_gt_boxes_truncation_is_logged(tmp_path, caplog):
    ramp_image(tmp_path / "m.png", 50, 50)
    cfg = raw_cfg("TRAIN.SCALES", "[50]", "MAX_NUM_GT_BOXES", "3")
    boxes = [[i, i, i + 10, i + 10] for i in range(5)]
    ds = dataset([entry(tmp_path / "m.png", 50, 50, boxes, [1, 2, 3, 4, 5])], cfg)
    with caplog.at_level(logging.WARNING):
        s = ds[0]
    assert "m.png" in caplog.text and "MAX_NUM_GT_BOXES=3" in caplog.text
    assert int(s.num_boxes) == 3 and tuple(s.gt_boxes.shape) == (3, 5)
    kept = s.gt_boxes.numpy()
    assert len(set(kept[:, 4])) == 3
    for row in kept:  # each kept row is one of the originals with its class
        k = int(row[4]) - 1
        np.testing.assert_array_equal(row[:4], boxes[k])


def make_loader_roidb(tmp_path):
    rng = np.random.default_rng(0)
    roidb = []
    for i, (h, w) in enumerate(
        [(40, 60), (60, 40), (50, 50), (30, 90), (45, 70), (70, 30), (40, 41)]
    ):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        roidb.append(
            entry(
                tmp_path / f"{i}.png",
                w,
                h,
                [[2, 3, w // 2, h // 2]],
                [1 + i % 3],
                flipped=bool(i % 2),
            )
        )
    return roidb


def test_loader_workers_give_the_same_batches(tmp_path):
    roidb = make_loader_roidb(tmp_path)
    cfg = load_config(None, ["TRAIN.SCALES", "[32, 48]", "TRAIN.MAX_SIZE", "80"])
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)

    def run(workers, epoch):
        loader = build_train_loader(
            cfg, roidb, ratio_list, ratio_index, batch_size=2, num_workers=workers, seed=7
        )
        loader.batch_sampler.set_epoch(epoch)
        return list(loader)

    for epoch in (0, 1):
        single, multi = run(0, epoch), run(2, epoch)
        assert len(single) == len(multi) == 4  # 7 images, batch 2: the last batch has 1
        assert sorted(len(b.image_paths) for b in single) == [1, 2, 2, 2]
        for x, y in zip(single, multi):
            assert x.image_paths == y.image_paths
            for u, v in zip(x[:4], y[:4]):
                assert u.dtype == v.dtype and torch.equal(u, v)
            assert x.im_data.dim() == 4 and x.gt_boxes.shape[1:] == (cfg.MAX_NUM_GT_BOXES, 5)
            assert torch.isfinite(x.im_data).all() and torch.isfinite(x.gt_boxes).all()
    targets = set()
    for batch in run(0, 0) + run(0, 1):
        sizes = []  # the batch's target scale: short side of the unpadded image
        for path, info in zip(batch.image_paths, batch.im_info):
            h, w = cv2.imread(path).shape[:2]
            sizes.append(
                round(min(h, w) * float(info[2])) if max(h, w) * float(info[2]) < 79.5 else None
            )
        known = {s for s in sizes if s is not None}
        assert len(known) <= 1 and known <= {32, 48}
        targets |= known
    assert targets == {32, 48}


def test_loader_resume_matches_tail(tmp_path):
    roidb = make_loader_roidb(tmp_path)
    cfg = load_config(None, ["TRAIN.SCALES", "[32]", "TRAIN.MAX_SIZE", "80"])
    ratio_list, ratio_index = rank_roidb_ratio(roidb, cfg)
    full = list(build_train_loader(cfg, roidb, ratio_list, ratio_index, 2, 0, seed=1, epoch=1))
    tail = list(
        build_train_loader(
            cfg, roidb, ratio_list, ratio_index, 2, 0, seed=1, epoch=1, start_batch=2
        )
    )
    assert len(tail) == 2
    for x, y in zip(full[2:], tail):
        assert x.image_paths == y.image_paths and torch.equal(x.im_data, y.im_data)


def test_prepare_test_image():
    cfg = load_config(None, ["TEST.SCALES", "[600]", "TEST.MAX_SIZE", "1000"])
    image = np.full((300, 400, 3), (50, 60, 70), np.uint8)
    im_data, im_info = prepare_test_image(image, cfg)
    assert tuple(im_data.shape) == (1, 3, 600, 800) and im_data.dtype == torch.float32
    np.testing.assert_allclose(im_info.numpy(), [[600, 800, 2]])
    np.testing.assert_allclose(
        im_data[0, :, 7, 9].numpy(), np.array([50, 60, 70]) - np.array(cfg.PIXEL_MEANS), rtol=1e-5
    )
    im_data, im_info = prepare_test_image(np.zeros((100, 500, 3), np.uint8), cfg)
    assert tuple(im_data.shape) == (1, 3, 200, 1000)  # 600/100 = 6 -> 3000 > 1000: scale 2
    assert math.isclose(float(im_info[0, 2]), 2.0)


def test_test_image_dataset(tmp_path):
    ramp_image(tmp_path / "a.png", 20, 40)

    class TinyImdb:
        num_images = 1

        def image_path_at(self, i):
            return str(tmp_path / "a.png")

    cfg = raw_cfg("TEST.SCALES", "[20]")
    ds = loader_module.TestImageDataset(TinyImdb(), cfg)
    assert len(ds) == 1
    im_data, im_info, index, size = ds[0]
    assert index == 0 and tuple(im_data.shape) == (1, 3, 20, 40) and size == (20, 40)
    np.testing.assert_array_equal(im_data[0, 0, 0].numpy(), np.arange(40))  # not flipped
    np.testing.assert_allclose(im_info.numpy(), [[20, 40, 1]])
