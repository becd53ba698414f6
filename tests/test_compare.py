"""The pure comparison logic, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from mlpack.compare import (
    DEFAULT_TOLERANCES,
    OutputComparison,
    compare,
    compare_output,
    partner,
    resolve_tolerances,
    verdict,
)
from mlpack.manifest import Tolerance

PROB = DEFAULT_TOLERANCES["probabilities"]


def test_bitwise_identical() -> None:
    a = np.array([[0.25, 0.75]], np.float32)
    c = compare_output("p", "probabilities", a, a.copy(), PROB)
    assert c.identical and c.passed and c.max_abs == 0 and c.max_ulp == 0 and c.worst is None


def test_ulps_count_representable_steps() -> None:
    a = np.array([1.0, -1.0, 2.0], np.float32)
    b = a.copy()
    b[0] = np.nextafter(np.nextafter(b[0], np.float32(2)), np.float32(2))  # two steps up
    b[1] = np.nextafter(b[1], np.float32(0))  # one step towards zero
    c = compare_output("v", "value", a, b, Tolerance(atol=1e-5, rtol=0))
    assert c.max_ulp == 2 and c.passed and not c.identical


def test_tiny_references_are_left_out_of_ulps() -> None:
    a = np.array([0.0, 1.0], np.float64)
    b = np.array([1e-300, 1.0], np.float64)
    c = compare_output("v", "value", a, b, Tolerance(atol=1e-6, rtol=0))
    assert c.max_ulp == 0 and c.passed and c.max_abs == pytest.approx(1e-300)


def test_outside_tolerance_reports_worst_element() -> None:
    a = np.zeros((3, 2), np.float32)
    b = a.copy()
    b[2, 1] = 0.5
    b[0, 0] = 1e-6
    c = compare_output("p", "probabilities", a, b, PROB)
    assert not c.passed and c.outside == 1 and c.worst == {"index": [2, 1], "expected": 0.0, "actual": 0.5}
    assert c.max_rel == float("inf") and c.to_dict()["max_rel"] == "inf"  # JSON-safe


def test_tolerance_formula_is_atol_plus_rtol_times_reference() -> None:
    a = np.array([100.0])
    tol = Tolerance(atol=0.0, rtol=1e-3)
    assert compare_output("v", "value", a, np.array([100.09]), tol).passed
    assert not compare_output("v", "value", a, np.array([100.11]), tol).passed


def test_nan_in_the_same_place_is_equal_elsewhere_it_is_not() -> None:
    a = np.array([np.nan, 1.0])
    same = compare_output("v", "value", a, np.array([np.nan, 1.0]), DEFAULT_TOLERANCES["value"])
    assert same.passed and same.identical
    moved = compare_output("v", "value", a, np.array([1.0, 1.0]), DEFAULT_TOLERANCES["value"])
    assert not moved.passed and moved.outside == 1


def test_shape_and_dtype_changes_are_problems() -> None:
    a = np.zeros((2, 2), np.float32)
    assert compare_output("v", "value", a, np.zeros((2, 3), np.float32), PROB).problem
    assert compare_output("v", "value", a, np.zeros((2, 2), np.float64), PROB).problem


KINDS = {"label": "label", "probabilities": "probabilities"}


def judge_labels(
    golden: tuple[np.ndarray, np.ndarray], replayed: tuple[np.ndarray, np.ndarray], rule: str = "exact-unless-tied"
) -> OutputComparison:
    tolerances = resolve_tolerances(KINDS, {"label": {"labels": rule}})
    result = compare(
        dict(zip(KINDS, golden, strict=True)), dict(zip(KINDS, replayed, strict=True)), KINDS, tolerances
    )
    return result[0]


# class columns 0, 1, 2 stand for "a", "b", "c": rows 0-2 show it (no tie); rows 3 and 4 tie columns 0 and 1
PROBS = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.0, 0.9], [0.5, 0.5, 0.0], [0.50004, 0.49996, 0.0]],
                 np.float32)  # fmt: skip
LABELS = np.array(["a", "b", "c", "a", "a"])


def test_a_tied_row_excuses_only_the_other_tied_class() -> None:
    flipped = PROBS.copy()
    flipped[3:5, :2] = flipped[3:5, 1::-1]  # what a replay that broke the ties the other way gives
    tie_broken = judge_labels((LABELS, PROBS), (np.array(["a", "b", "c", "b", "b"]), flipped))
    assert tie_broken.passed and tie_broken.tied_rows == 2 and not tie_broken.identical
    # "c" had a reference probability of 0 on those rows: no tie excuses it
    any_class = judge_labels((LABELS, PROBS), (np.array(["a", "b", "c", "c", "a"]), PROBS))
    assert not any_class.passed and any_class.outside == 1 and any_class.tied_rows == 0
    confident = judge_labels((LABELS, PROBS), (np.array(["b", "b", "c", "a", "a"]), PROBS))
    assert not confident.passed and confident.outside == 1
    # the rule "exact" excuses nothing
    exact = judge_labels((LABELS, PROBS), (np.array(["a", "b", "c", "b", "b"]), flipped), rule="exact")
    assert not exact.passed and exact.outside == 2 and exact.tied_rows == 0


def test_a_tied_class_no_clear_row_shows_needs_the_replayed_probabilities_to_choose_it() -> None:
    probs, labels = PROBS[[0, 2, 4]], np.array(["a", "c", "a"])  # column 1's label is never shown
    flipped = probs.copy()
    flipped[2, :2] = flipped[2, 1::-1]
    assert judge_labels((labels, probs), (np.array(["a", "c", "b"]), flipped)).tied_rows == 1
    unflipped = judge_labels((labels, probs), (np.array(["a", "c", "b"]), probs))
    assert not unflipped.passed and unflipped.tied_rows == 0
    # a label the clear rows give to another column is not column 1's
    known_elsewhere = judge_labels((labels, probs), (np.array(["a", "c", "c"]), flipped))
    assert not known_elsewhere.passed


def test_a_tie_excuses_nothing_where_the_reference_label_does_not_follow_its_probabilities() -> None:
    """SGDClassifier(loss="modified_huber") saturates: probabilities [0, .5, .5] tie while its decision function
    chooses class "c" decisively. The package (argmax: "b") then differs on every such row, no drift."""
    probs = np.vstack([PROBS[:3], [[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]]).astype(np.float32)
    native = np.array(["a", "b", "c", "c", "c"])
    package = np.array(["a", "b", "c", "b", "b"])
    result = judge_labels((native, probs), (package, probs))
    assert not result.passed and result.outside == 2 and result.tied_rows == 0


def test_probabilities_the_labels_contradict_excuse_nothing() -> None:
    """A label output paired with scores that are not its own (another head): its clear rows disagree."""
    other_head = PROBS[[0, 0, 1, 3, 4]]  # its clear rows say column 0 is both "a" and "b"
    flipped = other_head.copy()
    flipped[3, :2] = flipped[3, 1::-1]
    result = judge_labels((LABELS, other_head), (np.array(["a", "b", "c", "b", "a"]), flipped))
    assert not result.passed and result.tied_rows == 0


def test_labels_go_with_the_probabilities_named_like_them() -> None:
    assert partner("output_label", ["output_probability"]) == "output_probability"
    assert partner("label_b", ["prob_a", "prob_b"]) == "prob_b"
    assert partner("output_label", ["output_probability", "probabilities"]) is None  # unclear: excuse nothing
    assert partner("flag_b", ["prob_a", "prob_b"]) is None
    assert partner("label", []) is None


def test_string_labels_are_compared_at_their_full_length() -> None:
    """A golden "<U3" must not cut a replayed "category" to "cat" (nor b"no" make "nope" equal)."""
    golden = np.array(["cat", "dog"])
    for replayed in (np.array(["category", "dog"]), np.array(["category", "dog"], dtype=object)):
        c = compare_output("label", "label", golden, replayed, DEFAULT_TOLERANCES["label"])
        assert (
            not c.passed and c.outside == 1 and c.worst == {"index": [0], "expected": "cat", "actual": "category"}
        )
    c = compare_output(
        "label", "label", np.array([b"no"]), np.array(["nope"], dtype=object), DEFAULT_TOLERANCES["label"]
    )
    assert not c.passed
    same = compare_output(
        "label", "label", np.array([b"no"]), np.array(["no"], dtype=object), DEFAULT_TOLERANCES["label"]
    )
    assert same.passed and same.identical


def test_an_infinite_difference_is_outside_any_tolerance() -> None:
    """rtol·|ref| is infinite for an infinite reference, or overflows: the infinity on the other side, a NaN,
    and a difference too large for a float64 still fail."""
    loose = Tolerance(atol=1.0, rtol=2.0)
    golden = np.array([np.inf, 1e308, 1e308, 5.0])
    c = compare_output("v", "value", golden, np.array([-np.inf, np.nan, -1e308, 5.5]), loose)
    assert not c.passed and c.outside == 3


def test_complex_values_differ_by_their_modulus() -> None:
    golden = np.array([1 + 1j, 2 + 2j], np.complex64)
    c = compare_output(
        "z", "value", golden, np.array([1 - 5j, 2 + 2j], np.complex64), Tolerance(atol=1e-5, rtol=0)
    )
    assert not c.passed and c.outside == 1 and c.max_abs == pytest.approx(6.0)
    assert compare_output("z", "value", golden, golden.copy(), Tolerance(atol=0, rtol=0)).identical


def test_string_labels() -> None:
    a = np.array(["setosa", "virginica"])
    assert compare_output("label", "label", a, a.copy(), DEFAULT_TOLERANCES["label"]).identical
    c = compare_output("label", "label", a, np.array(["setosa", "versicolor"]), DEFAULT_TOLERANCES["label"])
    assert not c.passed and c.worst == {"index": [1], "expected": "virginica", "actual": "versicolor"}


def test_resolve_tolerances_by_kind_then_name() -> None:
    kinds = {"label": "label", "probabilities": "probabilities", "score": "value"}
    assert resolve_tolerances(kinds)["score"] == DEFAULT_TOLERANCES["value"]
    override = resolve_tolerances(kinds, {"value": {"atol": 1e-3}, "score": {"rtol": 0.5}})
    assert override["score"] == Tolerance(atol=1e-3, rtol=0.5)
    assert resolve_tolerances(kinds, 0.01)["probabilities"].atol == 0.01
    assert resolve_tolerances(kinds, 0.01)["label"].atol == 0.0


def test_every_declared_and_every_recorded_output_is_compared() -> None:
    """Nothing goes unchecked: an output missing on either side, or undeclared, fails with the reason."""
    probs = np.array([[0.9, 0.1]], dtype=np.float32)
    label = np.array([0], dtype=np.int64)
    kinds = {"label": "label", "probabilities": "probabilities"}
    tols = resolve_tolerances(kinds)
    whole: dict[str, np.ndarray] = {"label": label, "probabilities": probs}
    assert verdict(compare(whole, whole, kinds, tols)) == "identical"

    no_reference = compare({"label": label}, whole, kinds, tols)
    assert verdict(no_reference) == "mismatch"
    assert [c.problem for c in no_reference if not c.passed] == ["no reference output was recorded for it"]

    not_produced = compare(whole, {"label": label}, kinds, tols)
    assert verdict(not_produced) == "mismatch"
    assert [c.problem for c in not_produced if not c.passed] == ["the model gave no output 'probabilities'"]

    undeclared = compare({**whole, "extra": probs}, {**whole, "extra": probs}, kinds, tols)
    assert verdict(undeclared) == "mismatch"
    assert [c.name for c in undeclared if not c.passed] == ["extra"]

    no_tolerance = compare(whole, whole, kinds, {"label": tols["label"]})
    assert verdict(no_tolerance) == "mismatch"


def test_nothing_compared_is_never_identical() -> None:
    assert verdict([]) == "mismatch"


class _LabelsOnly:
    """A native model whose API gives labels only, like an outlier detector's predict()."""

    name = "labels-only"
    description = "test family"
    native_runs = True

    def predict(
        self, model: object, feeds: dict[str, np.ndarray], output_names: list[str]
    ) -> dict[str, np.ndarray]:
        return {output_names[0]: np.array([1, -1], dtype=np.int64)}


def test_parity_records_an_output_the_native_model_cannot_give_as_not_compared() -> None:
    from mlpack import parity

    outputs: dict[str, np.ndarray] = {
        "label": np.array([1, -1], dtype=np.int64),
        "scores": np.array([[0.2], [-0.1]], dtype=np.float32),
    }
    kinds = {"label": "label", "scores": "value"}
    comparisons, passed = parity.check(
        _LabelsOnly(),  # type: ignore[arg-type]  # only predict is used
        None, {"X": np.zeros((2, 4), np.float32)}, outputs, kinds, resolve_tolerances(kinds), accept=False,
    )  # fmt: skip
    assert passed
    by_name = {c.name: c for c in comparisons}
    assert by_name["label"].identical and by_name["label"].problem is None
    assert by_name["scores"].problem == "the native model gives no such output: not compared"
    assert not by_name["scores"].identical  # never claimed as checked


def test_equal_infinities_and_nans_in_the_same_places_are_equal() -> None:
    """inf - inf is NaN: without care, identical infinities would count as an infinite difference."""
    values = np.array([np.inf, -np.inf, np.nan, 1.0], dtype=np.float32)
    same = compare_output("scores", "value", values, values.copy(), DEFAULT_TOLERANCES["value"])
    assert same.identical and same.passed and same.max_abs == 0.0
    flipped = values.copy()
    flipped[0] = -np.inf
    other = compare_output("scores", "value", values, flipped, DEFAULT_TOLERANCES["value"])
    assert not other.passed and other.outside == 1 and other.max_abs == float("inf")


def test_the_spread_of_differences_and_the_atol_that_would_pass() -> None:
    expected = np.zeros(100, np.float64)
    actual = expected.copy()
    actual[:50] = 1e-6  # half differ by 1e-6, one by 1e-3
    actual[99] = 1e-3
    c = compare_output("v", "value", expected, actual, Tolerance(atol=1e-5, rtol=0.0))
    assert c.dtype == "float64" and c.identical_elements == 49 and c.outside == 1 and not c.passed
    assert c.median_abs == pytest.approx(1e-6) and c.mean_abs == pytest.approx((50 * 1e-6 + 1e-3) / 100)
    assert c.p99_abs == pytest.approx(1e-6 + 0.01 * (1e-3 - 1e-6))  # numpy's linear interpolation
    assert c.min_atol == pytest.approx(1e-3)  # at that atol every element passes
    assert c.min_atol is not None
    assert compare_output("v", "value", expected, actual, Tolerance(atol=c.min_atol, rtol=0.0)).passed
    scaled = compare_output(
        "v", "value", np.full(4, 10.0), np.array([10.0, 10.1, 10.0, 9.95]), Tolerance(0.0, 0.005)
    )
    assert scaled.min_atol == pytest.approx(0.1 - 0.05)  # what is left after rtol·|ref| at the declared rtol


def test_nan_and_infinity_mismatches_are_counted_by_position() -> None:
    expected = np.array([np.nan, 1.0, np.inf, 2.0, -np.inf], np.float32)
    actual = np.array([np.nan, np.nan, np.inf, np.inf, np.inf], np.float32)
    c = compare_output("v", "value", expected, actual, Tolerance(1e-3, 0.0))
    assert c.nan_mismatches == 1 and c.inf_mismatches == 2 and c.identical_elements == 2
    assert c.min_atol == float("inf") and c.to_dict()["min_atol"] == "inf"


def test_class_scores_report_top1_and_topk_agreement_and_embeddings_their_cosine() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 8)).astype(np.float32)
    swapped = logits.copy()
    first, second = np.argsort(-logits[3])[:2]
    swapped[3, [first, second]] = swapped[3, [second, first]]  # row 3's top two trade places
    c = compare_output("logits", "value", logits, swapped, Tolerance(1e-5, 1e-4))
    assert c.top1_agreement == pytest.approx(0.9) and c.topk_agreement == 1.0 and c.k == 5
    assert c.min_cosine is not None and c.min_cosine < 1.0
    embedding = rng.normal(size=(4, 16))
    e = compare_output("embedding", "value", embedding, embedding * 1.5, Tolerance(1e-5, 1e-4))
    assert e.min_cosine == pytest.approx(1.0) and e.top1_agreement is None  # same direction, other length
    assert compare_output("v", "value", np.ones(3), np.ones(3), PROB).min_cosine is None  # rank 1: no rows


def test_labels_count_equal_elements() -> None:
    c = compare_output("label", "label", np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4]), Tolerance(0, 0))
    assert c.identical_elements == 3 and c.dtype == "int64" and not c.passed
