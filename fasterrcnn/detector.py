"""The notebook API: load a trained detector and run it on images.

A thin layer over the model's one-call API (:mod:`fasterrcnn.model.image_api`): it loads a
checkpoint, keeps the class names and accepts paths, BGR arrays and PIL images.

    from fasterrcnn import Detector
    det = Detector.from_checkpoint("models/res18/shapes/faster_rcnn_1_1_1300.pth", device="cpu")
    result = det.predict("image.jpg")        # or a BGR numpy array, an RGB PIL image, a list
    # scores above cfg.TEST.DETECT_SCORE_THRESH (0.05), at most TEST.MAX_PER_IMAGE (100)
    result["boxes"], result["scores"], result["labels"], result["class_names"]
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from fasterrcnn.config import Config
from fasterrcnn.data.image import read_image
from fasterrcnn.engine.inference import load_model_from_checkpoint
from fasterrcnn.model import FasterRCNN
from fasterrcnn.model.image_api import detect

ImageInput = Union[str, os.PathLike, np.ndarray, Any]


class Detector:
    """A FasterRCNN in eval mode with its config and class names.

    Attributes:
        model: the torch module (eval mode): ``det.model(images)`` is the one-call API and
            ``fasterrcnn.inspect.trace(det.model, image)`` shows every stage.
        cfg: the config it was trained with (test options may be overridden).
        classes: class names, index 0 the background.
    """

    def __init__(self, model: FasterRCNN, cfg: Config, classes: Sequence[str], device: str = "cpu"):
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.classes = list(classes)
        self.device = device

    @classmethod
    def from_checkpoint(
        cls, path: str, device: str = "cpu", overrides: Sequence[Any] = ()
    ) -> Detector:
        """Load a checkpoint written by tools/trainval_net.py (weights-only loading)."""
        model, cfg, classes = load_model_from_checkpoint(path, device, overrides)
        return cls(model, cfg, classes, device)

    @torch.no_grad()
    def predict(
        self,
        images: Union[ImageInput, List[ImageInput]],
        score_thresh: Optional[float] = None,
        detections_per_img: Optional[int] = None,
    ) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """Detect objects in one image or a list of them.

        Each image is its own call of the model, so a result does not depend on the other
        images of the list (a batch would pad them to a common size).

        Args:
            images: a file path (read by :func:`fasterrcnn.data.image.read_image`), a BGR uint8
                numpy array (H, W, 3) or (H, W), an RGB PIL image, or a list of these.
            score_thresh: keep detections scoring above it (default:
                ``cfg.TEST.DETECT_SCORE_THRESH``, 0.05 as torchvision).
            detections_per_img: at most this many per image (default
                ``cfg.TEST.MAX_PER_IMAGE``, 100; 0 keeps all).

        Returns:
            per image a dict: boxes (N, 4) float32 [x1, y1, x2, y2] in original-image pixels,
            scores (N,) float32, labels (N,) int64 (1..num_classes-1), class_names (N names).
        """
        many = isinstance(images, list)
        results = [
            self._to_numpy(
                detect(self.model, [to_bgr_array(image)], score_thresh, detections_per_img)[0]
            )
            for image in (images if many else [images])
        ]
        return results if many else results[0]

    def _to_numpy(self, detection: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        labels = detection["labels"].cpu().numpy().astype(np.int64)
        return {
            "boxes": detection["boxes"].cpu().numpy().astype(np.float32),
            "scores": detection["scores"].cpu().numpy().astype(np.float32),
            "labels": labels,
            "class_names": [self.classes[label] for label in labels],
        }


def to_bgr_array(image: ImageInput) -> np.ndarray:
    """A BGR uint8 (H, W, 3) array from a path, a numpy array or a PIL image."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cannot read image file: {path} (no such file)")
        return read_image(path)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"numpy images must be uint8 (BGR), got {image.dtype}")
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        raise ValueError(f"numpy images must be (H, W, 3) BGR or (H, W), got {image.shape}")
    if hasattr(image, "convert") and hasattr(image, "size"):
        rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])
    raise TypeError(
        f"unsupported image type {type(image).__name__}: "
        "give a path, a BGR numpy array or a PIL image"
    )
