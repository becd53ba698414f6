"""The tensor type table and signature checks (mlpack/tensors.py)."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

from mlpack.errors import UsageError
from mlpack.manifest import TensorSpec
from mlpack.tensors import (
    BY_ONNX,
    BY_V2,
    LABEL_TYPES,
    TYPES,
    TensorType,
    bfloat16_restored,
    check_feeds,
    check_names,
    numpy_dtype,
    shape_fits,
    tensor_type,
    v2_datatype,
)

VARIABLE_WIDTH = {"BYTES", "TYPE_STRING"}


def bits(name: str) -> int | None:
    """The bit width a V2 or Triton datatype name states (BOOL is one byte); None for strings."""
    if name in VARIABLE_WIDTH:
        return None
    if name.endswith("BOOL"):
        return 8
    found = re.search(r"(\d+)$", name)
    assert found, name
    return int(found.group(1))


@pytest.mark.parametrize("row", TYPES, ids=[t.onnx for t in TYPES])
def test_every_row_of_the_table_is_consistent(row: TensorType) -> None:
    assert re.fullmatch(r"tensor\([a-z0-9]+\)", row.onnx)
    assert row.triton.startswith("TYPE_")
    triton_bits = bits(row.triton)
    if row.v2 is not None:
        assert bits(row.v2) == triton_bits
        assert row.triton == ("TYPE_STRING" if row.v2 == "BYTES" else f"TYPE_{row.v2}")
    dtype = numpy_dtype(row.onnx)  # bfloat16: ml_dtypes', imported on first use
    if triton_bits is None:
        assert dtype.kind == "U"
    else:
        assert dtype.itemsize * 8 == triton_bits
    # the kind agrees with the name: floats are FP, signed ints INT, unsigned UINT
    onnx_kind = row.onnx[len("tensor(") : -1]
    kinds = {"float": "f", "double": "f", "float16": "f", "bfloat16": "V", "bool": "b", "string": "U"}
    expected_kind = kinds.get(onnx_kind)
    expected_kind = expected_kind or ("u" if onnx_kind.startswith("uint") else "i")
    assert dtype.kind == expected_kind
    if onnx_kind.startswith(("int", "uint")):
        assert dtype == np.dtype(onnx_kind)


def test_names_are_unique_in_every_column() -> None:
    for column in ("onnx", "v2", "triton"):
        names = [getattr(t, column) for t in TYPES if getattr(t, column) is not None]
        assert len(names) == len(set(names)), column
    assert len(BY_ONNX) == len(TYPES)
    assert len(BY_V2) == len([t for t in TYPES if t.v2])
    assert all(BY_V2[t.v2] is t for t in TYPES if t.v2)


def test_the_table_covers_the_common_types() -> None:
    assert {"tensor(float)", "tensor(double)", "tensor(int64)", "tensor(string)", "tensor(bool)"} <= set(BY_ONNX)
    assert LABEL_TYPES.issubset(BY_ONNX)
    assert numpy_dtype("tensor(float)") == np.float32
    assert numpy_dtype("tensor(string)").kind == "U"
    assert v2_datatype("tensor(double)") == "FP64" and v2_datatype("tensor(string)") == "BYTES"
    assert v2_datatype("tensor(uint8)") == "UINT8"


@pytest.mark.parametrize("onnx_type", ["seq(tensor(float))", "map(string,tensor(float))", "tensor(complex64)", ""])
def test_unknown_types_are_refused_in_one_sentence(onnx_type: str) -> None:
    with pytest.raises(UsageError) as caught:
        tensor_type(onnx_type, "scores")
    message = caught.value.message
    assert message == (
        f"mlpack handles tensors only, not 'scores' of type {onnx_type} (sequences and maps are not supported)."
    )
    with pytest.raises(UsageError):
        numpy_dtype(onnx_type)
    with pytest.raises(UsageError):
        v2_datatype(onnx_type)


def test_bfloat16_is_ml_dtypes_and_has_no_v2_type() -> None:
    assert tensor_type("tensor(bfloat16)").triton == "TYPE_BF16"
    assert numpy_dtype("tensor(bfloat16)", "x") == np.dtype(ml_dtypes.bfloat16)
    raw = np.frombuffer(np.array([1.5, -2.0], ml_dtypes.bfloat16).tobytes(), dtype="V2")  # as np.load gives it
    assert bfloat16_restored(raw).tolist() == [1.5, -2.0] and bfloat16_restored(raw).dtype == ml_dtypes.bfloat16
    with pytest.raises(UsageError, match=r"^The V2 protocol has no datatype for tensor\(bfloat16\)"):
        v2_datatype("tensor(bfloat16)", "x")


# ---- shapes and feeds

SPECS = [
    TensorSpec("X", "tensor(float)", ("batch", 4)),
    TensorSpec("ids", "tensor(int64)", ("?",)),
    TensorSpec("city", "tensor(string)", ("?", 1)),
]


def feeds() -> dict[str, np.ndarray]:
    return {
        "X": np.ones((3, 4), np.float32),
        "ids": np.arange(3, dtype=np.int64),
        "city": np.array([["Oslo"], ["Lima"], ["Pune"]]),
    }


@pytest.mark.parametrize(
    ("declared", "actual", "fits"),
    [
        (("?", 4), (10, 4), True),
        (("batch", 4), (1, 4), True),
        (("?", "?"), (2, 7), True),
        ((3, 4), (3, 4), True),
        ((), (), True),
        (("?", 4), (10, 5), False),
        (("?", 4), (10,), False),
        (("?", 4), (10, 4, 1), False),
        ((1, 4), (2, 4), False),
    ],
)
def test_shape_fits(declared: tuple[int | str, ...], actual: tuple[int, ...], fits: bool) -> None:
    assert shape_fits(declared, actual) is fits


def test_check_feeds_accepts_a_fitting_request_with_symbolic_dims() -> None:
    checked = check_feeds(feeds(), SPECS)
    assert set(checked) == {"X", "ids", "city"}
    assert checked["X"].dtype == np.float32 and checked["X"].flags.c_contiguous
    assert checked["city"].dtype.kind == "U"
    big = {**feeds(), "X": np.zeros((1000, 4), np.float32), "ids": np.zeros(1000, np.int64)}
    assert check_feeds(big, SPECS)["X"].shape == (1000, 4)


def test_check_feeds_makes_arrays_contiguous() -> None:
    wide = np.ones((3, 8), np.float32)
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    assert check_feeds({**feeds(), "X": strided}, SPECS)["X"].flags.c_contiguous


def test_check_feeds_takes_strings_from_object_arrays() -> None:
    cities = np.array([["Oslo"], ["Lima"], ["Pune"]], dtype=object)
    checked = check_feeds({**feeds(), "city": cities}, SPECS)
    assert checked["city"].dtype.kind == "U" and checked["city"][1, 0] == "Lima"


def test_check_feeds_accepts_lists() -> None:
    checked = check_feeds({**feeds(), "ids": [1, 2, 3]}, SPECS)
    assert checked["ids"].dtype == np.int64


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("X", np.ones((3, 4), np.float64), "Input 'X' must be float32, not float64."),
        ("ids", np.arange(3, dtype=np.int32), "Input 'ids' must be int64, not int32."),
        ("city", np.array([[1.0], [2.0], [3.0]]), "Input 'city' must be strings, not float64."),
        ("city", np.array([[b"Oslo"], [b"Lima"], [b"Pune"]]), "Input 'city' must be strings, not |S4."),
        ("X", np.ones((3, 5), np.float32), "Input 'X' must have shape ['batch', 4], not [3, 5]."),
        ("X", np.ones(4, np.float32), "Input 'X' must have shape ['batch', 4], not [4]."),
        ("ids", np.zeros((3, 1), np.int64), "Input 'ids' must have shape ['?'], not [3, 1]."),
    ],
)
def test_check_feeds_refuses_wrong_dtypes_and_shapes(name: str, value: np.ndarray, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_feeds({**feeds(), name: value}, SPECS)
    assert caught.value.message == message


def test_check_feeds_refuses_unknown_and_missing_names() -> None:
    with pytest.raises(UsageError) as caught:
        check_feeds({**feeds(), "x": np.ones((3, 4), np.float32)}, SPECS)
    assert caught.value.message == "Unknown input 'x'; the model takes ['X', 'city', 'ids']."
    partial = feeds()
    del partial["ids"]
    with pytest.raises(UsageError) as caught:
        check_feeds(partial, SPECS)
    assert caught.value.message == "Missing input 'ids'; the model takes ['X', 'city', 'ids']."


def test_check_feeds_refuses_float16_for_bfloat16() -> None:
    spec = [TensorSpec("h", "tensor(bfloat16)", ("?",))]
    with pytest.raises(UsageError, match=r"^Input 'h' must be bfloat16, not float16\.$"):
        check_feeds({"h": np.zeros(2, np.float16)}, spec)


def test_check_names_for_outputs_refuses_unknown_but_not_missing() -> None:
    outputs = [TensorSpec("label", "tensor(int64)", ("?",), "label"), TensorSpec("p", "tensor(float)", ("?", 3))]
    check_names(["label"], outputs, "output")  # asking for some outputs is fine
    with pytest.raises(UsageError) as caught:
        check_names(["score"], outputs, "output")
    assert caught.value.message == "Unknown output 'score'; the model gives ['label', 'p']."
