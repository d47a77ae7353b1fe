"""The model's own preprocessing: images of any sizes -> ``im_data``, ``im_info``, ``gt_boxes``.

The counterpart of torchvision's ``GeneralizedRCNNTransform`` for the reference pipeline.

Input contract (the two common conventions, told apart by type):

* ``torch.Tensor`` ``(3, H, W)``: **RGB**, float in ``[0, 1]`` (torchvision's detection models'
  contract) or uint8 in ``[0, 255]``;
* ``numpy.ndarray`` ``(H, W, 3)`` uint8 **BGR** (what ``cv2.imread`` returns) or ``(H, W)``
  uint8 grayscale.

Every image becomes float32 BGR in ``0..255``, is resized by the reference's rule (short side to
the scale, long side at most ``max_size``; bilinear, :func:`fasterrcnn.data.image.resize_normalize`,
so an array gives exactly what :func:`fasterrcnn.data.prepare_test_image` gives), has
``pixel_means`` subtracted and is divided by ``pixel_stds`` (both BGR), and the batch is
zero-padded at the bottom/right to its largest height and width.  The resizing runs on the CPU
(OpenCV); the batch is then moved to the requested device.

Boxes are ``[x1, y1, x2, y2]`` pixels with the +1 convention (x2, y2 the last covered pixel):
target boxes in original-image pixels are multiplied by the image's scale; detections are
divided by it and clipped to ``0 .. w - 1`` / ``0 .. h - 1`` of the original image.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from fasterrcnn.config import Config
from fasterrcnn.data.image import image_scale, resize_normalize
from fasterrcnn.rpn.boxes import clip_boxes

ImageLike = Union[Tensor, np.ndarray]
Target = Dict[str, Tensor]


class ImageBatch(NamedTuple):
    """A preprocessed batch of ``B`` images.

    im_data: ``(B, 3, H, W)`` float32 normalised BGR, zero-padded to the largest image.
    im_info: ``(B, 3)`` float32 ``[height, width, scale]`` of each resized image (unpadded).
    original_sizes: ``(height, width)`` of each input image.
    gt_boxes: ``(B, G, 5)`` ``[x1, y1, x2, y2, class]`` in resized pixels, zero rows after
        ``num_boxes[b]`` (``None`` without targets).
    num_boxes: ``(B,)`` int64 (``None`` without targets).
    """

    im_data: Tensor
    im_info: Tensor
    original_sizes: List[Tuple[int, int]]
    gt_boxes: Optional[Tensor]
    num_boxes: Optional[Tensor]


def to_bgr_float(image: ImageLike, index: int = 0) -> np.ndarray:
    """``(H, W, 3)`` float32 BGR in ``0..255`` from one image of the input contract above.

    Raises:
        TypeError / ValueError naming ``images[index]`` and what is wrong with it.
    """
    where = f"images[{index}]"
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"{where}: a tensor image must be (3, H, W) RGB, got shape {tuple(image.shape)}"
            )
        if image.dtype == torch.uint8:
            rgb = image.detach().to("cpu", torch.float32)
        elif image.is_floating_point():
            rgb = image.detach().to("cpu", torch.float32) * 255.0
        else:
            raise ValueError(
                f"{where}: a tensor image must be float in [0, 1] or uint8, got {image.dtype}"
            )
        return np.ascontiguousarray(rgb.flip(0).permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(
                f"{where}: a numpy image must be uint8 BGR (as cv2.imread gives), got {image.dtype}"
            )
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"{where}: a numpy image must be (H, W, 3) BGR or (H, W), got shape {image.shape}"
            )
        return image.astype(np.float32)
    raise TypeError(
        f"{where}: unsupported image type {type(image).__name__}; give a (3, H, W) "
        "RGB tensor or an (H, W, 3) BGR uint8 numpy array"
    )


def image_size(image: ImageLike) -> Tuple[int, int]:
    """``(height, width)`` of an image of the input contract."""
    if isinstance(image, Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    return int(image.shape[0]), int(image.shape[1])


def check_target(target: Target, index: int, num_classes: Optional[int]) -> None:
    """Raise ValueError naming ``targets[index]`` unless it holds ``boxes`` ``(G, 4)`` finite
    with ``x2 >= x1, y2 >= y1`` and integer ``labels`` ``(G,)`` in ``1 .. num_classes - 1``."""
    where = f"targets[{index}]"
    if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
        raise ValueError(f"{where} must be a dict with 'boxes' (G, 4) and 'labels' (G,)")
    boxes, labels = torch.as_tensor(target["boxes"]), torch.as_tensor(target["labels"])
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must be (G, 4), got shape {tuple(boxes.shape)}")
    if labels.shape != (boxes.shape[0],):
        raise ValueError(
            f"{where}['labels'] must be ({boxes.shape[0]},), got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{where}['labels'] must be integers, got {labels.dtype}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{where}['boxes'] holds non-finite values")
    if bool((boxes[:, 2] < boxes[:, 0]).any() | (boxes[:, 3] < boxes[:, 1]).any()):
        raise ValueError(f"{where}['boxes'] must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1")
    high = num_classes - 1 if num_classes is not None else None
    too_high = high is not None and labels.numel() and int(labels.max()) > high
    if labels.numel() and (int(labels.min()) < 1 or too_high):
        upper = "" if high is None else f" .. {high}"
        raise ValueError(
            f"{where}['labels'] must be in 1{upper} (0 is the background), got {labels.tolist()}"
        )


def clip_to_original(detection: Dict[str, Tensor], height: int, width: int) -> Dict[str, Tensor]:
    """``detection`` with its ``boxes`` (n, 4) clipped to the original ``height x width`` image:
    x to ``[0, width - 1]``, y to ``[0, height - 1]`` (+1 convention).

    Boxes come back from the resized image divided by its scale; on an image scaled up for
    inference, ``(resized_width - 1) / scale`` lies up to ``1 - 1 / scale`` px past the last
    pixel, so they are clipped again in original pixels.
    """
    boxes = detection["boxes"]
    size = torch.tensor([[height, width, 1.0]], dtype=boxes.dtype, device=boxes.device)
    return dict(detection, boxes=clip_boxes(boxes.unsqueeze(0), size)[0])


class ImageTransform(nn.Module):
    """Resize, normalise and batch images (see the module docstring); map detections back.

    Also holds the defaults of the one-call API's detections (as torchvision's
    ``box_score_thresh`` / ``box_detections_per_img``): ``score_thresh`` and
    ``detections_per_img``; change them on the attribute or per call.

    Args:
        pixel_means, pixel_stds: BGR statistics subtracted from / dividing the 0..255 pixels.
        test_scale, test_max_size: short side and long-side cap in eval mode.
        train_scales, train_max_size: in training mode each batch's short side is drawn from
            ``train_scales`` with the generator given to :meth:`forward`.
        score_thresh: keep detections scoring strictly above it (0.05).
        detections_per_img: keep at most this many detections per image (100; 0: all).
    """

    def __init__(
        self,
        pixel_means: Sequence[float],
        pixel_stds: Sequence[float] = (1.0, 1.0, 1.0),
        test_scale: int = 600,
        test_max_size: int = 1000,
        train_scales: Sequence[int] = (600,),
        train_max_size: int = 1000,
        score_thresh: float = 0.05,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        if len(pixel_means) != 3 or len(pixel_stds) != 3:
            raise ValueError("pixel_means and pixel_stds must hold 3 values (B, G, R)")
        if not train_scales:
            raise ValueError("train_scales must hold at least one scale")
        self.pixel_means = tuple(float(v) for v in pixel_means)
        self.pixel_stds = tuple(float(v) for v in pixel_stds)
        self.test_scale = int(test_scale)
        self.test_max_size = int(test_max_size)
        self.train_scales = tuple(int(s) for s in train_scales)
        self.train_max_size = int(train_max_size)
        self.score_thresh = float(score_thresh)
        self.detections_per_img = int(detections_per_img)

    @classmethod
    def from_config(cls, cfg: Config) -> ImageTransform:
        """``PIXEL_MEANS``, ``PIXEL_STDS``, ``TEST.SCALES[0]``, ``TEST.MAX_SIZE``,
        ``TRAIN.SCALES``, ``TRAIN.MAX_SIZE``, ``TEST.DETECT_SCORE_THRESH``,
        ``TEST.MAX_PER_IMAGE``."""
        return cls(
            cfg.PIXEL_MEANS,
            cfg.PIXEL_STDS,
            cfg.TEST.SCALES[0],
            cfg.TEST.MAX_SIZE,
            cfg.TRAIN.SCALES,
            cfg.TRAIN.MAX_SIZE,
            cfg.TEST.DETECT_SCORE_THRESH,
            cfg.TEST.MAX_PER_IMAGE,
        )

    def forward(
        self,
        images: Sequence[ImageLike],
        targets: Optional[Sequence[Target]] = None,
        generator: Optional[torch.Generator] = None,
        num_classes: Optional[int] = None,
        device: Union[str, torch.device] = "cpu",
    ) -> ImageBatch:
        """Preprocess a list of images (and their targets).

        Args:
            images: ``B`` images of the input contract, any sizes.
            targets: ``B`` dicts ``boxes`` ``(G, 4)`` in original pixels and ``labels`` ``(G,)``.
            generator: draws the training scale (training mode with several ``train_scales``).
            num_classes: when given, labels must be below it.
            device: where the returned tensors go (the model's device).
        """
        if isinstance(images, (Tensor, np.ndarray)) or len(images) == 0:
            raise ValueError(
                "images must be a non-empty list of (3, H, W) tensors or (H, W, 3) arrays"
            )
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"got {len(targets)} targets for {len(images)} images")
        target_size, max_size = self.test_scale, self.test_max_size
        if self.training:
            target_size, max_size = self.train_scales[0], self.train_max_size
            if len(self.train_scales) > 1:
                pick = torch.randint(len(self.train_scales), (1,), generator=generator)
                target_size = self.train_scales[int(pick)]
        arrays, infos, sizes = [], [], []
        for i, image in enumerate(images):
            bgr = to_bgr_float(image, i)
            height, width = bgr.shape[:2]
            if height == 0 or width == 0:
                raise ValueError(
                    f"images[{i}]: the image is empty ({width}x{height} pixels): "
                    "there is nothing to detect objects in"
                )
            scale = image_scale(height, width, target_size, max_size)
            data = resize_normalize(bgr, scale, self.pixel_means, self.pixel_stds)
            arrays.append(data)
            infos.append([data.shape[0], data.shape[1], scale])
            sizes.append((height, width))
        im_data = torch.zeros(
            len(arrays), 3, max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
        )
        for b, data in enumerate(arrays):
            pixels = torch.from_numpy(data).permute(2, 0, 1)
            im_data[b, :, : data.shape[0], : data.shape[1]] = pixels
        im_info = torch.tensor(infos, dtype=torch.float32)
        gt_boxes = num_boxes = None
        if targets is not None:
            gt_boxes, num_boxes = self.targets_to_gt(targets, im_info[:, 2], num_classes)
            gt_boxes, num_boxes = gt_boxes.to(device), num_boxes.to(device)
        return ImageBatch(im_data.to(device), im_info.to(device), sizes, gt_boxes, num_boxes)

    @staticmethod
    def targets_to_gt(
        targets: Sequence[Target], scales: Tensor, num_classes: Optional[int] = None
    ) -> Tuple[Tensor, Tensor]:
        """``gt_boxes`` ``(B, G, 5)`` float32 (boxes times ``scales[b]``, zero-padded to the
        largest ``G``) and ``num_boxes`` ``(B,)`` int64 from checked targets."""
        for i, target in enumerate(targets):
            check_target(target, i, num_classes)
        counts = [int(torch.as_tensor(t["labels"]).numel()) for t in targets]
        gt_boxes = torch.zeros(len(targets), max(counts + [1]), 5)
        for b, target in enumerate(targets):
            boxes = torch.as_tensor(target["boxes"]).detach().to("cpu", torch.float32)
            gt_boxes[b, : counts[b], :4] = boxes * scales[b].cpu()
            gt_boxes[b, : counts[b], 4] = torch.as_tensor(target["labels"]).detach().cpu().float()
        return gt_boxes, torch.tensor(counts, dtype=torch.int64)

    def postprocess(
        self, detections: List[Dict[str, Tensor]], original_sizes: Sequence[Tuple[int, int]]
    ) -> List[Dict[str, Tensor]]:
        """Clip each image's detection ``boxes`` (already in original pixels) to
        ``0 .. w - 1`` / ``0 .. h - 1`` of its original size."""
        return [
            clip_to_original(det, height, width)
            for det, (height, width) in zip(detections, original_sizes)
        ]

    def extra_repr(self) -> str:
        return (
            f"test_scale={self.test_scale}, test_max_size={self.test_max_size}, "
            f"train_scales={self.train_scales}, train_max_size={self.train_max_size}, "
            f"score_thresh={self.score_thresh}, detections_per_img={self.detections_per_img}"
        )
