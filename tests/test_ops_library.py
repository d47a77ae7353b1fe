"""The ops as dispatcher operators: opcheck (schema, fake kernel, autograd registration, AOT
dispatch) of every op and backward op in both namespaces, schemas, autocast, torch.compile."""

import os

import pytest
import torch
from ops_testing import make_rois

from fasterrcnn import ops
from fasterrcnn.ops import _ext, _library

NAMESPACES = [
    pytest.param(
        _library.COMPILED,
        marks=pytest.mark.skipif(
            _ext.extension() is None and os.environ.get("FASTERRCNN_ALLOW_NO_EXT") == "1",
            reason="fasterrcnn._C is not built",
        ),
    ),
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
    rois = make_rois(max(count, 4), 2, 6, 7, 0.5, dtype, gen)[4 - min(count, 4) :][:count]
    if case == "noncontiguous":
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        rois = torch.cat([rois, rois], 1)[:, ::2]
        assert not x.is_contiguous() and not rois.is_contiguous()
    return x.to(device).requires_grad_(True), rois.to(device)


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("name", ["nms", "nms_mask"])
@pytest.mark.parametrize(
    "n,dtype", [(0, torch.float32), (1, torch.float32), (40, torch.float32), (40, torch.float64)]
)
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
    torch.library.opcheck(
        lib._roi_crop_backward, (grad, rois, argmax, 0.5, 2, 3, max_pool, 2, 3, 6, 7)
    )


def test_schemas_match_between_namespaces():
    if _ext.extension() is None:
        pytest.skip("fasterrcnn._C is not built")
    for name, schema in _library.SCHEMAS.items():
        compiled = str(getattr(torch.ops.fasterrcnn, name).default._schema)
        fallback = str(getattr(torch.ops.fasterrcnn_torch, name).default._schema)
        assert compiled == f"fasterrcnn::{name}{schema}"
        assert fallback == f"fasterrcnn_torch::{name}{schema}"


def test_kernel_errors_name_the_argument():
    """Direct operator calls check their arguments in every kernel (compiled and fallback)."""
    x, rois = torch.randn(1, 2, 6, 6), torch.tensor([[0.0, 1.0, 1.0, 4.0, 4.0]])
    names = [_library.FALLBACK] + ([_library.COMPILED] if _ext.extension() else [])
    for lib in (getattr(torch.ops, name) for name in names):
        with pytest.raises(ValueError, match=r"roi_align: rois must have shape \(K,5\)"):
            lib.roi_align(x, rois[:, 1:], 1.0, 2, 2, 2, False)
        with pytest.raises(ValueError, match="roi_pool: output_size must be positive"):
            lib.roi_pool(x, rois, 1.0, 0, 2)
        with pytest.raises(ValueError, match="roi_crop: spatial_scale must be positive"):
            lib.roi_crop(x, rois, 0.0, 2, 2, True)
        with pytest.raises(ValueError, match="roi_align: rois batch indices must lie in"):
            lib.roi_align(x, rois + torch.tensor([1.0, 0, 0, 0, 0]), 1.0, 2, 2, 2, False)
        with pytest.raises(ValueError, match=r"nms: scores must have shape \(N,\) with N = 3"):
            lib.nms(torch.rand(3, 4), torch.rand(2), 0.5)
        with pytest.raises(TypeError, match="nms_mask: scores dtype"):
            lib.nms_mask(torch.rand(3, 4), torch.rand(3, dtype=torch.float64), 0.5)


def test_public_api_argument_errors():
    x, rois = torch.randn(1, 2, 6, 6), torch.tensor([[0.0, 1.0, 1.0, 4.0, 4.0]])
    for op in (ops.roi_align, ops.roi_pool, ops.roi_crop):
        with pytest.raises(ValueError, match="spatial_scale must be positive"):
            op(x, rois, 2, -0.5)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_autocast_computes_in_float32(namespace):
    """bfloat16 inputs under autocast: computed in float32 and cast back, like torchvision."""
    lib = namespace_ops(namespace, torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 11, generator=gen).bfloat16()
    rois = make_rois(6, 2, 9, 11, 0.5, torch.float32, gen).bfloat16()
    boxes, scores = boxes_and_scores(50, torch.float32, "cpu")
    boxes, scores = boxes.bfloat16(), scores.bfloat16()
    cases = [
        (lambda a, r: lib.roi_align(a, r, 0.5, 3, 3, 2, True), (x, rois)),
        (lambda a, r: lib.roi_pool(a, r, 0.5, 3, 3)[0], (x, rois)),
        (lambda a, r: lib.roi_crop(a, r, 0.5, 3, 3, True)[0], (x, rois)),
        (lambda b, s: lib.nms(b, s, 0.5), (boxes, scores)),
        (lambda b, s: lib.nms_mask(b, s, 0.5), (boxes, scores)),
    ]
    for fn, args in cases:
        expected = fn(*(a.float() for a in args))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*args)
        if expected.is_floating_point():
            assert out.dtype == torch.bfloat16
            torch.testing.assert_close(out, expected.bfloat16(), rtol=0, atol=0)
        else:
            assert torch.equal(out, expected)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_autocast_gradient_is_the_float32_gradient(namespace):
    lib = namespace_ops(namespace, torch.device("cpu"))
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 2, 6, 6, generator=gen).bfloat16().requires_grad_(True)
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.5, 5.0]]).bfloat16()
    weight = torch.randn(1, 2, 2, 2, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lib.roi_align(x, rois, 1.0, 2, 2, 2, False)
    (grad,) = torch.autograd.grad((out.float() * weight).sum(), x)
    x32 = x.detach().float().requires_grad_(True)
    (expected,) = torch.autograd.grad(
        (lib.roi_align(x32, rois.float(), 1.0, 2, 2, 2, False) * weight.bfloat16().float()).sum(),
        x32,
    )
    assert grad.dtype == torch.bfloat16 and torch.count_nonzero(expected) > 0
    torch.testing.assert_close(grad.float(), expected, rtol=1e-2, atol=1e-2)


def fixed_size_ops(boxes, scores, idxs, x, rois):
    return (
        ops.nms_mask(boxes, scores, 0.5),
        ops.batched_nms_mask(boxes, scores, idxs, 0.5),
        ops.roi_align(x, rois, (2, 3), 0.5, 2, True),
        ops.roi_pool(x, rois, 2, 0.5),
        ops.roi_crop(x, rois, 2, 0.5, True),
    )


def dynamic_size_ops(boxes, scores, idxs, x, rois):
    return ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, idxs, 0.5)


@pytest.mark.parametrize("fn", [fixed_size_ops, dynamic_size_ops])
def test_compile_fullgraph_without_breaks(backend, fn):
    """One graph on either backend; nms / batched_nms (a data-dependent output size, like
    torchvision's nms) need dynamo's capture_dynamic_output_shape_ops."""
    boxes, scores = boxes_and_scores(30, torch.float32, "cpu")
    idxs = torch.arange(30) % 3
    x, rois = roi_inputs("many_rois", "cpu")
    args = (boxes, scores, idxs, x.detach().float(), rois.float())
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=fn is dynamic_size_ops):
        torch._dynamo.reset()
        explained = torch._dynamo.explain(fn)(*args)
        assert explained.graph_break_count == 0 and explained.graph_count == 1
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
        for out, expected in zip(compiled(*args), fn(*args)):
            assert torch.equal(out, expected)


def test_compile_backward_matches_eager(backend):
    x, rois = roi_inputs("many_rois", "cpu")

    def pooled_sum(t):
        return (
            ops.roi_align(t, rois, 2, 0.5, 2, False).sum()
            + ops.roi_pool(t, rois, 2, 0.5).sum()
            + ops.roi_crop(t, rois, 2, 0.5).sum()
        )

    torch._dynamo.reset()
    (grad,) = torch.autograd.grad(
        torch.compile(pooled_sum, fullgraph=True, backend="aot_eager")(x), x
    )
    (expected,) = torch.autograd.grad(pooled_sum(x), x)
    torch.testing.assert_close(grad, expected)


def test_export_keeps_one_operator_per_op(backend):
    class Head(torch.nn.Module):
        def forward(self, boxes, scores, x, rois):
            return ops.nms_mask(boxes, scores, 0.7), ops.roi_align(x, rois, 2, 0.5, 2, True)

    boxes, scores = boxes_and_scores(20, torch.float32, "cpu")
    x, rois = roi_inputs("many_rois", "cpu")
    x, rois = x.detach().float(), rois.float()
    exported = torch.export.export(Head(), (boxes, scores, x, rois))
    namespace = _library.COMPILED if _ext.backend() == "cpp" else _library.FALLBACK
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert {f"{namespace}.nms_mask.default", f"{namespace}.roi_align.default"} <= targets
    for out, expected in zip(
        exported.module()(boxes, scores, x, rois), Head()(boxes, scores, x, rois)
    ):
        assert torch.equal(out, expected)


def test_public_ops_under_autocast_take_mixed_dtypes(backend):
    """A bfloat16 feature map with float32 rois (what autocast produces in a model): the ops
    compute in float32 and return bfloat16; compiled kernels still run when built."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 9, 11, generator=gen)
    rois = make_rois(6, 2, 9, 11, 0.5, torch.float32, gen)
    boxes, scores = boxes_and_scores(40, torch.float32, "cpu")
    for fn in (
        lambda a: ops.roi_align(a, rois, 3, 0.5, 2, True),
        lambda a: ops.roi_pool(a, rois, 3, 0.5),
        lambda a: ops.roi_crop(a, rois, 3, 0.5),
    ):
        expected = fn(x.bfloat16().float()).bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert ops.backend() != "cpp" or _ext.use_kernels(x.bfloat16())
            out = fn(x.bfloat16())
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mask = ops.nms_mask(boxes.bfloat16(), scores, 0.5)
    assert torch.equal(mask, ops.nms_mask(boxes.bfloat16().float(), scores, 0.5))
    with pytest.raises(TypeError, match="dtype"):
        ops.roi_align(x.bfloat16(), rois, 3, 0.5)  # no autocast: dtypes must agree
