"""Train two iris models, package each with mlpack, and verify each package.

The forest goes through the Python API, right after training; the pipeline is saved with skops and goes
through the CLI, as a CI job would do it. Both packages land in examples/iris/dist/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlpack

HERE = Path(__file__).resolve().parent
DIST = HERE / "dist"


def main() -> int:
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X_train, y_train)
    print(f"forest accuracy {forest.score(X_test, y_test):.3f}")
    package = mlpack.build(
        forest,
        sample=X_test,
        name="iris-forest",
        version="1",
        out=DIST,
        force=True,
        lineage={"dataset": "sklearn.datasets.load_iris", "test_accuracy": forest.score(X_test, y_test)},
    )
    print(f"built {package.path} {package.digest} (parity {package.manifest.parity.status})")

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X_train, y_train)
    print(f"pipeline accuracy {pipeline.score(X_test, y_test):.3f}")
    work = DIST / "work"
    work.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, work / "iris-pipeline.skops")
    np.save(work / "sample.npy", X_test)
    mlpack_cli = [sys.executable, "-m", "mlpack"]
    subprocess.run(
        [
            *mlpack_cli,
            "build",
            str(work / "iris-pipeline.skops"),
            "--sample",
            str(work / "sample.npy"),
            "--name",
            "iris-pipeline",
            "--version",
            "1",
            "--out",
            str(DIST),
            "--force",
        ],
        check=True,
    )

    failures = 0
    for name in ("iris-forest-1", "iris-pipeline-1"):
        result = subprocess.run([*mlpack_cli, "verify", str(DIST / name)])
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
