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
"""

import logging
import os
import pickle
import tempfile
import zipfile
from typing import Dict, Union

import torch

from fasterrcnn._version import __version__

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
            available = sorted(n for n in os.listdir(save_dir)
                               if n.startswith("faster_rcnn_") and n.endswith(".pth"))
        hint = f"; checkpoints in that directory: {', '.join(available)}" if available else \
            "; no checkpoints in that directory"
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return path


def save_checkpoint(state: Dict[str, object], path: PathLike) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory, fsync,
    ``os.replace``). On any error the temporary file is removed, the error is re-raised and
    an existing file at ``path`` is left as it was. The directory is created if missing."""
    path = os.fspath(path)
    state = {**state, FORMAT_KEY: CHECKPOINT_FORMAT, LIBRARY_KEY: __version__}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=directory,
                                      prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with tmp:
            torch.save(state, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
        raise
    _fsync_directory(directory)
    logger.debug("saved checkpoint %s", path)


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
            f"than tensors, numbers, strings and containers ({e})") from e
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or unreadable "
                              f"({type(e).__name__}: {e})") from e
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
            f"versions 0 to {CHECKPOINT_FORMAT}: load it with a newer fasterrcnn")
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
