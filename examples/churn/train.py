"""A scikit-learn ColumnTransformer over numeric and string columns, with string class labels.

The model takes one ONNX input per column; the golden inputs come from a CSV whose header names them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DIST = Path(__file__).resolve().parent / "dist"


def customers(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "tenure_months": rng.integers(1, 72, rows).astype(float),
        "monthly_fee": rng.normal(45, 15, rows).round(2),
        "plan": rng.choice(["basic", "standard", "premium"], rows),
        "region": rng.choice(["north", "south", "east", "west"], rows),
    })  # fmt: skip
    risk = 2.5 - frame.tenure_months / 20 + (frame.plan == "basic") + rng.normal(0, 0.8, rows)
    return frame, np.where(risk > 1.2, "churn", "stay")


def main() -> int:
    frame, labels = customers(3000, seed=0)
    columns = ColumnTransformer([
        ("numbers", StandardScaler(), ["tenure_months", "monthly_fee"]),
        ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
    ])  # fmt: skip
    model = make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(frame, labels)
    holdout, holdout_labels = customers(500, seed=1)
    print(f"churn accuracy {model.score(holdout, holdout_labels):.3f}")
    DIST.mkdir(parents=True, exist_ok=True)
    sio.dump(model, DIST / "churn.skops")
    holdout.head(200).to_csv(DIST / "sample.csv", index=False)
    trusted = [arg for t in sio.get_untrusted_types(file=DIST / "churn.skops") for arg in ("--trust-type", t)]
    if trusted:
        print(f"trusting what skops flags in our own file: {trusted[1::2]}")
    cli = [sys.executable, "-m", "mlpack"]
    subprocess.run([*cli, "build", str(DIST / "churn.skops"), "--sample", str(DIST / "sample.csv"), "--name", "churn",
                    "--version", "3", "--out", str(DIST), "--force", *trusted], check=True)  # fmt: skip
    return subprocess.run([*cli, "verify", str(DIST / "churn-3")]).returncode


if __name__ == "__main__":
    sys.exit(main())
