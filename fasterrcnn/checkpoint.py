"""Saving and loading training checkpoints.

A checkpoint state is a dict that holds only what ``torch.load(..., weights_only=True)``
accepts: tensors, Python numbers, bools, None, strings, and lists / tuples / dicts of those
(``state_dict()`` of models, optimizers and LR schedulers qualify). Random number generator
states are stored as tensors (``torch.Generator.get_state()``, ``torch.get_rng_state()``);
never store arbitrary objects (a config object, numpy arrays, a ``random.getstate()`` tuple
without converting it), because weights-only loading refuses them.

Every saved state carries ``format_version`` (:data:`CHECKPOINT_FORMAT`, the layout of the dict)
and ``fasterrcnn_version`` (the library that wrote it).  Loading refuses a format this library
does not know, naming both versions; a state without ``format_version`` was written by
fasterrcnn 0.1 (format 0) and is upgraded as it loads.

Files are named as the reference names them, ``faster_rcnn_{session}_{epoch}_{iteration}.pth``,
and are written atomically: a temporary file in the same directory, flushed and fsync'ed, then
renamed over the target, so an interrupted save leaves any previous checkpoint intact.

Temporary files are named ``.{name}.{random}.fasterrcnn-partial`` and locked (``flock``) while
they are written.  A save killed mid-write leaves one behind; the next save into that directory
(and the start of a training run) removes those that match the pattern, are not locked by a live
writer and are older than :data:`STALE_AFTER_S` seconds: nothing else is ever deleted.  A failed
save raises :class:`CheckpointSaveError` naming the path and the OS error (disk full, file too
large, permission denied, ...).
"""

import errno
import logging
import os
import pickle
import re
import tempfile
import time
import zipfile
from typing import Dict, List, Optional, Sequence, Union

import torch

from fasterrcnn._version import __version__

try:
    import fcntl
except ImportError:  # not POSIX: stale temporary files are left alone
    fcntl = None

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

CHECKPOINT_FORMAT = 1
"""The checkpoint layout this library writes and the newest it reads; raise it when a key is
added that older readers must not ignore, or changes meaning (and upgrade older ones in
:func:`upgrade_checkpoint`)."""
FORMAT_KEY = "format_version"
LIBRARY_KEY = "fasterrcnn_version"
REMOVED_CONFIG_KEYS = (("EXP_DIR",), ("TRAIN", "BBOX_REG"), ("TRAIN", "BBOX_NORMALIZE_TARGETS"))
"""Config keys of format 0 (fasterrcnn 0.1) that did nothing and were removed in format 1."""


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be loaded (corrupt, truncated, or refused)."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the message names the path and the OS error."""


class CheckpointMismatchError(ValueError):
    """A checkpoint that cannot serve this purpose (no training state, other classes)."""


PARTIAL_SUFFIX = ".fasterrcnn-partial"
"""Suffix of the temporary file of a save in progress (see the module docstring)."""

STALE_AFTER_S = 10.0
"""A partial file must be at least this old (and unlocked) to be removed as stale."""

_PARTIAL_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+" + re.escape(PARTIAL_SUFFIX) + "$")

_SAVE_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space or save to another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or save to another disk",
    errno.EFBIG: "the file is larger than this file system allows (FAT32 stops at 4 GiB): "
    "save to another file system",
    errno.EACCES: "permission denied: make the directory writable or save elsewhere",
    errno.EPERM: "permission denied: make the directory writable or save elsewhere",
    errno.EROFS: "the file system is read-only: save elsewhere",
}

TRAINING_STATE_KEYS = (
    "optimizer",
    "scheduler",
    "epoch",
    "iteration",
    "global_step",
    "rng",
    "images_per_step",
    "iters_per_epoch",
)
"""Entries a checkpoint needs, besides ``model``, to resume a run exactly."""


def checkpoint_name(session: int, epoch: int, iteration: int) -> str:
    """File name of a checkpoint, the reference's naming:
    ``faster_rcnn_{session}_{epoch}_{iteration}.pth``."""
    return f"faster_rcnn_{session}_{epoch}_{iteration}.pth"


def find_checkpoint(save_dir: PathLike, session: int, epoch: int, iteration: int) -> str:
    """Path of an existing checkpoint in ``save_dir``; FileNotFoundError naming the path (and
    the checkpoints that do exist there) when it is missing."""
    path = os.path.join(os.fspath(save_dir), checkpoint_name(session, epoch, iteration))
    if not os.path.isfile(path):
        available = []
        if os.path.isdir(save_dir):
            available = sorted(
                n
                for n in os.listdir(save_dir)
                if n.startswith("faster_rcnn_") and n.endswith(".pth")
            )
        hint = (
            f"; checkpoints in that directory: {', '.join(available)}"
            if available
            else "; no checkpoints in that directory"
        )
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return path


def save_checkpoint(state: Dict[str, object], path: PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory, fsync,
    ``os.replace``). On any error the temporary file is removed and an existing file at
    ``path`` is left as it was. The directory is created if missing; stale partial files of
    interrupted saves in it are removed first (see the module docstring).

    Raises:
        CheckpointSaveError: the file could not be written; the message names ``path`` and the
            OS error (its ``errno`` when there is one) with what to do.
    """
    path = os.fspath(path)
    state = {**state, FORMAT_KEY: CHECKPOINT_FORMAT, LIBRARY_KEY: __version__}
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_partials(directory)
        tmp = tempfile.NamedTemporaryFile(
            delete=False, dir=directory, prefix=f".{os.path.basename(path)}.", suffix=PARTIAL_SUFFIX
        )
        with tmp:
            if fcntl is not None:
                fcntl.flock(tmp.fileno(), fcntl.LOCK_EX)
            torch.save(state, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
            os.replace(tmp.name, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp.name):
            os.unlink(tmp.name)
        cause = _os_error_in(err)
        if cause is not None:
            advice = _SAVE_ADVICE.get(cause.errno, "")
            message = f"cannot save checkpoint {path}: {cause.strerror or cause}" + (
                f" ({advice})" if advice else ""
            )
            args = (message,) if cause.errno is None else (cause.errno, message)
            raise CheckpointSaveError(*args) from err
        if isinstance(err, RuntimeError):
            raise CheckpointSaveError(f"cannot save checkpoint {path}: {err}") from err
        raise
    _fsync_directory(directory)
    logger.debug("saved checkpoint %s", path)


def _os_error_in(err: BaseException) -> Optional[OSError]:
    """``err`` or the first OSError in its chain of causes (torch.save reports a failed write
    as a RuntimeError whose context is the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def remove_stale_partials(directory: Union[str, os.PathLike]) -> List[str]:
    """Delete the temporary files that interrupted saves left in ``directory``.

    Only files named ``.{name}.{random}.fasterrcnn-partial`` that no live save holds locked
    and that are older than :data:`STALE_AFTER_S` are removed (each is logged).  Returns their
    paths.  Errors (a directory that does not exist, a file another process removes first)
    are ignored: cleaning is best effort.
    """
    if fcntl is None:
        return []
    directory = os.fspath(directory)
    try:
        names = [n for n in os.listdir(directory) if _PARTIAL_NAME.match(n)]
    except OSError:
        return []
    removed: List[str] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as handle:
                if time.time() - os.fstat(handle.fileno()).st_mtime < STALE_AFTER_S:
                    continue
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a save in progress holds it
                size = os.fstat(handle.fileno()).st_size
                os.unlink(path)
        except OSError:
            continue
        logger.warning("removed %s (%d bytes), left by an interrupted checkpoint save", path, size)
        removed.append(path)
    return removed


def check_resumable(ckpt: Dict[str, object], path: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``ckpt`` holds a whole training state."""
    if "model" not in ckpt:
        raise CheckpointMismatchError(
            f"{path} is not a fasterrcnn checkpoint (it has no 'model' entry; its entries: "
            f"{', '.join(sorted(map(str, ckpt))) or 'none'})"
        )
    missing = [key for key in TRAINING_STATE_KEYS if key not in ckpt]
    if missing:
        raise CheckpointMismatchError(
            f"{path} holds model weights but no training state (no {', '.join(missing)}): it "
            "cannot be resumed.  To train on from these weights, start a fresh run with "
            f"--set TRAIN.INIT_WEIGHTS {path} (without --r / --resume_path): the optimizer, "
            "schedule and data order then start anew"
        )


def check_classes(saved: Sequence[str], expected: Sequence[str], path: str, what: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming both lists when ``saved`` (the
    checkpoint's classes) differ from ``expected`` (those of ``what``, e.g. "the dataset
    voc_2007_trainval")."""
    if list(saved) != list(expected):
        raise CheckpointMismatchError(
            f"{path} was trained on {len(saved)} classes {list(saved)}, but {what} has "
            f"{len(expected)} classes {list(expected)}: use a checkpoint of the same classes "
            "(same names, same order)"
        )


def load_weights(model: torch.nn.Module, path: str, classes: Sequence[str]) -> None:
    """Copy a checkpoint's model weights into ``model`` (nothing else: a fresh start).

    Accepts a checkpoint of :meth:`~fasterrcnn.engine.trainer.Trainer.save`, one with only
    ``model`` (and ``classes``), or a bare state dict.  Its classes, when it names them, must
    equal ``classes``.

    Raises:
        CheckpointMismatchError: other classes, or weights that do not fit ``model``.
    """
    ckpt = load_checkpoint(path)
    if "classes" in ckpt:
        check_classes(ckpt["classes"], classes, path, "this run's dataset")
    load_model_state(model, ckpt.get("model", ckpt), path)
    logger.info("model weights initialised from %s", path)


def load_model_state(model: torch.nn.Module, state: Dict[str, object], path: str) -> None:
    """``model.load_state_dict(state)``; a mismatch raises :class:`CheckpointMismatchError`
    naming the checkpoint ``path`` instead of PyTorch's bare size-mismatch error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointMismatchError(
            f"{path}: its weights do not fit this model (another NET, backbone width, pooling "
            f"or class count?): {err}"
        ) from err


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the platform allows opening a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it).
        CheckpointError: the file is truncated, corrupt or unreadable, is refused by
            weights-only loading (it pickles objects other than tensors / numbers / strings /
            containers), or does not hold a dict; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} was refused by weights-only loading: it holds objects other "
            f"than tensors, numbers, strings and containers ({e})"
        ) from e
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated, corrupt or unreadable ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return upgrade_checkpoint(state, path)


def upgrade_checkpoint(state: dict, path: PathLike) -> dict:
    """``state`` in the current format (:data:`CHECKPOINT_FORMAT`).

    A state without ``format_version`` is format 0 (fasterrcnn 0.1, the same layout): the config
    keys of :data:`REMOVED_CONFIG_KEYS` are dropped from its ``config``.

    Raises:
        CheckpointError: the format version is not one this library reads; the message names the
            file, its format and library versions and this library's.
    """
    version = state.get(FORMAT_KEY, 0)
    if version == 0:
        state = {**state, FORMAT_KEY: CHECKPOINT_FORMAT, LIBRARY_KEY: state.get(LIBRARY_KEY, "0.1")}
        if isinstance(state.get("config"), dict):
            state["config"] = _without_keys(state["config"], REMOVED_CONFIG_KEYS)
        return state
    if type(version) is not int or not 0 < version <= CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)} has format version {version!r} (written by fasterrcnn "
            f"{state.get(LIBRARY_KEY, 'unknown')}); this fasterrcnn {__version__} reads format "
            f"versions 0 to {CHECKPOINT_FORMAT}: load it with a newer fasterrcnn"
        )
    return state


def _without_keys(config: dict, keys) -> dict:
    """A copy of the nested dict ``config`` without the key paths ``keys``."""
    config = dict(config)
    for key in keys:
        node = config
        for part in key[:-1]:
            if not isinstance(node.get(part), dict):
                break
            node[part] = dict(node[part])
            node = node[part]
        else:
            node.pop(key[-1], None)
    return config
