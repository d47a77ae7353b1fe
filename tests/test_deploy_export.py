"""Export of a tiny trained checkpoint to ONNX and .pt2 (tools/export.py), and parity with eager:
onnxruntime on 20 shapes test images gives the eager detections and the same VOC mAP."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from fasterrcnn import Detector
from fasterrcnn.commands import export as export_cmd
from fasterrcnn.commands import train as trainval_net
from fasterrcnn.data import TestImageDataset, ensure_shapes, get_imdb
from fasterrcnn.deploy.runtime import ExportedDetector, detect_dataset
from fasterrcnn.engine.inference import detect_dataset as eager_detect_dataset
from fasterrcnn.eval import voc_evaluate

pytest.importorskip("onnxruntime")

NUM_TEST = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of 2 epochs (24 iterations) of the tiny shapes model with a 20-image test set."""
    data_dir = str(tmp_path_factory.mktemp("data"))
    ensure_shapes(data_dir, num_train=12, num_test=NUM_TEST, seed=0)
    overrides = tiny_overrides(data_dir) + ["DATASET.SHAPES_NUM_TEST", NUM_TEST]
    save_dir = tmp_path_factory.mktemp("models")
    argv = ["--dataset", "shapes", "--save_dir", str(save_dir), "--epochs", "2", "--quiet",
            "--device", "cpu", "--bs", "2", "--set"] + [str(v) for v in overrides]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert trainval_net.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    path = save_dir / "res18" / "shapes" / "faster_rcnn_1_2_12.pth"
    assert path.is_file()
    return str(path)


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "shapes.onnx"
    argv = ["--checkpoint", trained, "--format", "onnx", "--output", str(path), "--device", "cpu"]
    assert export_cmd.main(argv) == 0
    return str(path)


def _test_set(detector):
    imdb = get_imdb(detector.cfg.DATASET.TEST, detector.cfg.DATA_DIR, cfg=detector.cfg)
    assert len(imdb.image_index) == NUM_TEST
    return imdb


def test_onnx_detections_match_eager_on_20_images(trained, onnx_file):
    eager = Detector.from_checkpoint(trained, device="cpu")
    exported = ExportedDetector.from_onnx(onnx_file)
    assert exported.classes == eager.classes
    imdb = _test_set(eager)
    total = 0
    for i in range(NUM_TEST):
        image = imdb.image_path_at(i)
        want, got = eager.predict(image), exported.predict(image)
        assert got["labels"].tolist() == want["labels"].tolist(), imdb.image_path_at(i)
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-4)
        assert got["class_names"] == want["class_names"]
        total += len(want["labels"])
    assert total > 0, "the tiny model detected nothing: the comparison would be empty"


def test_onnx_voc_map_equals_eager(trained, onnx_file):
    eager = Detector.from_checkpoint(trained, device="cpu")
    imdb = _test_set(eager)
    dataset = TestImageDataset(imdb, eager.cfg)
    want, _ = eager_detect_dataset(eager.model, dataset, progress=False)
    got, images_per_s = detect_dataset(ExportedDetector.from_onnx(onnx_file), dataset)
    annotations = imdb.annotations()
    want_map = voc_evaluate(want, annotations, eager.classes)["map"]
    got_map = voc_evaluate(got, annotations, eager.classes)["map"]
    assert abs(got_map - want_map) <= 0.002
    assert images_per_s > 0


def test_pt2_archive_matches_eager_at_other_sizes(trained, tmp_path):
    path = tmp_path / "shapes.pt2"
    argv = ["--checkpoint", trained, "--format", "pt2", "--output", str(path), "--device", "cpu"]
    assert export_cmd.main(argv) == 0
    exported = ExportedDetector.from_pt2(str(path))
    eager = Detector.from_checkpoint(trained, device="cpu")
    assert exported.classes == eager.classes
    for height, width in ((96, 160), (200, 72), (128, 128)):
        image = np.random.default_rng(height).integers(0, 255, (height, width, 3), np.uint8)
        want, got = eager.predict(image), exported.predict(image)
        assert got["labels"].tolist() == want["labels"].tolist()
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-5)


def test_onnx_metadata_and_dynamic_inputs(onnx_file, trained):
    import onnx

    model = onnx.load(onnx_file)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(meta["fasterrcnn.classes"])[0] == "__background__"
    assert json.loads(meta["fasterrcnn.config"])["POOLING_MODE"] == "align"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[:2]] == [1, 3] and all(d.dim_param for d in dims[2:])
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "counts"]
    assert {n.op_type for n in model.graph.node} >= {"NonMaxSuppression", "RoiAlign"}


def test_export_errors_name_the_problem(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        export_cmd.main(["--checkpoint", str(tmp_path / "none.pth"), "--format", "pt2",
                         "--output", str(tmp_path / "x.pt2")])
    with pytest.raises(ValueError, match="POOLING_MODE crop"):
        export_cmd.main(["--checkpoint", trained, "--format", "onnx", "--output",
                         str(tmp_path / "x.onnx"), "--set", "POOLING_MODE", "crop"])
    with pytest.raises(SystemExit):
        export_cmd.main(["--checkpoint", trained, "--format", "tflite", "--output", "x"])
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="plain.onnx: not a fasterrcnn export"):
        ExportedDetector.from_onnx(str(tmp_path / "plain.onnx"))
