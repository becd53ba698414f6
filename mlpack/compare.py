"""Pure comparison of outputs: no I/O, no runtime, only numpy. verify() and build() gather and call it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlpack.manifest import Tolerance
from mlpack.tensors import is_bfloat16, is_float

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
    # The distribution of the differences, as Polygraphy reports it, and what a user needs to judge them
    dtype: str = ""
    identical_elements: int = 0  # bit for bit (floats) or equal (labels, strings, bools)
    mean_abs: float = 0.0
    median_abs: float = 0.0
    p99_abs: float = 0.0
    mean_rel: float = 0.0
    median_rel: float = 0.0
    p99_rel: float = 0.0
    min_atol: float | None = None  # the smallest atol that would pass at the declared rtol (floats)
    nan_mismatches: int = 0  # NaN on one side only
    inf_mismatches: int = 0  # an infinity on one side only, or of the other sign
    top1_agreement: float | None = None  # probabilities and logits: share of rows with the same argmax
    topk_agreement: float | None = None  # share of rows with the same top-k classes (k below)
    k: int | None = None
    min_cosine: float | None = None  # outputs of rank 2 or more: the least cosine similarity of a row

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: infinities and NaN become strings, since JSON has no such numbers."""
        data = asdict(self)
        data["shape"] = list(self.shape)
        for key, value in data.items():
            if isinstance(value, float) and not np.isfinite(value):
                data[key] = str(value)
        if data["worst"]:
            data["worst"] = {
                k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v) for k, v in data["worst"].items()
            }
        return data


def ordered(values: np.ndarray) -> np.ndarray:
    """Map floats to integers whose difference counts the representable values between them (ULPs)."""
    bits = np.dtype(f"int{8 * values.dtype.itemsize}")
    ints = values.view(bits).astype(np.int64)
    return np.asarray(np.where(ints < 0, int(np.iinfo(bits).min) - ints, ints))


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _result(name: str, kind: str, expected: np.ndarray, **fields: Any) -> OutputComparison:
    """A comparison that failed unless ``fields`` say otherwise: every default is the pessimistic one."""
    base: dict[str, Any] = dict(
        name=name, kind=kind, shape=tuple(int(d) for d in expected.shape), identical=False, passed=False,
        max_abs=float("inf"), max_rel=float("inf"), max_ulp=None, outside=int(expected.size),
        total=int(expected.size), tied_rows=0, worst=None, problem=None,
    )  # fmt: skip
    base.update(fields)
    return OutputComparison(**base)


def compare_output(
    name: str,
    kind: str,
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: Tolerance,
    reference_probabilities: np.ndarray | None = None,
    probability_tolerance: Tolerance | None = None,
    replayed_probabilities: np.ndarray | None = None,
) -> OutputComparison:
    """One output against its reference. A label output may be given the probabilities output it goes with
    (the reference's, its tolerance, and the replayed ones), which can excuse a tied row."""
    if expected.shape != actual.shape:
        problem = f"shape {list(actual.shape)} differs from the reference {list(expected.shape)}"
        return _result(name, kind, expected, problem=problem)
    if expected.dtype.names is not None or actual.dtype.names is not None:  # a sequence of maps (ZipMap)
        if expected.dtype != actual.dtype:
            keys = f"keys {list(actual.dtype.names or [])} and {actual.dtype}"
            return _result(
                name, kind, expected, problem=f"the maps' {keys} differ from the reference's {expected.dtype}"
            )
        return compare_output(name, kind, plain(expected), plain(actual), tolerance, reference_probabilities,
                              probability_tolerance, replayed_probabilities)  # fmt: skip
    if expected.dtype != actual.dtype and not (expected.dtype.kind in "US" and actual.dtype.kind in "USO"):
        return _result(
            name, kind, expected, problem=f"dtype {actual.dtype} differs from the reference {expected.dtype}"
        )
    if not is_float(expected.dtype):
        return _compare_labels(name, kind, expected, actual, tolerance, reference_probabilities,
                               probability_tolerance, replayed_probabilities)  # fmt: skip
    return _compare_floats(name, kind, expected, actual, tolerance)


def plain(values: np.ndarray) -> np.ndarray:
    """A structured array (a ZipMap's maps, a field per key) as a plain matrix of its values; others as is."""
    if values.dtype.names is None:
        return values
    from numpy.lib.recfunctions import structured_to_unstructured

    return np.asarray(structured_to_unstructured(values))


def _spread(values: np.ndarray) -> dict[str, float]:
    """Mean, median and 99th percentile of non-negative differences (infinite where any is)."""
    if not values.size:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0}
    if not np.isfinite(values).all():
        finite = values[np.isfinite(values)]
        median = float(np.median(values)) if finite.size * 2 > values.size else float("inf")
        # "higher": an element itself, never an interpolation between two infinities (NaN, and a warning)
        return {"mean": float("inf"), "median": median, "p99": float(np.percentile(values, 99, method="higher"))}
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p99": float(np.percentile(values, 99)),
    }


def _agreement(kind: str, name: str, expected: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Top-1 and top-k agreement for class scores (probabilities, logits: rank 2, two classes or more), and
    the least cosine similarity of a row for anything of rank 2 or more (embeddings)."""
    figures: dict[str, Any] = {}
    if expected.ndim < 2 or not expected.size:
        return figures
    rows_e = expected.reshape(expected.shape[0], -1).astype(np.float64)
    rows_a = actual.reshape(actual.shape[0], -1).astype(np.float64)
    scores = kind == "probabilities" or "logit" in name.lower() or "score" in name.lower()
    if (
        scores
        and expected.ndim == 2
        and expected.shape[1] >= 2
        and np.isfinite(rows_e).all()
        and np.isfinite(rows_a).all()
    ):
        k = min(5, expected.shape[1])
        figures["top1_agreement"] = float((rows_e.argmax(1) == rows_a.argmax(1)).mean())
        top_e = np.sort(np.argsort(-rows_e, axis=1, kind="stable")[:, :k], axis=1)
        top_a = np.sort(np.argsort(-rows_a, axis=1, kind="stable")[:, :k], axis=1)
        figures["topk_agreement"], figures["k"] = float((top_e == top_a).all(axis=1).mean()), k
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        norms = np.linalg.norm(rows_e, axis=1) * np.linalg.norm(rows_a, axis=1)
        dots = (rows_e * rows_a).sum(axis=1)
        cosine = np.where(
            norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where((rows_e == rows_a).all(1), 1.0, 0.0)
        )
    if np.isfinite(cosine).all():
        figures["min_cosine"] = float(np.clip(cosine, -1.0, 1.0).min())
    return figures


def _text(values: np.ndarray) -> np.ndarray:
    """Strings of any numpy kind as str, compared at their full length (bytes read as UTF-8)."""
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8", "surrogateescape")
    if values.dtype.kind == "O":
        flat = [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v for v in values.ravel()]
        text = np.empty(len(flat), dtype=object)  # filled, not built: a list of sequences would become 2-D
        text[:] = flat
        return text.reshape(values.shape)
    return values


def _label_equality(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Element by element, whether the labels are equal: never by casting one side to the other's dtype, which
    cuts a replayed "category" to a golden "<U3" as "cat"."""
    if expected.dtype.kind in "USO" or actual.dtype.kind in "USO":
        equal = np.asarray(_text(expected) == _text(actual))
    else:
        equal = np.asarray(expected == actual)
    return equal if equal.shape == expected.shape else np.zeros(expected.shape, dtype=bool)


def _excusable(
    equal: np.ndarray, expected: np.ndarray, actual: np.ndarray, reference: np.ndarray | None,
    replayed: np.ndarray | None, tol: Tolerance,
) -> np.ndarray:  # fmt: skip
    """The rows whose label may differ: the reference's top two probabilities tie within tolerance, its label
    is its top class's (the label follows the probabilities), and the replayed label is the other tied class's. Which label a probability column stands for is read from
    the reference rows that are no tie (a column whose label they never show is read from the replayed
    probabilities); a pairing those rows contradict excuses nothing, nor does a label of rank above one."""
    rows = expected.shape[0] if expected.ndim else 0
    none = np.zeros(rows, dtype=bool)
    if (
        reference is None
        or reference.ndim != 2
        or reference.shape[0] != rows
        or reference.shape[1] < 2
        or expected.size != rows
        or not np.isfinite(reference).all()
    ):
        return none
    golden, given = _text(expected).reshape(rows), _text(actual).reshape(rows)
    scores = reference.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]
    every = np.arange(rows)
    tied = scores[every, first] - scores[every, second] <= 2 * (tol.atol + tol.rtol)
    label_of: dict[int, Any] = {}
    for column, label in zip(first[~tied].tolist(), golden[~tied].tolist(), strict=True):
        if label_of.setdefault(column, label) != label:
            return none  # these probabilities are not this label's
    if len(set(label_of.values())) != len(label_of):
        return none
    replayed_first = None
    if replayed is not None and replayed.shape == reference.shape and np.isfinite(replayed).all():
        replayed_first = np.argmax(replayed.astype(np.float64), axis=1)
    excused = none.copy()
    for row in np.flatnonzero(tied & ~equal.reshape(rows)).tolist():
        if label_of.get(int(first[row])) != golden[row]:
            # the reference's own label does not follow its probabilities here (SGDClassifier's
            # modified_huber labels by its decision function, saturated probabilities tie): no drift to excuse
            continue
        label = given[row]
        for column in (int(first[row]), int(second[row])):
            if column in label_of:
                excused[row] = label_of[column] == label
            else:  # a class no clear reference row showed: the replay must have chosen it, with a label new here
                excused[row] = (
                    replayed_first is not None
                    and int(replayed_first[row]) == column
                    and all(label != known for known in label_of.values())
                )
            if excused[row]:
                break
    return excused


def _compare_labels(
    name: str, kind: str, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance,
    reference_probabilities: np.ndarray | None, probability_tolerance: Tolerance | None,
    replayed_probabilities: np.ndarray | None = None,
) -> OutputComparison:  # fmt: skip
    """Exact equality, except (unless the rule is "exact") rows whose reference top-2 probabilities tie within
    tolerance and whose replayed label is the other tied class's."""
    equal = _label_equality(expected, actual)
    mismatched = ~equal
    tied = 0
    if mismatched.any() and tolerance.labels != "exact" and expected.ndim >= 1:
        excused = _excusable(
            equal, expected, actual, reference_probabilities, replayed_probabilities,
            probability_tolerance or DEFAULT_TOLERANCES["probabilities"],
        )  # fmt: skip
        tied = int(excused.sum())
        mismatched = mismatched & ~excused.reshape((-1,) + (1,) * (expected.ndim - 1))
    outside = int(mismatched.sum())
    worst = None
    if (~equal).any():
        index = tuple(int(i) for i in np.argwhere(~equal)[0])
        worst = {"index": list(index), "expected": _scalar(expected[index]), "actual": _scalar(actual[index])}
    same = bool(equal.all())
    return _result(
        name, kind, expected, identical=same, passed=outside == 0, max_abs=0.0 if same else float("nan"),
        max_rel=0.0 if same else float("nan"), outside=outside, tied_rows=tied, worst=worst,
        dtype=str(expected.dtype), identical_elements=int(equal.sum()),
        mean_abs=0.0 if same else float("nan"), median_abs=0.0 if same else float("nan"),
        p99_abs=0.0 if same else float("nan"), mean_rel=0.0 if same else float("nan"),
        median_rel=0.0 if same else float("nan"), p99_rel=0.0 if same else float("nan"),
    )  # fmt: skip


def differences(exp64: np.ndarray, act64: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per element of two float64 arrays: equal (infinities alike, NaNs in the same places), the absolute
    difference (inf where only one is NaN) and the relative one against |expected| (inf against 0). Pure."""
    same = (exp64 == act64) | (np.isnan(exp64) & np.isnan(act64))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, excused by ``same``; 1e308 - -1e308 inf
        diff = np.where(same, 0.0, np.abs(exp64 - act64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = np.abs(exp64)
    with np.errstate(invalid="ignore"):  # inf / inf: an infinite difference against an infinite reference
        rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    return same, diff, np.where(np.isnan(rel), np.inf, rel)


def _compare_floats(
    name: str, kind: str, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance
) -> OutputComparison:
    """|a - b| <= atol + rtol·|ref| elementwise. An infinite difference (NaN or an infinity on one side only,
    or one too large for a float64) is outside whatever the tolerance: rtol·|ref| can be infinite too. Complex
    values differ by the modulus of their difference."""
    identical = expected.tobytes() == actual.tobytes()
    complex_ = expected.dtype.kind == "c"
    wide = np.complex128 if complex_ else np.float64
    exp64, act64 = expected.astype(wide), actual.astype(wide)
    same, diff, rel = differences(exp64, act64)
    scale = np.abs(exp64)
    with np.errstate(over="ignore"):
        outside_mask = (diff > tolerance.atol + tolerance.rtol * np.nan_to_num(scale)) | np.isinf(diff)
    max_ulp = None
    # bf16 has float32's exponents
    tiny = np.finfo(np.float32 if is_bfloat16(expected.dtype) else expected.dtype).tiny
    significant = (scale > max(tolerance.atol, tiny)) & ~np.isnan(act64)
    if significant.any() and not complex_:
        ulps = np.abs(ordered(expected[significant]) - ordered(actual[significant]))
        max_ulp = int(ulps.max())
    worst = None
    if diff.size and diff.max() > 0:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        shown = str if complex_ else float  # JSON has no complex numbers
        worst = {"index": list(index), "expected": shown(exp64[index]), "actual": shown(act64[index])}
    with np.errstate(invalid="ignore", over="ignore"):
        needed = diff - tolerance.rtol * np.nan_to_num(scale)
    abs_spread, rel_spread = _spread(diff), _spread(rel)
    if expected.dtype.itemsize in (2, 4, 8):  # bfloat16, float16/32/64: bit for bit
        bitwise = expected.view(f"u{expected.dtype.itemsize}") == actual.view(f"u{actual.dtype.itemsize}")
    else:  # complex: equal values (their bits are compared as a whole by ``identical``)
        bitwise = same
    return _result(
        name, kind, expected, identical=identical, passed=not outside_mask.any(),
        max_abs=float(diff.max()) if diff.size else 0.0, max_rel=float(rel.max()) if rel.size else 0.0,
        max_ulp=max_ulp, outside=int(outside_mask.sum()), worst=worst,
        dtype=str(expected.dtype), identical_elements=int(bitwise.sum()),
        mean_abs=abs_spread["mean"], median_abs=abs_spread["median"], p99_abs=abs_spread["p99"],
        mean_rel=rel_spread["mean"], median_rel=rel_spread["median"], p99_rel=rel_spread["p99"],
        min_atol=float(max(needed.max(), 0.0)) if needed.size else 0.0,
        nan_mismatches=int((np.isnan(exp64) != np.isnan(act64)).sum()),
        inf_mismatches=int(((np.isinf(exp64) | np.isinf(act64)) & ~same & ~np.isnan(exp64) & ~np.isnan(act64)).sum()),
        **({} if complex_ else _agreement(kind, name, expected, actual)),
    )  # fmt: skip


def compare(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    tolerances: Mapping[str, Tolerance],
) -> list[OutputComparison]:
    """Compare every declared output (``kinds``) and every recorded one; label outputs are excused on rows
    the reference probabilities call a tie. An output that is declared but not recorded, recorded but not
    declared, or not produced fails with the reason: nothing goes unchecked."""
    probabilities = [n for n, k in kinds.items() if k == "probabilities" and n in expected]
    comparisons = []
    for name in dict.fromkeys([*kinds, *expected]):
        kind = kinds.get(name, "value")
        reference = expected.get(name, np.empty((0,)))
        problem = (
            "the reference holds an output the model does not declare" if name not in kinds
            else "no reference output was recorded for it" if name not in expected
            else "no tolerance was recorded for it" if name not in tolerances
            else f"the model gave no output {name!r}" if name not in actual
            else None
        )  # fmt: skip
        if problem:
            comparisons.append(_result(name, kind, reference, problem=problem))
            continue
        pair = partner(name, probabilities) if kind == "label" else None
        # ZipMap probabilities: one column per class
        paired = plain(expected[pair]) if pair else None
        replayed = plain(actual[pair]) if pair and pair in actual else None
        comparisons.append(
            compare_output(
                name, kind, reference, actual[name], tolerances[name],
                paired, tolerances.get(pair) if pair else None, replayed,
            )
        )  # fmt: skip
    return comparisons


_CLASS_WORDS = {"output", "label", "labels", "probability", "probabilities", "proba", "probs", "prob", "class",
                "classes", "predicted", "prediction", "predictions"}  # fmt: skip


def partner(label: str, probabilities: Sequence[str]) -> str | None:
    """The probabilities output a label output goes with: the only one, or the one whose name is the label's
    but for words such as label/probability (output_label, output_probability); None when that is unclear."""
    if len(probabilities) <= 1:
        return probabilities[0] if probabilities else None

    def stem(name: str) -> list[str]:
        return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in _CLASS_WORDS]

    matches = [p for p in probabilities if stem(p) == stem(label)]
    return matches[0] if len(matches) == 1 else None


def not_compared(name: str, kind: str, reference: np.ndarray, reason: str) -> OutputComparison:
    """An output that could not be checked, said so in the record rather than left out of it."""
    return _result(
        name, kind, reference, passed=True, outside=0, max_abs=float("nan"), max_rel=float("nan"), problem=reason
    )


def verdict(comparisons: list[OutputComparison]) -> str:
    """identical only when there was something to compare and every bit of it matched."""
    if comparisons and all(c.identical for c in comparisons):
        return "identical"
    if comparisons and all(c.passed for c in comparisons):
        return "equivalent"
    return "mismatch"


def resolve_tolerances(
    kinds: Mapping[str, str],
    overrides: Mapping[str, Any] | float | None = None,
    defaults: Mapping[str, Tolerance] | None = None,
) -> dict[str, Tolerance]:
    """Defaults by output name or kind (the family's, else the generic ones), overridden per output name or
    kind ({"probabilities": {"atol": 1e-3}}), or one float atol for all float outputs."""
    resolved = {}
    for name, kind in kinds.items():
        tol = (defaults or {}).get(name) or (defaults or {}).get(kind) or DEFAULT_TOLERANCES[kind]
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
