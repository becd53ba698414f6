"""Tabular samples are bound to the model's feature names by name, never by position: a DataFrame or a CSV
whose columns come in another order than the model was fitted with once fed each feature another's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlpack
from mlpack.errors import UsageError


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    return data.data, data.target.to_numpy()


def shuffled(table: pd.DataFrame) -> pd.DataFrame:
    return table[list(reversed(table.columns))]


def golden_matches_native(package: Path, model: Any, rows: pd.DataFrame) -> None:
    golden = np.load(package / "reference" / "inputs.npz")
    outputs = np.load(package / "reference" / "outputs.npz")
    if "X" in golden:  # one matrix: the model's own column order
        np.testing.assert_array_equal(golden["X"], rows[list(model.feature_names_in_)].to_numpy(np.float32))
    native = model.predict(rows[list(model.feature_names_in_)])  # sklearn itself refuses another column order
    np.testing.assert_array_equal(outputs["label"], native)


@pytest.mark.parametrize("form", ["dataframe", "dict", "csv"])
def test_columns_in_another_order_are_bound_by_name(
    form: str, frame: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = frame
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    rows = shuffled(X.iloc[::8])
    if form == "dataframe":
        sample: Any = rows
    elif form == "dict":
        sample = {column: rows[column].to_numpy() for column in rows.columns}
    else:
        rows.to_csv(tmp_path / "sample.csv", index=False)
        sample = tmp_path / "sample.csv"
    package = mlpack.build(model, sample=sample, name=form, out=tmp_path / "dist", resolve=False, timings=False)
    golden_matches_native(package.path, model, rows)
    assert mlpack.verify(package.path).verdict == "identical"
    with pytest.warns(UserWarning, match="cast to float32"):
        got = mlpack.load(package.path).predict(rows)  # a DataFrame in another order: bound by name
    np.testing.assert_array_equal(got["label"], model.predict(rows[list(model.feature_names_in_)]))


def test_a_column_transformer_takes_a_numeric_frame_by_column_name(
    frame: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    X, y = frame
    columns = ColumnTransformer(
        [("a", StandardScaler(), list(X.columns[:2])), ("b", MinMaxScaler(), list(X.columns[2:]))]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(X, y)
    rows = shuffled(X.iloc[::8])
    package = mlpack.build(model, sample=rows, name="ct", out=tmp_path, resolve=False, timings=False)
    golden = np.load(package.path / "reference" / "inputs.npz")
    for column in X.columns:  # each input (named as skl2onnx names it) holds its own column's values
        onnx_name = column.replace(" ", "_").replace("(", "_").replace(")", "_")
        np.testing.assert_array_equal(golden[onnx_name][:, 0], rows[column].to_numpy(np.float32))
    expected = model.predict(rows[list(X.columns)])
    np.testing.assert_array_equal(np.load(package.path / "reference" / "outputs.npz")["label"], expected)
    got = mlpack.load(package.path).predict(rows.astype(np.float32))  # a DataFrame, by column name
    np.testing.assert_array_equal(got["label"], expected)


def test_columns_the_model_does_not_have_are_refused(
    frame: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = frame
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    renamed = X.iloc[:10].rename(columns={X.columns[0]: "sepal size"})
    with pytest.raises(
        UsageError, match=r"The sample's columns \['sepal size'.* differ from the model's features"
    ):
        mlpack.build(model, sample=renamed, out=tmp_path, resolve=False, timings=False)
