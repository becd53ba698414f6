"""Every option's default, and where a build's settings come from, in one fixed order (last wins):

1. the defaults below;
2. ``[tool.mlpack]`` in the nearest pyproject.toml, searched from the working folder upwards;
3. what the caller passes explicitly: a CLI flag or a keyword of ``mlpack.build()``.

An explicit value is never replaced by a default (``None`` means "not given", so ``threads=0`` is refused,
not taken for 1). Consent to unpickle never comes from a file in a parent folder: ``trust-pickle`` in
``[tool.mlpack]`` counts only when that pyproject.toml sits in the working folder itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlpack.errors import UsageError

DEFAULT_VERSION = "1"
DEFAULT_OUT = "dist"
DEFAULT_THREADS = 1  # a fixed count is the only way two machines can agree bit for bit
DEFAULT_OPSET = 17  # loads on onnxruntime 1.14 and newer; skl2onnx's own default may not
PRECISIONS = ("float32", "float64")
DEFAULT_PRECISION = "float32"  # the widest runtime support
DEFAULT_MAX_ROWS = 1024  # golden rows kept from the sample
DEFAULT_INDEX = "https://pypi.org/simple"
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 64 * 2**20  # serve: larger request bodies get 413


def cache_dir(kind: str) -> Path:
    """One cache root for every cache: MLPACK_CACHE_DIR, else $XDG_CACHE_HOME/mlpack, else ~/.cache/mlpack.

    Caches hold only results keyed by the exact inputs that produced them (lock answers for exact pins,
    wheels by lock hash), so a cache can make mlpack faster but never change a verdict.
    """
    root = os.environ.get("MLPACK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlpack"
    )
    return Path(root) / kind


def index_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLPACK_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX


@dataclass(frozen=True)
class BuildOptions:
    """A build's settings after merging; ``validate`` refuses impossible values in one sentence."""

    model: Any = None
    sample: Any = None
    name: str | None = None
    version: str = DEFAULT_VERSION
    out: str | Path = DEFAULT_OUT
    threads: int = DEFAULT_THREADS
    opset: int = DEFAULT_OPSET
    precision: str = DEFAULT_PRECISION
    max_rows: int = DEFAULT_MAX_ROWS
    tolerances: Mapping[str, Any] | float | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)
    index_url: str | None = None
    trust_pickle: bool = False
    dynamic: Mapping[str, Mapping[int, str]] = field(default_factory=dict)  # input -> {axis: dimension name}
    machines: tuple[str, ...] = ()  # machine classes to replay on at build, recorded as evidence
    sign_key: str | Path | None = None  # an EC private key: the build signs the package as its last step
    verify_key: str | Path | None = None  # [tool.mlpack] verify-key, for verify (unused by the build)

    def validate(self) -> BuildOptions:
        if self.model is None or self.sample is None:
            raise UsageError(
                "Give a MODEL and --sample, or set model and sample under [tool.mlpack] in pyproject.toml."
            )
        for label, value in (("threads", self.threads), ("opset", self.opset), ("max-rows", self.max_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--{label} must be a whole number of at least 1, not {value!r}.")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        _check_tolerances(self.tolerances)
        return replace(self, dynamic=dynamic_axes(self.dynamic), machines=machine_names(self.machines))


def machine_names(given: Any) -> tuple[str, ...]:
    """Machine classes as a tuple of names, each known (one sentence listing the valid ones otherwise); a
    comma-separated string is split, so that --machines x86-64-v2,aarch64 works as the list does."""
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, (list, tuple)) or not all(isinstance(name, str) for name in given):
        raise UsageError(f"Machine classes are names such as ['x86-64-v2', 'aarch64'], not {given!r}.")
    names = tuple(part.strip() for name in given for part in name.split(",") if part.strip())
    if names:
        from mlpack.machines import resolve

        resolve([name for name in names if name != "all"])  # unknown names are refused here, before any work
    return names


def dynamic_axes(given: Any) -> dict[str, dict[int, str]]:
    """Dynamic axes beyond the batch, as {input: {axis: dimension name}}. Accepts that form, or
    {input: [axes]}, where each axis is named "axisK" and so shared by every input that makes axis K dynamic
    (input_ids and attention_mask share their sequence length). Axis 0 is the batch, always dynamic."""
    if not isinstance(given, Mapping):
        raise UsageError(
            f"Dynamic axes must map input names to axes, such as {{'input_ids': [1]}}, not {given!r}."
        )
    axes: dict[str, dict[int, str]] = {}
    for name, spec in given.items():
        named = dict(spec) if isinstance(spec, Mapping) else {axis: f"axis{axis}" for axis in spec or ()}
        for axis, dim in named.items():
            if isinstance(axis, bool) or not isinstance(axis, int) or axis < 1:
                raise UsageError(
                    f"The dynamic axis {axis!r} of {name!r} must be a whole number of at least 1 (axis 0 is the "
                    "batch, dynamic already)."
                )
            if not isinstance(dim, str) or not dim.isidentifier():
                raise UsageError(
                    f"The dynamic axis {axis} of {name!r} needs a name such as 'sequence', not {dim!r}."
                )
        axes[str(name)] = named
    return axes


def parse_dynamic(values: list[str]) -> dict[str, dict[int, str]]:
    """--dynamic NAME:AXIS[=DIM] values (repeatable) as dynamic_axes takes them."""
    axes: dict[str, dict[int, str]] = {}
    for value in values:
        name, _, rest = value.rpartition(":")
        axis, _, dim = rest.partition("=")
        if not name or not axis.isdigit():
            raise UsageError(
                f"--dynamic takes NAME:AXIS or NAME:AXIS=DIM, such as input_ids:1=sequence, not {value!r}."
            )
        axes.setdefault(name, {})[int(axis)] = dim or f"axis{axis}"
    return dynamic_axes(axes)


def _check_tolerances(tolerances: Any) -> None:
    """One number (atol for every float output), or {output name or kind: {atol, rtol, labels}}: refused here
    in one sentence rather than written into a manifest that mlpack itself would refuse to open."""
    from mlpack.manifest import LABEL_RULES

    def number(where: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise UsageError(f"The tolerance {where} must be a finite number of at least 0, not {value!r}.")

    if tolerances is None:
        return
    if not isinstance(tolerances, Mapping):
        number("atol", tolerances)
        return
    for key, spec in tolerances.items():
        if not isinstance(spec, Mapping):
            raise UsageError(
                f"The tolerances of {key!r} must be a table such as {{atol = 1e-5, rtol = 1e-4}}, not {spec!r}."
            )
        for name, value in spec.items():
            if name in ("atol", "rtol"):
                number(f"{name} of {key!r}", value)
            elif name == "labels":
                if value not in LABEL_RULES:
                    raise UsageError(
                        f"The label rule of {key!r} must be one of {', '.join(LABEL_RULES)}, not {value!r}."
                    )
            else:
                raise UsageError(f"The tolerances of {key!r} take atol, rtol and labels, not {name!r}.")


# [tool.mlpack] keys and their TOML types; paths are relative to the pyproject.toml's folder.
FILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": str, "sample": str, "name": str, "version": str, "out": str, "trust-pickle": bool,
    "threads": int, "opset": int, "index-url": str, "tolerances": (dict, float, int), "lineage": dict,
    "max-rows": int, "precision": str, "machines": list, "sign-key": str, "verify-key": str,
}  # fmt: skip
PATH_KEYS = ("model", "sample", "out", "sign-key", "verify-key")


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def from_file(start: Path | None = None) -> dict[str, Any]:
    """Settings under [tool.mlpack] as BuildOptions fields, with paths made absolute against the file's folder."""
    here = (start or Path.cwd()).resolve()
    pyproject = find_pyproject(here)
    if pyproject is None:
        return {}
    import tomllib  # here, not at the top: every command imports this module for its defaults

    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))  # TOML is UTF-8 whatever the locale
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{pyproject} is not valid TOML: {exc}.") from None
    tool = data.get("tool", {})
    section = tool.get("mlpack", {}) if isinstance(tool, dict) else None
    if not isinstance(section, dict):
        raise UsageError(f"[tool.mlpack] in {pyproject} must be a table.")
    settings: dict[str, Any] = {}
    for key, value in section.items():
        if key not in FILE_KEYS:
            raise UsageError(
                f"[tool.mlpack] in {pyproject} has an unknown key {key!r}; known: {', '.join(FILE_KEYS)}."
            )
        expected = FILE_KEYS[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            kind = expected.__name__ if isinstance(expected, type) else "table or number"
            raise UsageError(f"[tool.mlpack] {key} in {pyproject} must be a {kind}.")
        if key == "trust-pickle" and value and pyproject.parent != here:
            raise UsageError(
                f"[tool.mlpack] trust-pickle in {pyproject} counts only when mlpack runs in {pyproject.parent}; "
                "consent to unpickle is never inherited from a parent folder: run there, or pass --trust-pickle."
            )
        settings[key.replace("-", "_")] = str(pyproject.parent / str(value)) if key in PATH_KEYS else value
    return settings


def merge(explicit: Mapping[str, Any], *, project: bool = True, start: Path | None = None) -> BuildOptions:
    """Defaults, then [tool.mlpack] (unless ``project`` is False), then the explicit values that are not None."""
    names = {f.name for f in fields(BuildOptions)}
    unknown = sorted(set(explicit) - names)
    if unknown:
        raise TypeError(f"unknown build option {unknown[0]!r}")
    settings = from_file(start) if project else {}
    merged = BuildOptions(**settings)
    given = {k: v for k, v in explicit.items() if v is not None}
    if "lineage" in given:  # lineage adds to the file's, key by key
        given["lineage"] = {**dict(settings.get("lineage", {})), **dict(given["lineage"])}
    return replace(merged, **given).validate()


# serve: a request may declare at most this many input elements, summed over its inputs (413 beyond)
DEFAULT_MAX_ELEMENTS = 16 * 2**20
# serve: seconds a connection may sit idle or stall mid-request before the server closes it
DEFAULT_IDLE_TIMEOUT = 60.0
# serve: connections one worker keeps open at once (the oldest waiting one is closed for a newcomer)
DEFAULT_MAX_CONNECTIONS = 1024
