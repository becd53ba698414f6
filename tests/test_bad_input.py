"""Bad input: one clear sentence, the right exit code, no traceback, nothing half-written."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mlpack
from mlpack.errors import UsageError
from tests.conftest import CliRunner, one_sentence_error


@pytest.fixture
def sample(iris: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> Path:
    path = tmp_path / "sample.npy"
    np.save(path, iris[0][:10])
    return path


@pytest.fixture
def skops_model(pipeline: object, tmp_path: Path) -> Path:
    import skops.io as sio

    path = tmp_path / "clf.skops"
    sio.dump(pipeline, path)
    return path


def nan_model(path: Path) -> Path:
    """A valid ONNX model whose output is 0/0 for every input."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["X", "X"], ["zero"]), helper.make_node("Div", ["zero", "zero"], ["Y"])],
        "nan",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_model_file(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    result = cli("build", tmp_path / "nope.skops", "--sample", sample, "--out", tmp_path / "dist")
    assert result.returncode == 2
    assert "does not exist" in one_sentence_error(result)
    assert_nothing_written(tmp_path / "dist")


def test_missing_sample_file(skops_model: Path, tmp_path: Path, cli: CliRunner) -> None:
    result = cli("build", skops_model, "--sample", tmp_path / "nope.npy", "--out", tmp_path / "dist")
    assert result.returncode == 2 and "does not exist" in one_sentence_error(result)


def test_model_and_sample_required(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("build", cwd=tmp_path)
    assert result.returncode == 2 and "[tool.mlpack]" in one_sentence_error(result)


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_folder_that_is_not_a_package(tmp_path: Path, command: str, cli: CliRunner) -> None:
    result = cli(command, tmp_path)
    assert result.returncode == 2 and "is not an mlpack package" in one_sentence_error(result)
    missing = cli(command, tmp_path / "absent")
    assert missing.returncode == 2 and "does not exist" in one_sentence_error(missing)


def test_onnx_that_does_not_parse(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf\xff\xff\xff")
    result = cli("build", bad, "--sample", sample, "--out", tmp_path / "dist")
    assert result.returncode == 2 and "does not parse" in one_sentence_error(result)
    assert_nothing_written(tmp_path / "dist")


def test_onnx_that_fails_the_checker(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["X"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
    )
    path = tmp_path / "unchecked.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = cli("build", path, "--sample", sample, "--out", tmp_path / "dist")
    assert result.returncode == 2 and "fails the ONNX checker" in one_sentence_error(result)


def test_sample_shape_does_not_fit(skops_model: Path, built: Path, tmp_path: Path, cli: CliRunner) -> None:
    np.save(tmp_path / "three.npy", np.ones((5, 3)))
    for model in (skops_model, built / "model.onnx"):
        result = cli("build", model, "--sample", tmp_path / "three.npy", "--out", tmp_path / "dist")
        assert result.returncode == 2
        line = one_sentence_error(result)
        assert "shape" in line and "(5, 3)" in line, line
    assert_nothing_written(tmp_path / "dist")


def test_sample_dtype_does_not_fit(built: Path, tmp_path: Path, cli: CliRunner) -> None:
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c", "d"]]))
    result = cli("build", built / "model.onnx", "--sample", tmp_path / "words.npy", "--out", tmp_path / "dist")
    assert result.returncode == 2 and "expects float32" in one_sentence_error(result)


def test_empty_sample(skops_model: Path, tmp_path: Path, cli: CliRunner) -> None:
    np.save(tmp_path / "empty.npy", np.empty((0, 4)))
    result = cli("build", skops_model, "--sample", tmp_path / "empty.npy", "--out", tmp_path / "dist")
    assert result.returncode == 2 and "empty" in one_sentence_error(result)
    (tmp_path / "empty.csv").write_text("")
    result = cli("build", skops_model, "--sample", tmp_path / "empty.csv", "--out", tmp_path / "dist")
    assert result.returncode == 2 and "empty" in one_sentence_error(result)


def test_outputs_all_nan(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    model = nan_model(tmp_path / "nan.onnx")
    result = cli("build", model, "--sample", sample, "--out", tmp_path / "dist")
    assert result.returncode == 2 and "only NaN" in one_sentence_error(result)
    assert_nothing_written(tmp_path / "dist")


def test_unsupported_model_type_names_supported_ones(tmp_path: Path) -> None:
    import mlpack
    from mlpack.errors import UsageError

    class HomeMadeModel:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return X

    with pytest.raises(UsageError, match=r"No converter takes a .*HomeMadeModel\. Supported: ONNX .*scikit-learn"):
        mlpack.build(HomeMadeModel(), sample=np.ones((2, 4)), out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_file_format(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "model.h5").write_bytes(b"\x89HDF")
    result = cli("build", tmp_path / "model.h5", "--sample", sample, "--out", tmp_path / "dist")
    error = one_sentence_error(result)
    assert result.returncode == 2 and "unknown model format; supported: .onnx," in error
    assert all(suffix in error for suffix in (".skops", ".pt2", ".json", ".txt", ".joblib"))


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickle_refused_without_trust(
    forest: object, sample: Path, tmp_path: Path, suffix: str, cli: CliRunner
) -> None:
    model = tmp_path / f"forest{suffix}"
    if suffix == ".pkl":
        model.write_bytes(pickle.dumps(forest))
    else:
        import joblib

        joblib.dump(forest, model)
    result = cli("build", model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve")
    assert result.returncode == 2
    line = one_sentence_error(result)
    assert "unpickling runs arbitrary code" in line and "--trust-pickle" in line
    assert_nothing_written(tmp_path / "dist")
    trusted = cli("build", model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve", "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr


def test_existing_package_refused_unless_force(
    skops_model: Path, sample: Path, tmp_path: Path, cli: CliRunner
) -> None:
    args = ("build", skops_model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve", "--json")
    assert cli(*args).returncode == 0
    target = tmp_path / "dist" / "clf-1"
    before = (target / "mlpack.json").read_bytes()
    again = cli("build", skops_model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve")
    assert again.returncode == 2 and "already exists" in one_sentence_error(again) and "--force" in again.stderr
    assert (target / "mlpack.json").read_bytes() == before
    forced = cli(*args, "--force", "--version", "1")
    assert forced.returncode == 0
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["clf-1"]  # no leftovers beside it


def test_out_that_is_a_file(skops_model: Path, sample: Path, cli: CliRunner) -> None:
    result = cli("build", skops_model, "--sample", sample, "--out", sample, "--no-resolve")
    assert result.returncode == 2 and "is a file, not a folder" in one_sentence_error(result)


def test_bad_name_refused(skops_model: Path, sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    result = cli("build", skops_model, "--sample", sample, "--name", "../escape", "--out", tmp_path)
    assert result.returncode == 2 and "may hold only" in one_sentence_error(result)


class _SilentIndex:
    """A TCP server on loopback that accepts and never answers: the lock step then waits."""

    def __enter__(self) -> str:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["term", "int", "kill"])
def test_build_killed_midway_leaves_no_package(
    skops_model: Path, sample: Path, tmp_path: Path, how: signal.Signals, cli: CliRunner
) -> None:
    out = tmp_path / "dist"
    with _SilentIndex() as index:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlpack",
                "build",
                str(skops_model),
                "--sample",
                str(sample),
                "--out",
                str(out),
                "--index-url",
                index,
            ],
            env={**os.environ, "MLPACK_CACHE_DIR": str(tmp_path / "cache")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not list(out.glob(".clf-1.partial-*/hardware.json")):  # the build is locking
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(how)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert not (out / "clf-1").exists()
    if how == signal.SIGKILL:
        # nothing could clean up; the next build removes the dead build's partial folder
        assert list(out.glob(".clf-1.partial-*"))
        result = cli("build", skops_model, "--sample", sample, "--out", out, "--no-resolve")
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == ["clf-1"]
    else:
        assert "Traceback" not in stderr and "nothing was written" in stderr
        assert list(out.iterdir()) == []


def test_skops_types_outside_the_default_trust_need_consent(
    forest: object, sample: Path, tmp_path: Path, cli: CliRunner
) -> None:
    """skops flags a tree's node arrays as untrusted (a crafted file can index out of bounds): so do we."""
    import skops.io as sio

    model = tmp_path / "forest.skops"
    sio.dump(forest, model)
    result = cli("build", model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve")
    assert result.returncode == 2
    line = one_sentence_error(result)
    assert "sklearn.tree._tree.Tree" in line and "--trust-type sklearn.tree._tree.Tree" in line
    assert_nothing_written(tmp_path / "dist")
    trusted = cli("build", model, "--sample", sample, "--out", tmp_path / "dist", "--no-resolve",
                  "--trust-type", "sklearn.tree._tree.Tree")  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr


def test_a_model_path_that_is_a_folder_is_named_as_such(sample: Path, tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "model.onnx").mkdir()
    result = cli("build", tmp_path / "model.onnx", "--sample", sample, "--out", tmp_path / "dist")
    assert result.returncode == 2 and "is a folder: give the model file inside it" in one_sentence_error(result)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (np.ones((5, 4), dtype=np.complex64), "complex64 values"),
        (np.array([["2024-01-01"] * 4] * 5, dtype="datetime64[D]"), r"datetime64\[D\] values"),
        (np.array([["a", "b", "c", "d"]] * 5), "the sample holds strings"),
    ],
)
def test_samples_no_numeric_model_takes_are_bad_input(
    pipeline: object, tmp_path: Path, values: np.ndarray, says: str
) -> None:
    """Complex, datetime and string samples for a numeric model are the caller's input (2), not a failed
    conversion (1)."""
    with pytest.raises(UsageError, match=says):
        mlpack.build(pipeline, sample=values, out=tmp_path, resolve=False, timings=False)
    assert list(tmp_path.iterdir()) == []
