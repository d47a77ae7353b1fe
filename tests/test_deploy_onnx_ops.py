"""The ONNX translations of the operators against eager, run by onnxruntime on the CPU, for
the compiled operators (``torch.ops.fasterrcnn``) and the fallbacks (``fasterrcnn_torch``)."""

import numpy as np
import pytest
import torch

import fasterrcnn.ops  # noqa: F401  (registers the operators)

pytest.importorskip("onnxscript", reason="the optional [onnx] packages are not installed")
onnxruntime = pytest.importorskip("onnxruntime")

from fasterrcnn.deploy.onnx_ops import check_onnx_exportable, onnx_translation_table  # noqa: E402

pytestmark = pytest.mark.slow  # an ONNX export and an onnxruntime session per case, ~1 s each

NAMESPACES = ["fasterrcnn", "fasterrcnn_torch"]
"""The compiled operators and their pure-torch fallbacks (same schemas)."""


class _Call(torch.nn.Module):
    """Calls one operator of ``namespace`` with fixed non-tensor arguments."""

    def __init__(self, namespace: str, name: str, *args) -> None:
        super().__init__()
        self.op = getattr(getattr(torch.ops, namespace), name).default
        self.args = args

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return self.op(a, b, *self.args)


def _run_onnx(module, inputs, namespace, shapes, tmp_path, runs):
    """Export ``module`` with ``dynamic_shapes=shapes``; run onnxruntime on each of ``runs``."""
    program = torch.onnx.export(
        module.eval(),
        inputs,
        dynamo=True,
        dynamic_shapes=shapes,
        custom_translation_table=onnx_translation_table([namespace]),
        verbose=False,
    )
    path = tmp_path / "op.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return [session.run(None, dict(zip(names, (t.numpy() for t in run)))) for run in runs]


def _nms_cases():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(60, 2, generator=gen) * 30 + 1], 1)
    scores = torch.rand(60, generator=gen)
    ties = torch.tensor(
        [
            [0.0, 0, 10, 10],
            [0, 0, 10, 10],
            [1, 0, 11, 10],
            [20, 20, 30, 30],
            [20, 20, 30, 30],
            [5, 5, 5, 9],
            [5, 5, 5, 9],
            [7, 7, 7, 7],
        ]
    )
    tie_scores = torch.tensor([0.5, 0.5, 0.5, 0.9, 0.9, 0.7, 0.7, 0.95])
    # IoU exactly 0.5 at threshold 0.5 is not suppressed: [0,0,10,10] vs [0,0,10,5] -> 50/100
    exact = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    return [
        (boxes, scores),
        (ties, tie_scores),
        (exact, torch.tensor([0.9, 0.8])),
        (boxes[:1], scores[:1]),
        (boxes[:0], scores[:0]),
    ]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    "name,dtype", [("nms_mask", torch.float32), ("nms", torch.float32), ("nms_mask", torch.float64)]
)
def test_nms_translation_matches_eager(namespace, name, dtype, tmp_path):
    cases = [(boxes.to(dtype), scores.to(dtype)) for boxes, scores in _nms_cases()]
    module = _Call(namespace, name, 0.5)
    n = torch.export.Dim("n", min=0)
    outputs = _run_onnx(module, cases[0], namespace, ({0: n}, {0: n}), tmp_path, cases)
    for (boxes, scores), (got,) in zip(cases, outputs):
        expected = module(boxes, scores).numpy()
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    ties = outputs[1][0]
    kept = ties.nonzero()[0] if name == "nms_mask" else ties
    assert sorted(kept.tolist()) == [0, 3, 5, 6, 7]  # lower index wins a tie; 0-area kept
    exact = outputs[2][0]
    assert exact.sum() == 2 if name == "nms_mask" else exact.tolist() == [0, 1]


def _roi_cases(num_images=2, channels=3, height=13, width=17):
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(num_images, channels, height, width, generator=gen)
    k = 40
    xy = torch.rand(k, 2, generator=gen) * torch.tensor([width * 16.0, height * 16.0]) - 24
    wh = torch.rand(k, 2, generator=gen) * 150
    rois = torch.cat([torch.randint(0, num_images, (k, 1), generator=gen).float(), xy, xy + wh], 1)
    special = torch.tensor(
        [
            [0.0, 0, 0, 0, 0],  # a point
            [1, 30, 40, 30, 90],  # zero width
            [0, -50, -50, -20, -10],  # outside the map
            [1, 200, 150, 400, 300],  # partly outside
            [0, 0, 0, width * 16.0 - 1, height * 16.0 - 1],  # the whole map
        ]
    )
    rois = torch.cat([rois, special])
    return feats, rois


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("sampling_ratio,aligned", [(0, False), (2, False), (-1, True)])
def test_roi_align_translation_matches_eager(namespace, sampling_ratio, aligned, tmp_path):
    feats, rois = _roi_cases()
    module = _Call(namespace, "roi_align", 1 / 16, 7, 5, sampling_ratio, aligned)
    k, h, w = (torch.export.Dim(name, min=2) for name in "khw")
    runs = [(feats, rois), (feats, rois[:1]), (feats[:, :, :5, :3], rois[3:9])]
    shapes = ({2: h, 3: w}, {0: k})
    outputs = _run_onnx(module, runs[0], namespace, shapes, tmp_path, runs)
    for run, (got,) in zip(runs, outputs):
        np.testing.assert_allclose(got, module(*run).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_roi_pool_translation_matches_eager(namespace, tmp_path):
    feats, rois = _roi_cases()

    class Pool(torch.nn.Module):
        def forward(self, a, b):
            return getattr(torch.ops, namespace).roi_pool.default(a, b, 1 / 16, 7, 7)[0]

    runs = [(feats, rois), (feats, rois[-5:]), (feats, rois[:0])]
    outputs = _run_onnx(
        Pool(), runs[0], namespace, (None, {0: torch.export.Dim("k", min=0)}), tmp_path, runs
    )
    for run, (got,) in zip(runs, outputs):
        np.testing.assert_array_equal(got, Pool()(*run).numpy())


def test_crop_pooling_has_a_clear_error(tiny_cfg):
    from fasterrcnn.config import apply_overrides

    check_onnx_exportable(tiny_cfg)
    crop = apply_overrides(tiny_cfg, ["POOLING_MODE", "crop"])
    with pytest.raises(ValueError, match="POOLING_MODE crop.*pt2.*align.*pool"):
        check_onnx_exportable(crop)


class _StableSort(torch.nn.Module):
    def __init__(self, dim: int, descending: bool) -> None:
        super().__init__()
        self.dim, self.descending = dim, descending

    def forward(self, x: torch.Tensor):
        return torch.sort(x, dim=self.dim, descending=self.descending, stable=True)


@pytest.mark.parametrize("dim,descending", [(-1, True), (-1, False), (0, True), (1, False)])
def test_stable_sort_translation_keeps_tie_order(dim, descending, tmp_path):
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 4, (3, 50), generator=gen).float()  # many ties
    n = torch.export.Dim("n", min=2)
    outputs = _run_onnx(
        _StableSort(dim, descending), (x,), "fasterrcnn", ({1: n},), tmp_path, [(x,), (x[:, :7],)]
    )
    for run, (values, indices) in zip([x, x[:, :7]], outputs):
        want = _StableSort(dim, descending)(run)
        np.testing.assert_array_equal(values, want.values.numpy())
        np.testing.assert_array_equal(indices, want.indices.numpy())
