"""Shared fixtures: tiny real models, packages built once per session, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _lock_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A cache that starts empty: the first build resolves for real, later builds reuse its answers."""
    old = os.environ.get("MLPACK_CACHE_DIR")
    os.environ["MLPACK_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlpack-cache"))
    yield
    if old is None:
        os.environ.pop("MLPACK_CACHE_DIR", None)
    else:
        os.environ["MLPACK_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def forest(iris: tuple[np.ndarray, np.ndarray]) -> object:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=30, random_state=0).fit(*iris)


@pytest.fixture(scope="session")
def pipeline(iris: tuple[np.ndarray, np.ndarray]) -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(*iris)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, forest: object, iris: tuple[np.ndarray, np.ndarray]) -> Path:
    """The forest packaged once per session through the Python API, with real locks."""
    import mlpack

    out = tmp_path_factory.mktemp("built")
    package = mlpack.build(forest, sample=iris[0], name="forest", version="1", out=out)
    return package.path


@pytest.fixture
def package(built: Path, tmp_path: Path) -> Path:
    """A private copy of the session package, free to tamper with."""
    target = tmp_path / built.name
    shutil.copytree(built, target)
    return target


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def cli() -> CliRunner:
    """Run the real command line in a fresh process, as a user would."""

    def run(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlpack", *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def one_sentence_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error contract: one line on stderr, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlpack: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]
