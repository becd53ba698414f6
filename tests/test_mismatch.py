"""Outputs outside tolerance: verdict mismatch, exit 1, the worst element, and the likely causes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import mlpack
from mlpack.fileio import canonical_json, load_npz, npz_bytes, sha256_file
from tests.conftest import CliRunner


def rewrite(package: Path, relative: str, data: bytes) -> None:
    """Change a file and re-hash it in the manifest, as a package built elsewhere would look."""
    (package / relative).write_bytes(data)
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"][relative] = sha256_file(package / relative)
    (package / "mlpack.json").write_bytes(canonical_json(manifest))


def test_mismatch_names_worst_element(package: Path, cli: CliRunner) -> None:
    outputs = load_npz(package / "reference/outputs.npz")
    outputs["probabilities"][7, 1] += 0.05
    rewrite(package, "reference/outputs.npz", npz_bytes(outputs))

    report = mlpack.verify(package)
    assert report.verdict == "mismatch" and not report.passed and report.exit_code == 1
    probabilities = next(c for c in report.outputs if c.name == "probabilities")
    label = next(c for c in report.outputs if c.name == "label")
    assert label.identical and not probabilities.passed
    assert probabilities.outside == 1 and probabilities.worst is not None
    assert probabilities.worst["index"] == [7, 1]
    assert abs(probabilities.max_abs - 0.05) < 1e-6
    assert report.causes  # always at least one hypothesis

    result = cli("verify", package, "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["verdict"] == "mismatch" and data["outputs"][1]["worst"]["index"] == [7, 1]
    text = cli("verify", package)
    assert "MISMATCH" in text.stdout and "worst at [7, 1]" in text.stdout and "likely causes" in text.stdout


def test_changed_label_is_a_mismatch_unless_the_row_is_a_tie(package: Path) -> None:
    outputs = load_npz(package / "reference/outputs.npz")
    gaps = np.abs(np.diff(np.sort(outputs["probabilities"], axis=1)[:, -2:], axis=1)).ravel()
    confident = int(np.argmax(gaps))
    outputs["label"][confident] = (outputs["label"][confident] + 1) % 3
    rewrite(package, "reference/outputs.npz", npz_bytes(outputs))
    report = mlpack.verify(package)
    label = next(c for c in report.outputs if c.name == "label")
    assert report.verdict == "mismatch" and label.outside == 1 and label.tied_rows == 0


def test_hardware_difference_is_named_as_a_cause(package: Path) -> None:
    outputs = load_npz(package / "reference/outputs.npz")
    outputs["probabilities"] = outputs["probabilities"] * np.float32(1.01)
    rewrite(package, "reference/outputs.npz", npz_bytes(outputs))
    profile = json.loads((package / "hardware.json").read_text())
    profile["cpu"]["model"] = "Imaginary CPU 9000"
    profile["cpu"]["numeric_flags"] = [*profile["cpu"]["numeric_flags"], "amx_tile"]
    rewrite(package, "hardware.json", canonical_json(profile))

    report = mlpack.verify(package)
    assert report.verdict == "mismatch"
    fields = {c["field"]: c for c in report.hardware}
    assert fields["cpu.model"]["built"] == "Imaginary CPU 9000" and fields["cpu.model"]["moves_numbers"]
    assert fields["cpu.numeric_flags"]["only_built"] == ["amx_tile"]
    assert any("vector extensions differ (only at build: amx_tile" in c for c in report.causes)
    assert any("another CPU model (Imaginary CPU 9000 at build" in c for c in report.causes)


def test_runtime_that_cannot_load_the_model_is_exit_4(package: Path, cli: CliRunner) -> None:
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["runtime"]["session"]["providers"] = ["NoSuchExecutionProvider"]
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    result = cli("verify", package, "--json")
    assert result.returncode == 4
    data = json.loads(result.stdout)
    assert data["verdict"] == "error" and "NoSuchExecutionProvider" in data["message"]
