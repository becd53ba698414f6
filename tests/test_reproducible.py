"""The same model gives the same bytes; with SOURCE_DATE_EPOCH the same package digest."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import mlpack
from mlpack.fileio import load_npz, npz_bytes


@pytest.mark.usefixtures("built")  # its real lock resolution fills the run's cache: these builds read it
@pytest.mark.parametrize("model_fixture", ["forest", "pipeline"])
def test_two_builds_in_different_folders_are_identical(
    model_fixture: str,
    request: pytest.FixtureRequest,
    iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = request.getfixturevalue(model_fixture)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = mlpack.build(model, sample=iris[0][:40], name="repro", out=tmp_path / "a" / "deep")
    second = mlpack.build(model, sample=iris[0][:40], name="repro", out=tmp_path / "b")
    assert (first.path / "model.onnx").read_bytes() == (second.path / "model.onnx").read_bytes()
    assert first.manifest.to_dict()["created"] == "2023-11-14T22:13:20Z"
    assert "SOURCE_DATE_EPOCH" in first.manifest.to_dict()["performance"]["omitted"]
    assert first.digest == second.digest
    for relative in first.manifest.to_dict()["files"]:
        assert (first.path / relative).read_bytes() == (second.path / relative).read_bytes(), relative


def test_without_source_date_epoch_only_the_time_differs(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = mlpack.build(forest, sample=iris[0][:5], out=tmp_path / "a", resolve=False)
    second = mlpack.build(forest, sample=iris[0][:5], out=tmp_path / "b", resolve=False)
    assert first.manifest.to_dict()["files"] == second.manifest.to_dict()["files"]
    clock = {"created", "performance"}  # wall-clock readings, left out when SOURCE_DATE_EPOCH is set
    assert {k: v for k, v in first.manifest.to_dict().items() if k not in clock} == {
        k: v for k, v in second.manifest.to_dict().items() if k not in clock
    }
    performance = first.manifest.to_dict()["performance"]
    assert performance["conversion_s"] > 0
    for batch in ("batch_1", "batch_1024"):
        figures = performance[batch]
        assert figures["onnxruntime_ms"] > 0 and figures["native_ms"] > 0
        assert figures["speedup"] == round(figures["native_ms"] / figures["onnxruntime_ms"], 2)


def test_npz_is_byte_reproducible_and_loads_without_pickle(tmp_path: Path) -> None:
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array(["x", "yz"])}
    data = npz_bytes(arrays)
    assert data == npz_bytes(dict(reversed(list(arrays.items()))))
    (tmp_path / "x.npz").write_bytes(data)
    loaded = load_npz(tmp_path / "x.npz")
    assert np.array_equal(loaded["b"], arrays["b"]) and loaded["a"].tolist() == ["x", "yz"]
    assert os.stat(tmp_path / "x.npz").st_size == len(data)
