"""Round trip on the user's own files: shapes written as COCO json / CSV / VOC -> check ->
a few training iterations -> test_net on the held-out split (COCO AP or VOC mAP) -> demo."""

import json
import os

import pytest
from conftest import tiny_overrides

from fasterrcnn.checkpoint import load_checkpoint
from fasterrcnn.commands import data as data_cmd
from fasterrcnn.commands import demo
from fasterrcnn.commands import test as test_net
from fasterrcnn.commands import train as trainval_net
from fasterrcnn.data.shapes import SHAPE_CLASSES

ANNOTATIONS = {"coco": "train.json", "csv": "train.csv", "voc": "."}


def _set_args(data_dir):
    values = tiny_overrides(data_dir)
    values = [
        v
        for k, v in zip(values[0::2], values[1::2])
        if not k.startswith("DATASET.")
        for v in (k, v)
    ]
    return ["--set"] + [str(v) for v in values]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["coco", "csv", "voc"])
def test_own_data_round_trip(fmt, tmp_path, one_thread):
    files = tmp_path / "labelled"
    assert (
        data_cmd.main(
            ["shapes", "--format", fmt, "--out", str(files), "--num_train", "10", "--num_test", "0"]
        )
        == 0
    )
    preset = {"coco": "coco_json", "csv": "csv", "voc": "voc_folder"}[fmt]
    data_args = [
        "--dataset",
        preset,
        "--train-data",
        str(files / ANNOTATIONS[fmt]),
        "--val-fraction",
        "0.3",
    ]
    settings = _set_args(str(tmp_path / "data"))
    assert (
        data_cmd.main(
            ["check"]
            + data_args
            + ["--cfg", "cfgs/shapes.yml", "--out", str(tmp_path / "check"), "--num_images", "4"]
            + settings
        )
        == 0
    )
    assert os.path.isfile(tmp_path / "check" / "path_test_contact_sheet.png")

    save_dir = tmp_path / "models"
    assert (
        trainval_net.main(
            data_args
            + [
                "--cfg",
                "cfgs/shapes.yml",
                "--save_dir",
                str(save_dir),
                "--max_iters",
                "3",
                "--quiet",
                "--device",
                "cpu",
                "--bs",
                "2",
            ]
            + settings
        )
        == 0
    )
    checkpoint = save_dir / "res18" / preset / "faster_rcnn_1_1_3.pth"
    state = load_checkpoint(checkpoint)
    # class names from the data: COCO categories by id, VOC / CSV names sorted
    expected = list(SHAPE_CLASSES) if fmt == "coco" else sorted(SHAPE_CLASSES)
    assert state["classes"] == ["__background__"] + expected
    assert state["config"]["DATASET"]["TRAIN"] == "path_train"

    out = tmp_path / "out"
    assert (
        test_net.main(
            [
                "--checkpoint_path",
                str(checkpoint),
                "--output_dir",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    results = json.loads((out / "path_test" / "results.json").read_text())
    if fmt == "coco":
        assert -1.0 <= results["coco"]["AP"] <= 1.0 and len(results["coco"]["stats"]) == 12
    else:
        assert 0.0 <= results["map"] <= 1.0 and set(results["ap"]) == set(SHAPE_CLASSES)

    demo_out = tmp_path / "demo"
    assert (
        demo.main(
            [
                "--image_dir",
                str(files / "JPEGImages"),
                "--output_dir",
                str(demo_out),
                "--checkpoint_path",
                str(checkpoint),
                "--max_images",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert len(list(demo_out.glob("*_det.jpg"))) == 1
