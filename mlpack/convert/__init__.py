"""Converters: one protocol, a registry of built-ins, and third-party converters from entry points.

A converter describes a native model, turns it into ONNX, and runs the native model for the parity check.
Heavy framework imports happen inside each converter, only when it is used; ``accepts`` must not import
the framework (it looks at the object's module), so that finding a converter stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mlpack.errors import UsageError

ENTRY_POINT_GROUP = "mlpack.converters"


@dataclass(frozen=True)
class ConvertOptions:
    opset: int = 17
    precision: str = "float32"  # float64 keeps double-precision models in doubles where the converter can


@dataclass(frozen=True)
class Converted:
    model: Any  # onnx.ModelProto: kept as a message, since models over 2 GB cannot be serialised in one piece
    input_cast: dict[str, str] = field(default_factory=dict)  # input -> "float64->float32" where narrowed
    details: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest (exporter used, opset cap)


@dataclass(frozen=True)
class Description:
    framework: str  # "sklearn", "torch", "xgboost", ...
    framework_version: str
    model_class: str


@runtime_checkable
class Converter(Protocol):
    name: str
    description: str  # shown in "no converter takes this model" errors
    native_runs: bool  # False where the source is ONNX itself and parity is ONNX vs canonical ONNX

    def accepts(self, model: Any) -> bool: ...

    def describe(self, model: Any) -> Description: ...

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted: ...

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """Native outputs for the ONNX feeds, keyed like the ONNX outputs."""
        ...


def class_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def top_module(model: Any) -> str:
    return type(model).__module__.split(".")[0]


def require(module: str, extra: str) -> Any:
    """Import a framework or converter, or say in one sentence which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"This model needs {exc.name or module}: run pip install 'mlpack[{extra}]'.") from None


def _builtins() -> list[Converter]:
    from mlpack.convert.boosting import LightGBMConverter, XGBoostConverter
    from mlpack.convert.onnx_model import OnnxConverter
    from mlpack.convert.sklearn import SklearnConverter
    from mlpack.convert.torch import TorchConverter

    # boosters before scikit-learn: XGBClassifier and LGBMClassifier are scikit-learn estimators too
    return [OnnxConverter(), XGBoostConverter(), LightGBMConverter(), SklearnConverter(), TorchConverter()]


def registry() -> list[Converter]:
    """Built-in converters first, then those that installed packages declare under ``mlpack.converters``."""
    converters = _builtins()
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            factory = entry.load()
        except Exception as exc:
            raise UsageError(
                f"The converter plug-in {entry.name!r} ({entry.value}) failed to load: {exc}"
            ) from None
        converter = factory() if isinstance(factory, type) else factory
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
    raise UsageError(f"No converter takes a {class_name(model)}. Supported: {supported}.")
