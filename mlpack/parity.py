"""Conversion parity: does the ONNX model reproduce the native model on the golden inputs? Pure apart from
running the native model through its family's ``predict``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlpack import compare, reference
from mlpack.convert import Converter
from mlpack.errors import ParityError
from mlpack.manifest import Tolerance


def native_like(native: Mapping[str, Any], like: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bring native outputs to the ONNX outputs' shapes and dtypes so that values are what is compared."""
    shaped = {}
    for name, value in native.items():
        target = like[name]
        array = np.asarray(value)
        if target.dtype.names is not None and array.dtype.names is None:  # a ZipMap's maps: a field per class
            if array.ndim != 2 or array.shape != (len(target), len(target.dtype.names)):
                shaped[name] = array  # no map per row: compare reports the shapes
                continue
            from numpy.lib.recfunctions import unstructured_to_structured

            array = unstructured_to_structured(array.astype(target.dtype[0]), dtype=target.dtype)
        elif array.size == target.size and array.shape != target.shape:
            array = array.reshape(target.shape)
        if target.dtype.kind in "US":
            array = array.astype(str)
        elif array.dtype != target.dtype and array.dtype.kind in "biuf":
            array = array.astype(target.dtype)
        shaped[name] = array
    return shaped


def difference(c: compare.OutputComparison) -> str:
    """A failed comparison in a few words: labels differ in so many rows, values by so much."""
    if c.problem:
        return c.problem
    if c.kind == "label" or not np.isfinite(c.max_abs):
        return f"{c.outside} of {c.total} differ"
    return f"{c.outside} of {c.total} elements outside tolerance, max abs {c.max_abs:.3g}"


def message(
    comparisons: list[compare.OutputComparison],
    subject: str = "The ONNX conversion does not reproduce the native model",
) -> str:
    parts = [f"{c.name}: {difference(c)}" for c in comparisons if not c.passed]
    if all(small(c) for c in comparisons if not c.passed):
        return (
            f"{subject} (" + "; ".join(parts) + "); "
            "pass --accept-parity to package it anyway, and the manifest will say so."
        )
    failed = [c for c in comparisons if not c.passed and not c.problem]
    if failed and all(c.outside <= max(1, 0.05 * c.total) for c in failed):  # a few elements, far off
        return (
            f"{subject} (" + "; ".join(parts) + "): a few rows land on the other side of a threshold or decision "
            "boundary once inputs are float32 (trees after a scaler do this); try --precision float64: no "
            "tolerance fixes it, those rows would get other answers."
        )
    return (
        f"{subject} (" + "; ".join(parts) + "): this is no rounding difference, the ONNX model computes "
        "something else (another task, labels, or large errors); check the model type and the sample."
    )


SMALL_ATOL = 1e-3  # a float disagreement above this is no rounding difference, whatever the tolerance


def small(c: compare.OutputComparison) -> bool:
    """A disagreement a user may reasonably accept: float values only (no label, shape or type changes), no
    class ranking changed, and an atol of at most SMALL_ATOL would pass it."""
    if c.problem or c.kind == "label" or c.min_atol is None or not c.min_atol <= SMALL_ATOL:
        return False
    return c.top1_agreement is None or c.top1_agreement >= 1.0


def check(
    converter: Converter,
    model: Any,
    feeds: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    kinds: dict[str, str],
    tolerances: dict[str, Tolerance],
    accept: bool,
    runs: int = 1,
) -> tuple[list[compare.OutputComparison], bool]:
    """Compare the native model's outputs with onnxruntime's; raise ParityError unless they agree or
    the user accepts the difference. Returns the comparisons and whether they all passed. Separate golden
    runs (``runs`` > 1, stacked along a leading axis) are predicted one by one and stacked alike."""
    if runs > 1:
        predicted = reference.each_run(feeds, runs, lambda one: converter.predict(model, one, list(outputs)))
    else:
        predicted = converter.predict(model, feeds, list(outputs))
    native = native_like(predicted, outputs)
    checked = {name: kind for name, kind in kinds.items() if name in native}
    comparisons = compare.compare(native, outputs, checked, tolerances)
    passed = all(c.passed for c in comparisons)
    comparisons += [  # e.g. an outlier detector's scores, where the native API returns labels only
        compare.not_compared(name, kind, outputs[name], "the native model gives no such output: not compared")
        for name, kind in kinds.items()
        if name not in native
    ]
    if not passed and not accept:
        raise ParityError(message(comparisons), comparisons)
    return comparisons, passed


def check_probes(
    converter: Converter,
    model: Any,
    session: Any,
    feeds: dict[str, np.ndarray],
    kinds: dict[str, str],
    tolerances: dict[str, Tolerance],
    onnx_types: Mapping[str, np.dtype],
    accept: bool = False,
) -> list[str]:
    """Parity on the family's probes (a missing value in each column that has an imputer, say): inputs the
    golden sample may lack, on which the package must still answer as the model does. Raise ParityError on
    the first disagreement (no --accept-parity: the package would treat such inputs differently); return
    what the probes checked ("a missing value in 'city'"); a probe the native model itself refuses is
    skipped. ``feeds`` are the native model's; ``onnx_types`` the package's input types.
    Where the build accepted a parity break (``accept``), a probe that disagrees only as slightly (``small``)
    passes: that much was accepted for every input."""
    probes = getattr(converter, "probes", None)
    cases = probes(model, feeds) if probes else {}
    checked = []
    for what, probe in cases.items():
        names = list(kinds)
        try:
            answered = converter.predict(model, probe, names)
        except Exception:  # the native model refuses this input itself: nothing to hold the package to
            continue
        why = (
            'in a package a missing string is "" and a missing number NaN; this model\'s handling of missing '
            "values does not convert."
            if what.startswith("a missing")
            else "this model's handling of unseen categories does not convert."
        )
        narrowed = {k: v.astype(onnx_types[k]) for k, v in probe.items()}
        try:
            onnx_outputs = dict(zip(names, reference.infer(session, names, narrowed), strict=True))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ParityError(
                f"The package fails on {what} where the native model answers (onnxruntime: {first}): {why}", []
            ) from None
        native = native_like(answered, onnx_outputs)
        comparisons = compare.compare(
            native, onnx_outputs, {n: k for n, k in kinds.items() if n in native}, tolerances
        )
        if not all(c.passed or (accept and small(c)) for c in comparisons):
            details = "; ".join(f"{c.name}: {difference(c)}" for c in comparisons if not c.passed)
            raise ParityError(
                f"The ONNX conversion treats {what} differently from the native model ({details}): {why}",
                comparisons,
            )
        checked.append(what)
    return checked


def label_coverage(results: Mapping[str, np.ndarray], kinds: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per label output with its probabilities output: how many classes the golden rows show, of how many.
    A class no golden row gives is never checked, by parity at build or by verify anywhere."""
    probabilities = [name for name, kind in kinds.items() if kind == "probabilities" and name in results]
    coverage = {}
    for name, kind in kinds.items():
        pair = compare.partner(name, probabilities) if kind == "label" and name in results else None
        scores = compare.plain(results[pair]) if pair else None
        if scores is None or scores.ndim != 2 or results[name].size != scores.shape[0]:
            continue
        seen = len({str(label) for label in results[name].ravel().tolist()})
        coverage[name] = {"classes_seen": seen, "classes": int(scores.shape[1])}
    return coverage


def check_expected(
    expected: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    kinds: dict[str, str],
    tolerances: dict[str, Tolerance],
    accept: bool,
) -> tuple[list[compare.OutputComparison], bool]:
    """Compare onnxruntime's golden outputs with outputs the user already trusts (``--expected``), every one
    of them; raise ParityError unless they agree or the user accepts the difference. Floats given wider than
    the model computes (float64 for a float32 output) are compared at the model's precision."""
    expected = {
        name: value.astype(outputs[name].dtype)
        if name in outputs and value.dtype.kind == "f" and outputs[name].dtype.kind == "f"
        else value
        for name, value in expected.items()
    }
    comparisons = compare.compare(expected, outputs, kinds, tolerances)
    passed = all(c.passed for c in comparisons)
    if not passed and not accept:
        raise ParityError(
            message(comparisons, "The golden run does not reproduce the expected outputs"), comparisons
        )
    return comparisons, passed


def refuses_nan(converter: Converter, model: Any, feeds: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """The float inputs in which the native model refuses a missing number (scikit-learn's LogisticRegression
    raises "Input X contains NaN"), tried one input at a time on the first golden row filled with NaN. A
    package would answer NaN there with a label made of NaN scores, so ``Model.predict`` and serve refuse
    it as the model does."""
    refused = []
    for name in sorted(n for n, value in feeds.items() if value.dtype.kind == "f" and value.size)[:64]:
        row = {key: value[:1].copy() for key, value in feeds.items()}
        row[name][...] = np.nan
        try:
            converter.predict(model, row, names)
        except Exception:  # the native model's own refusal, in whatever words its library uses
            refused.append(name)
    return refused
