"""Locks: the exact build environment (PEP 751) and the hashed runtime lock; environment diffs at verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.pylock import Package, Pylock

import mlpack
from mlpack import environment, locks, options

UNREACHABLE = "http://127.0.0.1:9/simple"  # nothing listens on the discard port


def test_build_lock_is_valid_pep751_with_urls_hashes_and_fingerprints(built: Path) -> None:
    text = (built / "env/pylock.toml").read_text()
    assert "file://" not in text and "/opt/" not in text  # never machine-local locations
    lock = Pylock.from_dict(tomllib.loads(text))  # packaging's own validation
    by_name: dict[str, Package] = {p.name: p for p in lock.packages}
    here = environment.installed()
    numpy_entry = by_name["numpy"]
    assert str(numpy_entry.version) == np.__version__
    assert numpy_entry.wheels and numpy_entry.wheels[0].url and numpy_entry.wheels[0].url.startswith("https://")
    assert len(numpy_entry.wheels[0].hashes["sha256"]) == 64
    assert numpy_entry.tool and numpy_entry.tool["mlpack"]["record-sha256"] == here["numpy"].record_sha256
    assert {"onnxruntime", "scikit-learn", "skl2onnx", "packaging"} <= set(by_name)
    manifest = mlpack.open_package(built).manifest.to_dict()
    assert manifest["environment"]["build_lock"]["artifacts"] == "complete"


def test_runtime_lock_pins_with_hashes(built: Path) -> None:
    text = (built / "env/requirements.lock").read_text()
    pins = environment.parse_requirements_lock(text)
    assert pins["onnxruntime"] == environment.installed()["onnxruntime"].version
    assert pins["numpy"] == np.__version__
    assert "scikit-learn" not in pins and "skl2onnx" not in pins and "onnx" not in pins  # no training stack
    entries = [chunk for chunk in text.split("\n") if chunk and not chunk.startswith((" ", "#"))]
    assert entries and all(line.endswith("\\") for line in entries)  # every pin continues with --hash lines
    assert text.count("--hash=sha256:") >= len(pins)
    assert "--index-url" not in text and "--find-links" not in text and "file://" not in text


def test_uv_and_pip_compile_give_the_same_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "fresh-cache"))
    uv_text, uv_summary = locks.runtime_lock(environment.installed(), True, options.index_url())
    monkeypatch.setenv("MLPACK_LOCK_TOOL", "pip-compile")
    pip_text, pip_summary = locks.runtime_lock(environment.installed(), True, options.index_url())
    assert (uv_summary["tool"], pip_summary["tool"]) == ("uv", "pip-compile")
    assert uv_text is not None and pip_text is not None
    assert environment.parse_requirements_lock(uv_text) == environment.parse_requirements_lock(pip_text)


def test_unreachable_index_still_builds_and_says_why(
    forest: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    package = mlpack.build(forest, sample=iris[0][:5], out=tmp_path, index_url=UNREACHABLE)
    env = package.manifest.to_dict()["environment"]
    assert env["runtime_lock"]["status"] == "missing"
    assert "127.0.0.1:9" in env["runtime_lock"]["reason"]
    assert env["runtime_lock_file"] is None and not (package.path / "env/requirements.lock").exists()
    assert env["build_lock"]["artifacts"] == "offline" and "could not be reached" in env["build_lock"]["reason"]
    lock = tomllib.loads((package.path / "env/pylock.toml").read_text())
    Pylock.from_dict(lock)  # still valid PEP 751: what has no artifact is listed under tool.mlpack.unlocked
    unlocked = {p["name"]: p for p in lock["tool"]["mlpack"]["unlocked"]}
    assert unlocked["numpy"]["version"] == np.__version__ and len(unlocked["numpy"]["record-sha256"]) == 64
    assert "could not be reached" in unlocked["numpy"]["reason"]
    # verify falls back to the runtime versions the manifest recorded
    assert mlpack.verify(package.path).verdict == "identical"


def test_verify_names_each_differing_package(package: Path, tmp_path: Path) -> None:
    """A second environment with other numpy and onnxruntime releases, as another machine would have."""
    alt = tmp_path / "alt"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(alt),
            "numpy==2.3.5",
            "onnxruntime==1.30.0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    result = subprocess.run(
        [sys.executable, "-m", "mlpack", "verify", str(package), "--json"],
        env={**os.environ, "PYTHONPATH": str(alt)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(result.stdout)
    runtime = {c["name"]: c for c in data["environment"]["runtime"]}
    assert runtime["numpy"]["here"] == "2.3.5" and runtime["numpy"]["locked"] == np.__version__
    assert runtime["onnxruntime"]["here"] == "1.30.0" and runtime["onnxruntime"]["change"] == "version"
    build = {c["name"]: c for c in data["environment"]["build"]}
    assert build["numpy"]["here"] == "2.3.5"
    hardware = {c["field"]: c for c in data["hardware"]}
    assert hardware["onnxruntime.version"]["here"] == "1.30.0" and hardware["numpy.version"]["here"] == "2.3.5"
    assert data["verdict"] in ("identical", "equivalent", "mismatch")
    assert result.returncode == {"identical": 0, "equivalent": 0, "mismatch": 1}[data["verdict"]]
    if data["verdict"] != "identical":
        assert any(cause.startswith("onnxruntime 1.30.0 here vs") for cause in data["causes"])
    text = subprocess.run(
        [sys.executable, "-m", "mlpack", "verify", str(package)],
        env={**os.environ, "PYTHONPATH": str(alt)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "onnxruntime: " in text.stdout and "1.30.0 here" in text.stdout


def test_same_wheel_anywhere_has_the_same_fingerprint_and_a_rebuilt_one_does_not(tmp_path: Path) -> None:
    alt = tmp_path / "alt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(alt),
            f"threadpoolctl=={environment.installed()['threadpoolctl'].version}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    here = environment.installed()["threadpoolctl"]
    probe = (
        "import json,sys; from mlpack import environment as e; print(e.installed()['threadpoolctl'].record_sha256)"
    )

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "PYTHONPATH": str(alt)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert run() == here.record_sha256  # installed elsewhere, by another installer run: same fingerprint
    record = next(alt.glob("threadpoolctl-*.dist-info")) / "RECORD"
    lines = record.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("threadpoolctl.py,sha256="))
    lines[index] = lines[index].replace("sha256=", "sha256=X")  # a different build of the module
    record.write_text("\n".join(lines) + "\n")
    assert run() != here.record_sha256
    lock = {"threadpoolctl": {"version": here.version, "record_sha256": here.record_sha256}}
    other = environment.Distribution("threadpoolctl", here.version, "f" * 64, None)
    assert environment.diff({}, lock, {"threadpoolctl": other})["build"] == [
        {"name": "threadpoolctl", "change": "altered", "locked": here.version, "here": here.version}
    ]


def test_installed_finds_what_importlib_metadata_finds() -> None:
    """verify scans .dist-info folders itself (importlib.metadata's imports cost ~40 ms a run): the same
    distributions, the same versions, the first on sys.path winning."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    theirs: dict[str, str] = {}
    for dist in metadata.distributions():
        theirs.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    mine = environment.installed(fingerprint=())
    assert {name: d.version for name, d in mine.items()} == theirs
    assert all(d.record_sha256 is None for d in mine.values())  # nothing fingerprinted unless asked
    assert (
        environment.installed(fingerprint={"numpy"})["numpy"].record_sha256
        == environment.installed()["numpy"].record_sha256
    )
