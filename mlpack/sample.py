"""Golden-input samples: read .npy, .npz and .csv files, or take arrays, and fit them to a model's inputs."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.errors import UsageError
from mlpack.manifest import TensorSpec
from mlpack.reference import fixed_batch
from mlpack.tensors import MISSING_STRING, as_text, bfloat16_restored, is_bfloat16, numpy_dtype

# the cells pandas.read_csv reads as missing by default (its na_values), so a CSV means here what it means there
CSV_MISSING = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
     "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)  # fmt: skip


def _number_or_missing(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell.strip() in CSV_MISSING
    return True


def _from_csv(path: Path) -> dict[str, np.ndarray]:
    """A CSV as pandas reads it: a header unless the first row is all numbers, missing cells (empty, "NA",
    ...) as NaN in numeric columns and as missing strings ("") in the others."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        return {}
    header: list[str] | None = None
    if not all(_number_or_missing(cell) for cell in rows[0]) or all(not c.strip() for c in rows[0]):
        header, rows = rows[0], rows[1:]
    if not rows:
        return {}
    if any(len(row) != len(rows[0]) for row in rows):
        raise UsageError(f"{path} has rows of different lengths.")
    if header is not None and len(header) != len(rows[0]):
        raise UsageError(f"{path} has a header of {len(header)} names for rows of {len(rows[0])} cells.")
    if header is not None and len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise UsageError(f"{path} names the column {twice[0]!r} twice in its header.")
    table = np.array(rows, dtype=str)
    columns = {}
    for index in range(table.shape[1]):
        cells = np.char.strip(table[:, index])
        missing = np.isin(cells, list(CSV_MISSING))
        try:
            if missing.all():
                raise ValueError  # no number in it: a column of strings, all missing
            columns[index] = np.where(missing, "nan", cells).astype(np.float64)
        except ValueError:
            columns[index] = np.where(missing, MISSING_STRING, table[:, index])
    if header is None or all(col.dtype == np.float64 for col in columns.values()):
        if any(col.dtype != np.float64 for col in columns.values()):
            raise UsageError(f"{path} has non-numeric cells but no header naming the model inputs.")
        return Table({"": np.stack(list(columns.values()), axis=1)}, header)
    # a header with mixed columns: one named input per column, shaped [rows, 1]
    return {name: columns[i].reshape(-1, 1) for i, name in enumerate(header)}


def _from_test_data(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    """The ONNX test-data layout that model zoos ship: PREFIX_K.pb TensorProto files, in one folder or in
    several test_data_set_* folders. Tensors keep their names; an unnamed one is keyed "#K", the model's
    K-th input or output. Several sets of one shape are separate golden runs (``Runs``); sets that differ
    only in their leading (batch) axis are joined along it, as one run."""
    sets = sorted(p for p in folder.glob("test_data_set_*") if p.is_dir()) or [folder]
    loaded = [_test_data_set(one, prefix) for one in sets]
    if not loaded[0]:
        raise UsageError(f"{folder} holds no {prefix}_K.pb files (nor test_data_set_* folders of them).")
    if len(loaded) == 1:
        return loaded[0]
    keys = list(loaded[0])
    for one, path in zip(loaded, sets, strict=True):
        if list(one) != keys:
            raise UsageError(f"{path} holds {sorted(one)}, unlike {sets[0].name} ({sorted(keys)}).")
    if all(len({(one[key].shape, one[key].dtype) for one in loaded}) == 1 for key in keys):
        return stacked(loaded, prefix)
    joined = {}
    for key in keys:
        arrays = [one[key] for one in loaded]
        if any(a.ndim == 0 for a in arrays) or len({a.shape[1:] for a in arrays}) != 1:
            raise UsageError(
                f"The test data sets give {key!r} in shapes {[list(a.shape) for a in arrays]}: sets of one shape "
                "are separate golden runs and sets that differ only in their leading (batch) axis are joined; "
                "give one test_data_set folder."
            )
        joined[key] = np.concatenate(arrays)
    return joined


def _test_data_set(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    from onnx import TensorProto, numpy_helper

    numbered = [(p, p.stem.rpartition("_")[2]) for p in folder.glob(f"{prefix}_*.pb")]
    files = [p for p, k in sorted(numbered, key=lambda pair: int(pair[1])) if k.isdigit()]
    tensors = {}
    for index, path in enumerate(files):
        tensor = TensorProto()
        try:
            tensor.ParseFromString(path.read_bytes())
            array = numpy_helper.to_array(tensor)
        except Exception as exc:  # protobuf's DecodeError, and numpy_helper's on odd types
            raise UsageError(f"{path} is not an ONNX TensorProto: {str(exc).splitlines()[0][:200]}") from None
        key = tensor.name or f"#{index}"
        if key in tensors:
            raise UsageError(f"{folder} names the tensor {key!r} twice.")
        if array.dtype == object:  # strings arrive as bytes
            array = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]).reshape(
                array.shape
            )
        tensors[key] = array
    return tensors


class Runs(dict[str, np.ndarray]):
    """Several samples of the same shapes (an ONNX model zoo's test_data_set_* folders), each tensor stacked
    along a new leading axis: each is a golden run of its own, replayed and compared as such."""

    def __init__(self, arrays: dict[str, np.ndarray], runs: int) -> None:
        super().__init__(arrays)
        self.runs = runs

    def split(self) -> list[dict[str, np.ndarray]]:
        return [{name: value[i] for name, value in self.items()} for i in range(self.runs)]


def stacked(parts: list[dict[str, np.ndarray]], what: str) -> Runs:
    """Runs of one shape each, stacked; one sentence when a tensor's shape or type changes from run to run."""
    for name in parts[0]:
        if len({(part[name].shape, part[name].dtype) for part in parts}) != 1:
            shapes = [f"{list(part[name].shape)} {part[name].dtype}" for part in parts]
            raise UsageError(
                f"The test data sets give {what} {name!r} as {', '.join(shapes)}: separate golden runs must "
                "have one shape and type; give one test_data_set folder."
            )
    return Runs({name: np.stack([part[name] for part in parts]) for name in parts[0]}, len(parts))


class Table(dict[str, np.ndarray]):
    """A numeric table read as one matrix ("") that remembers its column names (a DataFrame's, a CSV
    header's), so that it can be matched to a model's feature names rather than by position."""

    def __init__(self, arrays: dict[str, np.ndarray], columns: list[str] | None) -> None:
        super().__init__(arrays)
        self.columns = columns


def by_feature_names(
    sample: dict[str, np.ndarray], features: list[str], one_per_column: bool
) -> dict[str, np.ndarray]:
    """A tabular sample matched to the feature names the model was fitted with, by name: a named table's
    columns reordered to the model's order (a DataFrame in another column order once fed the model's
    features the wrong values), named single columns stacked in that order, or, for a model that takes one
    input per column (a ColumnTransformer), a named table split into its columns by name."""
    columns = sample.columns if isinstance(sample, Table) else None
    if columns is None and set(sample) == set(features) and not one_per_column:
        if all(array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1) for array in sample.values()):
            return {"": np.hstack([sample[name].reshape(len(sample[name]), 1) for name in features])}
        return sample
    if columns is None:
        return sample
    if sorted(columns) != sorted(features):
        raise UsageError(f"The sample's columns {columns} differ from the model's features {features}.")
    matrix = sample[""]
    if one_per_column:
        return {name: matrix[:, columns.index(name)].reshape(-1, 1) for name in features}
    return {"": matrix[:, [columns.index(name) for name in features]]}


def _column(values: np.ndarray) -> np.ndarray:
    """An object column as strings, its missing cells as empty strings (never the text "nan" or "None")."""
    return as_text(values) if values.dtype == object else values


def load_sample(source: Any) -> dict[str, np.ndarray]:
    """Arrays keyed by input name; a single unnamed array is keyed "" until it meets the model, and the K-th
    array of a tuple, or of an ONNX test-data folder's unnamed tensors, "#K"."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        arrays = _from_test_data(Path(source), "input")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"The sample file {path} does not exist.")
        suffix = path.suffix.lower()
        try:
            if suffix == ".npy":
                arrays = {"": bfloat16_restored(np.load(path, allow_pickle=False))}
            elif suffix == ".npz":
                arrays = read_npz(path)
            elif suffix == ".csv":
                arrays = _from_csv(path)
            else:
                raise UsageError(f"The sample {path} must be a .npy, .npz or .csv file.")
        except (ValueError, OSError) as exc:
            if "Object arrays" in str(exc):
                raise UsageError(
                    f"The sample {path} holds object arrays, which load only by unpickling: save string "
                    "columns as fixed-width strings (array.astype(str))."
                ) from None
            raise UsageError(f"The sample {path} could not be read: {exc}") from None
    elif isinstance(source, Mapping):
        arrays = {str(key): _column(np.asarray(value)) for key, value in source.items()}
    elif isinstance(source, tuple) and len(source) == 1:
        return load_sample(source[0])
    elif isinstance(source, tuple):  # positional: the model's inputs in order (a list stays one matrix)
        arrays = {f"#{i}": _column(np.asarray(value)) for i, value in enumerate(source)}
    elif hasattr(source, "to_numpy") and hasattr(source, "columns"):  # a pandas DataFrame
        if all(dtype.kind in "fiub" for dtype in source.dtypes):
            arrays = Table({"": np.asarray(source.to_numpy())}, [str(c) for c in source.columns])
        else:  # mixed columns: one named input each
            arrays = {str(c): _column(source[c].to_numpy()) for c in source.columns}
    else:
        arrays = {"": np.asarray(source)}
    if not arrays or any(array.size == 0 for array in arrays.values()):
        raise UsageError("The sample is empty: give at least one row of input.")
    for key, array in arrays.items():  # no model mlpack converts takes these; say so before a converter fails
        if array.dtype.kind in "cmMV" and not is_bfloat16(array.dtype):
            where = f"input {key!r}" if key else "the sample"
            raise UsageError(f"{where.capitalize()} holds {array.dtype} values; models take numbers or strings.")
    return arrays


def by_position(tensors: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Tensors keyed "#K" (unnamed in an ONNX test-data folder) keyed by the K-th name instead."""
    if not any(key.startswith("#") for key in tensors):
        return tensors
    named = {}
    for key, value in tensors.items():
        if key.startswith("#") and key[1:].isdigit() and int(key[1:]) < len(names):
            key = names[int(key[1:])]
        if key in named:
            raise UsageError(f"The tensor {key!r} is given twice, once by name and once by position.")
        named[key] = value
    return named


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """A user's .npz by member name, never unpickling (ValueError and OSError are the caller's to word)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: bfloat16_restored(data[key]) for key in data.files}


def load_expected(source: Any, outputs: list[str]) -> dict[str, np.ndarray]:
    """Outputs keyed by output name, from the user (``--expected``, ``mlpack compare``): an .npz, a dict of
    arrays, or an ONNX test-data folder of output_K.pb files."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        arrays = _from_test_data(Path(source), "output")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise UsageError(f"The outputs file {path} does not exist.")
        if path.suffix.lower() != ".npz":
            raise UsageError(f"{path} is neither an .npz keyed by output name nor a folder of output_K.pb files.")
        try:
            arrays = read_npz(path)
        except (ValueError, OSError) as exc:
            raise UsageError(
                f"{path} is not an .npz of outputs keyed by name: {str(exc).splitlines()[0][:200]}"
            ) from None
    elif isinstance(source, Mapping):
        arrays = {str(key): np.asarray(value) for key, value in source.items()}
    else:
        raise UsageError("Expected outputs must be a dict of arrays keyed by output name, an .npz or a folder.")
    return by_position(arrays, outputs)


def onnx_safe_name(column: str) -> str:
    """The input name skl2onnx gives a DataFrame column: "petal length (cm)" becomes "petal_length__cm_"."""
    return re.sub(r"[^A-Za-z0-9_]", "_", column)


def _as_onnx_names(sample: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Column names as the converter named the inputs: skl2onnx turns "petal length (cm)" into
    "petal_length__cm_". A name is renamed only where that is its one match among the model's inputs."""
    if set(sample) <= set(names):
        return sample
    renamed = {}
    for key, value in sample.items():
        safe = onnx_safe_name(key)
        renamed[safe if key not in names and safe in names and safe not in sample else key] = value
    return renamed if len(renamed) == len(sample) else sample


def require_rows(sample: dict[str, np.ndarray]) -> None:
    """Models that mlpack converts take rows: every input needs the same number of them."""
    for key, array in sample.items():
        if array.ndim == 0:
            where = f"Input {key!r}" if key else "The sample"
            raise UsageError(f"{where} is a single value; the model takes rows: give it shape [rows, ...].")
    rows = {array.shape[0] for array in sample.values()}
    if len(rows) != 1:
        raise UsageError(f"The sample's inputs have different row counts: {sorted(rows)}.")


def fit_to_inputs(
    sample: dict[str, np.ndarray], inputs: list[TensorSpec], cast_ok: bool = True, keep_wide: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Match the sample to the model's declared inputs by name, check shapes, cast safely.

    Returns the feeds and the casts made ("float64->float32" narrows; other narrowing is refused). Separate
    runs (``Runs``) are fitted one by one and come back stacked. ``keep_wide`` leaves wider floats as given
    (the native model's view of the sample, where the package narrows it).
    """
    if isinstance(sample, Runs):
        fitted = [
            fit_to_inputs(by_position(part, [s.name for s in inputs]), inputs, cast_ok, keep_wide)
            for part in sample.split()
        ]
        return stacked([feeds for feeds, _ in fitted], "input"), fitted[0][1]
    sample = by_position(sample, [spec.name for spec in inputs])
    if isinstance(sample, Table) and sample.columns and len(inputs) > 1:  # one input per column: by name
        sample = {name: sample[""][:, i : i + 1] for i, name in enumerate(sample.columns)}
    sample = _as_onnx_names(sample, [spec.name for spec in inputs])
    if set(sample) == {""}:
        matrix = sample[""]
        one_column_each = all(len(i.shape) == 2 and i.shape[1] in (1, "?") for i in inputs)
        if len(inputs) == 1:
            sample = {inputs[0].name: matrix}
        elif one_column_each and matrix.ndim == 2 and matrix.shape[1] == len(inputs):
            # a table whose columns are the model's inputs, in the model's order (a ColumnTransformer's)
            sample = {spec.name: matrix[:, i : i + 1] for i, spec in enumerate(inputs)}
        else:
            names = ", ".join(i.name for i in inputs)
            raise UsageError(f"The model has several inputs ({names}): give an .npz or .csv keyed by them.")
    wanted = {i.name for i in inputs}
    if set(sample) != wanted:
        raise UsageError(f"The sample's inputs {sorted(sample)} do not match the model's inputs {sorted(wanted)}.")
    feeds, casts = {}, {}
    batch = fixed_batch(inputs)
    for spec in inputs:
        array = sample[spec.name]
        shape = list(spec.shape)
        if array.ndim == 1 and len(shape) == 2 and shape[1] in (1, "?"):
            array = array.reshape(-1, 1)  # one column given as a flat array
        if len(shape) != array.ndim:
            raise UsageError(
                f"Input {spec.name!r} expects {len(shape)} dimensions {shape}; the sample has shape {array.shape}."
            )
        for axis, (want, have) in enumerate(zip(shape, array.shape, strict=True)):
            if not isinstance(want, int) or want <= 0 or want == have:
                continue
            if axis == 0 and want == batch:  # a fixed batch: the sample runs a batch at a time
                if have % want == 0:
                    continue
                raise UsageError(
                    f"Input {spec.name!r} takes a fixed batch of {want} (shape {shape}); the sample has {have} "
                    f"rows: give a multiple of {want}."
                )
            raise UsageError(f"Input {spec.name!r} expects shape {shape}; the sample has shape {array.shape}.")
        dtype = numpy_dtype(spec.type, spec.name)
        wide = keep_wide and array.dtype.kind == dtype.kind == "f" and array.dtype.itemsize > dtype.itemsize
        if array.dtype != dtype and not (dtype.kind == "U" and array.dtype.kind == "U") and not wide:
            array, cast = _cast(spec.name, array, dtype, cast_ok)
            casts[spec.name] = cast
        feeds[spec.name] = np.ascontiguousarray(array)
    return feeds, casts


def _cast(name: str, array: np.ndarray, dtype: np.dtype, cast_ok: bool) -> tuple[np.ndarray, str]:
    label = f"{array.dtype}->{dtype}"
    if dtype.kind == "U" and array.dtype.kind in "UO":
        return array.astype(str), label
    if is_bfloat16(dtype) and array.dtype.kind == "f" and cast_ok:  # rounds to nearest, as torch's .bfloat16()
        return array.astype(dtype), label
    if dtype.kind != "U" and array.dtype.kind in "biuf" and cast_ok:  # noqa: SIM102
        if np.can_cast(array.dtype, dtype, "same_kind") or array.dtype.kind in "biu":
            converted = array.astype(dtype)
            if dtype.kind in "iu" and not np.array_equal(converted, array):
                raise UsageError(f"Input {name!r} is {dtype}; the sample's values do not fit it exactly.")
            return converted, label
    wanted = "strings" if dtype.kind == "U" else dtype  # not numpy's "<U0"
    raise UsageError(f"Input {name!r} expects {wanted}; the sample holds {array.dtype}.")
