"""Everyday scikit-learn estimators that need more than the defaults: each converts, and the package answers
rows it never saw as the native estimator does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from tests.conftest import CliRunner, one_sentence_error


def test_isolation_forest_takes_the_ai_onnx_ml_opset_it_needs(tmp_path: Path) -> None:
    """skl2onnx writes IsolationForest with ai.onnx.ml 2 or newer: mlpack tries the lowest that converts and
    records it, and checks the scores against decision_function, not only the labels."""
    from sklearn.ensemble import IsolationForest

    x = np.random.default_rng(0).normal(size=(300, 4))
    model = IsolationForest(n_estimators=30, random_state=0).fit(x)
    package = mlpack.build(model, sample=x[:100], name="iso", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.source is not None and package.manifest.source.details["ai_onnx_ml_opset"] >= 2
    assert package.manifest.parity is not None
    parity = {o["name"]: o for o in package.manifest.parity.outputs}
    assert parity["scores"]["passed"] and parity["scores"]["problem"] is None  # compared, not skipped
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = np.random.default_rng(1).normal(size=(50, 4)) * 2
    got = mlpack.load(package.path).predict(fresh.astype(np.float32))
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
    np.testing.assert_allclose(got["scores"].ravel(), model.decision_function(fresh), atol=1e-5)


def test_kmeans_fitted_on_float64_builds_and_labels_fresh_rows_as_the_native_model(tmp_path: Path) -> None:
    """KMeans refuses float32 rows natively (Cython buffers typed as it was fitted): parity feeds it the same
    values widened to float64, so the default float32 build works."""
    from sklearn.cluster import KMeans

    x = np.random.default_rng(2).normal(size=(300, 3))
    model = KMeans(4, n_init=3, random_state=0).fit(x)
    package = mlpack.build(model, sample=x[:100], name="km", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    parity = {o["name"]: o for o in package.manifest.parity.outputs}
    assert parity["scores"]["problem"] is None and parity["scores"]["passed"]  # distances checked, not skipped
    fresh = np.random.default_rng(3).normal(size=(60, 3)).astype(np.float32)
    got = mlpack.load(package.path).predict(fresh)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh.astype(np.float64)))
    np.testing.assert_allclose(got["scores"], model.transform(fresh.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_a_converter_failure_is_one_sentence_and_its_whole_text_goes_to_a_log(tmp_path: Path) -> None:
    """skl2onnx explains a missing converter over a dozen lines: the error keeps the first line and names a
    log file that holds the rest; no package is written."""
    import re

    from sklearn.semi_supervised import LabelSpreading

    from mlpack.errors import ConversionError

    x = np.random.default_rng(4).normal(size=(120, 4))
    model = LabelSpreading().fit(x, (x[:, 0] > 0).astype(int))
    with pytest.raises(ConversionError) as refused:
        mlpack.build(model, sample=x[:20], out=tmp_path / "dist", resolve=False, timings=False)
    message = refused.value.message
    assert "\n" not in message and len(message) < 600, message
    log = Path(re.search(r"the whole message: (\S+\.log)\)", message)[1])  # type: ignore[index]
    assert "update_registered_converter" in log.read_text() and len(log.read_text()) > len(message)
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


@pytest.mark.parametrize("estimator", ["HistGradientBoostingClassifier", "HistGradientBoostingRegressor"])
def test_hist_gradient_boosting_converts_and_sends_nan_the_learnt_way(estimator: str, tmp_path: Path) -> None:
    """skl2onnx's converter, with its missing-value flags written as integers; NaN rows take the branch
    scikit-learn learnt for them, in rows the package never saw."""
    import sklearn.ensemble

    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, 4))
    x[::5, 1] = np.nan
    y = np.nan_to_num(x[:, 1], nan=2.0) + x[:, 0]
    target = (y > 0).astype(int) if estimator.endswith("Classifier") else y
    model = getattr(sklearn.ensemble, estimator)(max_iter=15).fit(x, target)
    package = mlpack.build(model, sample=x[:60], name="hgb", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = rng.normal(size=(300, 4))
    fresh[::3, 1] = np.nan
    fresh[::7, 2] = np.nan
    got = mlpack.load(package.path).predict(fresh.astype(np.float32))
    native = fresh.astype(np.float32).astype(np.float64)  # the package's float32 rows, as the model reads them
    if estimator.endswith("Classifier"):
        np.testing.assert_array_equal(got["label"].ravel(), model.predict(native))
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(native), atol=1e-5)
    else:
        np.testing.assert_allclose(got["variable"].ravel(), model.predict(native), rtol=1e-5, atol=1e-5)


def test_hist_gradient_boosting_with_categorical_features_is_refused_in_one_sentence(
    tmp_path: Path, cli: CliRunner
) -> None:
    """skl2onnx writes category (bitset) splits as numeric thresholds: refused before anything is written."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(7)
    x = np.stack([rng.normal(size=400), rng.integers(0, 4, 400)], axis=1)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[1])
    model.fit(x, ((x[:, 1] == 2) ^ (x[:, 0] > 0)).astype(int))
    sio.dump(model, tmp_path / "hgb.skops")
    np.save(tmp_path / "sample.npy", x[:30])
    refused = cli("build", tmp_path / "hgb.skops", "--sample", tmp_path / "sample.npy", "--out", tmp_path / "dist",
                  *[a for t in sio.get_untrusted_types(file=tmp_path / "hgb.skops") for a in ("--trust-type", t)])  # fmt: skip
    assert refused.returncode == 2
    assert "categorical features does not convert" in one_sentence_error(refused)
    assert not (tmp_path / "dist" / "hgb-1").exists()


@pytest.mark.parametrize("estimator", ["XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor"])
def test_boosters_inside_a_scikit_learn_pipeline_convert_as_a_whole(estimator: str, tmp_path: Path) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    makers: dict[str, Any] = {
        "XGBClassifier": lambda: xgb.XGBClassifier(n_estimators=15, max_depth=3),
        "XGBRegressor": lambda: xgb.XGBRegressor(n_estimators=15, max_depth=3),
        "LGBMClassifier": lambda: lgb.LGBMClassifier(n_estimators=15, verbose=-1),
        "LGBMRegressor": lambda: lgb.LGBMRegressor(n_estimators=15, verbose=-1),
    }
    # an imputer is exact in float32; a scaler is not, and trees split its float32 outputs on other sides of
    # their thresholds for a few rows, which parity rightly refuses
    model = make_pipeline(SimpleImputer(), makers[estimator]()).fit(x, y)
    package = mlpack.build(model, sample=x[:100], name="p", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    fresh = rng.normal(size=(80, 5))
    got = mlpack.load(package.path).predict(fresh.astype(np.float32))
    if estimator.endswith("Classifier"):
        np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(fresh), atol=1e-5)
    else:
        (values,) = got.values()
        np.testing.assert_allclose(values.ravel(), model.predict(fresh), rtol=1e-4, atol=1e-4)


def test_trees_after_a_scaler_that_float32_moves_across_thresholds_are_refused_as_such(tmp_path: Path) -> None:
    """The scaler's float32 outputs fall on the other side of a few XGBoost thresholds: parity refuses, names
    the cause, and does not offer --accept-parity."""
    import xgboost as xgb
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlpack.errors import ParityError

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = make_pipeline(StandardScaler(), xgb.XGBRegressor(n_estimators=15, max_depth=3)).fit(x, y)
    with pytest.raises(ParityError) as refused:
        mlpack.build(model, sample=x[:100], out=tmp_path, resolve=False, timings=False)
    assert "a few rows land on the other side of a threshold" in refused.value.message
    assert "--accept-parity" not in refused.value.message


@pytest.mark.filterwarnings("ignore:Input .* cast to float32")
def test_xgboost_fitted_on_a_dataframe_converts_with_its_column_names(tmp_path: Path, cli: CliRunner) -> None:
    """onnxmltools reads only f0, f1, ... names: a model fitted on named columns converts (names set aside
    for the conversion and given back), from the object and from its saved Booster with a CSV."""
    import pandas as pd
    import xgboost as xgb

    columns = ["age", "income", "score"]
    x = pd.DataFrame(np.random.default_rng(8).normal(size=(300, 3)), columns=columns)
    model = xgb.XGBClassifier(n_estimators=10).fit(x, (x.age + x.income > 0).astype(int))
    package = mlpack.build(model, x.head(40), name="named", out=tmp_path, resolve=False, timings=False)
    assert model.get_booster().feature_names == columns  # the user's model is given back as it was
    fresh = pd.DataFrame(np.random.default_rng(9).normal(size=(100, 3)), columns=columns)
    got = mlpack.load(package.path).predict(fresh)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(fresh), atol=1e-5)

    model.get_booster().save_model(tmp_path / "booster.json")
    fresh.to_csv(tmp_path / "rows.csv", index=False)
    built = cli("build", tmp_path / "booster.json", "--sample", tmp_path / "rows.csv", "--out", tmp_path / "dist",
                "--no-resolve", "--no-timings")  # fmt: skip
    assert built.returncode == 0, built.stderr
    golden = np.load(tmp_path / "dist" / "booster-1" / "reference" / "outputs.npz")
    np.testing.assert_allclose(golden["probabilities"][:, 1], model.predict_proba(fresh)[:, 1], atol=1e-5)


def test_warnings_during_a_build_are_summarised_once_with_a_log(tmp_path: Path, cli: CliRunner) -> None:
    """LightGBM warns on every native call with an unnamed matrix (82 times in one build): the CLI prints
    one line saying how many of which kind, and the log it names holds each; none is streamed."""
    import re

    import joblib
    import lightgbm as lgb
    import pandas as pd

    x = pd.DataFrame(np.random.default_rng(10).normal(size=(200, 3)), columns=["a", "b", "c"])
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, (x.a > 0).astype(int))
    x.head(20).to_csv(tmp_path / "rows.csv", index=False)
    joblib.dump(model, tmp_path / "model.joblib")
    built = cli("build", tmp_path / "model.joblib", "--trust-pickle", "--sample", tmp_path / "rows.csv",
                "--out", tmp_path / "dist", "--no-resolve")  # fmt: skip
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert output.count("UserWarning") == 1  # in the one summary line
    notes = re.findall(r"note: (\d+) warning\(s\) of 1 kind\(s\).*?all of them in (\S+\.log)", output)
    assert len(notes) == 1, output
    count, log = int(notes[0][0]), Path(notes[0][1])
    assert count > 1 and len(log.read_text().splitlines()) == count


@pytest.mark.parametrize(
    "estimator", ["LinearSVC", "RidgeClassifier", "SGDClassifier", "SVC", "SVC-linear", "Perceptron"]
)
def test_classifiers_without_probabilities_give_scikit_learns_decision_function(
    estimator: str, tmp_path: Path
) -> None:
    """A classifier with no predict_proba: skl2onnx's "probabilities" output holds its decision function,
    for two classes as one column, [d, -d] (SVC) or [-d, d] (SGDClassifier, Perceptron). The package gives
    scikit-learn's decision_function as "decision_function", judged as values, for two classes as for three:
    parity compares it (two classes were "not compared"), and so does this test, on fresh rows, against the
    native model. For LinearSVC, in a pipeline too (skl2onnx asked it for a ZipMap option it lacks); for SVC,
    chosen by GridSearchCV too (it came as a ZipMap, not compared)."""
    import sklearn.linear_model
    import sklearn.svm
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    fresh = x[rng.integers(0, len(x), 40)] + rng.normal(0, 0.3, (40, 4))
    kind = getattr(sklearn.svm, estimator.split("-")[0], None) or getattr(sklearn.linear_model, estimator)
    made = {"kernel": "linear"} if estimator == "SVC-linear" else {} if "SVC" in estimator or "Ridge" in estimator \
        else {"random_state": 0}  # fmt: skip
    targets = ((3, np.array(["setosa", "versicolor", "virginica"])[y]), (2, (y == 1).astype(int)))
    models = [(classes, kind(**made).fit(x, target)) for classes, target in targets]
    if estimator == "LinearSVC":
        models.append((2, make_pipeline(StandardScaler(), kind(**made)).fit(x, y == 2)))
    if estimator == "SVC":  # the model a search chose (its ZipMap option was not asked for)
        models.append((3, GridSearchCV(kind(), {"C": [0.5, 1.0]}).fit(x, targets[0][1])))
    for number, (classes, model) in enumerate(models):
        package = mlpack.build(model, x[::5], name=f"{estimator.lower()}-{number}", out=tmp_path, resolve=False,
                               timings=False)  # fmt: skip
        kinds = {spec.name: (spec.kind, list(spec.shape)) for spec in package.manifest.model.outputs}
        assert kinds == {"label": ("label", ["?"]),
                         "decision_function": ("value", ["?"] if classes == 2 else ["?", classes])}  # fmt: skip
        assert package.manifest.parity is not None
        label, scores = package.manifest.parity.outputs
        assert label["identical"] and scores["passed"] and scores["problem"] is None, scores
        got = mlpack.load(package.path).predict(fresh)
        np.testing.assert_array_equal(got["label"].astype(model.predict(fresh).dtype), model.predict(fresh))
        np.testing.assert_allclose(got["decision_function"], model.decision_function(fresh), rtol=1e-4, atol=2e-4)


def test_a_supplied_export_of_a_classifier_without_probabilities_is_held_to_its_decision_function(
    tmp_path: Path,
) -> None:
    """skl2onnx's own export, supplied with onnx=, keeps the name "probabilities" for the decision function:
    parity still compares it with decision_function, so an export that computes something else is refused.
    And a stacked model whose export cannot run its sample says so in one sentence."""
    from onnx import helper, numpy_helper
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    from mlpack.errors import ParityError, UsageError

    x, y = load_iris(return_X_y=True)
    model = LinearSVC(random_state=0).fit(x, y)
    exported = to_onnx(model, x[:1].astype(np.float32))
    assert package_outputs(mlpack.build(model, x[::5], onnx=exported, name="as-is", out=tmp_path, resolve=False,
                                        timings=False)) == ["label", "probabilities"]  # fmt: skip
    for node in exported.graph.node:  # the scores, tripled
        node.output[:] = ["raw" if name == "probabilities" else name for name in node.output]
    exported.graph.initializer.append(numpy_helper.from_array(np.array(3.0, np.float32), "three"))
    exported.graph.node.append(helper.make_node("Mul", ["raw", "three"], ["probabilities"]))
    with pytest.raises(ParityError, match=r"probabilities: 90 of 90 elements outside tolerance"):
        mlpack.build(model, x[::5], onnx=exported, name="tripled", out=tmp_path, resolve=False, timings=False)
    stacked = StackingClassifier([("a", LogisticRegression(max_iter=500)), ("b", SVC())],
                                 final_estimator=LinearSVC(random_state=0)).fit(x, y == 1)  # fmt: skip
    with pytest.raises(UsageError, match="The sample does not fit the model"):
        mlpack.build(stacked, x[::5], name="stacked", out=tmp_path, resolve=False, timings=False)


def package_outputs(package: Any) -> list[str]:
    return [spec.name for spec in package.manifest.model.outputs]
