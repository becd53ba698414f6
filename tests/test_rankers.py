"""Rankers are regressors over rows: an XGBoost rank:ndcg Booster (from a .json file, on the CLI), an
XGBRanker and an LGBMRanker convert to one score per row, and the package's scores on rows it never saw
equal the native ranker's. (onnxmltools alone reads the ranking Booster as a binary classifier whose every
row is label 0.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from tests.conftest import CliRunner

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 6)).astype(np.float32)
Y = rng.integers(0, 4, 200)
GROUPS = [20] * 10
FRESH = rng.normal(size=(40, 6)).astype(np.float32)


def scores(package: Path) -> np.ndarray:
    (output,) = mlpack.load(package).predict(FRESH).values()
    return np.asarray(output).reshape(-1)


def test_a_ranking_booster_file_builds_as_scores(tmp_path: Path, cli: CliRunner) -> None:
    import xgboost as xgb

    train = xgb.DMatrix(X, label=Y)
    train.set_group(GROUPS)
    booster = xgb.train({"objective": "rank:ndcg", "max_depth": 3}, train, num_boost_round=20)
    booster.save_model(tmp_path / "ranker.json")
    np.save(tmp_path / "sample.npy", X[:50])
    built = cli("build", tmp_path / "ranker.json", "--sample", tmp_path / "sample.npy", "--out", tmp_path / "dist",
                "--no-resolve", "--json")  # fmt: skip
    assert built.returncode == 0, built.stderr + built.stdout
    data = json.loads(built.stdout)
    manifest = data["manifest"]
    assert manifest["source"]["objective"] == "rank:ndcg" and manifest["parity"]["status"] == "passed"
    assert [o["name"] for o in manifest["model"]["outputs"]] == ["variable"]
    package = Path(data["package"])
    assert mlpack.verify(package).verdict == "identical"
    native = booster.predict(xgb.DMatrix(FRESH))
    assert np.ptp(native) > 0.1  # scores that rank, not one constant
    np.testing.assert_allclose(scores(package), native, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_ranker_estimators_build_as_scores(family: str, tmp_path: Path) -> None:
    model: Any
    if family == "xgboost":
        import xgboost as xgb

        model = xgb.XGBRanker(n_estimators=20, max_depth=3).fit(X, Y, group=GROUPS)
    else:
        import lightgbm as lgb

        model = lgb.LGBMRanker(n_estimators=20, verbose=-1).fit(X, Y, group=GROUPS)
    package = mlpack.build(model, sample=X[:50], name=family, out=tmp_path, resolve=False, timings=False)
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    assert mlpack.verify(package.path).verdict == "identical"
    native = model.predict(FRESH)
    assert np.ptp(native) > 0.1
    np.testing.assert_allclose(scores(package.path), native, rtol=1e-5, atol=1e-5)
