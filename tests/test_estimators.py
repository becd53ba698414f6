"""Everyday scikit-learn estimators that need more than the defaults: each converts, and the package answers
rows it never saw as the native estimator does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mlpack


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
    fresh = np.random.default_rng(3).normal(size=(60, 3)).astype(np.float32)
    got = mlpack.load(package.path).predict(fresh)
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh.astype(np.float64)))


def test_a_converter_failure_is_one_sentence_and_its_whole_text_goes_to_a_log(tmp_path: Path) -> None:
    """skl2onnx's HistGradientBoosting failure dumps every tree into its message: the error keeps the first
    line and names a log file that holds the rest; no package is written."""
    import re

    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlpack.errors import ConversionError

    x = np.random.default_rng(4).normal(size=(120, 4))
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, (x[:, 0] > 0).astype(int))
    with pytest.raises(ConversionError) as refused:  # this skl2onnx cannot convert it (issue 12 asks for it)
        mlpack.build(model, sample=x[:20], out=tmp_path / "dist", resolve=False, timings=False)
    message = refused.value.message
    assert "\n" not in message and len(message) < 600, message
    log = Path(re.search(r"the whole message: (\S+\.log)\)", message)[1])  # type: ignore[index]
    assert "TreeEnsemble" in log.read_text() and len(log.read_text()) > len(message)
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())
