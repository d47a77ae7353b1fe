"""The YAML configs shipped with the library, found by name (``shapes``, ``res101``, ...).

They live in the repository's top-level ``cfgs/`` folder and install as ``fasterrcnn/cfgs/`` (see
setup.py), so a name resolves the same way in a checkout, an editable install and a wheel.
"""

from __future__ import annotations

import os
from typing import List

CONFIG_SUFFIX = ".yml"

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def packaged_config_dir() -> str:
    """The folder of the shipped configs: ``fasterrcnn/cfgs`` when installed, else the
    checkout's ``cfgs/`` next to the package."""
    installed = os.path.join(_PACKAGE_DIR, "cfgs")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_PACKAGE_DIR), "cfgs")


def packaged_config_names() -> List[str]:
    """Names of the shipped configs, sorted (``["res101", "res101_ls", ...]``)."""
    folder = packaged_config_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(
        name[: -len(CONFIG_SUFFIX)] for name in os.listdir(folder) if name.endswith(CONFIG_SUFFIX)
    )


def is_config_name(text: str) -> bool:
    """True for a bare name such as ``shapes`` or ``shapes.yml`` (no folder part)."""
    return bool(text) and os.path.basename(text) == text and text not in (".", "..")


def packaged_config_path(name: str) -> str:
    """The file of the shipped config ``name`` (``shapes`` or ``shapes.yml``).

    Raises:
        FileNotFoundError: no shipped config has that name; the message lists the ones that do.
    """
    stem = name[: -len(CONFIG_SUFFIX)] if name.endswith(CONFIG_SUFFIX) else name
    path = os.path.join(packaged_config_dir(), stem + CONFIG_SUFFIX)
    if not os.path.isfile(path):
        available = ", ".join(packaged_config_names()) or "none found"
        raise FileNotFoundError(
            f"no config file or packaged config named {name!r}; packaged configs: {available}"
        )
    return path


def resolve_config(path_or_name: str) -> str:
    """An existing file as it is, else the shipped config of that name.

    Raises:
        FileNotFoundError: neither exists; the message names the argument and, for a bare name,
            lists the shipped configs.
    """
    if os.path.isfile(path_or_name):
        return path_or_name
    if is_config_name(path_or_name):
        return packaged_config_path(path_or_name)
    raise FileNotFoundError(
        f"config file not found: {path_or_name} (a packaged config is "
        f"named without a folder: {', '.join(packaged_config_names())})"
    )
