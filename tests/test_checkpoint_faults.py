"""Checkpoint faults: failed saves name the path and the OS error, partial files of killed saves
are removed (and nothing else), resume and test refuse unfit checkpoints with clear messages."""

import errno
import os
import signal
import tempfile
import time

import pytest
import torch

from fasterrcnn.checkpoint import (
    PARTIAL_SUFFIX,
    CheckpointMismatchError,
    CheckpointSaveError,
    load_checkpoint,
    remove_stale_partials,
    save_checkpoint,
)
from fasterrcnn.config import apply_overrides
from fasterrcnn.engine.training_run import build_training_run


def _state(value=1.0):
    return {"model": {"w": torch.full((3,), value)}, "epoch": 1}


def _torch_like_failure(error):
    """torch.save's behaviour when the file's write fails: a RuntimeError whose context is the
    OSError ("[enforce fail at inline_container.cc:672] . unexpected pos")."""

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        try:
            raise error
        except OSError:
            # implicit chaining, as torch.save does: the OSError is only the __context__
            raise RuntimeError(  # noqa: B904
                "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
            )

    return failing_save


@pytest.mark.parametrize(
    "error,advice",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (OSError(errno.EFBIG, "File too large"), "larger than this file system allows"),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_failed_save_names_the_path_and_the_os_error(tmp_path, monkeypatch, error, advice):
    path = tmp_path / "faster_rcnn_1_1_5.pth"
    save_checkpoint(_state(1.0), path)
    monkeypatch.setattr(torch, "save", _torch_like_failure(error))
    with pytest.raises(CheckpointSaveError) as info:
        save_checkpoint(_state(2.0), path)
    message = str(info.value)
    assert str(path) in message and error.strerror in message and advice in message
    assert info.value.errno == error.errno
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [path.name]  # no partial file left, the old one intact
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3,), 1.0))


def test_unwritable_directory_is_a_save_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(
        CheckpointSaveError,
        match=r"cannot save checkpoint .*x\.pth: "
        r"Permission denied \(permission denied",
    ):
        save_checkpoint(_state(), tmp_path / "x.pth")


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_only_stale_unlocked_partial_files_are_removed(tmp_path):
    stale = tmp_path / f".faster_rcnn_1_1_4.pth.k3j_x9a2{PARTIAL_SUFFIX}"
    fresh = tmp_path / f".faster_rcnn_1_1_6.pth.q8w2e7r1{PARTIAL_SUFFIX}"
    users = [
        tmp_path / n
        for n in (
            "notes.tmp",
            ".x.pth.abc.tmp",
            f".notes{PARTIAL_SUFFIX}",
            f"model{PARTIAL_SUFFIX}",
            "faster_rcnn_1_1_2.pth",
        )
    ]
    for path in [stale, fresh] + users:
        path.write_bytes(b"partial")
        _age(path, 3600)
    _age(fresh, 0)
    assert remove_stale_partials(tmp_path) == [str(stale)]
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in users)
    _age(fresh, 3600)
    save_checkpoint(_state(), tmp_path / "faster_rcnn_1_1_8.pth")  # the next save cleans too
    assert not fresh.exists() and all(p.exists() for p in users)


def test_partial_file_of_a_killed_save_is_removed_only_once_its_writer_is_dead(
    tmp_path, monkeypatch
):
    ready_r, ready_w = os.pipe()

    def slow_save(obj, f, *args, **kwargs):
        f.write(b"PK partial")
        f.flush()
        os.write(ready_w, b"x")
        time.sleep(120)

    pid = os.fork()
    if pid == 0:  # the writer: killed with SIGKILL in the middle of its save
        try:
            monkeypatch.setattr(torch, "save", slow_save)
            save_checkpoint(_state(), tmp_path / "faster_rcnn_1_1_9.pth")
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
        _age(partial, 3600)
        assert remove_stale_partials(tmp_path) == []  # locked by a live save: kept
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pid = 0
        assert partial.exists()
        assert remove_stale_partials(tmp_path) == [str(partial)]
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory, tiny_data_dir):
    """A whole training checkpoint of one tiny iteration, and its config."""
    from conftest import tiny_overrides

    from fasterrcnn.config import load_config

    cfg = load_config(
        None,
        tiny_overrides(tiny_data_dir)
        # fmt: off
        + [
            "NET",
            "res18",
            "BACKBONE.NORM",
            "bn",
            "BACKBONE.STYLE",
            "pytorch",
            "RESNET.FIXED_BLOCKS",
            0,
            "DATASET.TRAIN",
            "shapes_train",
            "DATASET.TEST",
            "shapes_test",
            "TRAIN.MAX_ITERS",
            1,
        ],
        # fmt: on
    )
    out = tmp_path_factory.mktemp("run")
    path = build_training_run(cfg, output_dir=str(out), progress=False).train()
    return cfg, path


def test_resume_from_weights_only_says_how_to_start_from_them(run_checkpoint, tmp_path):
    cfg, path = run_checkpoint
    full = load_checkpoint(path)
    weights_only = str(tmp_path / "weights.pth")
    save_checkpoint({k: full[k] for k in ("model", "config", "classes")}, weights_only)
    with pytest.raises(CheckpointMismatchError) as info:
        build_training_run(cfg, output_dir=str(tmp_path / "a"), progress=False, resume=weights_only)
    message = str(info.value)
    assert weights_only in message and "no training state (no optimizer, scheduler" in message
    assert f"TRAIN.INIT_WEIGHTS {weights_only}" in message
    (tmp_path / "b").mkdir()
    left = tmp_path / "b" / f".faster_rcnn_1_1_3.pth.abcd1234{PARTIAL_SUFFIX}"
    left.write_bytes(b"partial")
    _age(left, 3600)
    fresh = build_training_run(
        apply_overrides(cfg, ["TRAIN.INIT_WEIGHTS", weights_only]),
        output_dir=str(tmp_path / "b"),
        progress=False,
    )
    assert not left.exists()  # removed at the start of the run
    for key, value in full["model"].items():
        assert torch.equal(fresh.model.state_dict()[key], value), key
    assert fresh.state.global_step == 0
    bare = str(tmp_path / "bare.pth")
    save_checkpoint(dict(full["model"]), bare)
    with pytest.raises(CheckpointMismatchError, match="not a fasterrcnn checkpoint"):
        build_training_run(cfg, output_dir=str(tmp_path / "c"), progress=False, resume=bare)


def test_resume_and_test_with_other_classes_name_both_lists(run_checkpoint, tmp_path):
    from fasterrcnn.commands import test as test_net

    cfg, path = run_checkpoint
    other = load_checkpoint(path)
    other["classes"] = ["__background__", "cat", "dog", "cow", "owl", "bee"]
    other_path = str(tmp_path / "other.pth")
    save_checkpoint(other, other_path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_training_run(cfg, output_dir=str(tmp_path / "a"), progress=False, resume=other_path)
    message = str(info.value)
    assert other_path in message and "'cat', 'dog'" in message and "'circle'" in message
    with pytest.raises(
        CheckpointMismatchError,
        match=r"other\.pth was trained on 6 classes "
        r".*'cat'.* the test set shapes_test has "
        r"6 classes .*'circle'",
    ):
        test_net.main(
            ["--checkpoint_path", other_path, "--output_dir", str(tmp_path / "t"), "--quiet"]
        )
    other["classes"] = other["classes"][:3]  # fewer classes than the weights: no size mismatch
    save_checkpoint(other, other_path)  # from PyTorch, but the file and the cause
    with pytest.raises(CheckpointMismatchError, match=r"other\.pth: its weights do not fit"):
        test_net.main(
            ["--checkpoint_path", other_path, "--output_dir", str(tmp_path / "t"), "--quiet"]
        )


def test_os_error_without_errno_reads_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _torch_like_failure(OSError("disk full")))
    with pytest.raises(CheckpointSaveError) as info:
        save_checkpoint(_state(), tmp_path / "y.pth")
    assert str(info.value) == f"cannot save checkpoint {tmp_path / 'y.pth'}: disk full"
