"""Pure comparison of outputs: no I/O, no runtime, only numpy. verify() and build() gather and call it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlpack.manifest import Tolerance

# Defaults by output kind. Measured here: thread count moves forest probabilities by up to 7.7e-7 and
# boosted regressors by 1.2e-4 absolute; real model changes move them by 1e-2 or more.
DEFAULT_TOLERANCES = {
    "probabilities": Tolerance(atol=1e-4, rtol=1e-3),
    "value": Tolerance(atol=1e-5, rtol=1e-4),
    "label": Tolerance(atol=0.0, rtol=0.0),
}


@dataclass(frozen=True)
class OutputComparison:
    name: str
    kind: str
    shape: tuple[int, ...]
    identical: bool  # every bit equal
    passed: bool
    max_abs: float
    max_rel: float
    max_ulp: int | None  # float outputs only, over elements whose reference is not tiny
    outside: int  # elements outside tolerance
    total: int
    tied_rows: int  # label rows excused because the reference top-2 probabilities were within tolerance
    worst: dict[str, Any] | None  # index, expected, actual of the largest deviation
    problem: str | None  # shape or dtype disagreement, NaNs where there were none

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: infinities and NaN become strings, since JSON has no such numbers."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        for key in ("max_abs", "max_rel"):
            if not np.isfinite(data[key]):
                data[key] = str(data[key])
        if data["worst"]:
            data["worst"] = {
                k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v) for k, v in data["worst"].items()
            }
        return data


def _ordered(values: np.ndarray) -> np.ndarray:
    """Map floats to integers whose difference counts the representable values between them (ULPs)."""
    bits = np.dtype(f"int{8 * values.dtype.itemsize}")
    ints = values.view(bits).astype(np.int64)
    return np.asarray(np.where(ints < 0, int(np.iinfo(bits).min) - ints, ints))


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _top2_gap(probabilities: np.ndarray) -> np.ndarray:
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        return np.full(probabilities.shape[0], np.inf)
    top = np.sort(probabilities, axis=1)[:, -2:]
    return np.asarray(top[:, 1] - top[:, 0])


def compare_output(
    name: str,
    kind: str,
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: Tolerance,
    reference_probabilities: np.ndarray | None = None,
    probability_tolerance: Tolerance | None = None,
) -> OutputComparison:
    shape = tuple(int(d) for d in expected.shape)

    def result(**kw: Any) -> OutputComparison:
        base: dict[str, Any] = dict(
            name=name,
            kind=kind,
            shape=shape,
            identical=False,
            passed=False,
            max_abs=float("inf"),
            max_rel=float("inf"),
            max_ulp=None,
            outside=int(expected.size),
            total=int(expected.size),
            tied_rows=0,
            worst=None,
            problem=None,
        )
        base.update(kw)
        return OutputComparison(**base)

    if expected.shape != actual.shape:
        return result(problem=f"shape {list(actual.shape)} differs from the reference {list(expected.shape)}")
    if expected.dtype != actual.dtype and not (expected.dtype.kind in "US" and actual.dtype.kind in "USO"):
        return result(problem=f"dtype {actual.dtype} differs from the reference {expected.dtype}")

    if expected.dtype.kind not in "fc":
        equal = expected == actual.astype(expected.dtype)
        mismatched = ~equal
        tied = 0
        if mismatched.any() and reference_probabilities is not None and expected.ndim >= 1:
            tol = probability_tolerance or DEFAULT_TOLERANCES["probabilities"]
            gap = _top2_gap(reference_probabilities)
            row_bad = mismatched.reshape(expected.shape[0], -1).any(axis=1)
            excused = row_bad & (gap <= 2 * (tol.atol + tol.rtol))
            tied = int(excused.sum())
            mismatched = mismatched & ~excused.reshape((-1,) + (1,) * (expected.ndim - 1))
        outside = int(mismatched.sum())
        worst = None
        if (~equal).any():
            index = tuple(int(i) for i in np.argwhere(~equal)[0])
            worst = {"index": list(index), "expected": _scalar(expected[index]), "actual": _scalar(actual[index])}
        return result(
            identical=bool(equal.all()),
            passed=outside == 0,
            max_abs=0.0 if equal.all() else float("nan"),
            max_rel=0.0 if equal.all() else float("nan"),
            outside=outside,
            tied_rows=tied,
            worst=worst,
        )

    identical = expected.tobytes() == actual.tobytes()
    exp64, act64 = expected.astype(np.float64), actual.astype(np.float64)
    both_nan = np.isnan(exp64) & np.isnan(act64)
    diff = np.where(both_nan, 0.0, np.abs(exp64 - act64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only is as wrong as it gets
    scale = np.abs(exp64)
    rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    outside_mask = diff > tolerance.atol + tolerance.rtol * np.nan_to_num(scale)
    max_ulp = None
    significant = (scale > max(tolerance.atol, np.finfo(expected.dtype).tiny)) & ~np.isnan(act64)
    if significant.any():
        ulps = np.abs(_ordered(expected[significant]) - _ordered(actual[significant]))
        max_ulp = int(ulps.max())
    worst = None
    if diff.size and diff.max() > 0:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        worst = {"index": list(index), "expected": float(exp64[index]), "actual": float(act64[index])}
    return result(
        identical=identical,
        passed=not outside_mask.any(),
        max_abs=float(diff.max()) if diff.size else 0.0,
        max_rel=float(rel.max()) if rel.size else 0.0,
        max_ulp=max_ulp,
        outside=int(outside_mask.sum()),
        worst=worst,
    )


def compare(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    tolerances: Mapping[str, Tolerance],
) -> list[OutputComparison]:
    """Compare every output; label outputs are excused on rows the reference probabilities call a tie."""
    probabilities = next((n for n, k in kinds.items() if k == "probabilities"), None)
    comparisons = []
    for name in expected:
        if name not in actual:
            comparisons.append(compare_output(name, kinds[name], expected[name], np.empty((0,)), tolerances[name]))
            continue
        pair = probabilities if kinds[name] == "label" and probabilities else None
        comparisons.append(
            compare_output(
                name,
                kinds[name],
                expected[name],
                actual[name],
                tolerances[name],
                expected[pair] if pair else None,
                tolerances[pair] if pair else None,
            )
        )
    return comparisons


def verdict(comparisons: list[OutputComparison]) -> str:
    if all(c.identical for c in comparisons):
        return "identical"
    if all(c.passed for c in comparisons):
        return "equivalent"
    return "mismatch"


def resolve_tolerances(
    kinds: Mapping[str, str],
    overrides: Mapping[str, Any] | float | None = None,
    defaults: Mapping[str, Tolerance] | None = None,
) -> dict[str, Tolerance]:
    """Defaults by kind (the family's, else the generic ones), overridden per output name or kind
    ({"probabilities": {"atol": 1e-3}}), or one float atol for all float outputs."""
    resolved = {}
    for name, kind in kinds.items():
        tol = (defaults or {}).get(kind) or DEFAULT_TOLERANCES[kind]
        if isinstance(overrides, (int, float)) and kind != "label":
            tol = Tolerance(atol=float(overrides), rtol=tol.rtol)
        elif isinstance(overrides, Mapping):
            for key in (kind, name):  # a name beats a kind
                spec = overrides.get(key)
                if isinstance(spec, Mapping):
                    tol = Tolerance(
                        atol=float(spec.get("atol", tol.atol)),
                        rtol=float(spec.get("rtol", tol.rtol)),
                        labels=str(spec.get("labels", tol.labels)),
                    )
        resolved[name] = tol
    return resolved
