"""The ops as dispatcher operators: ``torch.ops.fasterrcnn`` and ``torch.ops.fasterrcnn_torch``.

``fasterrcnn::*`` are the compiled operators: their schemas and CPU / CUDA kernels live in
``csrc/`` (TORCH_LIBRARY) and exist when ``fasterrcnn._C`` is loaded.  ``fasterrcnn_torch::*``
are the pure-torch fallbacks of ``fasterrcnn/ops/fallback`` registered with the same schemas
(``torch.library.custom_op``).  For both namespaces this module registers the rest, once:

- fake (meta) kernels, so FakeTensor, ``torch.compile`` and ``torch.export`` trace the ops
  (``nms`` has a data-dependent output size; ``nms_mask`` a fixed one);
- autograd: ``roi_align`` / ``roi_pool`` / ``roi_crop`` differentiate w.r.t. ``input`` through
  their ``_*_backward`` operators; rois get no gradient;
- autocast (AutocastCPU, AutocastCUDA): float16 / bfloat16 inputs are computed in float32 and
  the floating outputs cast back to the input dtype, like torchvision's ops.
"""

from typing import Any, Callable, Dict, Tuple

import torch

from . import fallback
from ._checks import check_nms_args, check_roi_args, check_roi_backward_args

COMPILED = "fasterrcnn"
FALLBACK = "fasterrcnn_torch"

#: operator name -> schema (arguments and returns), identical in both namespaces.
SCHEMAS: Dict[str, str] = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "nms_mask": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": (
        "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor"
    ),
    "_roi_align_backward": (
        "(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
        "int sampling_ratio, bool aligned) -> Tensor"
    ),
    "roi_pool": (
        "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width) -> (Tensor, Tensor)"
    ),
    "_roi_pool_backward": (
        "(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
        "SymInt width) -> Tensor"
    ),
    "roi_crop": (
        "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, bool max_pool) -> (Tensor, Tensor)"
    ),
    "_roi_crop_backward": (
        "(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
        "SymInt pooled_width, bool max_pool, SymInt batch_size, SymInt channels, "
        "SymInt height, SymInt width) -> Tensor"
    ),
}

#: forward operators that get an autocast kernel.
AUTOCAST_OPS = ("nms", "nms_mask", "roi_align", "roi_pool", "roi_crop")


# ----------------------------------------------------------------------------------------------
# fasterrcnn_torch:: kernels (eager; they may synchronise and loop, the fake kernels trace)


def _nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    check_nms_args(dets, scores)
    return fallback.nms(dets, scores, iou_threshold)


def _nms_mask(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    check_nms_args(dets, scores, "nms_mask")
    return fallback.nms_mask(dets, scores, iou_threshold)


def _check_roi_kernel_args(op: str, input, rois, spatial_scale, pooled_height, pooled_width):
    check_roi_args(input, rois, op, spatial_scale, (pooled_height, pooled_width))
    fallback.check_batch_indices(rois, input.size(0), op)


def _roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    _check_roi_kernel_args("roi_align", input, rois, spatial_scale, pooled_height, pooled_width)
    if rois.size(0) == 0:
        return input.new_zeros(0, input.size(1), pooled_height, pooled_width)
    return fallback.roi_align(
        input, rois, (pooled_height, pooled_width), spatial_scale, sampling_ratio, aligned
    )


def _roi_align_backward(
    grad,
    rois,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
    sampling_ratio,
    aligned,
):
    check_roi_backward_args(grad, rois, "_roi_align_backward", (pooled_height, pooled_width))
    return fallback.roi_align_backward(
        grad,
        rois,
        spatial_scale,
        (pooled_height, pooled_width),
        (batch_size, channels, height, width),
        sampling_ratio,
        aligned,
    )


def _roi_pool(input, rois, spatial_scale, pooled_height, pooled_width):
    _check_roi_kernel_args("roi_pool", input, rois, spatial_scale, pooled_height, pooled_width)
    return fallback.roi_pool_with_argmax(input, rois, (pooled_height, pooled_width), spatial_scale)


def _roi_pool_backward(
    grad,
    rois,
    argmax,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
):
    check_roi_backward_args(grad, rois, "_roi_pool_backward", (pooled_height, pooled_width))
    return fallback.roi_pool_backward(grad, rois, argmax, (batch_size, channels, height, width))


def _roi_crop(input, rois, spatial_scale, pooled_height, pooled_width, max_pool):
    _check_roi_kernel_args("roi_crop", input, rois, spatial_scale, pooled_height, pooled_width)
    return fallback.roi_crop_with_argmax(
        input, rois, (pooled_height, pooled_width), spatial_scale, max_pool
    )


def _roi_crop_backward(
    grad,
    rois,
    argmax,
    spatial_scale,
    pooled_height,
    pooled_width,
    max_pool,
    batch_size,
    channels,
    height,
    width,
):
    check_roi_backward_args(grad, rois, "_roi_crop_backward", (pooled_height, pooled_width))
    return fallback.roi_crop_backward(
        grad,
        rois,
        argmax,
        spatial_scale,
        (pooled_height, pooled_width),
        max_pool,
        (batch_size, channels, height, width),
    )


_FALLBACK_KERNELS: Dict[str, Callable[..., Any]] = {
    "nms": _nms,
    "nms_mask": _nms_mask,
    "roi_align": _roi_align,
    "_roi_align_backward": _roi_align_backward,
    "roi_pool": _roi_pool,
    "_roi_pool_backward": _roi_pool_backward,
    "roi_crop": _roi_crop,
    "_roi_crop_backward": _roi_crop_backward,
}


# ----------------------------------------------------------------------------------------------
# fake kernels (both namespaces): output shapes and dtypes from the arguments alone


def _fake_nms(dets, scores, iou_threshold):
    check_nms_args(dets, scores)
    size = torch.library.get_ctx().new_dynamic_size()
    return dets.new_empty((size,), dtype=torch.int64)


def _fake_nms_mask(dets, scores, iou_threshold):
    check_nms_args(dets, scores, "nms_mask")
    return scores.new_empty(scores.shape, dtype=torch.bool)


def _fake_roi_align(
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
):
    check_roi_args(input, rois, "roi_align", spatial_scale, (pooled_height, pooled_width))
    return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))


def _fake_roi_align_backward(
    grad,
    rois,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
    sampling_ratio,
    aligned,
):
    check_roi_backward_args(grad, rois, "_roi_align_backward", (pooled_height, pooled_width))
    return grad.new_empty((batch_size, channels, height, width))


def _fake_roi_pool(input, rois, spatial_scale, pooled_height, pooled_width):
    check_roi_args(input, rois, "roi_pool", spatial_scale, (pooled_height, pooled_width))
    output = input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))
    return output, torch.empty_like(output, dtype=torch.int32)


def _fake_roi_pool_backward(
    grad,
    rois,
    argmax,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
):
    check_roi_backward_args(grad, rois, "_roi_pool_backward", (pooled_height, pooled_width))
    return grad.new_empty((batch_size, channels, height, width))


def _fake_roi_crop(input, rois, spatial_scale, pooled_height, pooled_width, max_pool):
    check_roi_args(input, rois, "roi_crop", spatial_scale, (pooled_height, pooled_width))
    output = input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))
    argmax_shape = output.shape if max_pool else (0,)
    return output, input.new_empty(argmax_shape, dtype=torch.uint8)


def _fake_roi_crop_backward(
    grad,
    rois,
    argmax,
    spatial_scale,
    pooled_height,
    pooled_width,
    max_pool,
    batch_size,
    channels,
    height,
    width,
):
    check_roi_backward_args(grad, rois, "_roi_crop_backward", (pooled_height, pooled_width))
    return grad.new_empty((batch_size, channels, height, width))


_FAKE_KERNELS: Dict[str, Callable[..., Any]] = {
    "nms": _fake_nms,
    "nms_mask": _fake_nms_mask,
    "roi_align": _fake_roi_align,
    "_roi_align_backward": _fake_roi_align_backward,
    "roi_pool": _fake_roi_pool,
    "_roi_pool_backward": _fake_roi_pool_backward,
    "roi_crop": _fake_roi_crop,
    "_roi_crop_backward": _fake_roi_crop_backward,
}


# ----------------------------------------------------------------------------------------------
# autograd (both namespaces): gradients w.r.t. input through the _*_backward operators


def _setup_roi_context(ctx, inputs: Tuple[Any, ...], output: Any) -> None:
    input, rois = inputs[0], inputs[1]
    argmax = output[1] if isinstance(output, tuple) else None
    ctx.save_for_backward(rois, argmax)
    ctx.args = inputs[2:]
    ctx.input_shape = tuple(input.shape)


def _autograd_roi_align(namespace: str) -> Callable[..., Any]:
    def backward(ctx, grad):
        rois, _ = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
        grad_input = getattr(torch.ops, namespace)._roi_align_backward(
            grad,
            rois,
            spatial_scale,
            pooled_height,
            pooled_width,
            *ctx.input_shape,
            sampling_ratio,
            aligned,
        )
        return (grad_input,) + (None,) * 6

    return backward


def _autograd_roi_pool(namespace: str) -> Callable[..., Any]:
    def backward(ctx, grad, _grad_argmax):
        rois, argmax = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width = ctx.args
        grad_input = getattr(torch.ops, namespace)._roi_pool_backward(
            grad, rois, argmax, spatial_scale, pooled_height, pooled_width, *ctx.input_shape
        )
        return (grad_input,) + (None,) * 4

    return backward


def _autograd_roi_crop(namespace: str) -> Callable[..., Any]:
    def backward(ctx, grad, _grad_argmax):
        rois, argmax = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, max_pool = ctx.args
        grad_input = getattr(torch.ops, namespace)._roi_crop_backward(
            grad,
            rois,
            argmax,
            spatial_scale,
            pooled_height,
            pooled_width,
            max_pool,
            *ctx.input_shape,
        )
        return (grad_input,) + (None,) * 5

    return backward


_AUTOGRAD: Dict[str, Callable[[str], Callable[..., Any]]] = {
    "roi_align": _autograd_roi_align,
    "roi_pool": _autograd_roi_pool,
    "roi_crop": _autograd_roi_crop,
}


# ----------------------------------------------------------------------------------------------
# autocast (both namespaces)

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _autocast_kernel(op: Callable[..., Any], device_type: str) -> Callable[..., Any]:
    """Kernel that runs ``op`` in float32 on float16 / bfloat16 inputs, then casts back."""

    def kernel(*args):
        dtype = next(
            (a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()),
            torch.float32,
        )
        cast = [
            a.float() if isinstance(a, torch.Tensor) and a.dtype in _LOW_PRECISION else a
            for a in args
        ]
        with torch.autocast(device_type, enabled=False):
            out = op(*cast)
        if dtype not in _LOW_PRECISION:
            return out
        if isinstance(out, tuple):
            return tuple(o.to(dtype) if o.is_floating_point() else o for o in out)
        return out.to(dtype) if out.is_floating_point() else out

    return kernel


# ----------------------------------------------------------------------------------------------
# registration


def _register_python_parts(namespace: str, lib: torch.library.Library) -> None:
    for name in SCHEMAS:
        qualname = f"{namespace}::{name}"
        torch.library.register_fake(qualname, _FAKE_KERNELS[name], lib=lib)
    for name, make_backward in _AUTOGRAD.items():
        torch.library.register_autograd(
            f"{namespace}::{name}",
            make_backward(namespace),
            setup_context=_setup_roi_context,
            lib=lib,
        )
    for name in AUTOCAST_OPS:
        op = getattr(getattr(torch.ops, namespace), name).default
        for device_type, key in (("cpu", "AutocastCPU"), ("cuda", "AutocastCUDA")):
            lib.impl(name, _autocast_kernel(op, device_type), key)


def _define_fallback_ops(lib: torch.library.Library) -> None:
    for name, schema in SCHEMAS.items():
        lib.define(name + schema)
        lib.impl(name, _FALLBACK_KERNELS[name], "CompositeExplicitAutograd")


def _register() -> Tuple[torch.library.Library, ...]:
    from ._ext import extension

    fallback_lib = torch.library.Library(FALLBACK, "DEF")
    _define_fallback_ops(fallback_lib)
    _register_python_parts(FALLBACK, fallback_lib)
    libraries = [fallback_lib]
    if extension() is not None:
        compiled_lib = torch.library.Library(COMPILED, "IMPL")
        _register_python_parts(COMPILED, compiled_lib)
        libraries.append(compiled_lib)
    return tuple(libraries)


#: the Library objects that own the registrations (they unregister when collected).
LIBRARIES = _register()
