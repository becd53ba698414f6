"""Verify catches every changed, missing or extra file and a corrupt manifest: exit 3, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlpack
from mlpack.errors import IntegrityError
from mlpack.fileio import canonical_json
from tests.conftest import CliRunner, one_sentence_error

FILES = [
    "model.onnx",
    "reference/inputs.npz",
    "reference/outputs.npz",
    "env/pylock.toml",
    "env/requirements.lock",
    "hardware.json",
]


@pytest.mark.parametrize("relative", FILES)
def test_any_changed_byte_is_tampering(package: Path, relative: str, cli: CliRunner) -> None:
    path = package / relative
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle
    path.write_bytes(bytes(data))
    result = cli("verify", package)
    assert result.returncode == 3
    assert f"{relative}: changed" in result.stdout
    assert "verdict: tampered" in result.stdout
    report = mlpack.verify(package)
    assert report.verdict == "tampered" and [p.file for p in report.integrity] == [relative]
    assert report.outputs == []  # a tampered model is never run


def test_missing_file(package: Path, cli: CliRunner) -> None:
    (package / "reference/outputs.npz").unlink()
    result = cli("verify", package, "--json")
    assert result.returncode == 3
    problems = json.loads(result.stdout)["integrity"]
    assert problems == [
        {"file": "reference/outputs.npz", "kind": "missing", "detail": "listed in the manifest but not present"}
    ]


@pytest.mark.parametrize("relative", ["notes.txt", "reference/extra.npz", "env/constraints.txt"])
def test_extra_file_in_covered_folder(package: Path, relative: str, cli: CliRunner) -> None:
    (package / relative).write_text("not part of the package\n")
    result = cli("verify", package, "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["integrity"][0] == {
        "file": relative,
        "kind": "extra",
        "detail": "present but not listed in the manifest",
    }


def test_manifest_naming_a_path_outside_the_package(package: Path) -> None:
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["../outside.txt"] = "0" * 64
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    report = mlpack.verify(package)
    assert report.verdict == "tampered" and report.integrity[0].kind == "unsafe"


@pytest.mark.parametrize(
    "content",
    [b"{ not json", b"\xff\xfe\x00", b"[]", b'{"format": 1, "name": "x"}'],
    ids=["syntax", "bytes", "list", "keys"],
)
def test_corrupt_manifest(package: Path, content: bytes, cli: CliRunner) -> None:
    (package / "mlpack.json").write_bytes(content)
    result = cli("verify", package)
    assert result.returncode == 3
    assert "manifest" in one_sentence_error(result) and "corrupt" in result.stderr
    with pytest.raises(IntegrityError):
        mlpack.verify(package)


def test_expected_digest(package: Path, cli: CliRunner) -> None:
    digest = mlpack.open_package(package).digest
    assert cli("verify", package, "--digest", digest).returncode == 0
    other = "sha256:" + "0" * 64
    result = cli("verify", package, "--digest", other)
    assert result.returncode == 3 and "mlpack.json: changed" in result.stdout


def test_rehashed_manifest_changes_the_package_digest(package: Path) -> None:
    """Whoever rewrites the manifest to hide a change also changes the package's identity."""
    before = mlpack.open_package(package).digest
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["version"] = "1-evil"
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    assert mlpack.open_package(package).digest != before
