"""PyTorch: nn.Module objects, torch.export programs (.pt2) and TorchScript (.pt).

The dynamo exporter (torch.export based) is tried first; where it fails, the legacy TorchScript exporter
takes over, and the manifest records which one was used and why. The batch axis is dynamic.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Description, Trust, class_name, require
from mlpack.errors import ConversionError, UsageError
from mlpack.manifest import Tolerance

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx

DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and newer
# About 40-400x the worst parity measured here (MLP 1.2e-7, CNN 2.4e-7 abs): graph optimisation levels
# move MLP/CNN outputs by up to ~400 ULP, so relative tolerance is wider than for trees.
TOLERANCES = {"probabilities": Tolerance(atol=1e-5, rtol=1e-4), "value": Tolerance(atol=1e-5, rtol=1e-4)}


def _input_names(model: Any, sample: dict[str, np.ndarray]) -> list[str]:
    """The forward() parameter names, so that an .npz sample can be keyed by them."""
    if set(sample) != {""}:
        return list(sample)
    target = model.module() if type(model).__name__ == "ExportedProgram" else model
    try:
        params = [p for p in inspect.signature(target.forward).parameters.values() if p.kind != p.VAR_KEYWORD]
        return [params[0].name] if params else ["input"]
    except (TypeError, ValueError, AttributeError):
        return ["input"]


def _tensors(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(value)) for value in feeds.values())


def _outputs(result: Any) -> list[np.ndarray]:
    import torch

    if isinstance(result, torch.Tensor):
        return [result.detach().cpu().numpy()]
    if isinstance(result, (tuple, list)):
        return [r.detach().cpu().numpy() for r in result]
    if isinstance(result, dict):
        return [v.detach().cpu().numpy() for v in result.values()]
    raise UsageError(f"The model returns a {type(result).__name__}; mlpack needs tensors, or tuples of tensors.")


def _callable(model: Any) -> Any:
    return model.module() if type(model).__name__ == "ExportedProgram" else model


class TorchConverter:
    name = "torch"
    description = "PyTorch (nn.Module with an example input, torch.export .pt2, TorchScript .pt)"
    native_runs = True
    suffixes = (".pt2", ".pt")
    tolerances: ClassVar[dict[str, Tolerance]] = TOLERANCES

    def load(self, path: Path, trust: Trust) -> Any:
        torch = require("torch", "torch")
        try:
            if path.suffix.lower() == ".pt2":
                return torch.export.load(str(path))  # a serialised torch.export program: no Python code runs
            return torch.jit.load(str(path), map_location="cpu")  # TorchScript runs in its own interpreter
        except Exception as exc:
            kind = "torch.export program" if path.suffix.lower() == ".pt2" else "TorchScript archive"
            raise UsageError(
                f"{path} is not a readable {kind}: {str(exc).strip().splitlines()[0][:200]}"
            ) from None

    def accepts(self, model: Any) -> bool:
        torch = sys.modules.get("torch")  # a torch model means torch is imported already: no import here
        if torch is None:
            return False
        return isinstance(model, (torch.nn.Module, torch.jit.ScriptModule, torch.export.ExportedProgram))

    def describe(self, model: Any) -> Description:
        torch = require("torch", "torch")
        return Description("torch", torch.__version__, class_name(model))

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        torch = require("torch", "torch")
        names = _input_names(model, sample)
        arrays = list(sample.values())
        casts: dict[str, str] = {}
        for i, (name, array) in enumerate(zip(names, arrays, strict=True)):
            if array.dtype == np.float64 and options.precision == "float32":
                arrays[i] = array.astype(np.float32)
                casts[name] = "float64->float32"
        # two rows at least: torch.export specialises a batch of one into a constant
        example = tuple(torch.from_numpy(np.ascontiguousarray(a[np.arange(2) % len(a)])) for a in arrays)
        if hasattr(model, "eval"):
            model.eval()
        with torch.no_grad():
            count = len(_outputs(_callable(model)(*example)))
        output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        details: dict[str, Any] = {}
        try:
            onx = self._dynamo(model, example, names, output_names, options)
            details["exporter"] = "dynamo"
        except Exception as exc:
            if type(model).__name__ == "ExportedProgram":
                raise ConversionError(f"torch.onnx could not export the program: {str(exc)[:300]}") from None
            details["exporter"] = "legacy"
            details["dynamo_failure"] = str(exc).strip().splitlines()[0][:300]
            try:
                onx = self._legacy(model, example, names, output_names, options)
            except Exception as legacy_exc:
                raise ConversionError(
                    f"torch.onnx could not export {type(model).__name__} (dynamo: {details['dynamo_failure']}; "
                    f"legacy: {str(legacy_exc).strip().splitlines()[0][:200]})"
                ) from None
        return Converted(model=onx, input_cast=casts, details=details)

    def _dynamo(self, model: Any, example: tuple[Any, ...], names: list[str], outputs: list[str],
                options: ConvertOptions) -> onnx.ModelProto:  # fmt: skip
        import torch

        opset = max(options.opset, DYNAMO_MIN_OPSET)
        kwargs: dict[str, Any] = {"input_names": names, "output_names": outputs, "opset_version": opset}
        if type(model).__name__ != "ExportedProgram":
            batch = torch.export.Dim("batch")
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in example)
        with _quiet():
            program = torch.onnx.export(model, example, dynamo=True, verbose=False, **kwargs)
        if program is None:
            raise ConversionError("torch.onnx.export returned no program.")
        return program.model_proto

    def _legacy(self, model: Any, example: tuple[Any, ...], names: list[str], outputs: list[str],
                options: ConvertOptions) -> onnx.ModelProto:  # fmt: skip
        import onnx
        import torch

        buffer = io.BytesIO()
        axes = {name: {0: "batch"} for name in [*names, *outputs]}
        with _quiet():
            torch.onnx.export(
                model, example, buffer,  # type: ignore[arg-type]  # a file object works, the stubs say path
                dynamo=False, input_names=names, output_names=outputs, dynamic_axes=axes, opset_version=options.opset,
            )  # fmt: skip
        return onnx.load_from_string(buffer.getvalue())

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            results = _outputs(_callable(model)(*_tensors(feeds)))
        return dict(zip(output_names, results, strict=True))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines and torchvision notices: mlpack reports its own progress."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
