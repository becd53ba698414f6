"""The locks a build writes: env/pylock.toml, the exact build environment (PEP 751, every installed
distribution with artifact URL and sha256 where the index has them, and a RECORD fingerprint for all), and
env/requirements.lock, the hashed runtime lock a serving image installs (pip-tools format).

pip, pip-tools and uv run as subprocesses: none of them has a stable Python API. pip's own configuration is
ignored (PIP_CONFIG_FILE=/dev/null) and the index is named explicitly, so a lock records index URLs and
hashes, never the machine-local wheel folders that pip may be configured with. Answers are cached by the
exact pins they were computed for (options.cache_dir("locks")), so a cache can never make a lock stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlpack.environment import (
    RUNTIME_PACKAGES,
    Distribution,
    canonicalize_name,
    installed,
    parse_requirements_lock,
)
from mlpack.errors import LockUnavailable
from mlpack.fileio import write_atomic
from mlpack.options import cache_dir

LOCK_TIMEOUT_S = 120


def _cached(kind: str, key_parts: list[str], produce: Any) -> str:
    """Return produce()'s text, reusing an earlier result for identical inputs (all pins are exact)."""
    key = hashlib.sha256("\n".join([kind, sys.version, sys.platform, *key_parts]).encode()).hexdigest()
    path = cache_dir("locks") / f"{kind}-{key}.txt"
    if path.exists():
        return path.read_text()
    text: str = produce()
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        write_atomic(path, text.encode())
    return text


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_CONFIG_FILE"] = os.devnull
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=_pip_env(), capture_output=True, text=True, timeout=LOCK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LockUnavailable(f"{Path(cmd[0]).name} timed out after {LOCK_TIMEOUT_S} s") from exc


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR")]
    return (lines[-1] if lines else (stderr.strip().splitlines() or ["no output"])[-1])[:300]


_UNREACHABLE = re.compile(r"Connection|Could not fetch URL|Max retries|timed out|Name or service", re.I)


def _artifact_report(pins: list[str], index: str) -> dict[str, dict[str, Any]]:
    """Artifact URL and sha256 for each exact pin, from pip's dry-run report (no install, no deps)."""
    with tempfile.TemporaryDirectory(prefix="mlpack-lock-") as tmp:
        work = Path(tmp)
        remaining = list(pins)
        for _ in range(4):  # drop pins the index does not have (local builds), then try again
            (work / "pins.txt").write_text("\n".join(remaining) + "\n")
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--no-deps",
                "--quiet",
                "--timeout",
                "10",
                "--retries",
                "1",
                "--index-url",
                index,
                "--report",
                "report.json",
                "-r",
                "pins.txt",
            ]
            result = _run(cmd, work)
            if result.returncode == 0:
                report = json.loads((work / "report.json").read_text())
                return {
                    canonicalize_name(item["metadata"]["name"]): item["download_info"]
                    for item in report.get("install", [])
                }
            missing = re.findall(r"No matching distribution found for ([A-Za-z0-9_.\-]+)==", result.stderr)
            if _UNREACHABLE.search(result.stderr):
                raise LockUnavailable(f"the index {index} could not be reached")
            if not missing:
                raise LockUnavailable(f"pip could not read {index}: {_last_error(result.stderr)}")
            gone = {canonicalize_name(name) for name in missing}
            remaining = [pin for pin in remaining if canonicalize_name(pin.split("==")[0]) not in gone]
        raise LockUnavailable(f"too many distributions missing from {index}")


def _source(dist: Distribution, info: dict[str, Any] | None, index: str) -> dict[str, Any] | None:
    """PEP 751 source fields for one distribution (vcs, directory, wheel or sdist); None when it has none."""
    from packaging.pylock import PackageDirectory, PackageSdist, PackageVcs, PackageWheel

    direct = dist.direct_url or {}
    if "vcs_info" in direct:
        vcs = direct["vcs_info"]
        return {"vcs": PackageVcs(type=vcs["vcs"], url=direct["url"], commit_id=vcs["commit_id"])}
    if direct:  # a local directory or archive: its path on the build machine would mean nothing elsewhere
        editable = bool(direct.get("dir_info", {}).get("editable"))
        return {"directory": PackageDirectory(path=Path(direct["url"]).name, editable=editable)}
    if info and info.get("url", "").startswith(("https://", "http://")):
        hashes = info.get("archive_info", {}).get("hashes", {})
        if info["url"].endswith(".whl"):
            return {"index": index, "wheels": [PackageWheel(url=info["url"], hashes=hashes)]}
        return {"index": index, "sdist": PackageSdist(url=info["url"], hashes=hashes)}
    return None


def _artifacts(pins: list[str], resolve: bool, index: str) -> tuple[dict[str, dict[str, Any]], str, str]:
    """Artifact URL and hashes by name, the lookup's status, and why it is not complete."""
    if not resolve:
        return {}, "offline", "artifact lookup skipped (resolve=False)"
    try:
        text = _cached("artifacts", [index, *pins], lambda: json.dumps(_artifact_report(pins, index)))
    except LockUnavailable as exc:
        return {}, "offline", str(exc)
    return json.loads(text), "complete", ""


def build_lock(dists: dict[str, Distribution], resolve: bool, index: str) -> tuple[str, dict[str, Any]]:
    """PEP 751 text for the running environment, and a summary for the manifest."""
    import tomli_w
    from packaging.pylock import Package, Pylock
    from packaging.utils import NormalizedName
    from packaging.version import Version

    pins = sorted(f"{d.name}=={d.version}" for d in dists.values() if d.from_index)
    artifacts, status, reason = _artifacts(pins, resolve, index)
    packages = []
    unlocked = []  # PEP 751 demands a source for every package; those without one are kept aside
    for dist in dists.values():
        tool: dict[str, Any] = {"record-sha256": dist.record_sha256} if dist.record_sha256 else {"no-record": True}
        if dist.direct_url and "vcs_info" not in dist.direct_url:
            tool["local"] = "installed from a local path that is not recorded"
        fields = _source(dist, artifacts.get(dist.name), index)
        if fields is None:
            why = reason if status != "complete" else f"not found on {index}"
            unlocked.append({"name": dist.name, "version": dist.version, **tool, "reason": why})
            continue
        name = NormalizedName(dist.name)  # installed() names are PEP 503-normalised already
        packages.append(Package(name=name, version=Version(dist.version), tool={"mlpack": tool}, **fields))

    environment = {"python": sys.version.split()[0], "platform": sys.platform, "artifacts": status}
    lock = Pylock(lock_version=Version("1.0"), created_by="mlpack", requires_python=None, packages=packages,
                  tool={"mlpack": {**environment, "unlocked": unlocked}})  # fmt: skip
    lock.validate()
    summary = {
        "packages": len(packages) + len(unlocked),
        "with_artifact_hash": sum(1 for p in packages if p.wheels or p.sdist),
        "unlocked": len(unlocked),
        "artifacts": status,
        **({"reason": reason} if reason else {}),
    }
    return tomli_w.dumps(lock.to_dict()), summary


def runtime_versions(dists: dict[str, Distribution]) -> dict[str, str | None]:
    return {name: (dists[name].version if name in dists else None) for name in RUNTIME_PACKAGES}


def runtime_lock(dists: dict[str, Distribution], resolve: bool, index: str) -> tuple[str | None, dict[str, Any]]:
    """Hashed requirements for a serving machine, pinned to this environment's versions.

    uv is preferred when installed (about 20x faster here); pip-compile gives the same file, and
    MLPACK_LOCK_TOOL=pip-compile selects it.
    """
    if not resolve:
        return None, {"status": "missing", "reason": "resolution skipped (resolve=False)"}
    requirements = [f"{n}=={v}" for n, v in runtime_versions(dists).items() if v]
    constraints = sorted(f"{d.name}=={d.version}" for d in dists.values() if d.from_index)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if os.environ.get("MLPACK_LOCK_TOOL") == "pip-compile":
        uv = None  # both tools give the same pins; this lets users (and tests) pick the reference one
    tool = "uv" if uv else "pip-compile"

    def compile_lock() -> str:
        with tempfile.TemporaryDirectory(prefix="mlpack-rlock-") as tmp:
            work = Path(tmp)
            (work / "requirements.in").write_text("\n".join(requirements) + "\n")
            (work / "constraints.txt").write_text("\n".join(constraints) + "\n")
            common = [
                "--generate-hashes",
                "--no-header",
                "--index-url",
                index,
                "-c",
                "constraints.txt",
                "-o",
                "requirements.lock",
                "requirements.in",
            ]
            if uv:
                cmd = [uv, "pip", "compile", "--quiet", "--no-progress", *common]
            else:
                cmd = [
                    sys.executable,
                    "-m",
                    "piptools",
                    "compile",
                    "--quiet",
                    "--no-emit-index-url",
                    "--no-emit-find-links",
                    *common,
                ]
            result = _run(cmd, work)
            if result.returncode != 0:
                raise LockUnavailable(f"{tool} could not resolve from {index}: {_last_error(result.stderr)}")
            return (work / "requirements.lock").read_text()

    try:
        text = _cached("runtime", [tool, index, *requirements, *constraints], compile_lock)
    except LockUnavailable as exc:
        return None, {"status": "missing", "reason": str(exc), "tool": tool}
    pins = parse_requirements_lock(text)
    return text, {"status": "complete", "tool": tool, "index": index, "packages": len(pins)}


def write_lock_files(folder: Path, resolve: bool, index: str) -> dict[str, Any]:
    """Write env/pylock.toml and env/requirements.lock (when it can be resolved); return the manifest summary."""
    dists = installed()
    pylock_text, build_summary = build_lock(dists, resolve, index)
    write_atomic(folder / "pylock.toml", pylock_text.encode())
    runtime_text, runtime_summary = runtime_lock(dists, resolve, index)
    if runtime_text is not None:
        write_atomic(folder / "requirements.lock", runtime_text.encode())
    return {
        "build_lock": build_summary,
        "runtime_lock": runtime_summary,
        "runtime": runtime_versions(dists),
        "python": sys.version.split()[0],
    }
