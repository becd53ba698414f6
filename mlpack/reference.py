"""onnxruntime sessions with recorded options, model signatures, and golden-output runs."""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpack.errors import RuntimeEnvironmentError, UsageError
from mlpack.manifest import SessionSettings, TensorSpec
from mlpack.tensors import LABEL_TYPES, bfloat16, is_bfloat16

if TYPE_CHECKING:
    from mlpack.package import Package


def replay_settings(recorded: SessionSettings, threads: int | None = None) -> SessionSettings:
    """The recorded options with another thread count if asked, and never more threads than this machine
    has cores: the count comes from a package, and a package must not start thousands of threads."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be a whole number of at least 1, not {threads}.")
        recorded = replace(recorded, intra_op_num_threads=threads)
    cores = os.cpu_count() or 1
    if recorded.intra_op_num_threads > cores:
        recorded = replace(recorded, intra_op_num_threads=cores)
    return recorded


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        from importlib.util import find_spec

        if find_spec("onnxruntime") is None:
            raise RuntimeEnvironmentError(
                "onnxruntime is not installed here: run pip install onnxruntime."
            ) from None
        raise RuntimeEnvironmentError(f"onnxruntime is installed here but could not be imported: {exc}") from None
    onnxruntime.set_default_logger_severity(4)  # mlpack reports failures itself, in one sentence
    return onnxruntime


def replay_golden(package: Package, settings: SessionSettings) -> tuple[dict[str, np.ndarray], None]:
    """What this machine gives for a package's golden inputs with the given options (and None: the hardware
    is this machine's). Kept light: an emulated machine class imports this and little else."""
    from mlpack.fileio import load_npz

    manifest, root = package.manifest, package.path
    session = open_session(root / manifest.model.file, settings)
    feeds = load_npz(root / manifest.reference.inputs)
    return run(session, feeds, manifest.reference.row_batches, manifest.reference.runs), None


def open_session(model: bytes | Path, settings: SessionSettings, *, keep_memory: bool = True) -> Any:
    """A session with the recorded options. ``keep_memory=False`` turns off onnxruntime's CPU memory arena,
    which otherwise keeps the largest request's buffers for the life of the process (serve: RSS stayed
    83 MiB up after one maximal request); the arena changes no result."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_num_threads
    options.inter_op_num_threads = settings.inter_op_num_threads
    options.execution_mode = getattr(ort.ExecutionMode, settings.execution_mode)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization_level)
    options.log_severity_level = 4  # fatal only: a failure reaches the user as one sentence, not a log line
    options.enable_cpu_mem_arena = keep_memory
    missing = [p for p in settings.providers if p not in ort.get_available_providers()]
    if missing:
        raise RuntimeEnvironmentError(f"onnxruntime here lacks the recorded providers {missing}.")
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=list(settings.providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        locale = _LOCALE.search(str(exc))
        if locale:
            raise RuntimeEnvironmentError(
                f"The model lowercases text with onnxruntime's StringNormalizer, which needs the locale "
                f"{locale[1]}, and this machine lacks it: generate it (locale-gen {locale[1]}, or install "
                "Debian's locales-all) or run the package where it exists."
            ) from None
        raise RuntimeEnvironmentError(
            f"onnxruntime {ort.__version__} cannot load the model: {ort_reason(exc)}"
        ) from None


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (Load model from .*? failed:)?")
# "/onnxruntime_src/.../string_normalizer.cc:235 onnxruntime::StringNormalizer::Locale(...)::<lambda()> " before
# the reason: the C++ source and signature say nothing to a user but which kernel it was
_ORT_SOURCE = re.compile(r"\S*onnxruntime_src/\S*?(\w+)\.(?:cc|h|cpp):\d+ .*?\)(?:::<lambda\(\)>)? (?=[A-Z])")


_LOCALE = re.compile(r"Failed to construct locale with name:\s*([\w.@-]+)")
_ORT_OPSET = re.compile(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)")


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's error as one readable sentence: its code prefix, temporary paths and C++ source
    locations dropped, the kernel's file kept as a hint to the node."""
    text = " ".join(str(exc).split())
    text = _ORT_PREFIX.sub("", text)
    opset = _ORT_OPSET.search(text)
    if opset:
        return f"the model's opset {opset[1]} of {opset[2]} is newer than this onnxruntime supports (up to {opset[3]})"
    found = _ORT_SOURCE.search(text)
    text = _ORT_SOURCE.sub("", text).strip()
    if len(text) > 300:
        text = text[:300].rsplit(" ", 1)[0] + " …"
    return text + (f" (in onnxruntime's {found.group(1)})" if found else "")


def _dim(value: Any) -> int | str:
    return value if isinstance(value, int) else str(value or "?")


def signature(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as the runtime sees them: name, type, shape with symbolic dims as strings."""

    def describe(args: Any) -> list[TensorSpec]:
        return [TensorSpec(a.name, a.type, tuple(_dim(d) for d in (a.shape or []))) for a in args]

    return describe(session.get_inputs()), describe(session.get_outputs())


def fixed_batch(inputs: Sequence[TensorSpec]) -> int | None:
    """The batch size every input fixes on its leading axis, when they all fix the same one."""
    leading = {spec.shape[0] if spec.shape else None for spec in inputs}
    if len(leading) == 1:
        (first,) = leading
        if isinstance(first, int) and first > 0:
            return first
    return None


def shared_rows(inputs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray]) -> int | None:
    """The sample's row count where rows mean something: the model has a batch axis shared by every input
    (dynamic on all of them, or the same fixed size) and every input has the same number of rows. None for
    scalars, inputs of different leading sizes, or models without a batch axis: their sample is one run."""
    arrays = list(feeds.values())
    if not arrays or any(array.ndim == 0 for array in arrays) or len({a.shape[0] for a in arrays}) != 1:
        return None
    dynamic = all(spec.shape and not (isinstance(spec.shape[0], int) and spec.shape[0] > 0) for spec in inputs)
    return arrays[0].shape[0] if dynamic or fixed_batch(inputs) else None


def needs_row_batches(inputs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray]) -> bool:
    """A model with a fixed batch runs the sample a batch at a time; everything else in one call."""
    batch, rows = fixed_batch(inputs), shared_rows(inputs, feeds)
    return batch is not None and rows is not None and rows > batch


def run(
    session: Any, feeds: Mapping[str, np.ndarray], row_batches: bool = False, runs: int = 1
) -> dict[str, np.ndarray]:
    """The outputs for ``feeds``; with ``row_batches``, in pieces of the model's fixed batch, concatenated;
    with ``runs`` > 1, each run (a slice of the leading axis every tensor stacks) on its own, stacked the same
    way. Sequences and maps come back as arrays (``as_array``), so that they are stored and compared like
    tensors."""
    if runs > 1:
        return each_run(feeds, runs, lambda one: run(session, one, row_batches))
    outs = session.get_outputs()
    names = [o.name for o in outs]

    def call(chunk: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [
            as_array(o.name, value, o.type) for o, value in zip(outs, infer(session, names, chunk), strict=True)
        ]

    if not row_batches:
        results = call(feeds)
    else:
        batch = fixed_batch(signature(session)[0]) or 1
        rows = next(iter(feeds.values())).shape[0]
        parts = [call({k: v[i : i + batch] for k, v in feeds.items()}) for i in range(0, rows, batch)]
        results = [np.concatenate([part[j] for part in parts]) for j in range(len(names))]
    return dict(zip(names, results, strict=True))


def each_run(
    feeds: Mapping[str, np.ndarray], runs: int, call: Callable[[dict[str, np.ndarray]], Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """``call`` on each of ``runs`` separate golden runs (slices of the leading axis every tensor stacks), its
    outputs stacked the same way; one sentence when an output's shape changes from run to run."""
    each = [{name: np.asarray(value) for name, value in call({k: v[i] for k, v in feeds.items()}).items()}
            for i in range(runs)]  # fmt: skip
    for name in each[0]:
        if len({(one[name].shape, one[name].dtype) for one in each}) != 1:
            raise UsageError(
                f"Output {name!r} comes out in different shapes from one golden run to the next; separate "
                "runs are stored stacked, so give one test_data_set folder."
            )
    return {name: np.stack([one[name] for one in each]) for name in each[0]}


def infer(session: Any, names: list[str], feeds: Mapping[str, np.ndarray]) -> list[Any]:
    """``session.run``, except that bfloat16 tensors, which onnxruntime's Python API cannot pass as numpy
    arrays, go in and come out through OrtValues, as ml_dtypes' bfloat16 arrays."""
    types = {spec.name: spec.type for spec in session.get_outputs()}
    if not any(is_bfloat16(v.dtype) for v in feeds.values()) and all(
        types[n] != "tensor(bfloat16)" for n in names
    ):
        return list(session.run(names, dict(feeds)))
    ort_value = _ort().OrtValue
    values = {
        name: ort_value.ortvalue_from_numpy_with_onnx_type(np.ascontiguousarray(value).view(np.uint16), 16)
        if is_bfloat16(value.dtype)  # 16: TensorProto.BFLOAT16
        else ort_value.ortvalue_from_numpy(np.ascontiguousarray(value))
        for name, value in feeds.items()
    }
    return [_from_ort_value(value) for value in session.run_with_ort_values(names, values)]


def _from_ort_value(value: Any) -> Any:
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    out = np.empty(value.shape(), dtype=np.uint16)
    ctypes.memmove(out.ctypes.data, value.data_ptr(), out.nbytes)  # a CPU tensor's bytes, copied out
    return out.view(bfloat16())  # onnxruntime gave a bfloat16 tensor: the model needs ml_dtypes


_MAP_VALUES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def as_array(name: str, value: Any, onnx_type: str) -> np.ndarray:
    """An output as an array. A tensor is itself. A sequence of maps (ZipMap: one {class: probability} per
    row) becomes a structured array with one field per key, in the maps' order, so that the keys are compared
    as the dtype and the values as numbers. A sequence of tensors of one shape is stacked."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        keys = list(value[0])
        if any(list(item) != keys for item in value):
            raise UsageError(f"Output {name!r} is a sequence of maps whose keys differ from map to map.")
        found = re.search(r"map\(\w+,\s*(tensor\(\w+\))\)", onnx_type)
        values = _MAP_VALUES.get(found[1]) if found else None
        if values is None:
            raise UsageError(f"Output {name!r} is a {onnx_type}, whose values mlpack cannot store.")
        dtype = np.dtype([(str(key), values) for key in keys])
        return np.array([tuple(item[key] for key in keys) for item in value], dtype=dtype)
    if isinstance(value, list) and value and all(isinstance(item, np.ndarray) for item in value):
        if len({(item.shape, item.dtype) for item in value}) != 1:
            raise UsageError(f"Output {name!r} is a sequence of tensors of different shapes or types.")
        return np.stack(value)
    raise UsageError(
        f"Output {name!r} is a {onnx_type} that mlpack cannot store: tensors, sequences of maps (ZipMap) and "
        "sequences of same-shaped tensors are supported."
    )


def output_kind(spec: TensorSpec) -> str:
    """label, probabilities or value: decides the default tolerance."""
    if spec.type in LABEL_TYPES:
        return "label"
    if "prob" in spec.name.lower():
        return "probabilities"
    return "value"
