"""Build-time speed figures: onnxruntime against the native model at batch 1 and 1024, so users see what
they gain. Left out under SOURCE_DATE_EPOCH, where wall-clock readings would break the reproducible digest."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpack import clock, reference
from mlpack.convert import Converter
from mlpack.manifest import TensorSpec

TIMING_BATCHES = (1, 1024)


def best_ms(run: Callable[[], Any], budget_s: float = 0.3, at_most: int = 20) -> float:
    """Best of several runs (the least disturbed), within a small time budget."""
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for _ in range(at_most):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return round(best * 1000, 4)


def performance(
    session: Any, converter: Converter, model: Any, inputs: list[TensorSpec], feeds: dict[str, np.ndarray],
    outputs: list[str], conversion_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Times at the batches the model takes: 1 and 1024 rows for a dynamic batch, its own batch for a fixed
    one, the sample as given for a model without a batch axis. A run that fails is recorded with its reason
    and never fails the build."""
    if clock.reproducible():
        return {"omitted": "SOURCE_DATE_EPOCH is set: wall-clock figures would change the reproducible digest"}
    figures: dict[str, Any] = {"conversion_s": round(conversion_s, 4)}
    fixed = reference.fixed_batch(inputs)
    if reference.shared_rows(inputs, feeds) is None:
        batches: dict[str, dict[str, np.ndarray]] = {"sample": feeds}
    else:
        sizes = (fixed,) if fixed else TIMING_BATCHES
        batches = {f"batch_{n}": {k: np.ascontiguousarray(v[np.arange(n) % len(v)]) for k, v in feeds.items()}
                   for n in sizes}  # fmt: skip
    for key, rows in batches.items():
        try:
            entry = {"onnxruntime_ms": best_ms(lambda: reference.infer(session, outputs, rows))}  # noqa: B023
            if converter.native_runs:
                entry["native_ms"] = best_ms(lambda: converter.predict(model, rows, outputs))  # noqa: B023
                entry["speedup"] = round(entry["native_ms"] / max(entry["onnxruntime_ms"], 1e-6), 2)
        except Exception as exc:  # timing is informative: what cannot be timed says why
            figures[key] = {"omitted": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"}
            continue
        figures[key] = entry
    return figures
