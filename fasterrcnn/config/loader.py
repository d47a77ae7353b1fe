"""Build a :class:`Config` from the schema defaults, a YAML file and ``KEY VALUE`` overrides.

Precedence, lowest first: schema defaults, the YAML file's ``_BASE_`` chain, the YAML file,
overrides.  Every key is checked against the schema and every value against the field's type;
an unknown key or a wrong type raises :class:`ConfigError` naming the key and its source.

Numbers are read as users write them where the schema expects one: YAML 1.1 leaves ``1e-3`` and
``5e-4`` as strings (it needs ``1.0e-3``), so a string that Python reads as a finite number
(``1e-3``, ``.001``, ``1_000``) is taken as that number; an integer field also takes an integral
float (``1e3``, ``2.0``) but nothing with a fraction.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import yaml

from fasterrcnn.config.packaged import resolve_config
from fasterrcnn.config.schema import CHOICES, Config

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A configuration key or value that the schema does not accept."""


def default_config() -> Config:
    """The reference defaults."""
    return Config()


def load_config(path: Optional[str] = None, overrides: Sequence[Any] = ()) -> Config:
    """Merge a YAML file and command-line overrides over the defaults.

    Args:
        path: a YAML file (``yaml.safe_load``), the name of a packaged config (``"shapes"``,
            ``"res101"``: see :mod:`fasterrcnn.config.packaged`), or None for the defaults alone.
            A file may name another with ``_BASE_: other.yml`` (relative to itself) to inherit
            from it.
        overrides: a flat sequence ``[KEY, VALUE, KEY, VALUE, ...]`` with dotted keys
            (``TRAIN.SCALES``); a string VALUE is parsed as YAML, any other value is taken as it
            is; then each is checked against the schema.
    """
    cfg = default_config()
    if path is not None:
        try:
            path = resolve_config(path)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from err
        cfg = merge_dict(cfg, _read_yaml_chain(path, seen=()), source=path)
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: Sequence[Any], source: str = "--set") -> Config:
    """Return a new config with ``[KEY, VALUE, ...]`` applied; ``cfg`` is left unchanged."""
    if len(overrides) % 2:
        raise ConfigError(f"{source}: overrides come in KEY VALUE pairs, got {list(overrides)}")
    nested: Dict[str, Any] = {}
    for key, text in zip(overrides[0::2], overrides[1::2]):
        value = yaml.safe_load(text) if isinstance(text, str) else text
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: key {key!r} conflicts with another override")
        node[parts[-1]] = value
    return merge_dict(cfg, nested, source=source)


def merge_dict(cfg: Any, updates: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """Return a copy of the dataclass ``cfg`` with ``updates`` (a nested mapping) merged in."""
    if not isinstance(updates, Mapping):
        raise ConfigError(f"{source}: {prefix or 'the top level'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes: Dict[str, Any] = {}
    for key, value in updates.items():
        full_key = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown config key {full_key!r}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge_dict(current, value, source, prefix=f"{full_key}.")
        else:
            changes[key] = _coerce(value, hints[key], full_key, source)
    return dataclasses.replace(cfg, **changes)


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """A plain nested dict (lists for tuples) that YAML and ``torch.save`` can store."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def config_from_dict(data: Mapping[str, Any], source: str = "checkpoint") -> Config:
    """Rebuild a config saved with :func:`config_to_dict` (checked like a YAML file)."""
    return merge_dict(default_config(), data, source=source)


def dump_config(cfg: Config) -> str:
    """The config as YAML text (for logs and the output folder)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _read_yaml_chain(path: str, seen: Tuple[str, ...]) -> Dict[str, Any]:
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigError(f"{path}: {BASE_KEY} chain loops back to itself")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    base_path = os.path.join(os.path.dirname(path), base)
    return _deep_merge(_read_yaml_chain(base_path, seen + (real,)), data)


def _deep_merge(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _as_number(value: Any) -> Optional[float]:
    """``value`` as an int or a finite float when it is one or a string spelling one (see the
    module docstring), else None.  Booleans are not numbers."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type ``hint``; ints widen to floats, lists become tuples."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        element = typing.get_args(hint)[0]
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} expects a list, got {value!r}")
        result = tuple(_coerce(v, element, f"{key}[{i}]", source) for i, v in enumerate(value))
    elif hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} expects true or false, got {value!r}")
        result = value
    elif hint is int:
        number = _as_number(value)
        if number is None or not float(number).is_integer():
            raise ConfigError(f"{source}: {key} expects an integer, got {value!r}")
        result = int(number)
    elif hint is float:
        number = _as_number(value)
        if number is None:
            raise ConfigError(f"{source}: {key} expects a number, got {value!r}")
        result = float(number)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} expects a string, got {value!r}")
        result = value
    else:
        raise ConfigError(f"{source}: {key} has an unsupported schema type {hint!r}")
    choices = CHOICES.get(key)
    if choices is not None and result not in choices:
        raise ConfigError(f"{source}: {key} must be one of {choices}, got {result!r}")
    return result
