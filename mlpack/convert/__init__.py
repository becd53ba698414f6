"""Converters: one protocol, a registry of built-ins, and third-party converters from entry points.

A converter turns a native model into ONNX and runs the native model for the parity check. Heavy
framework imports happen inside each converter, only when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlpack.errors import UsageError

ENTRY_POINT_GROUP = "mlpack.converters"


@dataclass(frozen=True)
class Converted:
    onnx_bytes: bytes
    framework: str  # "sklearn", "onnx", ...
    framework_version: str
    model_class: str
    input_cast: dict[str, str]  # input name -> "float64->float32" where the converter narrows types
    native_runs: bool  # False where the source is ONNX itself and parity is ONNX vs canonical ONNX


@runtime_checkable
class Converter(Protocol):
    name: str
    description: str  # shown in "no converter takes this model" errors

    def accepts(self, model: Any) -> bool: ...

    def convert(self, model: Any, sample: dict[str, np.ndarray], opset: int) -> Converted: ...

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """Native outputs for the ONNX feeds, keyed like the ONNX outputs."""
        ...


def _builtins() -> list[Converter]:
    from mlpack.convert.onnx_model import OnnxConverter
    from mlpack.convert.sklearn import SklearnConverter

    return [OnnxConverter(), SklearnConverter()]


def registry() -> list[Converter]:
    """Built-in converters first, then those that installed packages declare under ``mlpack.converters``."""
    converters = _builtins()
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        factory = entry.load()
        converter = factory() if isinstance(factory, type) or callable(factory) else factory
        if not isinstance(converter, Converter):
            raise UsageError(f"The entry point {entry.name!r} in {ENTRY_POINT_GROUP} is not an mlpack converter.")
        converters.append(converter)
    return converters


def find_converter(model: Any) -> Converter:
    converters = registry()
    for converter in converters:
        if converter.accepts(model):
            return converter
    supported = "; ".join(c.description for c in converters)
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    raise UsageError(f"No converter takes a {kind}. Supported: {supported}.")
