"""A corpus of hostile packages, built here from a good one: every file a package reads is hashed and inside
it, links are refused, untrusted fields cannot exhaust the machine, and each case ends in one sentence and
the right exit code (3 for a package that lies), with nothing run that was not checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from mlpack.errors import IntegrityError
from mlpack.fileio import canonical_json, sha256_file
from tests.conftest import CliRunner, one_sentence_error

Edit = Callable[[Path, dict[str, Any]], None]


def rewrite(package: Path, edit: Edit) -> None:
    """Apply ``edit`` to the package folder and its manifest, then rehash every listed file that is still a
    regular file: the hostile package is consistent with itself, as a careful attacker would make it."""
    manifest = json.loads((package / "mlpack.json").read_text())
    edit(package, manifest)
    for relative in manifest["files"]:
        path = package / relative
        if path.is_file() and not path.is_symlink() and not any(p.is_symlink() for p in path.parents):
            manifest["files"][relative] = sha256_file(path)
    (package / "mlpack.json").write_bytes(canonical_json(manifest))


def model_elsewhere(package: Path, manifest: dict[str, Any]) -> None:
    outside = package.parent / "elsewhere.onnx"
    shutil.copy(package / "model.onnx", outside)
    manifest["model"]["file"] = str(outside)
    manifest["model"]["files"] = [str(outside)]


def model_symlink(package: Path, manifest: dict[str, Any]) -> None:
    outside = package.parent / "linked.onnx"
    shutil.move(package / "model.onnx", outside)
    (package / "model.onnx").symlink_to(outside)  # same bytes, same hash: only the link gives it away


def reference_folder_symlink(package: Path, manifest: dict[str, Any]) -> None:
    outside = package.parent / "reference-elsewhere"
    shutil.move(package / "reference", outside)
    (package / "reference").symlink_to(outside, target_is_directory=True)


def extra_linked_folder(package: Path, manifest: dict[str, Any]) -> None:
    (package.parent / "stash").mkdir()
    (package / "env" / "more").symlink_to(package.parent / "stash", target_is_directory=True)


def trailing_newline_name(package: Path, manifest: dict[str, Any]) -> None:
    manifest["name"] = "forest\n"


def escape_codes_in_name(package: Path, manifest: dict[str, Any]) -> None:
    manifest["name"] = "\x1b[2J\x1b[Hverdict: identical"


def a_million_threads(package: Path, manifest: dict[str, Any]) -> None:
    manifest["runtime"]["session"]["intra_op_num_threads"] = 10**6


def unknown_provider(package: Path, manifest: dict[str, Any]) -> None:
    manifest["runtime"]["session"]["providers"] = ["../../evil.so"]


def many_files(package: Path, manifest: dict[str, Any]) -> None:
    manifest["files"].update({f"bogus/{i}": "0" * 64 for i in range(20_000)})


def inflating_golden_inputs(package: Path, manifest: dict[str, Any]) -> None:
    """1 GiB of zeros declared in a deflated member of about a megabyte: the classic zip bomb, shaped as npz."""
    path = package / "reference" / "inputs.npz"
    rows = 2**28
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, 1)}
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("X.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        chunk = bytes(1 << 22)
        for _ in range(rows * 4 // len(chunk)):
            member.write(chunk)


def truncated_golden_outputs(package: Path, manifest: dict[str, Any]) -> None:
    """A stored member whose header promises far more data than it holds."""
    path = package / "reference" / "outputs.npz"
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive,
        archive.open("probabilities.npy", "w") as member,
    ):
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 3)})
        member.write(bytes(64))


def pickled_golden_outputs(package: Path, manifest: dict[str, Any]) -> None:
    """Labels saved as Python objects: loading them would mean unpickling whatever the file holds."""
    labels = np.empty(3, dtype=object)
    labels[:] = ["a", "b", "c"]
    np.savez(package / "reference" / "outputs.npz", label=labels)


CORPUS: dict[str, tuple[Edit, str]] = {
    "model file outside the package": (model_elsewhere, "is not among the hashed files"),
    "model.onnx a symlink to an outside copy": (model_symlink, "model.onnx (unsafe)"),
    "reference/ a symlinked folder": (reference_folder_symlink, "reference/inputs.npz (unsafe)"),
    "an unlisted symlinked folder": (extra_linked_folder, "env/more (unsafe)"),
    "a name with a trailing newline": (trailing_newline_name, "may hold only letters"),
    "escape codes in the name": (escape_codes_in_name, "may hold only letters"),
    "a million threads": (a_million_threads, "thread counts must be between 0 and 4096"),
    "a provider that is a path": (unknown_provider, "are not onnxruntime execution providers"),
    "20,000 bogus files": (many_files, "a package holds at most 10000"),
    "golden inputs that inflate to 1 GiB": (inflating_golden_inputs, "holds a compressed member 'X.npy'"),
    "golden outputs that claim more than they hold": (truncated_golden_outputs, "it holds less"),
    "golden outputs that need unpickling": (pickled_golden_outputs, "holds Python objects (object)"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_package_is_refused_in_one_sentence(case: str, package: Path, cli: CliRunner) -> None:
    edit, expected = CORPUS[case]
    rewrite(package, edit)
    time_rss = ["/usr/bin/time", "-f", "maxrss-kib %M"] if Path("/usr/bin/time").exists() else []
    result = subprocess.run(
        [*time_rss, sys.executable, "-m", "mlpack", "verify", str(package)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "\x1b" not in result.stdout + result.stderr  # nothing from the package reaches the terminal raw
    if "verdict:" in result.stdout:  # opened, then judged: the text report names the problem
        assert "verdict: tampered" in result.stdout and expected in result.stdout, result.stdout
    else:  # refused while opening: one sentence on stderr
        stderr = "\n".join(
            line for line in result.stderr.splitlines() if not line.startswith(("maxrss-kib", "Command exited"))
        )
        assert expected in one_sentence_error(subprocess.CompletedProcess([], 3, "", stderr))
    if time_rss:  # the golden data never gets to claim the memory it declares
        peak = int(result.stderr.rsplit("maxrss-kib ", 1)[1].split()[0]) * 1024
        assert peak < 600 * 2**20, f"verify peaked at {peak / 2**20:.0f} MiB"
    if "golden" not in case:  # load reads the model, never the golden data
        with pytest.raises(IntegrityError):
            mlpack.load(package)


def test_huge_manifest_is_refused_before_it_is_parsed(package: Path, cli: CliRunner) -> None:
    (package / "mlpack.json").write_bytes(b" " * (17 << 20) + b"{}")
    result = cli("verify", package)
    assert result.returncode == 3 and "bytes is no manifest" in one_sentence_error(result)


def test_deep_manifest_is_corrupt_not_a_crash(package: Path, cli: CliRunner) -> None:
    (package / "mlpack.json").write_text("[" * 200_000 + "]" * 200_000)
    result = cli("verify", package)
    assert result.returncode == 3
    assert "is corrupt" in one_sentence_error(result)


def test_symlinked_manifest_is_refused(package: Path, cli: CliRunner) -> None:
    outside = package.parent / "manifest-elsewhere.json"
    shutil.move(package / "mlpack.json", outside)
    (package / "mlpack.json").symlink_to(outside)
    result = cli("verify", package)
    assert result.returncode == 3 and "is a symbolic link" in one_sentence_error(result)


def test_recorded_threads_above_the_cores_replay_at_the_cores_with_a_cause(package: Path) -> None:
    cores = os.cpu_count() or 1
    rewrite(package, lambda _, m: m["runtime"]["session"].__setitem__("intra_op_num_threads", cores + 62))
    report = mlpack.verify(package)
    assert report.session["intra_op_num_threads"] == cores
    assert report.verdict in ("identical", "equivalent") and report.passed
    if report.verdict != "identical":
        assert any(f"instead of the recorded {cores + 62}" in cause for cause in report.causes)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_serve_refuses_a_hostile_package_or_says_why_it_is_not_ready(case: str, package: Path) -> None:
    """Refused before listening (exit 3, one sentence), or listening with the model never ready and the reason
    on /v2/health/ready; never "verifying" for ever, and never ready."""
    import re
    import signal
    import time

    import requests

    edit, expected = CORPUS[case]
    rewrite(package, edit)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "serve", str(package), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        listening = re.search(r"listening on (http://\S+)", first)
        if listening is None:
            stderr = first + process.communicate(timeout=60)[1]
            assert process.returncode == 3, stderr
            assert expected in one_sentence_error(subprocess.CompletedProcess([], 3, "", stderr))
            return
        deadline, ready = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            ready = requests.get(listening.group(1) + "/v2/health/ready", timeout=10)
            if set(ready.json()["models"].values()) - {"loading", "verifying"}:
                break
            time.sleep(0.1)
        assert ready is not None and ready.status_code == 503, ready
        (reason,) = ready.json()["models"].values()
        assert "tampered" in reason or expected in reason, reason
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.mark.parametrize(
    "command",
    [
        ["push", "{pkg}", "127.0.0.1:9/forest:1"],  # nothing listens on port 9: refused before any connection
        ["containerize", "{pkg}", "--tag", "localhost/forest:hostile"],
        ["containerize", "{pkg}", "--engine", "oci", "--out", "{out}", "--base", "/nonexistent/base"],
        ["export", "triton", "{pkg}", "{out}"],
    ],
    ids=["push", "containerize", "containerize-oci", "export"],
)
def test_symlinked_model_is_refused_before_it_leaves(package: Path, tmp_path: Path, command: list[str]) -> None:
    """A symlink with the right hash once made push upload whatever it pointed at: every command that ships a
    package refuses it (exit 3) before it contacts a registry or an engine, or writes anything."""
    rewrite(package, model_symlink)
    out = tmp_path / "out"
    argv = [part.replace("{out}", str(out)).replace("{pkg}", str(package)) for part in command]
    result = subprocess.run(
        [sys.executable, "-m", "mlpack", *argv],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/engine.sock"},
    )  # fmt: skip
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "model.onnx (unsafe)" in one_sentence_error(result)
    assert not out.exists()
