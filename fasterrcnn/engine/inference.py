"""Inference over a dataset, model loading from checkpoints, and detection files.

``all_boxes[c][i]`` is the reference's layout of a dataset's detections: an (N, 5) float32 array
``[x1, y1, x2, y2, score]`` in original-image pixels for class ``c`` (0 is the background and
stays empty) in image ``i``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, List, Sequence, Tuple

import numpy as np
import torch

from fasterrcnn.checkpoint import load_checkpoint, load_model_state
from fasterrcnn.config import Config, apply_overrides, config_from_dict
from fasterrcnn.model import FasterRCNN, build_model
from fasterrcnn.model.transform import clip_to_original

LOGGER = logging.getLogger(__name__)

AllBoxes = List[List[np.ndarray]]


def load_model_from_checkpoint(
    path: str, device: str = "cpu", overrides: Sequence[Any] = ()
) -> Tuple[FasterRCNN, Config, List[str]]:
    """Rebuild the model a checkpoint was trained as, load its weights, put it in eval mode.

    Returns (model, config, class names); ``overrides`` (``[KEY, VALUE, ...]``) change test-time
    options of the saved config, e.g. ``["TEST.SCALES", "[400]"]``.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    for key in ("model", "config", "classes"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a fasterrcnn checkpoint (no '{key}' entry)")
    cfg = apply_overrides(config_from_dict(ckpt["config"], source=path), overrides)
    classes = list(ckpt["classes"])
    model = build_model(cfg, len(classes))
    load_model_state(model, ckpt["model"], path)
    model.to(device).eval()
    return model, cfg, classes


def detections_to_class_arrays(detection: dict, num_classes: int) -> List[np.ndarray]:
    """One image's detections (boxes, scores, labels) as per-class (N, 5) arrays."""
    boxes = detection["boxes"].detach().cpu().numpy().astype(np.float32)
    scores = detection["scores"].detach().cpu().numpy().astype(np.float32)
    labels = detection["labels"].detach().cpu().numpy()
    per_class = [np.zeros((0, 5), dtype=np.float32)]
    for c in range(1, num_classes):
        keep = labels == c
        per_class.append(np.hstack([boxes[keep], scores[keep, None]]).astype(np.float32))
    return per_class


@torch.no_grad()
def detect_dataset(
    model: FasterRCNN,
    dataset: torch.utils.data.Dataset,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> Tuple[AllBoxes, float]:
    """Run the model on every image of a test dataset.

    ``dataset[k]`` gives (im_data (1,3,h,w), im_info (1,3), image index, (height, width) of the
    original image), as :class:`~fasterrcnn.data.TestImageDataset`; boxes are clipped to the
    original image (:func:`clip_to_original`).  Returns all_boxes and the images per second of
    the whole pass (loading included).
    """
    model.eval()
    num_classes = model.num_classes
    num_images = len(dataset)
    all_boxes: AllBoxes = [
        [np.zeros((0, 5), dtype=np.float32) for _ in range(num_images)] for _ in range(num_classes)
    ]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=num_workers
    )
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, total=num_images, desc="detect", mininterval=2.0, leave=False)
    started = time.perf_counter()
    for im_data, im_info, index, (height, width) in loader:
        im_data, im_info = im_data.to(device), im_info.to(device)
        rois, cls_prob, bbox_pred = model(im_data, im_info)
        detection = model.postprocess(rois, cls_prob, bbox_pred, im_info)[0]
        detection = clip_to_original(detection, int(height), int(width))
        for c, boxes in enumerate(detections_to_class_arrays(detection, num_classes)):
            all_boxes[c][int(index)] = boxes
    seconds = time.perf_counter() - started
    return all_boxes, num_images / max(seconds, 1e-9)


def save_detections(path: str, all_boxes: AllBoxes) -> None:
    """Store all_boxes as one (N, 7) array [image, class, x1, y1, x2, y2, score] in an .npz."""
    rows = [
        np.hstack([np.full((len(b), 1), i), np.full((len(b), 1), c), b])
        for c, per_image in enumerate(all_boxes)
        for i, b in enumerate(per_image)
        if len(b)
    ]
    table = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 7), np.float32)
    np.savez_compressed(
        path,
        detections=table,
        num_classes=len(all_boxes),
        num_images=len(all_boxes[0]) if all_boxes else 0,
    )


def load_detections(path: str) -> AllBoxes:
    """Read a file written by :func:`save_detections` back into all_boxes."""
    with np.load(path, allow_pickle=False) as data:
        table = data["detections"]
        num_classes, num_images = int(data["num_classes"]), int(data["num_images"])
    all_boxes: AllBoxes = [
        [np.zeros((0, 5), dtype=np.float32) for _ in range(num_images)] for _ in range(num_classes)
    ]
    for c in range(num_classes):
        of_class = table[table[:, 1] == c]
        for i in np.unique(of_class[:, 0]).astype(int):
            all_boxes[c][i] = of_class[of_class[:, 0] == i, 2:].copy()
    return all_boxes
