"""Golden-input samples (mlpack/sample.py): reading files and arrays, and fitting them to a model's inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpack.errors import UsageError
from mlpack.manifest import TensorSpec
from mlpack.sample import fit_to_inputs, load_sample, require_rows


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- CSV


def test_csv_without_header_is_one_unnamed_matrix(tmp_path: Path) -> None:
    arrays = load_sample(write(tmp_path / "s.csv", "1,2,3\n4.5,5,-6e-1\n\n7,8,9\n"))
    assert list(arrays) == [""]
    np.testing.assert_array_equal(arrays[""], [[1, 2, 3], [4.5, 5, -0.6], [7, 8, 9]])
    assert arrays[""].dtype == np.float64


def test_csv_with_a_numeric_header_drops_the_names(tmp_path: Path) -> None:
    arrays = load_sample(write(tmp_path / "s.csv", "sepal_length,sepal_width\n5.1,3.5\n4.9,3.0\n"))
    assert list(arrays) == [""]
    np.testing.assert_array_equal(arrays[""], [[5.1, 3.5], [4.9, 3.0]])


def test_csv_with_mixed_columns_gives_one_input_per_column(tmp_path: Path) -> None:
    arrays = load_sample(write(tmp_path / "s.csv", "age,city,income\n31,Oslo,5.5\n45,Lima,7\n"))
    assert list(arrays) == ["age", "city", "income"]
    assert arrays["age"].shape == (2, 1) and arrays["age"].dtype == np.float64
    assert arrays["city"].dtype.kind == "U" and arrays["city"][:, 0].tolist() == ["Oslo", "Lima"]
    np.testing.assert_array_equal(arrays["income"], [[5.5], [7.0]])


def test_csv_with_strings_but_no_header_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "1,2\n3,Oslo\n")
    with pytest.raises(UsageError) as caught:
        load_sample(path)
    assert caught.value.message == f"{path} has non-numeric cells but no header naming the model inputs."


def test_ragged_csv_rows_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(UsageError) as caught:
        load_sample(path)
    assert caught.value.message == f"{path} has rows of different lengths."


@pytest.mark.parametrize("text", ["a,b,c\n1,x\n", "a,b\n1,x,3\n4,y,6\n", "a,b\n1,2,3\n"])
def test_a_header_that_does_not_fit_the_rows_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "s.csv", text)
    with pytest.raises(UsageError, match=r"has a header of \d names for rows of \d cells\.$"):
        load_sample(path)


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "a,city,a\n1,Oslo,2\n")
    with pytest.raises(UsageError) as caught:
        load_sample(path)
    assert caught.value.message == f"{path} names the column 'a' twice in its header."


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n"])
def test_an_empty_csv_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match=r"^The sample is empty: give at least one row of input\.$"):
        load_sample(write(tmp_path / "s.csv", text))


# ---- .npy, .npz and files that are not samples


def test_npy_and_npz(tmp_path: Path) -> None:
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "s.npy", matrix)
    loaded = load_sample(tmp_path / "s.npy")
    assert list(loaded) == [""] and loaded[""].dtype == np.float32
    np.testing.assert_array_equal(loaded[""], matrix)
    np.savez(tmp_path / "s.npz", num=matrix, city=np.array(["a", "b", "c", "d"]))
    named = load_sample(str(tmp_path / "s.npz"))
    assert sorted(named) == ["city", "num"] and named["city"].dtype.kind == "U"


def test_npz_inputs_with_different_row_counts_load_as_given_and_need_rows_only_for_converters(
    tmp_path: Path,
) -> None:
    """An ONNX model may take inputs of different leading sizes; the families mlpack converts take rows."""
    np.savez(tmp_path / "s.npz", a=np.zeros((3, 2)), b=np.zeros((4, 1)))
    loaded = load_sample(tmp_path / "s.npz")
    assert {k: v.shape for k, v in loaded.items()} == {"a": (3, 2), "b": (4, 1)}
    with pytest.raises(UsageError, match=r"^The sample's inputs have different row counts: \[3, 4\]\.$"):
        require_rows(loaded)
    with pytest.raises(UsageError, match=r"^Input 's' is a single value; the model takes rows"):
        require_rows({"s": np.float32(1.0) * np.ones(())})


class Marker:
    """Unpickling this creates a file: proof that a loader unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_arrays_are_refused_without_unpickling(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "unpickled"
    array = np.array([Marker(marker), "x"], dtype=object)
    path = tmp_path / f"s{suffix}"
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    else:
        np.savez(path, col=array)
    with pytest.raises(UsageError) as caught:
        load_sample(path)
    assert caught.value.message == (
        f"The sample {path} holds object arrays, which load only by unpickling: save string columns as "
        "fixed-width strings (array.astype(str))."
    )
    assert not marker.exists()
    # the file really does run code when unpickled: the refusal is what kept it from running
    loaded = np.load(path, allow_pickle=True)
    if suffix == ".npz":
        loaded["col"]
        loaded.close()
    assert marker.exists()


def test_a_missing_file_and_an_unknown_suffix_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^The sample file .*nope\.npy does not exist\.$"):
        load_sample(tmp_path / "nope.npy")
    path = write(tmp_path / "s.parquet", "x")
    with pytest.raises(UsageError, match=r"must be a \.npy, \.npz or \.csv file\.$"):
        load_sample(path)


def test_a_corrupt_npy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UsageError, match=r"^The sample .* could not be read: "):
        load_sample(path)


# ---- arrays, mappings and DataFrames


def test_arrays_and_lists_are_one_unnamed_input() -> None:
    assert load_sample([[1.0, 2.0], [3.0, 4.0]])[""].shape == (2, 2)
    assert load_sample(np.zeros((5, 3), np.float32))[""].dtype == np.float32


@pytest.mark.parametrize("value", [np.zeros((0, 4)), [], {}])
def test_empty_samples_are_refused(value: Any) -> None:
    with pytest.raises(UsageError, match=r"^The sample is empty"):
        load_sample(value)


def test_a_scalar_is_a_tensor_as_given() -> None:
    assert load_sample(np.float32(1.0))[""].shape == ()


def test_a_mapping_gives_named_inputs_and_strings_from_objects() -> None:
    arrays = load_sample({"num": np.ones((2, 3)), "city": np.array([["a"], ["b"]], dtype=object)})
    assert sorted(arrays) == ["city", "num"] and arrays["city"].dtype.kind == "U"


def test_a_numeric_dataframe_is_one_matrix_and_a_mixed_one_is_one_input_per_column() -> None:
    import pandas as pd

    numeric = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    arrays = load_sample(numeric)
    assert list(arrays) == [""] and arrays[""].shape == (2, 2)
    mixed = pd.DataFrame({"age": [31, 45], "city": ["Oslo", "Lima"]})
    arrays = load_sample(mixed)
    assert list(arrays) == ["age", "city"]
    assert arrays["age"].dtype == np.int64 and arrays["city"].dtype.kind == "U"


# ---- fit_to_inputs


def spec(name: str, onnx_type: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name, onnx_type, tuple(shape))


def test_float64_is_cast_to_float32_and_the_cast_reported() -> None:
    feeds, casts = fit_to_inputs({"": np.array([[1.5, 2.0]])}, [spec("X", "tensor(float)", "?", 2)])
    assert feeds["X"].dtype == np.float32 and feeds["X"].flags.c_contiguous
    assert casts == {"X": "float64->float32"}


def test_no_cast_no_report() -> None:
    feeds, casts = fit_to_inputs({"X": np.ones((2, 2), np.float32)}, [spec("X", "tensor(float)", "?", 2)])
    assert casts == {} and feeds["X"].dtype == np.float32


def test_casts_can_be_refused() -> None:
    with pytest.raises(UsageError, match=r"^Input 'X' expects float32; the sample holds float64\.$"):
        fit_to_inputs({"": np.ones((2, 2))}, [spec("X", "tensor(float)", "?", 2)], cast_ok=False)


def test_ints_that_fit_are_narrowed_and_reported() -> None:
    feeds, casts = fit_to_inputs({"ids": np.array([[1], [2]], np.int64)}, [spec("ids", "tensor(int32)", "?", 1)])
    assert feeds["ids"].dtype == np.int32 and casts == {"ids": "int64->int32"}
    feeds, casts = fit_to_inputs({"b": np.array([[0], [200]], np.int64)}, [spec("b", "tensor(uint8)", "?", 1)])
    assert feeds["b"].tolist() == [[0], [200]] and casts == {"b": "int64->uint8"}


@pytest.mark.parametrize(
    ("values", "onnx_type"),
    [([[2**40]], "tensor(int32)"), ([[-1]], "tensor(uint8)"), ([[300]], "tensor(int8)")],
)
def test_ints_that_do_not_fit_are_refused(values: list[list[int]], onnx_type: str) -> None:
    with pytest.raises(UsageError, match=r"the sample's values do not fit it exactly\.$"):
        fit_to_inputs({"ids": np.array(values, np.int64)}, [spec("ids", onnx_type, "?", 1)])


def test_floats_are_not_cast_to_ints_or_strings() -> None:
    with pytest.raises(UsageError, match=r"^Input 'ids' expects int64; the sample holds float64\.$"):
        fit_to_inputs({"ids": np.array([[1.0]])}, [spec("ids", "tensor(int64)", "?", 1)])
    with pytest.raises(UsageError, match=r"^Input 'city' expects strings; the sample holds float64\.$"):
        fit_to_inputs({"city": np.array([[1.0]])}, [spec("city", "tensor(string)", "?", 1)])


def test_bools_and_ints_widen_to_floats() -> None:
    feeds, casts = fit_to_inputs(
        {"a": np.array([[True], [False]]), "b": np.array([[1], [2]], np.int64)},
        [spec("a", "tensor(float)", "?", 1), spec("b", "tensor(double)", "?", 1)],
    )
    assert feeds["a"].tolist() == [[1.0], [0.0]] and casts == {"a": "bool->float32", "b": "int64->float64"}


def test_a_table_matches_a_column_transformers_one_column_inputs_in_order() -> None:
    inputs = [spec("age", "tensor(float)", "?", 1), spec("income", "tensor(double)", "?", 1)]
    feeds, casts = fit_to_inputs({"": np.array([[31.0, 5.5], [45.0, 7.0]])}, inputs)
    assert feeds["age"].tolist() == [[31.0], [45.0]] and feeds["age"].dtype == np.float32
    assert feeds["income"].tolist() == [[5.5], [7.0]] and feeds["income"].dtype == np.float64
    assert casts == {"age": "float64->float32"}


def test_named_csv_columns_match_named_inputs(tmp_path: Path) -> None:
    sample = load_sample(write(tmp_path / "s.csv", "city,age\nOslo,31\nLima,45\n"))
    inputs = [spec("age", "tensor(float)", "?", 1), spec("city", "tensor(string)", "?", 1)]
    feeds, casts = fit_to_inputs(sample, inputs)
    assert feeds["age"].tolist() == [[31.0], [45.0]] and feeds["city"].tolist() == [["Oslo"], ["Lima"]]
    assert casts == {"age": "float64->float32"}


def test_a_table_that_does_not_match_several_inputs_is_refused() -> None:
    inputs = [spec("a", "tensor(float)", "?", 1), spec("b", "tensor(float)", "?", 1)]
    with pytest.raises(UsageError) as caught:
        fit_to_inputs({"": np.ones((2, 3))}, inputs)
    assert caught.value.message == "The model has several inputs (a, b): give an .npz or .csv keyed by them."


def test_names_must_match_the_models_inputs() -> None:
    with pytest.raises(UsageError) as caught:
        fit_to_inputs({"x": np.ones((2, 2))}, [spec("X", "tensor(float)", "?", 2)])
    assert caught.value.message == "The sample's inputs ['x'] do not match the model's inputs ['X']."


def test_a_flat_array_becomes_one_column() -> None:
    feeds, _ = fit_to_inputs({"a": np.array([1.0, 2.0, 3.0], np.float32)}, [spec("a", "tensor(float)", "?", 1)])
    assert feeds["a"].shape == (3, 1)


def test_shapes_are_checked() -> None:
    with pytest.raises(UsageError) as caught:
        fit_to_inputs({"": np.ones((2, 5))}, [spec("X", "tensor(float)", "?", 4)])
    assert caught.value.message == "Input 'X' expects shape ['?', 4]; the sample has shape (2, 5)."
    with pytest.raises(UsageError, match=r"^Input 'X' expects 3 dimensions \['\?', 3, 4\]"):
        fit_to_inputs({"": np.ones((2, 4))}, [spec("X", "tensor(float)", "?", 3, 4)])


def test_a_fixed_batch_of_one_takes_any_number_of_rows() -> None:
    feeds, _ = fit_to_inputs({"": np.ones((5, 4), np.float32)}, [spec("X", "tensor(float)", 1, 4)])
    assert feeds["X"].shape == (5, 4)  # replayed one row at a time
