"""Run exported detectors: ONNX models through onnxruntime, ``.pt2`` archives through torch.

Both give what :meth:`fasterrcnn.Detector.predict` gives for one image (boxes in original-image
pixels, scores, labels, class names), and :func:`detect_dataset` the reference's ``all_boxes``
for scoring with :func:`fasterrcnn.eval.voc_evaluate`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fasterrcnn.config import Config, config_from_dict
from fasterrcnn.data import prepare_test_image
from fasterrcnn.deploy.export import (
    INPUT_NAMES,
    ONNX_CLASSES_KEY,
    ONNX_CONFIG_KEY,
    ONNX_EXTRA_HINT,
    PT2_EXTRA_FILE,
)
from fasterrcnn.detector import ImageInput, to_bgr_array
from fasterrcnn.engine.inference import AllBoxes, detections_to_class_arrays
from fasterrcnn.model.transform import clip_to_original

PaddedDetections = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""boxes (B, D, 4), scores (B, D), labels (B, D), counts (B,)."""


class ExportedDetector:
    """An exported model with its config and class names; :meth:`predict` as ``Detector``'s.

    Attributes:
        cfg: the config the model was exported with (its TEST options are baked in).
        classes: class names, index 0 the background.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray, np.ndarray], PaddedDetections],
        cfg: Config,
        classes: Sequence[str],
    ) -> None:
        self.run = run
        self.cfg = cfg
        self.classes = list(classes)

    @classmethod
    def from_onnx(cls, path: str, threads: int = 0) -> ExportedDetector:
        """An ONNX model written by ``tools/export.py --format onnx``, on onnxruntime's CPU
        execution provider (``threads`` intra-op threads; 0: onnxruntime's default)."""
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError(f"{ONNX_EXTRA_HINT} ({exc})") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        missing = [key for key in (ONNX_CONFIG_KEY, ONNX_CLASSES_KEY) if key not in meta]
        if missing:
            raise ValueError(f"{path}: not a fasterrcnn export (no metadata {missing})")
        cfg = config_from_dict(json.loads(meta[ONNX_CONFIG_KEY]), source=path)

        def run(im_data: np.ndarray, im_info: np.ndarray) -> PaddedDetections:
            return tuple(session.run(None, dict(zip(INPUT_NAMES, (im_data, im_info)))))

        return cls(run, cfg, json.loads(meta[ONNX_CLASSES_KEY]))

    @classmethod
    def from_pt2(cls, path: str) -> ExportedDetector:
        """A ``.pt2`` archive written by ``tools/export.py --format pt2``, run on the CPU."""
        extra = {PT2_EXTRA_FILE: ""}
        program = torch.export.load(path, extra_files=extra)
        if not extra[PT2_EXTRA_FILE]:
            raise ValueError(f"{path}: not a fasterrcnn export (no {PT2_EXTRA_FILE})")
        meta = json.loads(extra[PT2_EXTRA_FILE])
        module = program.module()

        @torch.no_grad()
        def run(im_data: np.ndarray, im_info: np.ndarray) -> PaddedDetections:
            outputs = module(torch.from_numpy(im_data), torch.from_numpy(im_info))
            return tuple(t.numpy() for t in outputs)

        return cls(run, config_from_dict(meta["config"], source=path), meta["classes"])

    def detect(
        self, im_data: np.ndarray, im_info: np.ndarray, original_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The detections of one preprocessed image of ``original_size`` (height, width):
        boxes (n, 4) in original pixels clipped to the image, scores (n,), labels (n,)."""
        boxes, scores, labels, counts = self.run(im_data, im_info)
        n = int(counts[0])
        detection = {
            key: torch.from_numpy(np.asarray(value[0, :n]))
            for key, value in (("boxes", boxes), ("scores", scores), ("labels", labels))
        }
        return clip_to_original(detection, *original_size)

    def predict(self, image: ImageInput) -> dict[str, Any]:
        """As :meth:`fasterrcnn.Detector.predict` for one image (with the exported threshold)."""
        bgr = to_bgr_array(image)
        im_data, im_info = prepare_test_image(bgr, self.cfg)
        detection = self.detect(im_data.numpy(), im_info.numpy(), bgr.shape[:2])
        labels = detection["labels"].numpy().astype(np.int64)
        return {
            "boxes": detection["boxes"].numpy().astype(np.float32),
            "scores": detection["scores"].numpy().astype(np.float32),
            "labels": labels,
            "class_names": [self.classes[label] for label in labels],
        }


def detect_dataset(
    detector: ExportedDetector, dataset: torch.utils.data.Dataset
) -> tuple[AllBoxes, float]:
    """All detections of a test dataset (``dataset[k]`` -> im_data, im_info, index,
    (height, width)) as ``all_boxes`` ``[class][image]`` (N, 5) arrays in original pixels, and
    the images per second."""
    num_classes = len(detector.classes)
    all_boxes: AllBoxes = [
        [np.zeros((0, 5), dtype=np.float32) for _ in range(len(dataset))]
        for _ in range(num_classes)
    ]
    started = time.perf_counter()
    for k in range(len(dataset)):
        im_data, im_info, index, original_size = dataset[k]
        detection = detector.detect(im_data.numpy(), im_info.numpy(), original_size)
        for c, boxes in enumerate(detections_to_class_arrays(detection, num_classes)):
            all_boxes[c][int(index)] = boxes
    seconds = time.perf_counter() - started
    return all_boxes, len(dataset) / max(seconds, 1e-9)
