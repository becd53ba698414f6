"""Tensor types and shapes, owned here: the ONNX ↔ numpy ↔ KServe V2 ↔ Triton type table, and the checks
that inputs fit a model's signature. Build, load, serve and export all ask this module.

A signature entry is a ``manifest.TensorSpec`` as onnxruntime reports it: ``type`` is its type string
(``tensor(float)``) and ``shape`` holds ints for fixed dimensions and strings for symbolic ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpack.errors import UsageError

if TYPE_CHECKING:
    from mlpack.manifest import TensorSpec


@dataclass(frozen=True)
class TensorType:
    onnx: str  # onnxruntime's type string
    numpy: Any  # the numpy scalar type that holds it (bfloat16: None here, see bfloat16())
    v2: str | None  # the Open Inference Protocol (KServe V2) datatype
    triton: str  # Triton's model-config data_type


TYPES = (
    TensorType("tensor(float)", np.float32, "FP32", "TYPE_FP32"),
    TensorType("tensor(double)", np.float64, "FP64", "TYPE_FP64"),
    TensorType("tensor(float16)", np.float16, "FP16", "TYPE_FP16"),
    TensorType("tensor(bfloat16)", None, None, "TYPE_BF16"),
    TensorType("tensor(bool)", np.bool_, "BOOL", "TYPE_BOOL"),
    TensorType("tensor(string)", np.str_, "BYTES", "TYPE_STRING"),
    *(TensorType(f"tensor(int{b})", getattr(np, f"int{b}"), f"INT{b}", f"TYPE_INT{b}") for b in (8, 16, 32, 64)),
    *(
        TensorType(f"tensor(uint{b})", getattr(np, f"uint{b}"), f"UINT{b}", f"TYPE_UINT{b}")
        for b in (8, 16, 32, 64)
    ),
)
BY_ONNX = {t.onnx: t for t in TYPES}
BY_V2 = {t.v2: t for t in TYPES if t.v2}
LABEL_TYPES = frozenset({"tensor(int64)", "tensor(int32)", "tensor(string)", "tensor(bool)"})


def tensor_type(onnx_type: str, name: str = "") -> TensorType:
    """The row of the table for an onnxruntime type string; one sentence for anything that is no tensor."""
    found = BY_ONNX.get(onnx_type)
    if found is None:
        what = f"{name!r} of type {onnx_type}" if name else onnx_type
        raise UsageError(f"mlpack handles tensors only, not {what} (sequences and maps are not supported).")
    return found


def bfloat16() -> np.dtype[Any] | None:
    """ml_dtypes' bfloat16 (as onnx itself uses), or None where ml_dtypes is missing (an environment locked
    before mlpack needed it: only bfloat16 models are refused). Imported on first use, not with this module:
    a replay under emulation pays a quarter of a second for it, and only bfloat16 models need it."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)  # type: ignore[no-any-return]  # ml_dtypes has no stubs


def is_bfloat16(dtype: np.dtype[Any]) -> bool:
    """Without importing ml_dtypes: an array can only hold bfloat16 once ml_dtypes made the type."""
    return dtype.kind == "V" and dtype.name == "bfloat16"


def numpy_dtype(onnx_type: str, name: str = "") -> np.dtype[Any]:
    row = tensor_type(onnx_type, name)
    if row.onnx == "tensor(bfloat16)":
        found = bfloat16()
        if found is None:
            raise UsageError(f"numpy has no type for {onnx_type} ({name or 'a tensor'}): install ml_dtypes.")
        return found
    return np.dtype(row.numpy)  # type: ignore[no-any-return]  # numpy stubs type dtype(Any) as Any


def is_float(dtype: np.dtype[Any]) -> bool:
    """Compared as floats (abs, rel, ulp): numpy's floats and complex numbers, and bfloat16."""
    return dtype.kind in "fc" or is_bfloat16(dtype)


def bfloat16_restored(array: np.ndarray) -> np.ndarray:
    """numpy writes ml_dtypes' bfloat16 to .npy as raw 2-byte void ("|V2"): read such an array as bfloat16."""
    if (
        array.dtype.kind == "V"
        and array.dtype.names is None
        and array.dtype.itemsize == 2
        and not is_bfloat16(array.dtype)
    ):
        found = bfloat16()
        return array if found is None else array.view(found)
    return array


def v2_datatype(onnx_type: str, name: str = "") -> str:
    row = tensor_type(onnx_type, name)
    if row.v2 is None:
        raise UsageError(f"The V2 protocol has no datatype for {onnx_type} ({name or 'a tensor'}).")
    return row.v2


def shape_fits(declared: Sequence[int | str], actual: Sequence[int]) -> bool:
    """Same rank, and every fixed dimension equal (symbolic ones take any size)."""
    return len(declared) == len(actual) and all(
        not isinstance(want, int) or want == have for want, have in zip(declared, actual, strict=True)
    )


def check_names(given: Sequence[str], specs: Sequence[TensorSpec], what: str = "input") -> None:
    """Refuse the first unknown or missing name, in one sentence naming what the model takes."""
    wanted = sorted(spec.name for spec in specs)
    verb = "takes" if what == "input" else "gives"
    if unknown := sorted(set(given) - set(wanted)):
        raise UsageError(f"Unknown {what} {unknown[0]!r}; the model {verb} {wanted}.")
    if what == "input" and (missing := sorted(set(wanted) - set(given))):
        raise UsageError(f"Missing input {missing[0]!r}; the model takes {wanted}.")


MISSING_STRING = ""  # a missing string (None, NaN, pd.NA, an empty CSV cell) as a string tensor carries it


def is_missing(value: Any) -> bool:
    """pandas' missing markers in an object column: None, NaN, pd.NA, NaT (without importing pandas)."""
    return (
        value is None
        or (isinstance(value, float) and value != value)
        or type(value).__name__ in ("NAType", "NaTType")
    )


def as_text(values: np.ndarray) -> np.ndarray:
    """Strings for a string input: missing cells (None, NaN, pd.NA) as MISSING_STRING, as in the golden
    sample, never as the text "None" or "nan" that ``astype(str)`` writes; other kinds as ``str`` gives them."""
    if values.dtype != object:
        return values.astype(str)
    text = [MISSING_STRING if is_missing(v) else str(v) for v in values.ravel()]
    return np.array(text, dtype=str).reshape(values.shape)


def check_feeds(feeds: Mapping[str, Any], specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Names, dtypes and shapes against the signature, exactly (no casting): what a prediction takes."""
    check_names(list(feeds), specs)
    by_name = {spec.name: spec for spec in specs}
    checked = {}
    for name, value in feeds.items():
        spec = by_name[name]
        array = np.asarray(value)
        dtype = numpy_dtype(spec.type, name)
        if array.dtype != dtype and not (dtype.kind == "U" and array.dtype.kind in "UO"):
            wanted = "strings" if dtype.kind == "U" else dtype  # not numpy's "<U0"
            raise UsageError(f"Input {name!r} must be {wanted}, not {array.dtype}.")
        if not shape_fits(spec.shape, array.shape):
            raise UsageError(f"Input {name!r} must have shape {list(spec.shape)}, not {list(array.shape)}.")
        checked[name] = as_text(array) if dtype.kind == "U" else np.ascontiguousarray(array)
    return checked
