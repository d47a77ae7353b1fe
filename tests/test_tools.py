"""The tools and the Detector API on a checkpoint from a tiny training run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_overrides, train_tiny_checkpoint
from PIL import Image

from fasterrcnn import Detector
from fasterrcnn.checkpoint import CheckpointError
from fasterrcnn.commands import demo
from fasterrcnn.commands import test as test_net
from fasterrcnn.commands import train as trainval_net
from fasterrcnn.data import get_imdb
from fasterrcnn.engine.inference import load_detections, load_model_from_checkpoint
from fasterrcnn.eval import voc_evaluate


def _set_args(data_dir):
    values = tiny_overrides(data_dir)
    return ["--set"] + [
        str(v).replace("'", "") if not isinstance(v, list) else str(v) for v in values
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data_dir, one_thread):
    """A checkpoint of 6 iterations of the tiny shapes model, made by trainval_net."""
    save_dir = tmp_path_factory.mktemp("models")
    path = train_tiny_checkpoint(save_dir, tiny_data_dir, iters=6, session=3)
    return {"checkpoint": str(path), "save_dir": str(save_dir), "data_dir": tiny_data_dir}


def test_trainval_net_resume_flag(trained, tmp_path):
    argv = [
        "--dataset",
        "shapes",
        "--save_dir",
        trained["save_dir"],
        "--r",
        "--checksession",
        "3",
        "--checkepoch",
        "1",
        "--checkpoint",
        "6",
        "--max_iters",
        "7",
        "--quiet",
        "--s",
        "3",
        "--bs",
        "2",
    ] + _set_args(trained["data_dir"])
    assert trainval_net.main(argv) == 0
    assert os.path.isfile(
        os.path.join(trained["save_dir"], "res18", "shapes", "faster_rcnn_3_1_7.pth")
    )


def test_test_net_scores_and_saves(trained, tmp_path):
    out = tmp_path / "out"
    assert (
        test_net.main(
            [
                "--checkpoint_path",
                trained["checkpoint"],
                "--output_dir",
                str(out),
                "--vis",
                "--quiet",
                "--vis_thresh",
                "0.0",
            ]
        )
        == 0
    )
    results = json.loads((out / "shapes_test" / "results.json").read_text())
    assert results["use_07_metric"] is True
    assert set(results["ap"]) == {"circle", "square", "triangle", "star", "cross"}
    all_boxes = load_detections(str(out / "shapes_test" / "detections.npz"))
    # the printed and saved scores are those of the saved detections against the ground truth
    _, cfg, classes = load_model_from_checkpoint(trained["checkpoint"])
    imdb = get_imdb("shapes_test", cfg.DATA_DIR, cfg=cfg)
    rescored = voc_evaluate(all_boxes, imdb.annotations(), classes, use_07_metric=True)
    assert results["map"] == pytest.approx(rescored["map"])
    assert results["ap"] == pytest.approx(rescored["ap"])
    assert results["map"] == pytest.approx(np.mean(list(results["ap"].values())))
    area = voc_evaluate(all_boxes, imdb.annotations(), classes, use_07_metric=False)
    assert results["map_area"] == pytest.approx(area["map"])
    assert results["ap_area"] == pytest.approx(area["ap"])
    assert len(all_boxes) == 6 and len(all_boxes[1]) == 6
    assert all(len(b) == 0 for b in all_boxes[0])
    assert len(list((out / "shapes_test" / "vis").glob("*.jpg"))) == 6
    _quickstart_prints_the_ap_table(
        out / "shapes_test" / "results.json", results, tmp_path / "quickstart"
    )


def _quickstart_prints_the_ap_table(results_json: Path, results: dict, root: Path) -> None:
    """tools/quickstart.sh's last step (its Python heredoc), run where output/shapes_test/ holds
    the results.json test_net wrote, prints one row per class and the mAP."""
    (root / "output" / "shapes_test").mkdir(parents=True)
    shutil.copy(results_json, root / "output" / "shapes_test" / "results.json")
    repo = Path(__file__).resolve().parents[1]
    snippet = (repo / "tools" / "quickstart.sh").read_text()
    snippet = snippet.split("python3 - <<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    )
    printed = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert printed[0] == "| class | AP |"
    assert printed[2:-2] == [f"| {name} | {100 * ap:.2f} |" for name, ap in results["ap"].items()]
    assert printed[-2] == f"| **mAP** | {100 * results['map']:.2f} |"
    assert printed[-1].endswith(f"mAP {100 * results['map_area']:.2f})")


def test_test_net_triple_and_missing_checkpoint(trained, tmp_path):
    argv = [
        "--load_dir",
        trained["save_dir"],
        "--dataset",
        "shapes",
        "--net",
        "res18",
        "--checksession",
        "3",
        "--checkepoch",
        "1",
        "--output_dir",
        str(tmp_path),
        "--quiet",
    ]
    assert test_net.main(argv + ["--checkpoint", "6"]) == 0
    with pytest.raises(FileNotFoundError, match="faster_rcnn_3_1_99.pth"):
        test_net.main(argv + ["--checkpoint", "99"])


def test_demo_writes_images_and_json(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    jpegs = sorted(Path(trained["data_dir"], "shapes", "JPEGImages").glob("test_*.jpg"))[:2]
    for jpeg in jpegs:
        (images / jpeg.name).write_bytes(jpeg.read_bytes())
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert (
        demo.main(
            [
                "--image_dir",
                str(images),
                "--output_dir",
                str(out),
                "--checkpoint_path",
                trained["checkpoint"],
                "--thresh",
                "0.0",
            ]
        )
        == 0
    )
    detector = Detector.from_checkpoint(trained["checkpoint"], device="cpu")
    for jpeg in jpegs:
        drawn = cv2.imread(str(out / f"{jpeg.stem}_det.jpg"))
        assert drawn is not None and drawn.shape == cv2.imread(str(jpeg)).shape
        record = json.loads((out / f"{jpeg.stem}.json").read_text())
        assert record["image"].endswith(jpeg.name)
        # the JSON holds the detector's own detections of that image, rounded
        expected = detector.predict(str(jpeg), score_thresh=0.0)
        assert len(record["detections"]) == len(expected["boxes"]) > 0
        np.testing.assert_allclose(
            [d["box"] for d in record["detections"]], expected["boxes"], atol=0.006
        )
        np.testing.assert_allclose(
            [d["score"] for d in record["detections"]], expected["scores"], atol=6e-5
        )
        assert [d["class_name"] for d in record["detections"]] == expected["class_names"]
    assert len(list(out.iterdir())) == 4


def test_detector_accepts_each_input_type(trained):
    det = Detector.from_checkpoint(trained["checkpoint"], device="cpu")
    assert det.classes[0] == "__background__" and not det.model.training
    path = sorted(Path(trained["data_dir"], "shapes", "JPEGImages").glob("test_*.jpg"))[0]
    bgr = cv2.imread(str(path))
    from_path = det.predict(str(path), score_thresh=0.0)
    from_array = det.predict(bgr, score_thresh=0.0)
    from_pil = det.predict(Image.fromarray(bgr[:, :, ::-1].copy()), score_thresh=0.0)
    batch = det.predict([path, bgr], score_thresh=0.0)
    for result in (from_array, from_pil, batch[0], batch[1]):
        np.testing.assert_array_equal(result["boxes"], from_path["boxes"])
        np.testing.assert_array_equal(result["labels"], from_path["labels"])
    boxes = from_path["boxes"]
    h, w = bgr.shape[:2]
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w - 1 + 1e-3).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h - 1 + 1e-3).all()
    assert from_path["class_names"] == [det.classes[i] for i in from_path["labels"]]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    from_gray = det.predict(gray, score_thresh=0.0)
    as_bgr = det.predict(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), score_thresh=0.0)
    assert len(from_gray["boxes"]) > 0
    np.testing.assert_array_equal(from_gray["boxes"], as_bgr["boxes"])


def test_detector_rejects_bad_inputs(trained, tmp_path):
    det = Detector.from_checkpoint(trained["checkpoint"])
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        det.predict(str(tmp_path / "nope.jpg"))
    with pytest.raises(ValueError, match="uint8"):
        det.predict(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="unsupported image type"):
        det.predict(42)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": {}, "classes": [], "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        Detector.from_checkpoint(str(path))


def test_checkpoint_of_fasterrcnn_0_1_still_loads(trained, tmp_path):
    """A checkpoint without format version whose config has the keys 0.1 accepted."""
    state = torch.load(trained["checkpoint"], weights_only=True)
    del state["format_version"], state["fasterrcnn_version"]
    state["config"]["EXP_DIR"] = "shapes"
    state["config"]["TRAIN"].update(BBOX_REG=True, BBOX_NORMALIZE_TARGETS=True)
    old = tmp_path / "faster_rcnn_1_1_6.pth"
    torch.save(state, old)
    image = sorted(Path(trained["data_dir"], "shapes", "JPEGImages").glob("test_*.jpg"))[0]
    got = Detector.from_checkpoint(str(old)).predict(str(image), score_thresh=0.0)
    want = Detector.from_checkpoint(trained["checkpoint"]).predict(str(image), score_thresh=0.0)
    np.testing.assert_array_equal(got["boxes"], want["boxes"])


def test_repeated_set_flags_all_apply():
    from fasterrcnn.cli import build_config
    from fasterrcnn.commands import test as test_command
    from fasterrcnn.commands import train as train_command

    # fmt: off
    args = train_command.parse_args(["--dataset", "shapes", "--set", "TRAIN.EPOCHS", "2",
                                     "--set", "TRAIN.LR_SCHEDULE", "cosine"])
    # fmt: on
    cfg = build_config(args)
    assert (cfg.TRAIN.EPOCHS, cfg.TRAIN.LR_SCHEDULE) == (2, "cosine")
    parser_args = test_command.parse_args(
        ["--checkpoint_path", "x.pth", "--set", "DATA_DIR", "d", "--set", "TEST.NMS", "0.4"]
    )
    assert parser_args.set_cfgs == ["DATA_DIR", "d", "TEST.NMS", "0.4"]
