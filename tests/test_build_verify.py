"""The main path: build a package (API and CLI), verify it, inspect it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlpack
from mlpack.package import check_integrity, open_package
from tests.conftest import CliRunner


def test_api_build_returns_package_with_digest_and_parity(built: Path) -> None:
    package = open_package(built)
    m = package.manifest.to_dict()
    assert package.digest.startswith("sha256:") and len(package.digest) == 71
    assert m["format"] == 1 and m["name"] == "forest" and m["version"] == "1"
    assert m["source"]["framework"] == "sklearn"
    assert m["source"]["model_class"].endswith("RandomForestClassifier")
    assert m["parity"]["status"] == "passed"
    parity = {o["name"]: o for o in m["parity"]["outputs"]}
    assert parity["label"]["identical"] and parity["label"]["passed"]
    assert parity["probabilities"]["passed"] and parity["probabilities"]["max_abs"] < 1e-5
    assert m["parity"]["input_cast"] == {"X": "float64->float32"}
    # every file but the manifest is hashed, and nothing is unlisted
    on_disk = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()} - {
        "mlpack.json",
        "env/provenance.intoto.json",  # about the manifest's digest, so not listed in it
    }
    assert set(m["files"]) == on_disk
    assert {
        "model.onnx",
        "reference/inputs.npz",
        "reference/outputs.npz",
        "env/pylock.toml",
        "env/requirements.lock",
        "hardware.json",
    } <= on_disk
    assert check_integrity(package) == []
    # tolerances by output kind, session options recorded for replay
    assert m["tolerances"]["label"]["atol"] == 0
    assert m["tolerances"]["probabilities"] == {"atol": 1e-5, "rtol": 1e-4, "labels": "exact-unless-tied"}
    assert m["runtime"]["session"]["intra_op_num_threads"] == 1
    assert m["model"]["opset_imports"]["ai.onnx"] == 17
    assert [o["kind"] for o in m["model"]["outputs"]] == ["label", "probabilities"]
    assert m["reference"]["rows"] == 150


def test_golden_outputs_are_what_onnxruntime_gives(built: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(built / "model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(built / "reference/inputs.npz") as inputs, np.load(built / "reference/outputs.npz") as outputs:
        got = session.run(None, {"X": inputs["X"]})
        assert np.array_equal(got[0], outputs["label"])
        assert np.allclose(got[1], outputs["probabilities"], atol=1e-6)


def test_verify_identical_on_the_building_machine(package: Path, cli: CliRunner) -> None:
    report = mlpack.verify(package)
    assert report.verdict == "identical" and report.passed and report.exit_code == 0
    assert report.environment["runtime"] == [] and report.hardware == []
    assert all(c.identical for c in report.outputs)
    # nothing to explain: the build lock is not compared unless asked, and the report says so
    assert not report.build_env_compared and report.environment["build"] == []
    full = mlpack.verify(package, full=True)
    assert full.build_env_compared and full.verdict == "identical"
    assert not [c for c in full.environment["build"] if c["change"] != "extra"]  # the same environment
    result = cli("verify", package)
    assert result.returncode == 0, result.stderr
    assert "verdict: identical" in result.stdout
    assert "build env    not compared: nothing to explain (--full compares it)" in result.stdout
    assert "build env    matches the build lock" in cli("verify", package, "--full").stdout


def test_verify_other_thread_count_is_equivalent_with_numbers(package: Path, cli: CliRunner) -> None:
    report = mlpack.verify(package, threads=2)
    assert report.verdict == "equivalent", report.message
    probabilities = next(c for c in report.outputs if c.name == "probabilities")
    assert not probabilities.identical and probabilities.passed
    assert 0 < probabilities.max_abs < 1e-5 and probabilities.max_ulp and probabilities.max_ulp > 0
    assert any("2 intra-op threads instead of the recorded 1" in cause for cause in report.causes)
    assert report.build_env_compared  # outputs moved: every difference that could explain it is shown
    result = cli("verify", package, "--threads", "2", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["verdict"] == "equivalent" and data["session"]["intra_op_num_threads"] == 2
    assert data["outputs"][1]["max_abs"] > 0
    strict = cli("verify", package, "--threads", "2", "--strict", "--json")
    assert strict.returncode == 1
    assert json.loads(strict.stdout)["passed"] is False


def test_cli_build_from_skops_then_verify_and_inspect(
    pipeline: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    import skops.io as sio

    sio.dump(pipeline, tmp_path / "model.skops")
    np.save(tmp_path / "sample.npy", iris[0][:20])
    result = cli(
        "build",
        tmp_path / "model.skops",
        "--sample",
        tmp_path / "sample.npy",
        "--name",
        "pipe",
        "--version",
        "2",
        "--out",
        tmp_path / "dist",
    )
    assert result.returncode == 0, result.stderr
    assert "converting with sklearn" in result.stderr  # progress is shown
    target = tmp_path / "dist" / "pipe-2"
    assert f"built pipe 2 → {target}" in result.stdout
    manifest = json.loads((target / "mlpack.json").read_text())
    assert manifest["model"]["source_file"]["name"] == "model.skops"
    assert manifest["source"]["model_class"] == "sklearn.pipeline.Pipeline"

    verified = cli("verify", target, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["verdict"] == "identical"

    inspected = cli("inspect", target, "--json")
    assert inspected.returncode == 0
    info = json.loads(inspected.stdout)
    assert info["digest"] == open_package(target).digest
    assert {f["path"] for f in info["files"]} >= {"model.onnx", "mlpack.json", "hardware.json"}
    assert info["model"]["inputs"] == [{"name": "X", "type": "tensor(float)", "shape": ["?", 4]}]
    text = cli("inspect", target)
    assert "pipe 2" in text.stdout and "model.onnx" in text.stdout


def test_cli_build_from_onnx_file(
    built: Path, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    np.savez(tmp_path / "sample.npz", X=iris[0][:10].astype(np.float32))
    result = cli(
        "build",
        built / "model.onnx",
        "--sample",
        tmp_path / "sample.npz",
        "--out",
        tmp_path,
        "--no-resolve",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    manifest = data["manifest"]
    assert manifest["name"] == "model" and manifest["source"]["framework"] == "onnx"
    assert manifest["parity"]["compared"] == "source ONNX vs canonical"
    assert all(o["identical"] for o in manifest["parity"]["outputs"])
    # an already canonical model keeps its bytes
    assert (Path(data["package"]) / "model.onnx").read_bytes() == (built / "model.onnx").read_bytes()
    assert cli("verify", data["package"]).returncode == 0


def test_csv_sample(forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    lines = ["sepal_length,sepal_width,petal_length,petal_width"] + [
        ",".join(map(str, row)) for row in iris[0][:7]
    ]
    (tmp_path / "sample.csv").write_text("\n".join(lines) + "\n")
    package = mlpack.build(forest, sample=tmp_path / "sample.csv", out=tmp_path, resolve=False)
    assert package.manifest.to_dict()["reference"]["rows"] == 7
    assert mlpack.verify(package.path).verdict == "identical"


def test_the_package_records_what_parity_covered_and_warns_of_classes_never_checked(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    """Iris' first 20 rows are all setosa: parity and every later verify see one class of three. The build
    says so, and records the probes it ran beyond the golden rows (a missing value in each column)."""
    import joblib

    joblib.dump(forest, tmp_path / "forest.joblib")
    np.save(tmp_path / "setosa.npy", iris[0][:20])
    np.save(tmp_path / "all.npy", iris[0][::10])
    args = ["build", tmp_path / "forest.joblib", "--trust-pickle", "--out", tmp_path / "dist", "--no-resolve"]
    narrow = cli(*args, "--sample", tmp_path / "setosa.npy", "--name", "narrow")
    assert narrow.returncode == 0, narrow.stderr
    assert "coverage      label: golden rows show 1 of 3 classes; 4 probe(s) beyond them" in narrow.stdout
    assert (
        "WARNING       the golden rows give 1 of the 3 classes of label: parity and verify never" in narrow.stdout
    )
    coverage = json.loads((tmp_path / "dist" / "narrow-1" / "mlpack.json").read_text())["parity"]["coverage"]
    assert coverage["labels"] == {"label": {"classes": 3, "classes_seen": 1}}
    assert coverage["probes"] == [f"a missing value in 'column {i}'" for i in range(4)]
    wide = cli(*args, "--sample", tmp_path / "all.npy", "--name", "wide")
    assert "golden rows show 3 of 3 classes" in wide.stdout and "WARNING" not in wide.stdout


def test_lock_and_hardware_commands(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("lock", "--out", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["runtime_lock"]["status"] == "complete"
    assert (tmp_path / "pylock.toml").is_file() and (tmp_path / "requirements.lock").is_file()
    hw = cli("hardware", "--json")
    assert hw.returncode == 0
    profile = json.loads(hw.stdout)
    assert profile["cpu"]["logical_cores"] >= 1 and profile["onnxruntime"]["version"]
    assert "CPUExecutionProvider" in profile["onnxruntime"]["providers"]
    assert profile["os"]["libc"].startswith("glibc") and profile["numpy"]["version"] == np.__version__
    text = cli("hardware")
    assert "vector ISA" in text.stdout and "onnxruntime" in text.stdout


@pytest.mark.parametrize("command", ["build", "verify", "inspect", "lock", "hardware"])
def test_help_teaches(command: str, cli: CliRunner) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "--json" in result.stdout


def test_parity_break_fails_the_build_unless_accepted(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    """With zero tolerance, float32 ONNX cannot match the float64 forest: the build refuses, then records consent."""
    import joblib

    joblib.dump(forest, tmp_path / "forest.joblib")
    np.save(tmp_path / "sample.npy", iris[0])
    args = ["build", tmp_path / "forest.joblib", "--trust-pickle", "--sample", tmp_path / "sample.npy",
            "--out", tmp_path / "dist", "--no-resolve", "--atol", "0", "--rtol", "0"]  # fmt: skip
    refused = cli(*args, "--json")
    assert refused.returncode == 1
    data = json.loads(refused.stdout)
    assert "does not reproduce the native model" in data["error"] and "--accept-parity" in data["error"]
    failing = {o["name"]: o for o in data["parity"]}
    assert failing["label"]["passed"] and not failing["probabilities"]["passed"]
    assert not (tmp_path / "dist" / "forest-1").exists()

    accepted = cli(*args, "--accept-parity")
    assert accepted.returncode == 0, accepted.stderr
    manifest = json.loads((tmp_path / "dist" / "forest-1" / "mlpack.json").read_text())
    assert manifest["parity"]["status"] == "accepted"
    assert manifest["tolerances"]["probabilities"]["atol"] == 0
    assert "WARNING       this package disagrees with the native model (probabilities: " in accepted.stdout
    # every later verdict carries it: the replay is identical, yet the report says the package disagrees
    package = tmp_path / "dist" / "forest-1"
    plain = cli("verify", package)
    assert plain.returncode == 0 and "Parity was accepted at build: this package disagrees" in plain.stdout
    assert "parity       ACCEPTED at build: disagrees with the native model: probabilities:" in plain.stdout
    strict = cli("verify", package, "--strict", "--json")
    report = json.loads(strict.stdout)
    assert strict.returncode == 1 and report["verdict"] == "identical" and not report["passed"]
    assert report["parity"]["status"] == "accepted" and report["parity"]["disagreement"].startswith(
        "probabilities:"
    )
    assert "which --strict does not accept" in report["message"]
    assert "accepted at build: disagrees with the native model" in cli("inspect", package).stdout


def test_a_different_model_is_not_offered_accept_parity(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """An ONNX model that computes something else (here a forest fitted to shuffled labels) is no rounding
    difference: the refusal says so and does not suggest --accept-parity."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    import mlpack
    from mlpack.errors import ParityError

    x, y = iris
    other = RandomForestClassifier(n_estimators=10, random_state=1).fit(x, np.random.default_rng(0).permutation(y))
    onnx_model = to_onnx(other, x[:1].astype(np.float32), options={id(other): {"zipmap": False}})
    with pytest.raises(ParityError) as refused:
        mlpack.build(forest, sample=x, onnx=onnx_model, out=tmp_path, resolve=False, timings=False)
    assert "this is no rounding difference" in refused.value.message
    assert "--accept-parity" not in refused.value.message and not any(tmp_path.iterdir())


def test_the_api_logs_each_step_and_names_a_slow_one(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Without a progress callback the build's steps go to the "mlpack.build" logger; a step slower than
    SLOW_STEP_S is named with its time when the next one starts (here every step, with the limit at 0)."""
    import logging

    import mlpack
    from mlpack import builder

    monkeypatch.setattr(builder, "SLOW_STEP_S", 0.0)
    with caplog.at_level(logging.INFO, logger="mlpack.build"):
        mlpack.build(forest, sample=iris[0][:20], out=tmp_path, resolve=False, timings=False)
    steps = [r.getMessage() for r in caplog.records if r.name == "mlpack.build"]
    assert steps[0] == "converting with sklearn"
    assert any(
        s.startswith("profiling hardware (checking conversion parity against the native model took ")
        for s in steps
    )
    assert steps[-1].startswith("writing the package (locking the environment took ") and steps[-1].endswith(" s)")
