"""Build-time speed figures: onnxruntime against the native model at batch 1 and 1024, so users see what
they gain. Left out under SOURCE_DATE_EPOCH, where wall-clock readings would break the reproducible digest."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlpack import clock
from mlpack.convert import Converter

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
    session: Any, converter: Converter, model: Any, feeds: dict[str, np.ndarray], outputs: list[str],
    conversion_s: float, row_batches: bool,
) -> dict[str, Any]:  # fmt: skip
    if clock.reproducible():
        return {"omitted": "SOURCE_DATE_EPOCH is set: wall-clock figures would change the reproducible digest"}
    figures: dict[str, Any] = {"conversion_s": round(conversion_s, 4)}
    for batch in TIMING_BATCHES:
        if row_batches and batch > 1:
            continue
        rows = {k: np.ascontiguousarray(v[np.arange(batch) % len(v)]) for k, v in feeds.items()}
        entry = {"onnxruntime_ms": best_ms(lambda: session.run(outputs, rows))}  # noqa: B023 - runs at once
        if converter.native_runs:
            entry["native_ms"] = best_ms(lambda: converter.predict(model, rows, outputs))  # noqa: B023
            entry["speedup"] = round(entry["native_ms"] / max(entry["onnxruntime_ms"], 1e-6), 2)
        figures[f"batch_{batch}"] = entry
    return figures
