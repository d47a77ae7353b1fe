"""Export of a tiny trained checkpoint to ONNX and .pt2 (tools/export.py), and parity with eager:
onnxruntime on 20 shapes test images gives the eager detections and the same VOC mAP."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from fasterrcnn import Detector
from fasterrcnn.checkpoint import save_checkpoint
from fasterrcnn.commands import export as export_cmd
from fasterrcnn.commands import train as trainval_net
from fasterrcnn.config import config_to_dict
from fasterrcnn.data import SHAPE_CLASSES, TestImageDataset, ensure_shapes, get_imdb
from fasterrcnn.deploy.runtime import ExportedDetector, detect_dataset
from fasterrcnn.engine.inference import detect_dataset as eager_detect_dataset
from fasterrcnn.engine.inference import detections_to_class_arrays
from fasterrcnn.eval import voc_evaluate
from fasterrcnn.model import build_model

pytest.importorskip("onnxruntime", reason="the optional [onnx] packages are not installed")

NUM_TEST = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """2 epochs (24 iterations) of the tiny shapes model, with a 20-image test set."""
    data_dir = str(tmp_path_factory.mktemp("data"))
    ensure_shapes(data_dir, num_train=12, num_test=NUM_TEST, seed=0)
    overrides = tiny_overrides(data_dir) + ["DATASET.SHAPES_NUM_TEST", NUM_TEST]
    save_dir = tmp_path_factory.mktemp("models")
    argv = [
        "--dataset",
        "shapes",
        "--save_dir",
        str(save_dir),
        "--epochs",
        "2",
        "--quiet",
        "--device",
        "cpu",
        "--bs",
        "2",
        "--set",
    ] + [str(v) for v in overrides]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert trainval_net.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    path = save_dir / "res18" / "shapes" / "faster_rcnn_1_2_12.pth"
    assert path.is_file()
    return str(path)


def _export(checkpoint, fmt, path, *extra):
    argv = ["--checkpoint", checkpoint, "--format", fmt, "--output", str(path), "--device", "cpu"]
    assert export_cmd.main(argv + list(extra)) == 0
    return str(path)


def _all_boxes(detections, num_classes):
    """Per-image prediction dicts as all_boxes[class][image] (N, 5) arrays."""
    tensors = [
        {k: torch.from_numpy(np.asarray(v)) for k, v in d.items() if k != "class_names"}
        for d in detections
    ]
    per_image = [detections_to_class_arrays(t, num_classes) for t in tensors]
    return [[boxes[c] for boxes in per_image] for c in range(num_classes)]


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    return _export(trained, "onnx", tmp_path_factory.mktemp("export") / "shapes.onnx")


@pytest.mark.slow
def test_onnx_matches_eager_on_20_images_and_voc_map(trained, onnx_file):
    import onnx

    path = onnx_file
    model = onnx.load(path)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(meta["fasterrcnn.classes"])[1:] == list(SHAPE_CLASSES)
    assert json.loads(meta["fasterrcnn.config"])["POOLING_MODE"] == "align"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[:2]] == [1, 3] and all(d.dim_param for d in dims[2:])
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "labels", "counts"]
    assert {n.op_type for n in model.graph.node} >= {"NonMaxSuppression", "RoiAlign"}

    eager = Detector.from_checkpoint(trained, device="cpu")
    thresh = eager.cfg.TEST.SCORE_THRESH  # the threshold baked into the export
    exported = ExportedDetector.from_onnx(path)
    assert exported.classes == eager.classes
    imdb = get_imdb(eager.cfg.DATASET.TEST, eager.cfg.DATA_DIR, cfg=eager.cfg)
    assert len(imdb.image_index) == NUM_TEST
    wants, gots = [], []
    for i in range(NUM_TEST):
        image = imdb.image_path_at(i)
        want, got = eager.predict(image, score_thresh=thresh), exported.predict(image)
        assert got["labels"].tolist() == want["labels"].tolist(), image
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-3, err_msg=image)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-4, err_msg=image)
        assert got["class_names"] == want["class_names"]
        wants.append(want)
        gots.append(got)
    assert sum(len(want["labels"]) for want in wants) > 0, "no detections to compare"
    num_classes = len(eager.classes)
    want_map = voc_evaluate(_all_boxes(wants, num_classes), imdb.annotations(), eager.classes)
    got_map = voc_evaluate(_all_boxes(gots, num_classes), imdb.annotations(), eager.classes)
    assert abs(got_map["map"] - want_map["map"]) <= 0.002


@pytest.mark.slow
def test_onnx_runtime_dataset_pass_gives_the_eager_all_boxes(trained, onnx_file):
    exported = ExportedDetector.from_onnx(onnx_file, threads=1)
    eager = Detector.from_checkpoint(trained, device="cpu")
    imdb = get_imdb(eager.cfg.DATASET.TEST, eager.cfg.DATA_DIR, cfg=eager.cfg)
    dataset = torch.utils.data.Subset(TestImageDataset(imdb, eager.cfg), range(3))
    want, _ = eager_detect_dataset(eager.model, dataset, progress=False)
    got, images_per_s = detect_dataset(exported, dataset)
    assert images_per_s > 0
    for want_class, got_class in zip(want, got):
        for w, g in zip(want_class, got_class):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-3)
    assert sum(len(b) for per_class in got for b in per_class) > 0


@pytest.mark.slow
def test_onnx_roi_pool_model_matches_eager(trained, tmp_path):
    pool = ["--set", "POOLING_MODE", "pool"]
    path = _export(trained, "onnx", tmp_path / "pool.onnx", *pool)
    import onnx

    assert "MaxRoiPool" in {n.op_type for n in onnx.load(path).graph.node}
    exported = ExportedDetector.from_onnx(path)
    eager = Detector.from_checkpoint(trained, device="cpu", overrides=pool[1:])
    thresh = eager.cfg.TEST.SCORE_THRESH  # the threshold baked into the export
    imdb = get_imdb(eager.cfg.DATASET.TEST, eager.cfg.DATA_DIR, cfg=eager.cfg)
    for i in range(3):
        path = imdb.image_path_at(i)
        want, got = eager.predict(path, score_thresh=thresh), exported.predict(path)
        assert len(want["labels"]) > 0 and got["labels"].tolist() == want["labels"].tolist()
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_pt2_archive_matches_eager_at_other_sizes(trained, tmp_path):
    exported = ExportedDetector.from_pt2(_export(trained, "pt2", tmp_path / "shapes.pt2"))
    eager = Detector.from_checkpoint(trained, device="cpu")
    thresh = eager.cfg.TEST.SCORE_THRESH  # the threshold baked into the export
    assert exported.classes == eager.classes
    for height, width in ((96, 160), (200, 72), (128, 128)):
        image = np.random.default_rng(height).integers(0, 255, (height, width, 3), np.uint8)
        want, got = eager.predict(image, score_thresh=thresh), exported.predict(image)
        assert got["labels"].tolist() == want["labels"].tolist()
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-5)


@pytest.fixture
def untrained_checkpoint(tiny_cfg, tmp_path):
    """A checkpoint of the tiny model as trained weights would be saved, without training."""
    path = tmp_path / "untrained.pth"
    model = build_model(tiny_cfg, len(SHAPE_CLASSES) + 1)
    save_checkpoint(
        {
            "model": model.state_dict(),
            "config": config_to_dict(tiny_cfg),
            "classes": ["__background__", *SHAPE_CLASSES],
        },
        path,
    )
    return str(path)


def test_export_errors_name_the_problem(untrained_checkpoint, tmp_path):
    trained = untrained_checkpoint
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        export_cmd.main(
            [
                "--checkpoint",
                str(tmp_path / "none.pth"),
                "--format",
                "pt2",
                "--output",
                str(tmp_path / "x.pt2"),
            ]
        )
    with pytest.raises(ValueError, match="POOLING_MODE crop"):
        export_cmd.main(
            [
                "--checkpoint",
                trained,
                "--format",
                "onnx",
                "--output",
                str(tmp_path / "x.onnx"),
                "--set",
                "POOLING_MODE",
                "crop",
            ]
        )
    with pytest.raises(SystemExit):
        export_cmd.main(["--checkpoint", trained, "--format", "tflite", "--output", "x"])
    with pytest.raises(ValueError, match="TEST.MAX_PER_IMAGE must be > 0"):
        export_cmd.main(
            [
                "--checkpoint",
                trained,
                "--format",
                "pt2",
                "--output",
                str(tmp_path / "x.pt2"),
                "--set",
                "TEST.MAX_PER_IMAGE",
                "0",
            ]
        )
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [value],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="plain.onnx: not a fasterrcnn export"):
        ExportedDetector.from_onnx(str(tmp_path / "plain.onnx"))
