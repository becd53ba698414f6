"""Train an XGBoost classifier, save it in XGBoost's own JSON format, package that file, verify it.

Also replays the golden inputs with two threads: a tree ensemble then sums in another order, and verify
says 'equivalent' with the numbers instead of 'identical'.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification

DIST = Path(__file__).resolve().parent / "dist"


def main() -> int:
    X, y = make_classification(n_samples=2000, n_features=12, n_informative=6, n_classes=3, random_state=0)
    X = X.astype(np.float32)
    model = xgb.XGBClassifier(n_estimators=60, max_depth=4, random_state=0).fit(X[:1500], y[:1500])
    print(f"xgboost accuracy {model.score(X[1500:], y[1500:]):.3f}")
    DIST.mkdir(parents=True, exist_ok=True)
    model.save_model(DIST / "model.json")
    np.save(DIST / "sample.npy", X[1500:1756])
    cli = [sys.executable, "-m", "mlpack"]
    subprocess.run([*cli, "build", str(DIST / "model.json"), "--sample", str(DIST / "sample.npy"),
                    "--name", "xgb-classes", "--out", str(DIST), "--force"], check=True)  # fmt: skip
    same = subprocess.run([*cli, "verify", str(DIST / "xgb-classes-1")])
    other_threads = subprocess.run([*cli, "verify", str(DIST / "xgb-classes-1"), "--threads", "2"])
    return 1 if same.returncode or other_threads.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
