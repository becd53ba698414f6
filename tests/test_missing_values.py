"""The standard tabular recipe with missing values, as pandas and scikit-learn hold them: NaN in numbers,
None/NaN/pd.NA in string columns, empty cells in a CSV. In a package a missing string is "" and a missing
number NaN; the package must answer such rows as the native model does, whether or not the golden sample
holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from mlpack.errors import ParityError, UsageError
from tests.conftest import CliRunner, one_sentence_error

pd = pytest.importorskip("pandas")


def frame(rows: int, seed: int) -> Any:
    """Numbers with NaN, an object column with NaN, a pandas string column with NaN (None becomes NaN there)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "income": rng.normal(5e4, 1e4, rows),
            "city": pd.Series(rng.choice(["paris", "rome", "oslo"], rows), dtype=object),
            "plan": pd.Series(rng.choice(["basic", "pro"], rows), dtype="str"),
        }
    )
    df.loc[::7, "age"] = np.nan
    df.loc[::11, "city"] = np.nan
    df.loc[::5, "plan"] = None
    return df


def recipe() -> Any:
    """Imputers, a scaler and a one-hot encoder in a ColumnTransformer, then a classifier."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    strings = Pipeline(
        [("impute", SimpleImputer(strategy="most_frequent")), ("onehot", OneHotEncoder(handle_unknown="ignore"))]
    )
    columns = ColumnTransformer([("num", numbers, ["age", "income"]), ("cat", strings, ["city", "plan"])])
    train = frame(300, 0)
    target = ((train["income"] > 5e4) ^ (train["city"] == "rome")).astype(int)
    return Pipeline([("prepare", columns), ("classify", LogisticRegression())]).fit(train, target)


def assert_answers_as_native(model: Any, package: Path, rows: Any) -> None:
    got = mlpack.load(package).predict(rows)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(rows))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(rows), atol=1e-5)


@pytest.mark.filterwarnings("ignore:Input .* cast to float32")
def test_imputer_scaler_onehot_recipe_with_missing_values_from_the_api(tmp_path: Path) -> None:
    model = recipe()
    sample = frame(60, 1)
    package = mlpack.build(model, sample, name="churn", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = frame(200, 2)  # rows never seen, missing values in every column that has them
    assert_answers_as_native(model, package.path, fresh)
    golden = np.load(package.path / "reference" / "inputs.npz")
    assert "nan" not in set(golden["city"].ravel()) and "" in set(golden["city"].ravel())  # never the text "nan"
    # the columns as arrays (object arrays with None and NaN in them) mean what the DataFrame means
    fresh.loc[1, "city"], fresh.loc[2, "city"] = None, float("nan")  # scikit-learn itself refuses pd.NA here
    columns = {name: fresh[[name]].to_numpy() for name in fresh.columns}
    columns = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in columns.items()}
    got = mlpack.load(package.path).predict(columns)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))


def test_imputer_recipe_from_skops_and_a_pandas_csv_on_the_cli(tmp_path: Path, cli: CliRunner) -> None:
    """pandas writes missing values as empty cells; the CLI reads them back as pandas does."""
    import skops.io as sio

    model = recipe()
    sio.dump(model, tmp_path / "churn.skops")
    frame(50, 3).to_csv(tmp_path / "sample.csv", index=False)
    built = cli("build", tmp_path / "churn.skops", "--sample", tmp_path / "sample.csv", "--trust-type",
                "numpy.dtype", "--out", tmp_path / "dist", "--no-resolve", "--no-timings")  # fmt: skip
    assert built.returncode == 0, built.stderr
    package = tmp_path / "dist" / "churn-1"
    verified = cli("verify", package, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["verdict"] == "identical"
    as_read = pd.read_csv(tmp_path / "sample.csv")  # the native model on the file, as a user reads it
    golden = np.load(package / "reference" / "outputs.npz")
    np.testing.assert_array_equal(golden["label"].ravel(), model.predict(as_read))
    np.testing.assert_allclose(golden["probabilities"], model.predict_proba(as_read), atol=1e-5)


@pytest.mark.filterwarnings("ignore:Input .* cast to float32")
def test_a_onehot_encoder_that_learnt_nan_as_a_category_converts_it(tmp_path: Path) -> None:
    """Without an imputer, scikit-learn's encoder keeps NaN as a category of its own: so does the package."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = frame(300, 4)
    target = (train["city"].isna() | (train["income"] > 6e4)).astype(int)
    scaled = ("num", StandardScaler(), ["income"])
    columns = ColumnTransformer([scaled, ("cat", OneHotEncoder(), ["city"])])
    model = Pipeline([("prepare", columns), ("classify", LogisticRegression())]).fit(
        train[["income", "city"]], target
    )
    sample = frame(40, 5)[["income", "city"]].dropna()  # no missing value in the golden sample at all
    package = mlpack.build(model, sample, name="ohe", out=tmp_path, resolve=False, timings=False)
    fresh = frame(200, 6)[["income", "city"]]
    assert fresh["city"].isna().sum() > 10
    assert_answers_as_native(model, package.path, fresh)


def test_missing_values_the_conversion_cannot_carry_are_refused_even_if_the_sample_has_none(
    tmp_path: Path, cli: CliRunner
) -> None:
    """An OrdinalEncoder that encodes missing as 7 converts to one that does not: the build probes a missing
    value in each column that has an imputer or encoder, and refuses (exit 1, one sentence, no package)."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    train = frame(300, 7)
    target = (train["city"].isna() | (train["income"] > 6e4)).astype(int)
    encoder = OrdinalEncoder(encoded_missing_value=7)
    columns = ColumnTransformer([("num", "passthrough", ["income"]), ("cat", encoder, ["city"])])
    model = Pipeline([("prepare", columns), ("classify", LogisticRegression())]).fit(
        train[["income", "city"]], target
    )
    sample = frame(40, 8)[["income", "city"]].dropna()
    with pytest.raises(ParityError, match="treats a missing value in 'city' differently"):
        mlpack.build(model, sample, out=tmp_path / "api", resolve=False, timings=False)
    assert not (tmp_path / "api").exists() or not any((tmp_path / "api").iterdir())
    sio.dump(model, tmp_path / "ordinal.skops")
    sample.to_csv(tmp_path / "sample.csv", index=False)
    refused = cli("build", tmp_path / "ordinal.skops", "--sample", tmp_path / "sample.csv", "--trust-type",
                  "numpy.dtype", "--out", tmp_path / "dist", "--no-resolve", "--no-timings")  # fmt: skip
    assert refused.returncode == 1
    assert "missing value in 'city'" in one_sentence_error(refused)
    assert not (tmp_path / "dist" / "ordinal-1").exists()


def test_csv_missing_cells_read_as_pandas_reads_them(tmp_path: Path) -> None:
    from mlpack.sample import load_sample

    path = tmp_path / "rows.csv"
    path.write_text("age,city,code\n,paris,1\n41.5,,NA\n39,NA,2\n")
    read = load_sample(path)
    expected = pd.read_csv(path)
    np.testing.assert_array_equal(read["age"].ravel(), expected["age"].to_numpy())  # NaN where empty
    np.testing.assert_array_equal(read["code"].ravel(), expected["code"].to_numpy())
    assert list(read["city"].ravel()) == ["paris", "", ""]  # missing strings are ""
    headless = tmp_path / "numbers.csv"
    headless.write_text("1.0,,3\n4,5,6\n")  # a first row with an empty cell is still data, not a header
    assert np.isnan(load_sample(headless)[""][0, 1]) and load_sample(headless)[""].shape == (2, 3)


@pytest.mark.parametrize("learnt", [True, False], ids=["trained-with-nan", "trained-without-nan"])
def test_trees_and_forests_send_a_missing_value_where_scikit_learn_does(tmp_path: Path, learnt: bool) -> None:
    """scikit-learn's trees send NaN down the side they learnt (or, with none in training, to the child with
    more samples); skl2onnx dropped that, so every NaN went the same way. The golden sample holds no NaN: the
    package must still answer rows with NaN as the model does."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    train = x.copy()
    if learnt:
        train[rng.random(400) < 0.25, 0] = np.nan
        y[np.isnan(train[:, 0])] = 0  # missing in column 0 means class 0: a side worth learning
    rows = x[30:90].copy()
    rows[::2, 0], rows[1::2, 2], rows[::3, 3] = np.nan, np.nan, np.nan
    classifiers = [DecisionTreeClassifier(max_depth=4, random_state=0),
                   RandomForestClassifier(12, max_depth=5, random_state=0), ExtraTreesClassifier(12, random_state=0)]  # fmt: skip
    for model in classifiers:
        model.fit(train, y)
        built = mlpack.build(
            model, x[:30], name=type(model).__name__.lower(), out=tmp_path, resolve=False, timings=False
        )
        got = mlpack.load(built.path).predict({"X": rows.astype(np.float32)})
        np.testing.assert_array_equal(got["label"].ravel(), model.predict(rows), err_msg=type(model).__name__)
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(rows), atol=1e-5)
    regressor = RandomForestRegressor(12, max_depth=5, random_state=0).fit(train, x[:, 1])
    built = mlpack.build(regressor, x[:30], name="regressor", out=tmp_path, resolve=False, timings=False)
    value = next(iter(mlpack.load(built.path).predict({"X": rows.astype(np.float32)}).values()))
    np.testing.assert_allclose(value.ravel(), regressor.predict(rows), atol=1e-4)
    # IsolationForest writes one TreeEnsemble per tree, every one numbered 0: matched by its thresholds
    detector = IsolationForest(n_estimators=8, random_state=0).fit(train)
    built = mlpack.build(detector, x[:30], name="detector", out=tmp_path, resolve=False, timings=False)
    got = mlpack.load(built.path).predict({"X": rows.astype(np.float32)})
    np.testing.assert_array_equal(got["label"].ravel(), detector.predict(rows))
    np.testing.assert_allclose(got["scores"].ravel(), detector.decision_function(rows), atol=1e-5)


def test_lightgbm_zero_as_missing_is_refused(tmp_path: Path) -> None:
    """onnxmltools' trees take 0 as a number: with zero_as_missing every row holding a zero would change."""
    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    x = np.c_[rng.integers(0, 8, 600), rng.normal(size=600)].astype(float)
    y = ((x[:, 0] % 3 == 0) ^ (x[:, 1] > 0)).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, zero_as_missing=True).fit(x, y)
    with pytest.raises(UsageError, match="zero_as_missing=True, which does not convert"):
        mlpack.build(model, x[x[:, 0] != 0][:50], out=tmp_path, resolve=False, timings=False)
    assert not any(tmp_path.iterdir())


def test_a_package_refuses_nan_where_the_native_model_does(tmp_path: Path) -> None:
    """LogisticRegression raises on NaN; its ONNX would answer with NaN scores and the label of column 0. The
    build records the inputs the native model refuses NaN in (one at a time), and predict refuses there too,
    while a column with an imputer still takes NaN and answers as the model does."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    plain = LogisticRegression(max_iter=1000).fit(x, y)
    built = mlpack.build(plain, x[::5], name="plain", out=tmp_path, resolve=False, timings=False)
    assert built.manifest.source is not None and built.manifest.source.details["refuses_nan"] == ["X"]
    rows = x[:3].astype(np.float32)
    rows[1, 2] = np.nan
    with pytest.raises(UsageError, match=r"Input 'X' holds NaN \(at \[1, 2\]\), which the native model"):
        mlpack.load(built.path).predict(rows)
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    columns = ColumnTransformer([("impute", SimpleImputer(), ["a"]), ("scale", StandardScaler(), ["b", "c", "d"])])
    model = Pipeline([("prepare", columns), ("classify", LogisticRegression(max_iter=1000))]).fit(table, y)
    built = mlpack.build(model, table.iloc[::5], name="frame", out=tmp_path, resolve=False, timings=False)
    assert built.manifest.source is not None and built.manifest.source.details["refuses_nan"] == ["b", "c", "d"]
    fresh = table.iloc[:6].copy()
    fresh.loc[0, "a"] = np.nan
    got = mlpack.load(built.path).predict(fresh)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
    fresh.loc[2, "c"] = np.nan
    with pytest.raises(UsageError, match="Input 'c' holds NaN"):
        mlpack.load(built.path).predict(fresh)


def test_an_unseen_category_is_probed_at_build(tmp_path: Path) -> None:
    """Every string column of a table is probed with a category no one trained on. With
    handle_unknown="ignore" the package answers it as the model does (and the probe is recorded); with
    "infrequent_if_exist" the native model maps it to the infrequent bucket while onnxruntime's OneHotEncoder
    fails on it at predict: refused at build, not in production."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"city": rng.choice(["a", "b", "c", "d"], 300), "x": rng.normal(size=300)})
    target = table["x"].to_numpy() * 3 + (table["city"] == "b") * 2
    ignore = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["city"]), remainder="passthrough"),
        Ridge(),
    ).fit(table, target)
    built = mlpack.build(ignore, table.iloc[:20], name="ignore", out=tmp_path, resolve=False, timings=False)
    assert built.manifest.parity is not None
    assert built.manifest.parity.coverage["probes"] == ["an unseen category in 'city'"]
    unseen = table.iloc[:3].assign(city=["atlantis", "b", "mu"])
    got = next(iter(mlpack.load(built.path).predict(unseen).values()))
    np.testing.assert_allclose(got.ravel(), ignore.predict(unseen), rtol=1e-5)
    table["size"] = rng.choice(["S", "M", "L"], 300)  # skl2onnx converts this encoder over two columns
    encoder = OneHotEncoder(min_frequency=80, handle_unknown="infrequent_if_exist")
    infrequent = make_pipeline(
        make_column_transformer((encoder, ["city", "size"]), remainder="passthrough"), Ridge()
    )
    infrequent.fit(table, target)
    with pytest.raises(ParityError, match="The package fails on an unseen category in 'city' where the native"):
        mlpack.build(infrequent, table.iloc[:20], name="infrequent", out=tmp_path, resolve=False, timings=False)
    assert not (tmp_path / "infrequent-1").exists()
