"""Everyday scikit-learn estimators that need more than the defaults: each converts, and the package answers
rows it never saw as the native estimator does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
