"""The ops as dispatcher operators: opcheck (schema, fake kernel, autograd registration, AOT
dispatch) of every op and backward op in both namespaces, schemas, autocast, torch.compile."""
import os

import pytest
import torch

from fasterrcnn import ops
from fasterrcnn.ops import _ext, _library
from ops_testing import make_rois

NAMESPACES = [
    pytest.param(_library.COMPILED, marks=pytest.mark.skipif(
        _ext.extension() is None and os.environ.get("FASTERRCNN_ALLOW_NO_EXT") == "1",
        reason="fasterrcnn._C is not built")),
    _library.FALLBACK,
]
ROI_CASES = ["one_roi", "zero_rois", "many_rois", "noncontiguous", "float32"]


def namespace_ops(namespace, device):
    if namespace == _library.COMPILED and _ext.backend(device) == "torch":
        pytest.skip(f"the compiled kernels do not handle {device} here")
    return getattr(torch.ops, namespace)


def boxes_and_scores(n, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 50
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 30
    boxes = torch.cat([xy, xy + wh], 1).to(dtype=dtype, device=device)
    return boxes, torch.rand(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def roi_inputs(case, device):
    """input (B,C,H,W) requiring grad and rois (K,5) for one representative case."""
    gen = torch.Generator().manual_seed(3)
    dtype = torch.float32 if case == "float32" else torch.float64
    # distinct, well-separated values keep roi_pool's argmax stable under perturbation
    x = (torch.randperm(2 * 3 * 6 * 7, generator=gen).to(dtype) * 0.01).view(2, 3, 6, 7)
    count = {"one_roi": 1, "zero_rois": 0}.get(case, 5)
    rois = make_rois(max(count, 4), 2, 6, 7, 0.5, dtype, gen)[4 - min(count, 4):][:count]
    if case == "noncontiguous":
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        rois = torch.cat([rois, rois], 1)[:, ::2]
        assert not x.is_contiguous() and not rois.is_contiguous()
    return x.to(device).requires_grad_(True), rois.to(device)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("name", ["nms", "nms_mask"])
@pytest.mark.parametrize("n,dtype", [(0, torch.float32), (1, torch.float32),
                                     (40, torch.float32), (40, torch.float64)])
def test_opcheck_nms(device, namespace, name, n, dtype):
    op = getattr(namespace_ops(namespace, device), name)
    boxes, scores = boxes_and_scores(n, dtype, device)
    torch.library.opcheck(op, (boxes, scores, 0.5))
    wide = torch.cat([boxes, boxes], 1)[:, ::2]  # non-contiguous
    torch.library.opcheck(op, (wide, scores, 0.3))


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", ROI_CASES)
def test_opcheck_roi_align(device, namespace, case):
    lib = namespace_ops(namespace, device)
    x, rois = roi_inputs(case, device)
    for args in ((0.5, 2, 3, 2, False), (0.5, 3, 2, -1, True)):
        torch.library.opcheck(lib.roi_align, (x, rois, *args))
    grad = torch.randn(rois.size(0), 3, 2, 3, dtype=x.dtype, device=device)
    torch.library.opcheck(lib._roi_align_backward, (grad, rois, 0.5, 2, 3, 2, 3, 6, 7, 2, False))


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", ROI_CASES)
def test_opcheck_roi_pool(device, namespace, case):
    lib = namespace_ops(namespace, device)
    x, rois = roi_inputs(case, device)
    torch.library.opcheck(lib.roi_pool, (x, rois, 0.5, 2, 3))
    _, argmax = lib.roi_pool(x.detach(), rois, 0.5, 2, 3)
    grad = torch.randn(rois.size(0), 3, 2, 3, dtype=x.dtype, device=device)
    torch.library.opcheck(lib._roi_pool_backward, (grad, rois, argmax, 0.5, 2, 3, 2, 3, 6, 7))


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("case", ROI_CASES)
@pytest.mark.parametrize("max_pool", [True, False])
def test_opcheck_roi_crop(device, namespace, case, max_pool):
    lib = namespace_ops(namespace, device)
    x, rois = roi_inputs(case, device)
    torch.library.opcheck(lib.roi_crop, (x, rois, 0.5, 2, 3, max_pool))
    _, argmax = lib.roi_crop(x.detach(), rois, 0.5, 2, 3, max_pool)
    grad = torch.randn(rois.size(0), 3, 2, 3, dtype=x.dtype, device=device)
    torch.library.opcheck(lib._roi_crop_backward,
                          (grad, rois, argmax, 0.5, 2, 3, max_pool, 2, 3, 6, 7))


def test_schemas_match_between_namespaces():
    if _ext.extension() is None:
        pytest.skip("fasterrcnn._C is not built")
    for name, schema in _library.SCHEMAS.items():
        compiled = str(getattr(torch.ops.fasterrcnn, name).default._schema)
        fallback = str(getattr(torch.ops.fasterrcnn_torch, name).default._schema)
        assert compiled == f"fasterrcnn::{name}{schema}"
        assert fallback == f"fasterrcnn_torch::{name}{schema}"
