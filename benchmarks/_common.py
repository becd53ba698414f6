"""Shared pieces of the benchmarks: the iris forest, order statistics, and the closing verdict line."""

from __future__ import annotations

import operator
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MLPACK = Path(sys.executable).with_name("mlpack")  # the console script installed beside this interpreter


def iris_forest() -> tuple[Any, np.ndarray]:
    """RandomForestClassifier(n_estimators=100, random_state=0) on iris, and its held-out rows."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(x_train, y_train), x_test


def build_iris(out: Path, name: str = "iris") -> Path:
    """Build the iris forest into out/NAME-1 offline (no runtime-lock resolution) and return its path."""
    import mlpack

    model, x_test = iris_forest()
    package = mlpack.build(model, sample=x_test, name=name, version="1", out=out, resolve=False, force=True)
    return Path(package.path)


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


COMPARE: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


def conclude(what: str, value: float, limit: float, unit: str = "", op: str = "<=") -> bool:
    """Print the closing line: the target, the measured value, and whether the target was met."""
    met = COMPARE[op](value, limit)
    print(f"target: {what} {op} {limit:g}{unit}; measured {value:.3g}{unit}: {'MET' if met else 'NOT MET'}")
    return met
