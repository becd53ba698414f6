"""Model families: one protocol, a registry of built-ins, and third-party converters from entry points.

Each family lives in one module that owns everything about it: the files it loads (``suffixes`` and
``load``), how it describes a model, how it converts to ONNX, how the native model predicts (for the parity
check), and its default tolerances. Built-ins register exactly like plug-ins, so adding a family, or a
plug-in's file format, touches one module. Heavy framework imports happen inside each family, only when it
is used; ``accepts`` must not import the framework (it looks at the object's module), so that finding a
converter stays cheap.

Plug-ins (entry point group ``mlpack.converters``) need ``name``, ``description``, ``native_runs``,
``accepts``, ``describe``, ``convert`` and ``predict``; ``suffixes``/``load``, ``tolerances`` and ``probes``
(inputs beyond the golden ones that parity also checks, such as a missing value per column) are optional.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from mlpack.errors import ConversionError, UsageError
from mlpack.manifest import Tolerance
from mlpack.options import DEFAULT_OPSET, DEFAULT_PRECISION

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx

ENTRY_POINT_GROUP = "mlpack.converters"


@dataclass(frozen=True)
class ConvertOptions:
    opset: int = DEFAULT_OPSET
    precision: str = DEFAULT_PRECISION  # float64 keeps double-precision models in doubles where it can
    dynamic: Mapping[str, Mapping[int, str]] = field(
        default_factory=dict
    )  # input -> {axis: name}, beyond the batch


@dataclass(frozen=True)
class Trust:
    """What the user consented to load: pickles run arbitrary code, skops types beyond its default list."""

    pickle: bool = False
    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Converted:
    model: onnx.ModelProto  # kept as a message, since models over 2 GB cannot be serialised in one piece
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
    from mlpack.convert.lightgbm import LightGBMConverter
    from mlpack.convert.onnx_model import OnnxConverter
    from mlpack.convert.sklearn import SklearnConverter
    from mlpack.convert.torch import TorchConverter
    from mlpack.convert.xgboost import XGBoostConverter

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


def default_tolerances(converter: Converter) -> Mapping[str, Tolerance]:
    """The family's defaults by output kind; kinds it does not name keep the generic defaults."""
    return dict(getattr(converter, "tolerances", {}) or {})


def load_model_file(path: Path, trust: Trust = Trust()) -> Any:
    """A model object (or, for ONNX, the path itself) from a file, by the family that claims its suffix."""
    if path.is_dir():
        raise UsageError(f"The model file {path} is a folder: give the model file inside it.")
    if not path.is_file():
        raise UsageError(f"The model file {path} does not exist.")
    suffix = path.suffix.lower()
    families = registry()
    for converter in families:
        if suffix in getattr(converter, "suffixes", ()):
            return converter.load(path, trust)  # type: ignore[attr-defined]
    known = list(dict.fromkeys(s for c in families for s in getattr(c, "suffixes", ())))
    raise UsageError(f"{path} has an unknown model format; supported: {', '.join(known)}.")


def conversion_failed(what: str, exc: BaseException) -> ConversionError:
    """A converter's failure in one sentence (its first line, capped), with the whole text (some converters
    put a model's every tree in the message) written to a log file that the sentence names."""
    import traceback

    text = "".join(traceback.format_exception(exc))
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first if len(first) <= 300 else first[:300] + "…"
    log = write_log("convert", f"{what}\n\n{text}")
    return ConversionError(f"{what}: {first}" + (f" (the whole message: {log})" if log else ""))


def write_log(kind: str, text: str) -> Path | None:
    """A text too long for the terminal, kept in ~/.cache/mlpack/logs/KIND-TIME-RANDOM.log (the path is
    returned), or None where that folder cannot be written."""
    import tempfile
    import time

    from mlpack.options import cache_dir

    try:
        folder = cache_dir("logs")
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-", suffix=".log", dir=folder
        )
        with os.fdopen(handle, "w") as out:
            out.write(text)
    except OSError:
        return None
    return Path(name)
