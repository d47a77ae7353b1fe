"""The library version: the one place it is written (pyproject.toml reads it for the build)."""

__version__ = "0.2.0"
