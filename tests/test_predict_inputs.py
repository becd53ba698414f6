"""mlpack.load(pkg).predict takes what build takes: a dict by name, a tuple in input order, one array, a
DataFrame for a tabular model, and float64 where the build recorded the cast to float32, saying so. Every
answer is checked against the native model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlpack
from mlpack.errors import UsageError


def test_float64_is_cast_as_the_build_recorded_and_the_cast_is_reported(
    built: Path, forest: Any, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    model = mlpack.load(built)
    assert model.package.manifest.parity is not None
    assert model.package.manifest.parity.input_cast.get("X") == "float64->float32"
    rows = iris[0][::7]  # float64, as the forest was trained
    with pytest.warns(UserWarning, match="'X' was given as float64 and cast to float32, as the build recorded"):
        got = model.predict(rows)
    np.testing.assert_array_equal(got["label"], forest.predict(rows))
    np.testing.assert_allclose(got["probabilities"], forest.predict_proba(rows), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 needs no cast and says nothing
        model.predict({"X": rows.astype(np.float32)})
    with pytest.raises(UsageError, match="must be float32, not int64"):
        model.predict(rows.astype(np.int64))  # only the recorded cast is made


def test_a_dataframe_feeds_a_column_transformer_by_column_name(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, 80), "city": rng.choice(["paris", "lyon", "nice"], 80),
        "income": rng.normal(5e4, 1e4, 80),
    })  # fmt: skip
    labels = np.where(frame.age > 40, "churn", "stay")
    columns = ColumnTransformer([("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["city"])])
    model = make_pipeline(columns, LogisticRegression()).fit(frame, labels)
    package = mlpack.build(model, sample=frame[:20], name="churn", out=tmp_path, resolve=False, timings=False)
    fresh = frame[40:60][["income", "city", "age"]]  # the columns in another order: matched by name
    with pytest.warns(UserWarning, match="'age' was given as float64 and cast to float32"):
        got = mlpack.load(package.path).predict(fresh)
    assert list(got["label"]) == list(model.predict(fresh))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(fresh), atol=1e-5)


def subtraction() -> tuple[Any, np.ndarray, np.ndarray]:
    """y = a - b, two inputs of the same shape (so order matters), and two inputs for it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["y"])], "sub",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, np.ones((3, 2), np.float32), np.full((3, 2), 5.0, np.float32)


def test_a_tuple_is_taken_in_the_model_input_order(tmp_path: Path) -> None:
    onnx_model, a, b = subtraction()
    package = mlpack.build(onnx_model, sample={"b": b, "a": a}, out=tmp_path, resolve=False, timings=False)
    loaded = mlpack.load(package.path)
    np.testing.assert_array_equal(loaded.predict((a, b))["y"], a - b)
    np.testing.assert_array_equal(loaded.predict({"b": b, "a": a})["y"], a - b)
    with pytest.raises(UsageError, match=r"takes 2 inputs \(a, b\); the tuple holds 1"):
        loaded.predict((a,))


def test_a_tuple_sample_builds_onnx_by_position_and_sklearn_refuses_it(
    tmp_path: Path, forest: Any, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    onnx_model, a, b = subtraction()
    package = mlpack.build(onnx_model, sample=(a, b), out=tmp_path, resolve=False, timings=False)
    np.testing.assert_array_equal(np.load(package.path / "reference" / "outputs.npz")["y"], a - b)
    with pytest.raises(UsageError, match="A tuple sample gives inputs by position, for PyTorch and ONNX models"):
        mlpack.build(forest, sample=(iris[0][:5], iris[0][:5]), out=tmp_path / "f", resolve=False)
    one = mlpack.build(forest, sample=(iris[0][:5],), name="one", out=tmp_path / "f", resolve=False, timings=False)
    assert one.manifest.reference.rows == 5  # a tuple of one is that one array
