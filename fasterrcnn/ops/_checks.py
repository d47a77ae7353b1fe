"""Argument validation shared by the public ops, the fallback kernels and the fake kernels."""

from typing import Sequence, Tuple, Union

import torch

OutputSize = Union[int, Sequence[int]]


_AUTOCAST_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def dtypes_agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, or float32 / float16 / bfloat16 under autocast (the ops' autocast kernels
    compute both in float32)."""
    if a.dtype == b.dtype:
        return True
    return (
        a.dtype in _AUTOCAST_FLOATS
        and b.dtype in _AUTOCAST_FLOATS
        and torch.is_autocast_enabled(a.device.type)
    )


def pair(output_size: OutputSize, name: str = "output_size") -> Tuple[int, int]:
    """Normalise an int or (h, w) pair; both sizes must be positive ints."""
    if isinstance(output_size, int):
        size = (output_size, output_size)
    else:
        size = tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise ValueError(f"{name} must be an int or a pair of ints, got {output_size!r}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{name} must be positive, got {output_size!r}")
    return size[0], size[1]


def check_roi_args(
    input: torch.Tensor,
    rois: torch.Tensor,
    op: str,
    spatial_scale: float = 1.0,
    output_size: Tuple[int, int] = (1, 1),
) -> None:
    """input (B,C,H,W) floating, rois (K,5) of the same dtype and device, spatial_scale and the
    output size positive.  Shapes, dtypes and arguments only (no data-dependent check), so it
    also runs in fake kernels and under ``torch.compile``; the kernels check the batch indices.
    """
    if not isinstance(input, torch.Tensor) or not isinstance(rois, torch.Tensor):
        raise TypeError(f"{op}: input and rois must be tensors")
    if input.dim() != 4:
        raise ValueError(f"{op}: input must be 4-D (B,C,H,W), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"{op}: input must be a floating tensor, got {input.dtype}")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(
            f"{op}: rois must have shape (K,5) = [batch_index, x1, y1, x2, y2], "
            f"got {tuple(rois.shape)}"
        )
    if not dtypes_agree(rois, input):
        raise TypeError(f"{op}: rois dtype {rois.dtype} does not match input dtype {input.dtype}")
    if rois.device != input.device:
        raise ValueError(f"{op}: rois on {rois.device} but input on {input.device}")
    if output_size[0] <= 0 or output_size[1] <= 0:
        raise ValueError(f"{op}: output_size must be positive, got {tuple(output_size)}")
    if not spatial_scale > 0:
        raise ValueError(f"{op}: spatial_scale must be positive, got {spatial_scale}")
    if op == "roi_crop" and (input.size(2) < 2 or input.size(3) < 2):
        raise ValueError(f"roi_crop: feature map must be at least 2x2, got {tuple(input.shape)}")


def assert_batch_indices_on_device(rois: torch.Tensor, num_images: int, op: str) -> None:
    """On CUDA, an asynchronous device assert that every rois batch index lies in
    [0, num_images): no host synchronisation.  The CPU kernels and the fallbacks check the
    indices themselves (with a ValueError)."""
    if rois.is_cuda and rois.size(0) > 0:
        batch = rois[:, 0]
        torch._assert_async(
            ((batch >= 0) & (batch < num_images)).all(),
            f"{op}: rois batch indices must lie in [0, {num_images})",
        )


def check_roi_backward_args(
    grad: torch.Tensor, rois: torch.Tensor, op: str, output_size: Tuple[int, int]
) -> None:
    """grad (K,C,out_h,out_w) of a RoI op's output for rois (K,5)."""
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(f"{op}: rois must have shape (K,5), got {tuple(rois.shape)}")
    expected = (rois.size(0), output_size[0], output_size[1])
    if grad.dim() != 4 or (grad.size(0), grad.size(2), grad.size(3)) != expected:
        raise ValueError(
            f"{op}: grad must have shape (K, C, {output_size[0]}, {output_size[1]}) with "
            f"K = {rois.size(0)}, got {tuple(grad.shape)}"
        )


def check_nms_args(boxes: torch.Tensor, scores: torch.Tensor, op: str = "nms") -> None:
    """boxes (N,4) floating, scores (N,) of the same dtype and device."""
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise ValueError(f"{op}: boxes must have shape (N,4), got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.size(0) != boxes.size(0):
        raise ValueError(
            f"{op}: scores must have shape (N,) with N = {boxes.size(0)}, got {tuple(scores.shape)}"
        )
    if not boxes.is_floating_point():
        raise TypeError(f"{op}: boxes must be a floating tensor, got {boxes.dtype}")
    if not dtypes_agree(scores, boxes):
        raise TypeError(
            f"{op}: scores dtype {scores.dtype} does not match boxes dtype {boxes.dtype}"
        )
    if scores.device != boxes.device:
        raise ValueError(f"{op}: scores on {scores.device} but boxes on {boxes.device}")
