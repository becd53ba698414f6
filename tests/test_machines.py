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
    assert mixed.returncode == 2 and "--machine takes --strict, --threads, --json" in one_sentence_error(mixed)
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


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray, Path]:
    """A small torch MLP, packaged with its replay as x86-64-v2 recorded as evidence."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 8),
    ).eval()
    sample = np.random.default_rng(1).normal(size=(128, 64)).astype(np.float32)
    out = tmp_path_factory.mktemp("mlp")
    package = mlpack.build(model, sample=sample, name="mlp", out=out, resolve=False, timings=False,
                           machines=["x86-64-v2"])  # fmt: skip
    return model, sample, package.path


def test_a_build_records_what_each_class_gave_and_verify_compares_with_it(
    mlp: tuple[Any, np.ndarray, Path], cli: CliRunner
) -> None:
    import torch

    model, sample, path = mlp
    manifest = mlpack.open_package(path).manifest
    (evidence,) = manifest.machines
    assert evidence["machine"] == "x86-64-v2" and evidence["emulator"] == "qemu-x86_64 -cpu Nehalem"
    assert evidence["onnxruntime"] and evidence["passed"] and not evidence["accepted"]
    # the package answers as the native model does, here
    with torch.no_grad():
        native = model(torch.from_numpy(sample[:16])).numpy()
    np.testing.assert_allclose(mlpack.load(path).predict(sample[:16])[manifest.model.outputs[0].name], native,
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    matrix = verify_matrix(path, ["native", "x86-64-v2"])
    native_row, older = matrix.results
    assert native_row.verdict == "identical"
    if "AVX2" in cpu_features():  # built with AVX2/FMA kernels: an SSE machine sums otherwise
        assert evidence["verdict"] == "equivalent" and not evidence["outputs"][0]["identical"]
        assert older.verdict == "equivalent" and older.causes[0] == CLASSES["x86-64-v2"].kernels
    # the emulated x86-64-v2 verify finds its class in the evidence, and gives the same figures
    assert older.proven["machine"] == "x86-64-v2" and older.proven["matches"], older.proven
    assert "proven on    x86-64-v2 " in cli("inspect", path).stdout


def test_outputs_that_do_not_hold_on_a_class_fail_the_build_unless_accepted(tmp_path: Path) -> None:
    if "AVX2" not in cpu_features():
        return  # the golden outputs come from SSE kernels here, as x86-64-v2's do: nothing moves
    from mlpack.errors import MachineError

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 128])], [helper.make_tensor_value_info("y", T.FLOAT, ["N", 128])],
        [numpy_helper.from_array(rng.normal(size=(128, 128)).astype(np.float32), "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sample = {"x": rng.normal(size=(32, 128)).astype(np.float32)}
    tight = {"value": {"atol": 0.0, "rtol": 0.0}}
    with pytest.raises(MachineError) as refused:
        mlpack.build(model, sample=sample, name="t", out=tmp_path / "a", resolve=False, timings=False,
                     tolerances=tight, machines="x86-64-v2")  # fmt: skip
    assert refused.value.exit_code == 1 and "do not hold on x86-64-v2 (y: " in refused.value.message
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    package = mlpack.build(model, sample=sample, name="t", out=tmp_path / "b", resolve=False, timings=False,
                           tolerances=tight, machines="x86-64-v2", accept_machines=True)  # fmt: skip
    (evidence,) = package.manifest.machines
    assert evidence["verdict"] == "mismatch" and evidence["accepted"] and not evidence["passed"]
    again = verify_matrix(package.path, ["x86-64-v2"])
    assert again.verdict == "mismatch" and again.exit_code == 1 and again.results[0].proven["matches"]


def test_a_class_the_build_cannot_run_is_refused_before_any_work(tmp_path: Path) -> None:
    from mlpack.errors import MlpackError

    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "r",
                          [helper.make_tensor_value_info("x", T.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", T.FLOAT, ["N", 2])]),
        opset_imports=[helper.make_opsetid("", 17)],
    )  # fmt: skip
    with pytest.raises(MlpackError) as unknown:
        mlpack.build(model, sample=np.ones((2, 2), np.float32), out=tmp_path, resolve=False, machines=["pentium"])
    assert unknown.value.exit_code == 2 and "choose from native, x86-64-v2" in unknown.value.message
    if "AVX512F" not in cpu_features():
        with pytest.raises(MlpackError) as cannot:
            mlpack.build(model, sample=np.ones((2, 2), np.float32), out=tmp_path, resolve=False,
                         machines=["x86-64-v4"])  # fmt: skip
        assert cannot.value.exit_code == 4 and "The build cannot prove x86-64-v4" in cannot.value.message
    assert not any(tmp_path.iterdir())


def test_a_scikit_learn_package_replays_on_aarch64_from_its_runtime_lock(built: Path) -> None:
    """Another architecture: Debian's CPython for arm64 under qemu-aarch64, with the runtime lock's aarch64
    wheels, installed by hash."""
    (result,) = verify_matrix(built, ["aarch64"]).results
    assert result.how == "qemu-aarch64 -cpu neoverse-n1", result.message
    assert "CPython for aarch64 with the runtime lock's wheels" in result.runtime
    assert result.verdict in ("identical", "equivalent") and result.passed, result.message
    assert {o["name"] for o in result.outputs} == {"label", "probabilities"}
    assert result.onnxruntime == mlpack.open_package(built).manifest.runtime.onnxruntime


def test_a_changed_runtime_lock_installs_and_runs_nothing_on_aarch64(built: Path, tmp_path: Path) -> None:
    """aarch64's runtime is installed from the package's runtime lock and then run, before verify checks
    the other files: the lock is held to its manifest hash first. Changed, it is tampered (exit 3), and no
    wheel is installed from it."""
    import shutil

    from mlpack.machines import verify_on
    from mlpack.options import cache_dir
    from mlpack.package import RUNTIME_LOCK

    copy = tmp_path / built.name
    shutil.copytree(built, copy)
    lock = copy / RUNTIME_LOCK
    lock.write_text(lock.read_text().replace("numpy==", "numpy==1.") + "\n")
    sites = set(cache_dir("machines").glob("site-aarch64-*"))
    result = verify_on(copy, "aarch64")
    assert (result.verdict, result.passed, result.exit_code) == ("tampered", False, 3)
    assert f"{RUNTIME_LOCK} (changed); no runtime is installed from it" in result.message
    assert set(cache_dir("machines").glob("site-aarch64-*")) == sites


def test_an_outcome_is_compared_with_the_evidence_for_its_class() -> None:
    from mlpack.machines import against_evidence

    y = {"name": "y", "identical": False, "identical_elements": 90, "max_ulp": 6, "total": 100}
    recorded = [{"machine": "x86-64-v2", "verdict": "equivalent", "emulator": "qemu-x86_64 -cpu Nehalem",
                 "outputs": [y]}]  # fmt: skip
    same = against_evidence(recorded, "x86-64-v2", "equivalent", [y])
    assert same["matches"] and "this machine gives what was proven" in same["message"]
    other = against_evidence(recorded, "x86-64-v2", "equivalent", [{**y, "max_ulp": 7}])
    assert not other["matches"] and "other figures than were proven" in other["message"]
    assert not against_evidence(recorded, "x86-64-v2", "mismatch", [y])["matches"]
    assert against_evidence(recorded, "aarch64", "identical", [y]) == {}  # nothing proven for this class


def test_the_emulated_replay_imports_only_the_runtime(matmul: Path, tmp_path: Path) -> None:
    """Under emulation every module costs ten times its native import: the replay process (the only part of a
    verify that runs emulated) brings in the package reader, numpy and onnxruntime, and gives the outputs the
    package's golden run gave."""
    import subprocess
    import sys

    from mlpack.fileio import load_npz
    from mlpack.manifest import SessionSettings, to_json
    from mlpack.package import OUTPUTS

    out = tmp_path / "out.npz"
    request = json.dumps({"package": str(matmul), "out": str(out), "settings": to_json(SessionSettings())})
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlpack.replay"], input=request + "\n",
                          capture_output=True, text=True, check=True)  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert {"numpy", "onnxruntime", "mlpack.package"} <= imported
    assert not imported & {"ml_dtypes", "importlib.metadata", "concurrent.futures", "subprocess", "onnx", "typer"}
    answer = json.loads(done.stdout)
    assert answer["hardware"]["cpu"]["level"] and answer["onnxruntime"]
    assert np.array_equal(load_npz(out)["y"], load_npz(matmul / OUTPUTS)["y"])


def test_a_tampered_package_is_never_replayed_on_a_class(matmul: Path, tmp_path: Path) -> None:
    """The class's process starts before the integrity check, so that its interpreter, numpy and onnxruntime
    load meanwhile, but it reads nothing of the package until asked, and a package that fails the check is
    never asked for: the row says tampered and no replay answered (no onnxruntime reported)."""
    import shutil
    import subprocess
    import sys

    from mlpack.machines import verify_on

    copy = tmp_path / matmul.name
    shutil.copytree(matmul, copy)
    model = copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    result = verify_on(copy, "x86-64-v2")
    assert (result.verdict, result.passed, result.exit_code, result.onnxruntime) == ("tampered", False, 3, "")
    assert "model.onnx" in result.message
    # told nothing, the replay process leaves without a word
    done = subprocess.run([sys.executable, "-m", "mlpack.replay"], input="", capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "")


def _with_lock(package: Path, out: Path, text: str) -> Path:
    """A copy of ``package`` whose runtime lock is ``text``, listed in its manifest with its own hash, as a
    package made that way (or signed, then changed) would be."""
    import shutil

    from mlpack.fileio import canonical_json, sha256_bytes
    from mlpack.package import MANIFEST, RUNTIME_LOCK

    copy = out / package.name
    shutil.copytree(package, copy)
    (copy / RUNTIME_LOCK).write_text(text)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"][RUNTIME_LOCK] = sha256_bytes(text.encode())
    (copy / MANIFEST).write_bytes(canonical_json(manifest))
    return copy


def test_a_runtime_lock_installs_only_exact_pins_and_only_after_the_signature(built: Path, tmp_path: Path) -> None:
    """Another architecture's runtime is pip-installed from the package's lock and then run. pip obeys options
    written in the file (--find-links to any folder, --index-url): a lock holding one is refused. And a
    signed package whose signature fails under --key installs nothing, though its lock matches its manifest:
    classes of another architecture start only after the signature check."""
    from mlpack.errors import IntegrityError
    from mlpack.machines import verify_on
    from mlpack.options import cache_dir
    from mlpack.signing import keygen, sign

    sites = set(cache_dir("machines").glob("site-aarch64-*"))
    hashed = "numpy==2.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    redirected = _with_lock(built, tmp_path / "a", f"--find-links {tmp_path}\n{hashed}")
    result = verify_on(redirected, "aarch64")
    assert (result.verdict, result.exit_code) == ("error", 4)
    assert "holds '--find-links" in result.message and "only from exact pins with hashes" in result.message

    private, public = keygen(tmp_path / "k.pem")
    signed = tmp_path / "b" / built.name
    signed.parent.mkdir()
    import shutil

    shutil.copytree(built, signed)
    sign(signed, private)
    # signed, then its lock and manifest changed alike: a lock pip would install (the real one, one line more)
    from mlpack.package import RUNTIME_LOCK

    changed = _with_lock(signed, tmp_path / "c", (built / RUNTIME_LOCK).read_text() + "# changed\n")
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_matrix(changed, ["aarch64"], key=public)
    assert set(cache_dir("machines").glob("site-aarch64-*")) == sites


def test_the_working_folder_is_not_on_the_replay_process_path(
    matmul: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay process imports numpy and onnxruntime while the package is still unchecked: a numpy.py in
    the folder verify runs from (the package's own, say) must not be what it imports."""
    from mlpack.machines import verify_on

    (tmp_path / "numpy.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    result = verify_on(matmul, "x86-64-v2")
    assert result.passed and result.onnxruntime, result.message
    assert not (tmp_path / "imported").exists()
