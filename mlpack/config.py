"""Build settings from ``[tool.mlpack]`` in pyproject.toml, read in one place.

Order, last wins: built-in defaults, pyproject.toml, then what the caller passes explicitly.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mlpack.errors import UsageError

KEYS = {
    "model": str,
    "sample": str,
    "name": str,
    "version": str,
    "out": str,
    "trust-pickle": bool,
    "threads": int,
    "opset": int,
    "index-url": str,
    "tolerances": dict,
    "lineage": dict,
    "max-rows": int,
    "precision": str,
}
PATH_KEYS = ("model", "sample", "out")


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: Path | None = None) -> dict[str, Any]:
    """Settings under [tool.mlpack], with paths made absolute against the pyproject's folder."""
    pyproject = find_pyproject((start or Path.cwd()).resolve())
    if pyproject is None:
        return {}
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{pyproject} is not valid TOML: {exc}.") from None
    section = data.get("tool", {}).get("mlpack", {})
    settings: dict[str, Any] = {}
    for key, value in section.items():
        if key not in KEYS:
            raise UsageError(f"[tool.mlpack] in {pyproject} has an unknown key {key!r}; known: {', '.join(KEYS)}.")
        if not isinstance(value, KEYS[key]):
            raise UsageError(f"[tool.mlpack] {key} in {pyproject} must be a {KEYS[key].__name__}.")
        settings[key.replace("-", "_")] = str(pyproject.parent / str(value)) if key in PATH_KEYS else value
    return settings
