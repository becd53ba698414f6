"""Shared fixtures: tiny real models, packages built once per run, and a CLI runner.

The suite runs on pytest-xdist's workers (pyproject's addopts). Session fixtures run once per worker, so
what is costly to make, the lock answers and the session package, lives in a folder that all workers of
one run share, made once under a file lock; the tests that share one Podman service or one registry keep
to one worker through their xdist_group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock


def run_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder shared by every worker of this run and by no other run.

    Each xdist worker has its own basetemp (pytest-N/popen-gwK), and their parent is this run's own folder.
    Without xdist the basetemp itself is the run's folder: its parent holds earlier runs, which must not leak
    into this one (the lock cache must start empty).
    """
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / name
    folder.mkdir(exist_ok=True)
    return folder


def xdist_groups(item: pytest.Item) -> list[str]:
    """The item's xdist_group names, as pytest-xdist reads them."""
    marks = item.iter_markers("xdist_group")
    return sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) for mark in marks})


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, which tags each grouped test's node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the tests for the workers, and refuse a parallel run that would scatter an xdist_group."""
    refuse_scattered_groups(config, items)
    # pytest-xdist hands out tests in this order (--no-loadscope-reorder): first the container group, the
    # longest unit (started late, it would finish last); then the modules that need no session package;
    # then those that do. The first worker to need the package builds it (some 40 s of real lock
    # resolution) while the other has work, instead of waiting on the lock. Modules stay whole (the
    # sort is stable), so module fixtures are set up once per worker that runs them.
    needs_package = {
        item.path for item in items if isinstance(item, pytest.Function) and "built" in item.fixturenames
    }
    items.sort(
        key=lambda item: 0 if "container" in xdist_groups(item) else 1 if item.path not in needs_package else 2
    )


def refuse_scattered_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The container tests share one Podman service and base image, the registry tests one registry; two
    workers setting up their own at once collide (image imports, tags, image lists) instead of failing
    cleanly. pytest-xdist scatters a group without a word under --dist load, or under loadgroup with
    pytest 9.2 (pytest-xdist#1386): refuse such a run."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2:
        return
    for item in items:
        groups = xdist_groups(item)
        if groups and not (config.getvalue("loadgroup") and item.nodeid.endswith("@" + "_".join(groups))):
            message = (
                f"{item.nodeid} belongs to xdist_group {groups}, but this run would not keep the group on one "
                "worker: run with --dist loadgroup (the default in pyproject.toml) on pytest < 9.2, or -n 0."
            )
            print(f"\n{message}", file=sys.stderr)  # a worker's UsageError reaches the terminal without it
            raise pytest.UsageError(message)


@pytest.fixture(scope="session", autouse=True)
def _lock_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A cache that starts empty: the first build resolves for real, later builds reuse its answers.

    One cache for all workers: a lock answer costs about 40 s of pip, and mlpack writes each entry
    atomically, so workers can share it safely."""
    old = os.environ.get("MLPACK_CACHE_DIR")
    os.environ["MLPACK_CACHE_DIR"] = str(run_folder(tmp_path_factory, "mlpack-cache"))
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
    """The forest packaged once per run through the Python API, with real locks; read-only for the tests.

    The first worker to need it builds it (resolving the locks for real, which fills the shared cache) while
    the others wait on the file lock; the forest is trained with a fixed seed, so every worker's forest is
    the packaged one. A build renames its finished folder into place, so a package that exists is complete."""
    import mlpack

    out = run_folder(tmp_path_factory, "built")
    path = out / "forest-1"
    with FileLock(out.parent / "built.lock"):  # beside the output folder: the build owns what is inside it
        if not path.is_dir():
            path = mlpack.build(forest, sample=iris[0], name="forest", version="1", out=out).path
    return path


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


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Any]:
    """A registry of this test's own (Distribution on loopback), stopped after it; tests that share one define
    their own ``reg``."""
    from registry_fixture import start_registry

    with start_registry(tmp_path / "registry") as running:
        yield running
