"""LightGBM trained on a DataFrame with pandas ``category`` columns: the package takes one input per column
(strings for the categories) and maps each category to the code LightGBM recorded, missing and unseen ones to
NaN as LightGBM does; rows it never saw get the native model's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from mlpack.errors import UsageError
from tests.conftest import CliRunner, one_sentence_error

pd = pytest.importorskip("pandas")
lgb = pytest.importorskip("lightgbm")

COLORS = ["red", "green", "blue"]
SIZES = [1, 2, 3, 4]  # integer categories, an ordered list


def frame(rows: int, seed: int, colors: list[str] = COLORS) -> Any:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "color": pd.Categorical(rng.choice(colors, rows)),
            "size": pd.Categorical(rng.choice(SIZES, rows), categories=SIZES),
        }
    )
    df.loc[::9, "color"] = np.nan
    return df


def target(df: Any) -> Any:
    return ((df["color"] == "red") ^ (df["size"].astype(float) > 2) ^ (df["x"] > 0.5)).astype(int)


@pytest.mark.filterwarnings("ignore:Input .* cast to float32")
@pytest.mark.parametrize("estimator", ["LGBMClassifier", "LGBMRegressor"])
def test_category_columns_map_to_lightgbms_codes(estimator: str, tmp_path: Path) -> None:
    train = frame(600, 0)
    model = getattr(lgb, estimator)(n_estimators=25, min_child_samples=5, verbose=-1).fit(train, target(train))
    package = mlpack.build(model, frame(80, 1), name="cats", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.source is not None
    assert package.manifest.source.details["pandas_categorical"] == {"color": 3, "size": 4}
    assert [spec.name for spec in package.manifest.model.inputs] == ["x", "color", "size"]
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = frame(300, 2, colors=[*COLORS, "purple"])  # an unseen category, and missing ones
    loaded = mlpack.load(package.path)
    got = loaded.predict(fresh)
    if estimator == "LGBMClassifier":
        np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(fresh), atol=1e-5)
    else:
        np.testing.assert_allclose(got["variable"].ravel(), model.predict(fresh), rtol=1e-5, atol=1e-5)


def test_a_booster_file_with_categories_builds_from_a_csv_on_the_cli(tmp_path: Path, cli: CliRunner) -> None:
    """The .txt file keeps pandas_categorical; the CSV's strings find their codes by it."""
    train = frame(600, 3)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(train, target(train)), num_boost_round=20)  # fmt: skip
    booster.save_model(tmp_path / "cats.txt")
    sample = frame(60, 4)
    sample.to_csv(tmp_path / "sample.csv", index=False)
    built = cli("build", tmp_path / "cats.txt", "--sample", tmp_path / "sample.csv", "--out", tmp_path / "dist",
                "--no-resolve", "--no-timings")  # fmt: skip
    assert built.returncode == 0, built.stderr
    golden = np.load(tmp_path / "dist" / "cats-1" / "reference" / "outputs.npz")
    native = booster.predict(sample)  # probability of the positive class
    np.testing.assert_allclose(golden["probabilities"][:, 1], native, atol=1e-5)
    np.testing.assert_array_equal(golden["label"].ravel(), (native > 0.5).astype(int))
    matrix = tmp_path / "codes.npy"
    np.save(matrix, np.zeros((5, 3), dtype=np.float32))  # numbers only: which column is which category?
    refused = cli("build", tmp_path / "cats.txt", "--sample", matrix, "--out", tmp_path / "refused")
    assert refused.returncode == 2
    assert "pandas categories" in one_sentence_error(refused)
    assert not (tmp_path / "refused" / "cats-1").exists()


def test_a_sample_without_the_category_columns_is_refused(tmp_path: Path) -> None:
    train = frame(300, 5)
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(train, target(train))
    with pytest.raises(UsageError, match="lacks"):
        mlpack.build(model, {"x": np.zeros(4)}, out=tmp_path, resolve=False, timings=False)
