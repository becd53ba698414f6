"""Train a LightGBM regressor, package it through the Python API and as LightGBM's text model file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
from sklearn.datasets import load_diabetes

import mlpack

DIST = Path(__file__).resolve().parent / "dist"


def main() -> int:
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    model = lgb.LGBMRegressor(n_estimators=80, learning_rate=0.05, verbose=-1, random_state=0).fit(
        X[:350], y[:350]
    )
    print(f"lightgbm R^2 {model.score(X[350:], y[350:]):.3f}")
    package = mlpack.build(model, sample=X[350:], name="diabetes-lgbm", version="1", out=DIST, force=True)
    print(f"built {package.path}; parity {package.manifest.parity.status}, "
          f"max abs {package.manifest.parity.outputs[0]['max_abs']:.2g}")  # fmt: skip

    model.booster_.save_model(DIST / "model.txt")
    np.save(DIST / "sample.npy", X[350:])
    cli = [sys.executable, "-m", "mlpack"]
    subprocess.run([*cli, "build", str(DIST / "model.txt"), "--sample", str(DIST / "sample.npy"),
                    "--name", "diabetes-lgbm-txt", "--out", str(DIST), "--force", "--quiet"], check=True)  # fmt: skip
    failures = sum(
        subprocess.run([*cli, "verify", str(DIST / name)]).returncode != 0
        for name in ("diabetes-lgbm-1", "diabetes-lgbm-txt-1")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
