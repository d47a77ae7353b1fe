"""ONNX translations of the fasterrcnn operators for ``torch.onnx.export(..., dynamo=True)``.

Each function is an onnxscript (trace-only) translation of one operator schema; the exporter
receives them through ``custom_translation_table`` (see :func:`onnx_translation_table`).
Schemas follow torchvision's (``fasterrcnn::roi_align`` is ``torchvision::roi_align``'s):

* ``nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor`` (kept indices) and
  ``nms_mask(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor`` (bool (N,) keep
  mask) -> ONNX ``NonMaxSuppression`` with ``center_point_box=0``.  ONNX takes corners as
  ``[y1, x1, y2, x2]``, but IoU is symmetric in the two axes, so ``[x1, y1, x2, y2]`` boxes give
  the same IoU; a box is suppressed when its IoU with a kept box is ``> iou_threshold``
  (strictly, as torchvision); zero-area boxes suppress nothing and are never suppressed (IoU
  0/0 is false in both); equal scores keep the lower index first (onnxruntime's ordering).
  The boxes must have ``x1 <= x2`` and ``y1 <= y2``: ONNX reorders swapped corners, torchvision
  does not.
* ``roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt
  pooled_width, int sampling_ratio, bool aligned) -> Tensor`` -> ONNX ``RoiAlign`` (avg mode),
  ``coordinate_transformation_mode`` ``output_half_pixel`` for ``aligned=False`` (RoI sizes
  clamped to at least 1 cell, as torchvision) and ``half_pixel`` for ``aligned=True``;
  ``sampling_ratio <= 0`` (adaptive: ``ceil(roi_size / pooled_size)`` samples per bin axis) is
  ONNX's ``sampling_ratio=0``, which means the same.
* ``roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt
  pooled_width) -> (Tensor, Tensor)`` -> ONNX ``MaxRoiPool`` (rounded RoI corners, +1 sizes,
  floor/ceil bins, empty bins 0 — the same arithmetic).  ONNX has no argmax output: the second
  output (used only by the backward) is exported as zeros.

One aten operator needs a translation too: ``sort.stable`` (the stable sort the proposal
layer ranks with; onnxscript has none) -> ONNX ``TopK`` over the whole axis, whose ties keep the
lower index first, as a stable sort does.

``roi_crop`` has no ONNX translation: :func:`check_onnx_exportable` names the alternatives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from onnxscript import BOOL, FLOAT, INT64
from onnxscript import opset18 as op

from fasterrcnn.config import Config

INT64_MAX = 2**63 - 1

OP_NAMESPACES = ("fasterrcnn", "fasterrcnn_torch")
"""Namespaces searched for the operators by :func:`onnx_translation_table`: the compiled
operators and their pure-torch fallbacks (same schemas)."""


def onnx_nms(boxes, scores, iou_threshold: float):
    """``boxes (N, 4)``, ``scores (N,)`` -> int64 ``(K,)`` kept indices by decreasing score.

    onnxruntime's NonMaxSuppression takes float32 only: float64 inputs (exact batched offsets)
    are rounded to float32, which can flip a decision at an IoU within ~1e-7 of the threshold.
    """
    selected = op.NonMaxSuppression(
        op.Unsqueeze(op.Cast(boxes, to=FLOAT.dtype), [0]),
        op.Unsqueeze(op.Cast(scores, to=FLOAT.dtype), [0, 1]),
        op.Constant(value_int=INT64_MAX),
        op.Constant(value_float=iou_threshold),
        center_point_box=0,
    )
    return op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])


def onnx_nms_mask(boxes, scores, iou_threshold: float):
    """``boxes (N, 4)``, ``scores (N,)`` -> bool ``(N,)``: True for the boxes NMS keeps."""
    kept = op.Unsqueeze(onnx_nms(boxes, scores, iou_threshold), [1])
    zeros = op.Expand(op.Constant(value_ints=[0]), op.Shape(scores))
    ones = op.Expand(op.Constant(value_ints=[1]), op.Shape(kept, start=0, end=1))
    return op.Cast(op.ScatterND(zeros, kept, ones), to=BOOL.dtype)


def _split_rois(rois):
    """``rois (K, 5)`` -> float ``(K, 4)`` corners and int64 ``(K,)`` batch indices."""
    corners = op.Slice(rois, [1], [5], [1])
    batch_indices = op.Cast(op.Reshape(op.Slice(rois, [0], [1], [1]), [-1]), to=INT64.dtype)
    return corners, batch_indices


def onnx_roi_align(
    input,
    rois,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
):
    """``input (B, C, H, W)``, ``rois (K, 5)`` -> ``(K, C, pooled_height, pooled_width)``."""
    corners, batch_indices = _split_rois(rois)
    return op.RoiAlign(
        input,
        corners,
        batch_indices,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=pooled_height,
        output_width=pooled_width,
        sampling_ratio=max(sampling_ratio, 0),
        spatial_scale=spatial_scale,
    )


def onnx_roi_pool(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
    """``input (B, C, H, W)``, ``rois (K, 5)`` -> pooled ``(K, C, ph, pw)`` and zero argmax."""
    pooled = op.MaxRoiPool(
        input, rois, pooled_shape=[pooled_height, pooled_width], spatial_scale=spatial_scale
    )
    argmax = op.Cast(op.Expand(op.Constant(value_ints=[0]), op.Shape(pooled)), to=INT64.dtype)
    return pooled, argmax


def onnx_sort_stable(self, stable=None, dim: int = -1, descending: bool = False):
    """``aten::sort.stable``: values and int64 indices along ``dim``, equal values by index."""
    size = op.Shape(self, start=dim, end=dim + 1) if dim != -1 else op.Shape(self, start=-1)
    return op.TopK(self, size, axis=dim, largest=descending, sorted=True)


TRANSLATIONS: dict[str, Callable] = {
    "nms": onnx_nms,
    "nms_mask": onnx_nms_mask,
    "roi_align": onnx_roi_align,
    "roi_pool": onnx_roi_pool,
}
"""Operator name -> its ONNX translation."""


def onnx_translation_table(namespaces: Iterable[str] = OP_NAMESPACES) -> dict[object, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export``: ``aten::sort.stable`` and the
    default overload of every operator of :data:`TRANSLATIONS` registered in one of
    ``namespaces``."""
    table: dict[object, Callable] = {torch.ops.aten.sort.stable: onnx_sort_stable}
    for namespace in namespaces:
        ops = getattr(torch.ops, namespace)
        for name, translation in TRANSLATIONS.items():
            if hasattr(ops, name):
                table[getattr(ops, name).default] = translation
    return table


def check_onnx_exportable(cfg: Config) -> None:
    """Raise ValueError when the config's model has no ONNX translation (``POOLING_MODE crop``)."""
    if cfg.POOLING_MODE == "crop":
        raise ValueError(
            "POOLING_MODE crop (roi_crop: affine grid + bilinear sampler) has no ONNX "
            "translation; export it with --format pt2, or train with POOLING_MODE align "
            "(ONNX RoiAlign) or pool (ONNX MaxRoiPool)"
        )
