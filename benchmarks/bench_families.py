"""Per model family: conversion time, and onnxruntime against the native model at batch 1 and 1024.

Seven tiny models, trained here with fixed seeds: scikit-learn (iris forest, a ColumnTransformer pipeline on a
DataFrame, a boosted regressor on diabetes), PyTorch (an MLP and a CNN, float32, eval mode), XGBoost and
LightGBM (100-tree classifiers on one synthetic 20-feature set). For each:

  1. conversion: mlpack.build(..., resolve=False, timings=False, force=True) as a whole, and the converter's
     own convert() call alone, after one untimed convert() that pays the first imports (median of --builds);
  2. inference: the built package's model.onnx in onnxruntime, with the session options the manifest records
     (1 intra-op thread), against the native model's predict_proba / predict / forward, also on one thread
     (torch.set_num_threads(1); n_jobs=1 for the boosters; BLAS and OpenMP pools limited to one thread). Rows are tiled from the sample. Native and
     onnxruntime calls alternate, within a time budget; medians in microseconds, and native / onnxruntime,
     the speed-up a user gains by serving the package;
  3. conversion parity: the largest max_abs over the non-label outputs in the manifest (labels: whether all
     agree).

No target: the figures are informational. The whole script takes about half a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import median

SEED = 0
BATCHES = (1, 1024)
# Time allowed for the alternating native/onnxruntime calls of one family at one batch size, and call bounds.
BUDGET_S = {1: 0.6, 1024: 2.0}
CALLS = {1: (20, 400), 1024: (5, 60)}  # (at least, at most) calls of each


@dataclass
class Family:
    name: str
    model: Any
    sample: Any  # what mlpack.build is given: an array or a DataFrame
    native: Callable[[Any], Any]  # the native prediction a user would otherwise call
    rows: Callable[[Any, np.ndarray], Any]  # rows of the sample, in the native model's input form


# ---------------------------------------------------------------------------------------------- the models


def _array_rows(sample: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(sample[index])


def _frame_rows(sample: Any, index: np.ndarray) -> Any:
    return sample.iloc[index].reset_index(drop=True)


def sklearn_forest() -> Family:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    model = RandomForestClassifier(n_estimators=100, random_state=SEED).fit(x_train, y_train)
    return Family("sklearn RandomForestClassifier", model, x_test, model.predict_proba, _array_rows)


def sklearn_pipeline() -> Family:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(SEED)
    n = 2000
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(),
            "income": rng.lognormal(10, 0.5, n),
            "city": rng.choice(["paris", "lyon", "nice", "lille", "brest"], n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    score = (
        0.04 * (frame["age"] - 40)
        + 0.8 * (np.log(frame["income"]) - 10)
        + frame["plan"].map({"basic": -0.7, "plus": 0.1, "pro": 0.9})
        + frame["city"].map({"paris": 0.5, "lyon": 0.2, "nice": 0.0, "lille": -0.3, "brest": -0.4})
        + rng.normal(0, 0.5, n)
    )
    labels = np.where(score > 0.3, "churn", np.where(score > -0.4, "stay", "upgrade"))
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), ["age", "income"]),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame.iloc[:1800], labels[:1800])
    sample = frame.iloc[1800:1864].reset_index(drop=True)
    return Family("sklearn Pipeline(ColumnTransformer, LogReg)", model, sample, model.predict_proba, _frame_rows)


def sklearn_boosted_regressor() -> Family:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=SEED)
    model = GradientBoostingRegressor(n_estimators=100, random_state=SEED).fit(x_train, y_train)
    return Family("sklearn GradientBoostingRegressor", model, x_test, model.predict, _array_rows)


def _train_torch(model: Any, x: Any, y: Any, steps: int = 30) -> Any:
    import torch

    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        logits = model[:-1](x)  # the softmax head is left out of the loss
        loss(logits, y).backward()
        optimiser.step()
    return model.eval()


def _torch_forward(model: Any) -> Callable[[Any], Any]:
    import torch

    def forward(batch: Any) -> Any:
        with torch.no_grad():
            return model(batch)

    return forward


def _tensor_rows(sample: np.ndarray, index: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(sample[index]))


def torch_mlp() -> Family:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10), nn.Softmax(dim=1)
    )
    x = torch.randn(512, 32)
    y = (x[:, :10] * torch.linspace(0.5, 1.5, 10)).argmax(dim=1)
    _train_torch(model, x, y)
    sample = torch.randn(32, 32).numpy()
    return Family("torch MLP 32-256-256-10", model, sample, _torch_forward(model), _tensor_rows)


def torch_cnn() -> Family:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10), nn.Softmax(dim=1),
    )  # fmt: skip
    x = torch.randn(256, 1, 28, 28)
    y = x.mean(dim=(1, 2)).reshape(256, 4, 7).mean(dim=2).argmax(dim=1)  # which band of rows is brightest
    _train_torch(model, x, y)
    sample = torch.randn(16, 1, 28, 28).numpy()
    return Family("torch CNN 1x28x28", model, sample, _torch_forward(model), _tensor_rows)


def _boosting_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=SEED)
    x = x.astype(np.float32)
    return x[:4800], y[:4800], x[4800:4928]


def xgboost_classifier() -> Family:
    from xgboost import XGBClassifier

    x_train, y_train, sample = _boosting_data()
    model = XGBClassifier(n_estimators=100, max_depth=6, random_state=SEED, n_jobs=1).fit(x_train, y_train)
    return Family("xgboost XGBClassifier", model, sample, model.predict_proba, _array_rows)


def lightgbm_classifier() -> Family:
    from lightgbm import LGBMClassifier

    x_train, y_train, sample = _boosting_data()
    model = LGBMClassifier(n_estimators=100, random_state=SEED, n_jobs=1, verbose=-1).fit(x_train, y_train)
    return Family("lightgbm LGBMClassifier", model, sample, model.predict_proba, _array_rows)


FAMILIES = (
    sklearn_forest, sklearn_pipeline, sklearn_boosted_regressor, torch_mlp, torch_cnn, xgboost_classifier,
    lightgbm_classifier,
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ measuring


def clock(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def conversion(family: Family, out: Path, runs: int) -> tuple[Path, dict[str, float]]:
    """Median seconds of mlpack.build and of the converter's convert(), alternated; the built package's path."""
    import mlpack
    from mlpack.convert import ConvertOptions, find_converter
    from mlpack.sample import load_sample

    converter = find_converter(family.model)
    arrays = load_sample(family.sample)
    package: list[Path] = []

    def build() -> None:
        built = mlpack.build(family.model, sample=family.sample, out=out, resolve=False, timings=False, force=True)
        package.append(Path(built.path))

    def convert() -> None:
        converter.convert(family.model, arrays, ConvertOptions())

    convert()  # untimed: the converter's first imports are not what is measured
    times: dict[str, list[float]] = {"build": [], "convert": []}
    for _ in range(runs):
        times["build"].append(clock(build))
        times["convert"].append(clock(convert))
    return package[-1], {key: median(values) for key, values in times.items()}


def session_for(package: Path) -> Any:
    """An onnxruntime session on the package's model with the session options its manifest records."""
    import onnxruntime as ort

    recorded = json.loads((package / "mlpack.json").read_text())["runtime"]["session"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = recorded["intra_op_num_threads"]
    options.inter_op_num_threads = recorded["inter_op_num_threads"]
    options.execution_mode = getattr(ort.ExecutionMode, recorded["execution_mode"])
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, recorded["graph_optimization_level"])
    return ort.InferenceSession(str(package / "model.onnx"), options, providers=recorded["providers"])


def inference(family: Family, package: Path, batch: int) -> dict[str, float]:
    """Median microseconds of one native call and one onnxruntime call on BATCH rows, alternated."""
    session = session_for(package)
    with np.load(package / "reference" / "inputs.npz") as golden:  # the sample, fitted to the model's inputs
        inputs = {key: golden[key] for key in golden.files}
    count = len(next(iter(inputs.values())))
    index = np.arange(batch) % count
    feeds = {key: np.ascontiguousarray(value[index]) for key, value in inputs.items()}
    native_input = family.rows(family.sample, index)

    def native() -> None:
        family.native(native_input)

    def runtime() -> None:
        session.run(None, feeds)

    native()  # untimed: first-call allocations and lazy initialisation
    runtime()
    least, most = CALLS[batch]
    times: dict[str, list[float]] = {"native": [], "onnxruntime": []}
    deadline = time.perf_counter() + BUDGET_S[batch]
    for i in range(most):
        first, second = (native, runtime) if i % 2 == 0 else (runtime, native)
        for action in (first, second):
            times["native" if action is native else "onnxruntime"].append(clock(action))
        if i + 1 >= least and time.perf_counter() > deadline:
            break
    figures = {key: median(values) * 1e6 for key, values in times.items()}
    figures["speedup"] = figures["native"] / figures["onnxruntime"]
    figures["calls"] = len(times["native"])
    return figures


def parity(package: Path) -> tuple[float, str]:
    """The largest max_abs over non-label outputs, and how the label outputs compared."""
    outputs = json.loads((package / "mlpack.json").read_text())["parity"]["outputs"]
    values = [float(o["max_abs"]) for o in outputs if o["kind"] != "label"]
    labels = [o for o in outputs if o["kind"] == "label"]
    if not labels:
        verdict = "-"
    elif all(o["identical"] for o in labels):
        verdict = "same"
    else:
        verdict = f"{sum(o['total'] - o['outside'] - o['tied_rows'] for o in labels)} of {labels[0]['total']}"
    return (max(values) if values else math.nan), verdict


def versions() -> str:
    import lightgbm
    import onnxruntime
    import sklearn
    import torch
    import xgboost

    import mlpack

    found = {
        "mlpack": mlpack.__version__, "torch": torch.__version__, "xgboost": xgboost.__version__,
        "lightgbm": lightgbm.__version__, "scikit-learn": sklearn.__version__, "onnxruntime": onnxruntime.__version__,
    }  # fmt: skip
    return ", ".join(f"{name} {version}" for name, version in found.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=3, help="timed builds and converts per family (default 3)")
    runs = parser.parse_args().builds

    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    print(f"environment: {versions()}")
    print(f"torch threads: {threads} for conversion, 1 for inference; onnxruntime: the manifest's session options")
    print(f"conversion: median of {runs} alternated mlpack.build(resolve=False, timings=False) / convert() calls")
    print("inference: median µs per call, native and onnxruntime alternated; speed-up = native / onnxruntime")
    print()
    header = (
        f"{'family':<44} {'build ms':>9} {'convert ms':>10} "
        f"{'b1 native':>10} {'b1 ort':>8} {'b1 x':>8} "
        f"{'b1024 native':>12} {'b1024 ort':>10} {'b1024 x':>8} {'parity max abs':>14} {'labels':>7}"
    )
    print(header)
    print("-" * len(header))
    speedups: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-families-") as tmp:
        for make in FAMILIES:
            torch.set_num_threads(threads)  # conversion as a user would run it; inference below on one thread
            family = make()
            package, built = conversion(family, Path(tmp) / make.__name__, runs)
            torch.set_num_threads(1)
            with threadpool_limits(limits=1):  # BLAS and OpenMP pools too (numpy under LogisticRegression)
                timing = {batch: inference(family, package, batch) for batch in BATCHES}
            max_abs, labels = parity(package)
            speedups[family.name] = timing[1024]["speedup"]
            b1, b1024 = timing[1], timing[1024]
            print(
                f"{family.name:<44} {built['build'] * 1e3:>9.0f} {built['convert'] * 1e3:>10.0f} "
                f"{b1['native']:>10.1f} {b1['onnxruntime']:>8.1f} {b1['speedup']:>7.2f}x "
                f"{b1024['native']:>12.0f} {b1024['onnxruntime']:>10.0f} {b1024['speedup']:>7.2f}x "
                f"{max_abs:>14.3g} {labels:>7}",
                flush=True,
            )
    largest = max(speedups, key=speedups.__getitem__)
    smallest = min(speedups, key=speedups.__getitem__)
    print(
        f"no target: figures are informational; batch-1024 speed-up largest for {largest} "
        f"({speedups[largest]:.2f}x), smallest for {smallest} ({speedups[smallest]:.2f}x)"
    )


if __name__ == "__main__":
    main()
