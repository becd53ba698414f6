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


def test_several_sets_are_separate_golden_runs(tmp_path: Path) -> None:
    """A model zoo's fixed batch of 1 with three test_data_set folders: three golden runs, each replayed on
    its own and checked against its own output_K.pb."""
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
    reference = package.manifest.reference
    assert (reference.runs, reference.rows, reference.row_batches) == (3, 1, False)
    assert mlpack.verify(package.path).verdict == "identical"
    golden = np.load(package.path / "reference" / "outputs.npz")["y"]
    assert golden.shape == (3, 1, 3)
    for k, (_, _, y) in enumerate(sets):
        np.testing.assert_array_equal(golden[k], y)
    # a wrong expected output in the second set only is found in that run
    write_set(tmp_path / "bad/test_data_set_0", [("a", sets[0][0]), ("b", sets[0][1])], [("y", sets[0][2])])
    write_set(tmp_path / "bad/test_data_set_1", [("a", sets[1][0]), ("b", sets[1][1])], [("y", sets[1][2] + 1)])
    with pytest.raises(ParityError, match=r"y: 3 of 6"):
        mlpack.build(model(1), sample=tmp_path / "bad", expected=tmp_path / "bad", name="bad",
                     out=tmp_path / "dist2", resolve=False, timings=False)  # fmt: skip


def test_runs_of_scalars_and_of_a_model_without_batch_axis(tmp_path: Path) -> None:
    """Sets whose tensors cannot be joined along a batch axis (0-d scalars) still make separate runs."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["s", "v"], ["y"])], "scalar",
        [helper.make_tensor_value_info("s", T.FLOAT, []), helper.make_tensor_value_info("v", T.FLOAT, [4])],
        [helper.make_tensor_value_info("y", T.FLOAT, [4])],
    )  # fmt: skip
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    for k, s in enumerate((0.5, 2.0)):
        v = np.arange(4, dtype=np.float32) + k
        write_set(tmp_path / f"sets/test_data_set_{k}", [("s", np.array(s, np.float32)), ("v", v)],
                  [("y", (s * v).astype(np.float32))])  # fmt: skip
    package = mlpack.build(onnx_model, sample=tmp_path / "sets", expected=tmp_path / "sets", name="sc",
                           out=tmp_path / "dist", resolve=False)  # fmt: skip
    assert package.manifest.reference.runs == 2
    assert "onnxruntime_ms" in package.manifest.performance["sample"]  # timed on the first run's shapes
    report = mlpack.verify(package.path)
    assert report.verdict == "identical" and report.outputs[0].shape == (2, 4)


def test_sets_that_differ_in_batch_are_joined_into_one_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for k, rows in enumerate((2, 5)):
        a, b = rng.normal(size=(rows, 3)).astype(np.float32), rng.normal(size=(rows, 3)).astype(np.float32)
        write_set(tmp_path / f"sets/test_data_set_{k}", [("a", a), ("b", b)], [])
    package = mlpack.build(model(), sample=tmp_path / "sets", name="j", out=tmp_path / "dist", resolve=False,
                           timings=False)  # fmt: skip
    assert (package.manifest.reference.runs, package.manifest.reference.rows) == (1, 7)
    assert mlpack.verify(package.path).verdict == "identical"


def test_sets_that_cannot_be_joined_and_odd_files_are_refused(tmp_path: Path) -> None:
    write_set(tmp_path / "odd/test_data_set_0", [("a", np.ones((2, 3), np.float32))], [])
    write_set(tmp_path / "odd/test_data_set_1", [("a", np.ones((2, 4), np.float32))], [])
    with pytest.raises(UsageError, match=r"sets that differ only in their leading \(batch\) axis are joined"):
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
