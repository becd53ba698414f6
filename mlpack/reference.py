"""onnxruntime sessions with recorded options, model signatures, and golden-output runs."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.errors import RuntimeEnvironmentError, UsageError
from mlpack.manifest import SessionSettings, TensorSpec
from mlpack.tensors import LABEL_TYPES


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
    return onnxruntime


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
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = keep_memory
    missing = [p for p in settings.providers if p not in ort.get_available_providers()]
    if missing:
        raise RuntimeEnvironmentError(f"onnxruntime here lacks the recorded providers {missing}.")
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=list(settings.providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        first = str(exc).strip().splitlines()[0][:400]
        raise RuntimeEnvironmentError(f"onnxruntime {ort.__version__} cannot load the model: {first}") from None


def _dim(value: Any) -> int | str:
    return value if isinstance(value, int) else str(value or "?")


def signature(session: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as the runtime sees them: name, type, shape with symbolic dims as strings."""

    def describe(args: Any) -> list[TensorSpec]:
        return [TensorSpec(a.name, a.type, tuple(_dim(d) for d in (a.shape or []))) for a in args]

    return describe(session.get_inputs()), describe(session.get_outputs())


def needs_row_batches(inputs: list[TensorSpec], rows: int) -> bool:
    """A model with a fixed batch of 1 runs row by row; everything else runs the sample in one call."""
    return rows > 1 and any(spec.shape[:1] == (1,) for spec in inputs)


def run(session: Any, feeds: dict[str, np.ndarray], row_batches: bool = False) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    if not row_batches:
        results = session.run(names, feeds)
    else:
        rows = next(iter(feeds.values())).shape[0]
        parts = [session.run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(rows)]
        results = [np.concatenate([part[j] for part in parts]) for j in range(len(names))]
    outputs = {}
    for name, value in zip(names, results, strict=True):
        if not isinstance(value, np.ndarray):
            raise RuntimeEnvironmentError(
                f"Output {name!r} is not a tensor (sequence or map outputs such as ZipMap are not supported)."
            )
        outputs[name] = value
    return outputs


def output_kind(spec: TensorSpec) -> str:
    """label, probabilities or value: decides the default tolerance."""
    if spec.type in LABEL_TYPES:
        return "label"
    if "prob" in spec.name.lower():
        return "probabilities"
    return "value"
