"""Outputs that are not tensors: a ZipMap's sequence of {class: probability} maps, as skl2onnx writes by
default, and a sequence of same-shaped tensors. They are stored as arrays (a field per key; stacked), replayed
and compared like tensors, with the keys compared too; serve and the Triton export refuse them in a sentence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib.recfunctions import structured_to_unstructured
from onnx import TensorProto as T
from onnx import helper

import mlpack
from mlpack.compare import compare_output
from mlpack.fileio import canonical_json, load_npz, npz_bytes, sha256_file
from mlpack.manifest import Tolerance
from tests.conftest import one_sentence_error


@pytest.fixture(scope="module")
def zipmap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray, Path]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onnx_model = to_onnx(model, X[:1])  # ZipMap on, as skl2onnx does by default
    out = tmp_path_factory.mktemp("zipmap")
    package = mlpack.build(onnx_model, sample=X[::10], name="zip", out=out, resolve=False, timings=False)
    return model, X[::10], package.path


def test_a_zipmap_output_is_stored_replayed_and_matches_the_native_model(
    zipmap: tuple[Any, np.ndarray, Path],
) -> None:
    model, X, path = zipmap
    manifest = mlpack.load(path).package.manifest
    outputs = {spec.name: (spec.type, spec.kind) for spec in manifest.model.outputs}
    assert outputs["output_probability"] == ("seq(map(int64,tensor(float)))", "probabilities")
    golden = load_npz(path / "reference" / "outputs.npz")["output_probability"]
    assert golden.dtype.names == ("0", "1", "2")  # the class labels, compared as the keys
    np.testing.assert_allclose(structured_to_unstructured(golden), model.predict_proba(X), atol=1e-5)
    assert mlpack.verify(path).verdict == "identical"


def test_changed_keys_or_values_of_a_map_are_caught(zipmap: tuple[Any, np.ndarray, Path], tmp_path: Path) -> None:
    _, _, built = zipmap
    golden = load_npz(built / "reference" / "outputs.npz")["output_probability"]
    renamed = golden.astype(np.dtype([("0", "<f4"), ("2", "<f4"), ("1", "<f4")]))  # same values, other keys
    keys = compare_output("p", "probabilities", golden, renamed, Tolerance(1e-4, 1e-3))
    assert not keys.passed and "keys" in (keys.problem or "")
    moved = golden.copy()
    moved["1"][0] += 0.01
    values = compare_output("p", "probabilities", golden, moved, Tolerance(1e-4, 1e-3))
    assert not values.passed and values.outside == 1 and values.top1_agreement is not None

    package = tmp_path / built.name  # a replay against altered golden maps: verify says mismatch
    import shutil

    shutil.copytree(built, package)
    outputs = load_npz(package / "reference" / "outputs.npz")
    outputs["output_probability"] = moved
    (package / "reference" / "outputs.npz").write_bytes(npz_bytes(outputs))
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["reference/outputs.npz"] = sha256_file(package / "reference" / "outputs.npz")
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    report = mlpack.verify(package)
    assert report.verdict == "mismatch" and "output_probability" in report.message


def test_a_sequence_of_same_shaped_tensors_is_stacked(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["n"]), helper.make_node("SequenceConstruct", ["x", "n"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
        [helper.make_value_info("y", helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.FLOAT, ["N", 3])))],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    package = mlpack.build(model, sample={"x": x}, out=tmp_path, resolve=False, timings=False)
    np.testing.assert_array_equal(load_npz(package.path / "reference" / "outputs.npz")["y"], np.stack([x, -x]))
    assert mlpack.verify(package.path).verdict == "identical"


def test_serve_and_triton_refuse_a_zipmap_in_one_sentence(
    zipmap: tuple[Any, np.ndarray, Path], tmp_path: Path
) -> None:
    _, _, path = zipmap
    served = subprocess.run([sys.executable, "-m", "mlpack", "serve", str(path), "--port", "0"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert served.returncode == 2
    assert "carries tensors only: 'output_probability' is a seq(map(int64,tensor(float)))" in one_sentence_error(
        served
    )
    exported = subprocess.run([sys.executable, "-m", "mlpack", "export", "triton", str(path), str(tmp_path / "t")],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert exported.returncode == 2 and "Triton cannot serve 'output_probability'" in one_sentence_error(exported)
    assert not (tmp_path / "t").exists()
