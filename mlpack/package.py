"""The package directory: open it, check its integrity, and write it atomically.

A package's identity is the sha256 of its manifest, which hashes every other file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlpack.errors import IntegrityError, UsageError
from mlpack.fileio import sha256_bytes, sha256_file
from mlpack.manifest import NAME_PATTERN, Manifest

MANIFEST = "mlpack.json"
SIGNATURE = "mlpack.sig"  # an OpenSSF Model Signing bundle over every other file (mlpack sign)
PROVENANCE = "env/provenance.intoto.json"  # about the package digest, so written after the manifest, unlisted
TRUST_FILES = (SIGNATURE, PROVENANCE)  # about the package, so unlisted in mlpack.json: each vouches for itself
MODEL = "model.onnx"
INPUTS = "reference/inputs.npz"
OUTPUTS = "reference/outputs.npz"
BUILD_LOCK = "env/pylock.toml"
RUNTIME_LOCK = "env/requirements.lock"
HARDWARE = "hardware.json"


@dataclass(frozen=True)
class Package:
    path: Path
    manifest: Manifest
    digest: str  # "sha256:<hex>" of mlpack.json

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def __str__(self) -> str:
        return f"{self.name}-{self.version} ({self.digest}) at {self.path}"


@dataclass(frozen=True)
class Problem:
    file: str
    kind: str  # changed | missing | extra | unsafe
    detail: str


def open_package(path: Path | str) -> Package:
    root = Path(path)
    if not root.exists():
        raise UsageError(f"{root} does not exist.")
    manifest_path = root / MANIFEST
    if not root.is_dir() or not manifest_path.is_file():
        raise UsageError(f"{root} is not an mlpack package: it has no {MANIFEST}.")
    if manifest_path.is_symlink():
        raise IntegrityError(f"{manifest_path} is a symbolic link: a package holds regular files only.")
    data = manifest_path.read_bytes()
    manifest = Manifest.from_bytes(data, str(manifest_path))
    return Package(path=root, manifest=manifest, digest=f"sha256:{sha256_bytes(data)}")


def _safe(root: Path, relative: str) -> bool:
    candidate = Path(relative)
    return not candidate.is_absolute() and ".." not in candidate.parts and relative != MANIFEST


def _symlink_in(root: Path, relative: str) -> bool:
    """Whether the file or any folder between it and the package root is a symbolic link."""
    path = root
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


def _unsafe(root: Path, relative: str) -> Problem | None:
    if not _safe(root, relative):
        return Problem(relative, "unsafe", "the manifest names a path outside the package")
    if _symlink_in(root, relative):
        return Problem(relative, "unsafe", "a symbolic link: packages hold regular files only")
    return None


def read_listed(package: Package, relative: str, advice: str) -> bytes | None:
    """One file the manifest lists, read once and held to its hash, for use before the whole package is
    checked; None when the manifest does not list it. IntegrityError (ending with ``advice``) when it is
    unsafe, missing or changed."""
    expected = package.manifest.files.get(relative)
    if expected is None:
        return None
    problem = _unsafe(package.path, relative)
    if problem is None:
        try:
            data = (package.path / relative).read_bytes()
        except OSError:
            problem = Problem(relative, "missing", "listed in the manifest but not readable")
        else:
            actual = sha256_bytes(data)
            if actual == expected:
                return data
            problem = Problem(relative, "changed", f"sha256 {actual[:16]}… ≠ manifest {expected[:16]}…")
    raise IntegrityError(f"{package.path} does not match its manifest: {describe_problems([problem])}; {advice}")


def check_integrity(package: Package) -> list[Problem]:
    """Every listed file exists with its hash; no unlisted file sits in a folder the manifest covers; no
    symbolic link anywhere inside (a link could point the hashed name at any file on the machine)."""
    root = package.path
    listed = package.manifest.files
    problems = []
    for relative, expected in sorted(listed.items()):
        unsafe = _unsafe(root, relative)
        if unsafe is not None:
            problems.append(unsafe)
            continue
        file = root / relative
        if not file.is_file():
            problems.append(Problem(relative, "missing", "listed in the manifest but not present"))
            continue
        actual = sha256_file(file)
        if actual != expected:
            problems.append(Problem(relative, "changed", f"sha256 {actual[:16]}… ≠ manifest {expected[:16]}…"))
    covered = {str(Path(relative).parent) for relative in listed} | {"."}
    for dirpath, dirnames, filenames in os.walk(root):  # never follows links: they are reported instead
        folder = Path(dirpath).relative_to(root)
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink() and (folder / name).as_posix() not in listed:
                problems.append(Problem((folder / name).as_posix(), "unsafe", "a symbolic link to a folder"))
        if str(folder) not in covered:
            continue
        for filename in filenames:
            relative = (folder / filename).as_posix()
            if relative not in listed and relative not in (MANIFEST, *TRUST_FILES):
                problems.append(Problem(relative, "extra", "present but not listed in the manifest"))
    return problems


def describe_problems(problems: list[Problem]) -> str:
    return ", ".join(f"{p.file} ({p.kind})" for p in problems[:5]) + (" …" if len(problems) > 5 else "")


def open_intact(path: Path | str, advice: str) -> Package:
    """Open a package and refuse it, naming the files, unless every file matches its manifest."""
    package = open_package(path)
    problems = check_integrity(package)
    if problems:
        raise IntegrityError(
            f"{package.path} does not match its manifest: {describe_problems(problems)}; {advice}"
        )
    return package


def package_dir_name(name: str, version: str) -> str:
    for label, value in (("name", name), ("version", version)):
        if not NAME_PATTERN.match(value):
            raise UsageError(f"The package {label} {value!r} may hold only letters, digits, '.', '_' and '-'.")
    return f"{name}-{version}"


def _remove_stale_partials(parent: Path, final_name: str) -> None:
    """Partials of builds that were killed outright (SIGKILL) are removed once their process is gone."""
    for partial in parent.glob(f".{final_name}.partial-*"):
        try:
            os.kill(int(partial.name.rsplit("-", 1)[1]), 0)
        except (ProcessLookupError, ValueError):
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass


def refuse_existing(target: Path, force: bool, elsewhere: str = "another --out") -> None:
    """Refuse to write into a file or over an existing target; ``elsewhere`` names the way to choose another."""
    for folder in [target.parent, *target.parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{folder} is a file, not a folder: choose {elsewhere}.")
            break
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: choose {elsewhere}, or pass --force to replace it.")


@contextlib.contextmanager
def staging(target: Path, force: bool, elsewhere: str = "another --out") -> Iterator[Path]:
    """Yield a hidden folder beside target; on success it becomes target in one rename, else it vanishes."""
    refuse_existing(target, force, elsewhere)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent, target.name)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
        refuse_existing(target, force, elsewhere)
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(partial, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
