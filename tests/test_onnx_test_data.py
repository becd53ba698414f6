"""Samples and expected outputs in the ONNX test-data layout that model zoos ship (input_K.pb, output_K.pb,
test_data_set_* folders), and --expected checking the golden run against outputs the user trusts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import mlpack
from mlpack.errors import ParityError, UsageError
from tests.conftest import CliRunner, one_sentence_error


def model(batch: int | str = "N") -> bytes:
    """y = a * 2 + b, z = ArgMax(y): two inputs, two outputs of two types."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "two"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
         helper.make_node("ArgMax", ["y"], ["z"], axis=1, keepdims=0)],
        "zoo",
        [helper.make_tensor_value_info("a", T.FLOAT, [batch, 3]), helper.make_tensor_value_info("b", T.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", T.FLOAT, [batch, 3]), helper.make_tensor_value_info("z", T.INT64, [batch])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def write_set(folder: Path, inputs: list[tuple[str, np.ndarray]], outputs: list[tuple[str, np.ndarray]]) -> None:
    folder.mkdir(parents=True)
    for prefix, tensors in (("input", inputs), ("output", outputs)):
        for k, (name, array) in enumerate(tensors):
            (folder / f"{prefix}_{k}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())


def run(onnx_model: bytes, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    return list(session.run(["y", "z"], {"a": a, "b": b}))


def test_a_zoo_folder_with_unnamed_tensors_builds_and_its_outputs_are_checked(
    tmp_path: Path, cli: CliRunner
) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    y, z = run(model(), a, b)
    (tmp_path / "model.onnx").write_bytes(model())
    write_set(tmp_path / "test_data_set_0", [("", a), ("", b)], [("", y), ("", z)])  # by position, as zoos do
    result = cli("build", tmp_path / "model.onnx", "--sample", tmp_path / "test_data_set_0",
                 "--expected", tmp_path / "test_data_set_0", "--out", tmp_path / "dist", "--no-resolve", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)["manifest"]
    assert manifest["parity"]["compared"] == "expected outputs vs onnxruntime"
    assert [o["name"] for o in manifest["parity"]["outputs"]] == ["y", "z"]
    assert all(o["identical"] for o in manifest["parity"]["outputs"])
    package = Path(json.loads(result.stdout)["package"])
    assert mlpack.verify(package).verdict == "identical"
    got = mlpack.load(package).predict({"a": a, "b": b})
    np.testing.assert_array_equal(got["y"], y)

    wrong = tmp_path / "wrong"
    write_set(wrong, [("", a), ("", b)], [("", y + 0.5), ("", z)])
    refused = cli("build", tmp_path / "model.onnx", "--sample", wrong, "--expected", wrong,
                  "--out", tmp_path / "dist2", "--no-resolve")  # fmt: skip
    assert refused.returncode == 1
    assert "The golden run does not reproduce the expected outputs (y: 12 of 12" in one_sentence_error(refused)
    assert not (tmp_path / "dist2").exists() or not any((tmp_path / "dist2").iterdir())


def test_several_sets_with_named_tensors_run_each_at_a_fixed_batch(tmp_path: Path) -> None:
    """A model zoo's fixed batch of 1 with three test_data_set folders: three golden runs of one row each."""
    rng = np.random.default_rng(1)
    sets = []
    for k in range(3):
        a, b = rng.normal(size=(1, 3)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32)
        y, z = run(model(1), a, b)
        write_set(
            tmp_path / f"zoo/test_data_set_{k}", [("b", b), ("a", a)], [("z", z), ("y", y)]
        )  # named, any order
        sets.append((a, b, y))
    package = mlpack.build(model(1), sample=tmp_path / "zoo", expected=tmp_path / "zoo", name="zoo",
                           out=tmp_path / "dist", resolve=False, timings=False)  # fmt: skip
    assert package.manifest.reference.rows == 3 and package.manifest.reference.row_batches
    assert mlpack.verify(package.path).verdict == "identical"
    golden = np.load(package.path / "reference" / "outputs.npz")["y"]
    np.testing.assert_array_equal(golden, np.concatenate([y for _, _, y in sets]))


def test_sets_that_cannot_be_joined_and_odd_files_are_refused(tmp_path: Path) -> None:
    write_set(tmp_path / "odd/test_data_set_0", [("a", np.ones((2, 3), np.float32))], [])
    write_set(tmp_path / "odd/test_data_set_1", [("a", np.ones((2, 4), np.float32))], [])
    with pytest.raises(UsageError, match=r"only sets that differ in their leading \(batch\) axis can be joined"):
        mlpack.build(model(), sample=tmp_path / "odd", out=tmp_path / "dist", resolve=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"holds no input_K\.pb files"):
        mlpack.build(model(), sample=tmp_path / "empty", out=tmp_path / "dist", resolve=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "input_0.pb").write_bytes(b"\xff\xff not a tensor")
    with pytest.raises(UsageError, match="is not an ONNX TensorProto"):
        mlpack.build(model(), sample=tmp_path / "junk", out=tmp_path / "dist", resolve=False)


def test_expected_is_for_onnx_models_only(
    tmp_path: Path, forest: object, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    np.savez(tmp_path / "expected.npz", label=np.zeros(3, np.int64))
    with pytest.raises(UsageError, match="--expected is for ONNX models"):
        mlpack.build(
            forest, sample=iris[0][:3], expected=tmp_path / "expected.npz", out=tmp_path / "d", resolve=False
        )


def test_expected_outputs_from_an_npz_accept_wider_floats(tmp_path: Path) -> None:
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    y, z = run(model(), a, b)
    np.savez(tmp_path / "expected.npz", y=y.astype(np.float64), z=z)
    package = mlpack.build(model(), sample={"a": a, "b": b}, expected=tmp_path / "expected.npz",
                           out=tmp_path / "dist", resolve=False, timings=False)  # fmt: skip
    assert package.manifest.parity is not None and package.manifest.parity.status == "passed"
    np.savez(tmp_path / "partial.npz", y=y)  # every output must be expected: z is missing
    with pytest.raises(ParityError, match=r"z: no reference output was recorded for it"):
        mlpack.build(model(), sample={"a": a, "b": b}, expected=tmp_path / "partial.npz", out=tmp_path / "d2",
                     resolve=False, timings=False)  # fmt: skip
