"""The environment as it is here, and how it differs from a package's locks: installed distributions (with
an installer-independent RECORD fingerprint), the locks read back, and a pure diff. locks.py writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What a serving machine needs to load, verify and serve a package; never a training framework.
RUNTIME_PACKAGES = ("onnxruntime", "numpy", "ml_dtypes", "packaging", "typer", "threadpoolctl")


@dataclass(frozen=True)
class Distribution:
    name: str  # canonical
    version: str
    record_sha256: str | None  # offline fingerprint: changes whenever any installed file changes
    direct_url: dict[str, Any] | None  # PEP 610: editable, VCS or local installs

    @property
    def from_index(self) -> bool:
        return self.direct_url is None


# RECORD entries that say how a wheel was installed rather than what it installed. Entry points under
# ../bin depend on where the environment lives (and embed its interpreter path).
_INSTALL_FILES = ("INSTALLER,", "REQUESTED,", "RECORD,", "direct_url.json,")


def _record_fingerprint(record: str) -> str:
    """sha256 over the sorted file entries of RECORD (path, hash, size): the same wheel installed by any
    installer, anywhere, gives the same fingerprint; another build of the same version does not."""
    lines = sorted(
        line
        for line in record.splitlines()
        if line
        and not line.startswith("../")
        and "__pycache__/" not in line
        and ".pyc," not in line
        and not line.rpartition("/")[2].startswith(_INSTALL_FILES)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def canonicalize_name(name: str) -> str:
    """PEP 503 normalisation, as packaging.utils does it; importing packaging.utils (it pulls packaging.tags)
    would cost verify about 15 ms on every run."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata_folders() -> Iterator[Path]:
    """Every .dist-info and .egg-info folder on sys.path, in import order. The same folders that
    importlib.metadata.distributions() finds (a test checks it), without its email-parser imports and
    per-file wrappers, which cost verify about 40 ms."""
    for entry in sys.path:
        folder = Path(entry or ".")
        try:
            with os.scandir(folder) as entries:
                found = sorted(
                    e.name for e in entries if e.name.endswith((".dist-info", ".egg-info")) and e.is_dir()
                )
        except OSError:
            continue
        for name in found:
            yield folder / name


def _read(folder: Path, name: str) -> str | None:
    try:
        return (folder / name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _head(path: Path, size: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(size)
    except OSError:
        return ""


def _name_and_version(folder: Path) -> tuple[str, str]:
    """Name and Version from the header of METADATA (they lead it: core metadata puts them second and third).
    Only the first KiBs are read: long descriptions follow, and reading them all cost verify ~5 ms."""
    for filename in ("METADATA", "PKG-INFO"):
        for size in (4096, -1):  # a header longer than 4 KiB is read whole
            name = version = ""
            for line in _head(folder / filename, size).splitlines():
                if not line:
                    break
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
                if name and version:
                    return name, version
    return "", ""


def installed(
    fingerprint: Collection[str] | None = None, only: Collection[str] | None = None
) -> dict[str, Distribution]:
    """Installed distributions, the first on sys.path winning, exactly as imports resolve them.

    RECORD fingerprints are computed for every distribution, or only for the names in ``fingerprint``:
    reading and hashing RECORD is most of the cost (torch's alone has ~15,000 lines), and verify needs
    fingerprints only for the packages that run the model. With ``only``, just those distributions are
    read (found by their folder names, with a full scan for any a folder name does not reveal).
    """
    if only is not None:
        wanted = {canonicalize_name(name) for name in only}
        found = _scan(fingerprint, lambda folder: canonicalize_name(folder.name.split("-")[0]) in wanted)
        if wanted - set(found):  # an unusual folder name: look at every folder's metadata
            found = _scan(fingerprint, lambda folder: True)
        return {name: dist for name, dist in found.items() if name in wanted}
    return _scan(fingerprint, lambda folder: True)


def _scan(fingerprint: Collection[str] | None, pick: Callable[[Path], bool]) -> dict[str, Distribution]:
    found: dict[str, Distribution] = {}
    for folder in _metadata_folders():
        if not pick(folder):
            continue
        raw_name, version = _name_and_version(folder)
        if not raw_name or not version:
            continue
        name = canonicalize_name(raw_name)
        if name in found:
            continue
        wanted = fingerprint is None or name in fingerprint
        record = _read(folder, "RECORD") if wanted else None
        direct = _read(folder, "direct_url.json")
        found[name] = Distribution(
            name=name,
            version=version,
            record_sha256=_record_fingerprint(record) if record is not None else None,
            direct_url=json.loads(direct) if direct else None,
        )
    return dict(sorted(found.items()))


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def parse_requirements_lock(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def requirements_lock_hashes(text: str) -> dict[str, list[str]]:
    """name -> the sha256 of every artifact a --hash requirements lock accepts for it."""
    hashes: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            hashes[current] = []
        if current is not None:
            hashes[current].extend(_HASH.findall(line))
    return hashes


_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def build_lock_entries(path: Path) -> list[dict[str, Any]]:
    """Every package a pylock.toml names, locked or not (its unlocked list), as the lock lists them: name,
    version, artifacts ([{url, sha256}], wheels then sdist) and record_sha256 (the installed RECORD's)."""
    import tomllib  # here: verify reads the build lock only when it has something to explain

    data = tomllib.loads(path.read_text())
    entries = []
    for p in data.get("packages", []):
        files = [*p.get("wheels", []), *([p["sdist"]] if "sdist" in p else [])]
        entries.append({
            "name": p["name"], "version": p.get("version"),
            "artifacts": [{"url": a.get("url") or a.get("path") or "", "sha256": a.get("hashes", {}).get("sha256")}
                          for a in files],
            "record_sha256": p.get("tool", {}).get("mlpack", {}).get("record-sha256"),
        })  # fmt: skip
    for p in data.get("tool", {}).get("mlpack", {}).get("unlocked", []):
        entries.append({"name": p["name"], "version": p.get("version"), "artifacts": [],
                        "record_sha256": p.get("record-sha256")})  # fmt: skip
    return entries


def read_build_lock(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {version, record_sha256} from a pylock.toml and its unlocked list."""
    return {
        canonicalize_name(e["name"]): {"version": e["version"], "record_sha256": e["record_sha256"]}
        for e in build_lock_entries(path)
    }


def diff(
    runtime_pins: dict[str, str], build: dict[str, dict[str, Any]], here: dict[str, Distribution]
) -> dict[str, list[dict[str, Any]]]:
    """Package-by-package differences. Pure: the caller gathers what is installed."""
    runtime = []
    for name, version in sorted(runtime_pins.items()):
        dist = here.get(name)
        if dist is None:
            runtime.append({"name": name, "change": "missing", "locked": version, "here": None})
        elif dist.version != version:
            runtime.append({"name": name, "change": "version", "locked": version, "here": dist.version})
    informational = []
    for name, entry in sorted(build.items()):
        dist = here.get(name)
        if dist is None:
            informational.append({"name": name, "change": "missing", "locked": entry["version"], "here": None})
        elif dist.version != entry["version"]:
            informational.append(
                {"name": name, "change": "version", "locked": entry["version"], "here": dist.version}
            )
        elif entry["record_sha256"] and dist.record_sha256 and entry["record_sha256"] != dist.record_sha256:
            informational.append(
                {"name": name, "change": "altered", "locked": entry["version"], "here": dist.version}
            )
    for name in sorted(set(here) - set(build)):
        informational.append({"name": name, "change": "extra", "locked": None, "here": here[name].version})
    return {"runtime": runtime, "build": informational} if build else {"runtime": runtime, "build": []}
