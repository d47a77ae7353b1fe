"""Checkpoints: atomic saves, weights-only loads, clear errors naming the file."""

import io
import os

import pytest
import torch

import fasterrcnn
from fasterrcnn.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_name,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _state(value=1.0):
    generator = torch.Generator().manual_seed(7)
    return {
        "model": {"conv.weight": torch.full((2, 3), value), "conv.bias": torch.arange(2.0)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
        "epoch": 3,
        "iteration": 120,
        "session": 1,
        "pooling_mode": "align",
        "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_same(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key])
        else:
            assert a[key] == b[key]


def test_round_trip_and_naming(tmp_path):
    assert checkpoint_name(1, 6, 2504) == "faster_rcnn_1_6_2504.pth"
    path = tmp_path / "sub" / checkpoint_name(1, 6, 2504)
    state = _state()
    save_checkpoint(state, path)
    assert find_checkpoint(tmp_path / "sub", 1, 6, 2504) == str(path)
    loaded = load_checkpoint(find_checkpoint(tmp_path / "sub", 1, 6, 2504))
    assert loaded.pop("format_version") == CHECKPOINT_FORMAT == 1
    assert loaded.pop("fasterrcnn_version") == fasterrcnn.__version__
    _assert_same(state, loaded)
    assert os.listdir(tmp_path / "sub") == [path.name]
    restored = torch.Generator()
    restored.set_state(loaded["rng"]["generator"])
    assert torch.equal(
        torch.rand(3, generator=restored), torch.rand(3, generator=torch.Generator().manual_seed(7))
    )


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(_state(1.0), path)
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2.0), path)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2.0), tmp_path / "new.pth")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.pth"]
    loaded = load_checkpoint(path)
    del loaded["format_version"], loaded["fasterrcnn_version"]
    _assert_same(loaded, _state(1.0))


class _OpensAFile:
    """Unpickling this would create a file: weights-only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _OpensAFile(str(marker))}, path)
    with pytest.raises(CheckpointError, match="weights-only") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_truncated_and_non_dict_files(tmp_path):
    good = tmp_path / "good.pth"
    save_checkpoint(_state(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for bad in (truncated, empty):
        with pytest.raises(CheckpointError, match="truncated, corrupt") as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(listed)


def test_missing_file_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError) as info:
        load_checkpoint(missing)
    assert str(missing) in str(info.value)
    save_checkpoint(_state(), tmp_path / checkpoint_name(1, 2, 3))
    with pytest.raises(FileNotFoundError) as info:
        find_checkpoint(tmp_path, 1, 2, 4)
    message = str(info.value)
    assert str(tmp_path / "faster_rcnn_1_2_4.pth") in message
    assert "faster_rcnn_1_2_3.pth" in message


def test_unknown_format_version_names_both_versions(tmp_path):
    path = tmp_path / "future.pth"
    torch.save({**_state(), "format_version": 7, "fasterrcnn_version": "3.1.0"}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "format version 7" in message and "3.1.0" in message
    assert f"fasterrcnn {fasterrcnn.__version__} reads format versions 0 to 1" in message
    for bad in ("1", -1, 1.0, True):
        torch.save({**_state(), "format_version": bad}, path)
        with pytest.raises(CheckpointError, match="format version"):
            load_checkpoint(path)


def test_unversioned_checkpoint_loads_without_the_removed_config_keys(tmp_path):
    path = tmp_path / "old.pth"
    config = {
        "EXP_DIR": "shapes",
        "NET": "res18",
        "TRAIN": {"BBOX_REG": True, "BBOX_NORMALIZE_TARGETS": True, "MAX_ITERS": 5},
    }
    torch.save({**_state(), "config": config}, path)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == 1 and loaded["fasterrcnn_version"] == "0.1"
    assert loaded["config"] == {"NET": "res18", "TRAIN": {"MAX_ITERS": 5}}
    assert "EXP_DIR" in config and "BBOX_REG" in config["TRAIN"]  # the caller's dict unchanged
    _assert_same(
        {
            k: v
            for k, v in loaded.items()
            if k not in ("format_version", "fasterrcnn_version", "config")
        },
        _state(),
    )
