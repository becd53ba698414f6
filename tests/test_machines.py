"""verify on other machine classes by user-mode CPU emulation (QEMU): a model whose kernels differ by CPU
class, replayed as an older x86 server and as the host's own class, with the matrix and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import mlpack
from mlpack.hardware import cpu_features
from mlpack.machines import CLASSES, resolve, verify_matrix
from tests.conftest import CliRunner, one_sentence_error


@pytest.fixture(scope="module")
def matmul(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256x256 MatMul+Tanh: SSE, AVX2/FMA and AVX-512 kernels sum its products in different ways."""
    rng = np.random.default_rng(0)
    weights = (rng.normal(size=(256, 256)) / 16).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Tanh", ["m"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 256])], [helper.make_tensor_value_info("y", T.FLOAT, ["N", 256])],
        [numpy_helper.from_array(weights, "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sample = {"x": rng.normal(size=(64, 256)).astype(np.float32)}
    out = tmp_path_factory.mktemp("machines")
    return mlpack.build(model, sample=sample, name="mm", out=out, resolve=False, timings=False).path


def test_an_older_x86_class_moves_the_numbers_and_says_why(matmul: Path) -> None:
    matrix = verify_matrix(matmul, ["native", "x86-64-v2"])
    native, older = matrix.results
    assert native.verdict == "identical" and native.how == "native"
    assert older.how == "qemu-x86_64 -cpu Nehalem"
    if "AVX2" in cpu_features():  # the golden outputs came from AVX2/FMA kernels: SSE sums otherwise
        assert older.verdict == "equivalent", older.message
        (y,) = older.outputs
        assert not y["identical"] and y["passed"] and y["identical_elements"] < y["total"]
        assert older.causes[0] == CLASSES["x86-64-v2"].kernels
        assert any(
            "micro-architecture level" in c and "(x86-64-v3 at build, x86-64-v2 here)" in c for c in older.causes
        )
        assert matrix.verdict == "equivalent" and matrix.exit_code == 0
        strict = verify_matrix(matmul, ["x86-64-v2"], strict=True)
        assert strict.exit_code == 1 and not strict.passed


def test_emulating_the_hosts_own_class_gives_the_hosts_bits(matmul: Path) -> None:
    """The claim emulation rests on: QEMU reports the model's CPUID, the libraries dispatch on it, and the
    numbers are a real machine's. An emulated x86-64-v3 on an AVX2/FMA host must be bit-identical."""
    if not {"AVX2", "FMA3"} <= cpu_features():
        return  # only checkable where the host is of the class; the other test covers older classes
    (result,) = verify_matrix(matmul, ["x86-64-v3"]).results
    assert result.how == "qemu-x86_64 -cpu Haswell-v4" and result.verdict == "identical", result.message


def test_the_command_line_matrix(matmul: Path, cli: CliRunner) -> None:
    text = cli("verify", matmul, "--machine", "native", "--machine", "x86-64-v4")
    has_avx512 = "AVX512F" in cpu_features()
    assert text.returncode == (0 if has_avx512 else 4), text.stderr
    assert "native       native" in text.stdout
    if not has_avx512:
        assert "QEMU cannot emulate x86-64-v4" in text.stdout and "verdict: error (FAILED)" in text.stdout
    every = cli("verify", matmul, "--machine", "all")
    assert every.returncode == 0, every.stdout + every.stderr  # a gate: what this machine cannot run is left out
    assert "x86-64-avx   qemu-x86_64 -cpu SandyBridge" in every.stdout
    if not has_avx512:
        assert "x86-64-v4    not run here" in every.stdout
    data = json.loads(cli("verify", matmul, "--machine", "x86-64-v2", "--json").stdout)
    assert [m["machine"] for m in data["machines"]] == ["x86-64-v2"]
    assert data["machines"][0]["outputs"][0]["name"] == "y" and data["verdict"] in ("identical", "equivalent")


def test_bad_requests_are_refused_in_one_sentence(matmul: Path, cli: CliRunner) -> None:
    unknown = cli("verify", matmul, "--machine", "pentium")
    assert unknown.returncode == 2
    assert "Unknown machine class 'pentium'; choose from native, x86-64-v2" in one_sentence_error(unknown)
    mixed = cli("verify", matmul, "--machine", "x86-64-v2", "--digest", "sha256:00")
    assert mixed.returncode == 2 and "--machine takes --strict, --threads and --json" in one_sentence_error(mixed)
    no_emulator = cli("verify", matmul, "--machine", "x86-64-v2", env={"PATH": "/nonexistent"})
    assert no_emulator.returncode == 4 and "apt-get install qemu-user" in no_emulator.stdout
    chosen, left_out = resolve(["all"])
    assert chosen == ["native", *(c for c in CLASSES if c not in left_out)]
    if "AVX512F" not in cpu_features():  # "all" gates on what this machine can run; named, v4 fails (above)
        assert list(left_out) == ["x86-64-v4"] and "QEMU cannot emulate x86-64-v4" in left_out["x86-64-v4"]


@pytest.mark.parametrize(
    "cpu, expected", [("Nehalem", "x86-64-v2"), ("SandyBridge", "x86-64-avx"), ("Haswell-v4", "x86-64-v3")]
)
def test_the_level_is_what_the_libraries_see_not_proc_cpuinfo(cpu: str, expected: str) -> None:
    """Under emulation /proc/cpuinfo keeps the host's flags; the recorded level follows the emulated CPU."""
    import subprocess
    import sys

    done = subprocess.run(
        ["qemu-x86_64", "-cpu", cpu, sys.executable, "-c", "from mlpack.hardware import level; print(level())"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_a_field_the_build_did_not_record_is_not_a_difference() -> None:
    from mlpack.hardware import diff

    built: dict[str, Any] = {"cpu": {"arch": "x86_64", "vendor": "v"}, "numpy": {"version": "2"}}
    here: dict[str, Any] = {"cpu": {"arch": "x86_64", "vendor": "v", "level": "x86-64-v3"}, "numpy": {"version": "2"},
                            "gpus": []}  # fmt: skip
    assert [c["field"] for c in diff(built, here)] == ["gpus"]  # a section new here is still shown
    here["cpu"] = {**here["cpu"], "arch": "aarch64"}
    assert [c["field"] for c in diff(built, here)] == ["cpu.arch", "gpus"]
