"""fasterrcnn.ops API: argument validation, backend selection, import without the extension."""

import os
import subprocess
import sys

import pytest
import torch

from fasterrcnn import ops
from fasterrcnn.ops import _ext

ROI_OPS = [ops.roi_align, ops.roi_pool, ops.roi_crop]


def test_backend_reports_cpp_when_built(monkeypatch):
    monkeypatch.delenv("FASTERRCNN_OPS", raising=False)
    if _ext.extension() is None:
        assert os.environ.get("FASTERRCNN_ALLOW_NO_EXT") == "1", "fasterrcnn._C is not built"
        assert ops.backend() == "torch"
    else:
        assert ops.backend() == "cpp"
        assert ops.backend("cpu") == "cpp"
        assert ops.backend(torch.device("meta")) == "torch"


def test_env_forces_torch_at_call_time(monkeypatch):
    monkeypatch.setenv("FASTERRCNN_OPS", "torch")
    assert ops.backend() == "torch"
    assert ops.backend("cpu") == "torch"
    assert ops.backend("cuda") == "torch"
    monkeypatch.setenv("FASTERRCNN_OPS", "")
    assert ops.backend() == ("torch" if _ext.extension() is None else "cpp")


def test_missing_extension_falls_back(monkeypatch):
    monkeypatch.delenv("FASTERRCNN_OPS", raising=False)
    monkeypatch.setattr(_ext, "_C", None)
    assert ops.backend() == "torch"
    x = torch.randn(1, 2, 6, 6)
    rois = torch.tensor([[0.0, 1.0, 1.0, 4.0, 5.0]])
    assert ops.roi_align(x, rois, 2).shape == (1, 2, 2, 2)
    assert ops.nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5).tolist() == [0]


@pytest.mark.slow
def test_package_imports_when_extension_cannot_load():
    code = (
        "import sys; sys.modules['fasterrcnn._C'] = None\n"
        "import torch\n"
        "from fasterrcnn import ops\n"
        "assert ops.backend() == 'torch', ops.backend()\n"
        "boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.]])\n"
        "assert ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0]\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTERRCNN_OPS", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("op", ROI_OPS)
def test_roi_op_argument_errors(op):
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"rois must have shape \(K,5\)"):
        op(x, rois[:, 1:], 2)
    with pytest.raises(ValueError, match="input must be 4-D"):
        op(x[0], rois, 2)
    with pytest.raises(ValueError, match="output_size must be positive"):
        op(x, rois, 0)
    with pytest.raises(ValueError, match="output_size must be positive"):
        op(x, rois, (2, -1))
    with pytest.raises(ValueError, match="output_size must be an int or a pair"):
        op(x, rois, (2, 2, 2))
    with pytest.raises(TypeError, match="dtype"):
        op(x, rois.double(), 2)
    with pytest.raises(TypeError, match="floating"):
        op(x.long(), rois.long(), 2)
    with pytest.raises(ValueError, match="batch indices"):
        op(x, torch.tensor([[2.0, 1.0, 1.0, 5.0, 5.0]]), 2)


def test_roi_crop_needs_a_2x2_map():
    with pytest.raises(ValueError, match="at least 2x2"):
        ops.roi_crop(torch.randn(1, 1, 1, 5), torch.zeros(1, 5), 2)


@pytest.mark.parametrize(
    "fn",
    [
        lambda b, s: ops.nms(b, s, 0.5),
        lambda b, s: ops.batched_nms(b, s, torch.zeros(b.shape[0], dtype=torch.int64), 0.5),
    ],
)
def test_nms_argument_errors(fn):
    boxes = torch.rand(5, 4)
    scores = torch.rand(5)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N,4\)"):
        fn(boxes[:, :3], scores)
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\)"):
        fn(boxes, scores[:4])
    with pytest.raises(TypeError, match="dtype"):
        fn(boxes, scores.double())


def test_batched_nms_idxs_length():
    with pytest.raises(ValueError, match="idxs"):
        ops.batched_nms(torch.rand(5, 4), torch.rand(5), torch.zeros(4, dtype=torch.int64), 0.5)


def test_public_names():
    assert set(ops.__all__) == {
        "RoIAlign",
        "RoICrop",
        "RoIPool",
        "backend",
        "batched_nms",
        "batched_nms_mask",
        "nms",
        "nms_mask",
        "roi_align",
        "roi_crop",
        "roi_pool",
    }
