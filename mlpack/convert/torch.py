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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Description, Trust, class_name, require
from mlpack.errors import ConversionError, UsageError
from mlpack.manifest import Tolerance
from mlpack.sample import by_position

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx

DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and newer
# About 40-400x the worst parity measured here (MLP 1.2e-7, CNN 2.4e-7 abs): graph optimisation levels
# move MLP/CNN outputs by up to ~400 ULP, so relative tolerance is wider than for trees.
TOLERANCES = {"probabilities": Tolerance(atol=1e-5, rtol=1e-4), "value": Tolerance(atol=1e-5, rtol=1e-4)}


def _parameters(model: Any) -> list[tuple[str, bool]] | None:
    """forward()'s parameters that can take a tensor, as (name, has a default), in order; None when the
    signature cannot be read."""
    target = _callable(model)
    schema = getattr(getattr(target, "forward", None), "schema", None)
    if schema is not None:  # TorchScript: the compiled schema, whose first argument is self
        return [(arg.name, arg.has_default_value()) for arg in schema.arguments[1:]]
    try:
        params = inspect.signature(target.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return None
    tensors = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [(p.name, p.default is not inspect.Parameter.empty) for p in params if p.kind in tensors]


def bind_inputs(model: Any, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sample keyed by forward()'s parameter names, in forward()'s order. Tensors reach the model by
    name: a dict given in another order than forward() once fed each tensor to the wrong parameter, and the
    parity check, which called the model the same wrong way, could not see it."""
    params = _parameters(model)
    if set(sample) == {""}:
        return {params[0][0] if params else "input": sample[""]}
    if params is None:
        return dict(sample)
    names = [name for name, _ in params]
    if any(key.startswith("#") for key in sample):  # a tuple: forward()'s parameters in order
        if len(sample) > len(names):
            raise UsageError(
                f"The sample's tuple holds {len(sample)} tensors; forward({', '.join(names)}) takes {len(names)}."
            )
        sample = by_position(sample, names)
    signature = f"forward({', '.join(names)})"
    for key in sample:
        if key not in names:
            raise UsageError(f"The sample names the input {key!r}, which is not a parameter of {signature}.")
    missing = [name for name, has_default in params if not has_default and name not in sample]
    if missing:
        raise UsageError(f"The sample gives no {missing[0]!r}, which {signature} needs.")
    return {name: sample[name] for name in names if name in sample}


def _dynamic_axes(
    arrays: dict[str, np.ndarray], extra: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[int, str]]:
    """Every input's dynamic axes: the batch, then those the user named, checked against the sample."""
    for name, named in extra.items():
        if name not in arrays:
            raise UsageError(f"Dynamic axes are given for {name!r}, which is not an input ({', '.join(arrays)}).")
        for axis in named:
            if axis >= arrays[name].ndim:
                raise UsageError(
                    f"Input {name!r} has {arrays[name].ndim} dimensions: it has no axis {axis} to make dynamic."
                )
    return {name: {0: "batch", **extra.get(name, {})} for name in arrays}


class FrozenTrace(ConversionError):
    """The legacy exporter traced a data-dependent branch or loop into a constant."""


def _tensors(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    # copies: a forward that edits its input in place (x.sub_(1)) must not change the golden inputs
    return {name: torch.from_numpy(np.array(value, copy=True, order="C")) for name, value in feeds.items()}


def _flatten(result: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Output tensors with stable names: a dict's keys (Hugging Face ModelOutput is one) or a named tuple's
    fields, joined with "." when nested; a tuple's items by position; a lone tensor is "output"."""
    import torch

    def join(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    if isinstance(result, torch.Tensor):
        return [(prefix or "output", result)]
    if isinstance(result, dict):
        return [
            item for key, value in result.items() if value is not None for item in _flatten(value, join(str(key)))
        ]
    if isinstance(result, tuple) and hasattr(result, "_fields"):
        return [item for key in result._fields for item in _flatten(getattr(result, key), join(key))]
    if isinstance(result, (tuple, list)):
        stem = prefix or "output"
        return [item for i, value in enumerate(result) for item in _flatten(value, f"{stem}_{i}")]
    raise UsageError(
        f"The model returns a {type(result).__name__}; mlpack needs tensors, or tuples, lists or dicts of them."
    )


def _call(model: Any, tensors: dict[str, Any]) -> Any:
    """The model called with each tensor bound to the parameter it is named for. A torch.export program
    takes its leading inputs by position, as it was exported, and the rest by keyword."""
    if type(model).__name__ != "ExportedProgram":
        return model(**tensors)
    names = [name for name, _ in _parameters(model) or []] or list(tensors)
    ordered = [name for name in names if name in tensors]
    spec = model.call_spec.in_spec  # (args, kwargs)
    positional = (spec.child(0) if hasattr(spec, "child") else spec.children_specs[0]).num_children
    args = [tensors[name] for name in ordered[:positional]]
    return model.module()(*args, **{name: tensors[name] for name in ordered[positional:]})


def _outputs(result: Any) -> list[np.ndarray]:
    return [value.detach().cpu().numpy() for _, value in _flatten(result)]


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
        arrays = bind_inputs(model, sample)
        if options.dynamic and type(model).__name__ == "ExportedProgram":
            raise UsageError(
                "A torch.export program keeps the shapes it was exported with: give dynamic_shapes to "
                "torch.export.export instead of --dynamic."
            )
        axes = _dynamic_axes(arrays, options.dynamic)
        parameters = getattr(model, "parameters", None)
        if (
            options.precision == "float32"
            and callable(parameters)
            and any(p.dtype == torch.float64 for p in parameters())
        ):
            raise UsageError(
                "The model computes in float64 (its parameters are torch.float64): build with --precision "
                "float64, or convert the model with .float() first."
            )
        casts: dict[str, str] = {}
        for name, array in arrays.items():
            if array.dtype == np.float64 and options.precision == "float32":
                arrays[name] = array.astype(np.float32)
                casts[name] = "float64->float32"
        # two rows at least: torch.export specialises a batch of one into a constant
        example = {
            name: torch.from_numpy(np.ascontiguousarray(a[np.arange(2) % len(a)])) for name, a in arrays.items()
        }
        details: dict[str, Any] = {}
        if options.dynamic:
            details["dynamic_axes"] = {
                name: {str(a): d for a, d in named.items()} for name, named in options.dynamic.items()
            }
        with _eval_mode(model, details):
            with torch.no_grad():
                output_names = [name for name, _ in _flatten(_call(model, example))]
            try:
                onx = self._dynamo(model, example, output_names, axes, options)
                details["exporter"] = "dynamo"
            except Exception as exc:
                if type(model).__name__ == "ExportedProgram":
                    raise ConversionError(f"torch.onnx could not export the program: {str(exc)[:300]}") from None
                details["exporter"] = "legacy"
                details["dynamo_failure"] = str(exc).strip().splitlines()[0][:300]
                try:
                    onx = self._legacy(model, example, output_names, axes, options)
                except FrozenTrace as frozen:
                    raise frozen from None  # the dynamo failure that led here is not the story
                except Exception as legacy_exc:
                    raise ConversionError(
                        f"torch.onnx could not export {type(model).__name__} (dynamo: {details['dynamo_failure']}; "
                        f"legacy: {str(legacy_exc).strip().splitlines()[0][:200]})"
                    ) from None
        return Converted(model=onx, input_cast=casts, details=details)

    def _dynamo(self, model: Any, example: dict[str, Any], outputs: list[str], axes: dict[str, dict[int, str]],
                options: ConvertOptions) -> onnx.ModelProto:  # fmt: skip
        import torch

        opset = max(options.opset, DYNAMO_MIN_OPSET)
        kwargs: dict[str, Any] = {"output_names": outputs, "opset_version": opset}
        if type(model).__name__ != "ExportedProgram":
            dims: dict[str, Any] = {}  # one Dim per name: axes that share a name share a size

            def dim(label: str) -> Any:
                return dims.setdefault(label, torch.export.Dim(label))

            kwargs["dynamic_shapes"] = {
                name: {axis: dim(label) for axis, label in axes[name].items()} for name in example
            }
            kwargs["input_names"] = list(example)
        with _quiet():
            # by keyword: each tensor reaches the parameter it is named for, whatever the sample's order
            program = torch.onnx.export(model, (), kwargs=example, dynamo=True, verbose=False, **kwargs)
        if program is None:
            raise ConversionError("torch.onnx.export returned no program.")
        return program.model_proto

    def _legacy(self, model: Any, example: dict[str, Any], outputs: list[str], axes: dict[str, dict[int, str]],
                options: ConvertOptions) -> onnx.ModelProto:  # fmt: skip
        import onnx
        import torch

        params = [name for name, _ in _parameters(model) or []]
        given = list(example)
        if params and given != params[: len(given)]:  # the legacy exporter passes inputs by position
            raise ConversionError(
                f"the legacy exporter passes inputs by position, and the sample gives {given} of forward({', '.join(params)}): "
                "give every parameter up to the last one given"
            )
        from torch.jit._trace import TracerWarning

        buffer = io.BytesIO()
        dynamic = {**{name: {0: "batch"} for name in outputs}, **axes}
        with _quiet(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TracerWarning)
            torch.onnx.export(
                model, tuple(example.values()), buffer,  # type: ignore[arg-type]  # a file object works, the stubs say path
                dynamo=False, input_names=given, output_names=outputs, dynamic_axes=dynamic, opset_version=options.opset,
            )  # fmt: skip
        # tracing runs forward once: a Python value read from a tensor (an `if` on x.sum(), a loop over
        # x.shape[0] as int) becomes a constant, and the graph answers every input as the example did
        frozen = [w for w in caught if issubclass(w.category, TracerWarning)
                  and "trace to be incorrect" in str(w.message)]  # fmt: skip
        if frozen:
            where = f"{Path(frozen[0].filename).name}:{frozen[0].lineno}"
            raise FrozenTrace(
                f"forward reads a Python value from a tensor ({where}: {str(frozen[0].message).split('.')[0]}), "
                "and the legacy exporter, which torch.export's failure leaves, traces it as a constant: the "
                "package would answer every input as the sample's branch does. Write it with torch.where or "
                "torch.cond, or without data-dependent Python control flow"
            )
        return onnx.load_from_string(buffer.getvalue())

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad(), _eval_mode(model):
            results = _outputs(_call(model, _tensors(feeds)))  # by name, as the ONNX model is fed
        return dict(zip(output_names, results, strict=True))


@contextlib.contextmanager
def _eval_mode(model: Any, details: dict[str, Any] | None = None) -> Iterator[None]:
    """Export and run in eval mode (dropout off, batch norm on its running statistics), then give the user's
    object back in the mode it was in; a model left in training mode is noted in ``details`` (the manifest)."""
    training = bool(getattr(model, "training", False))
    if training:
        if details is not None:
            details["note"] = (
                "the model was in training mode: exported in eval mode, then put back in training mode"
            )
        model.eval()
    try:
        yield
    finally:
        if training:
            model.train()


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
