"""The wheels that go into an image: the runtime lock's, fetched for the image's platform, and mlpack's own.

mlpack's own wheel comes from its source tree when mlpack runs from a checkout (``pip wheel``), and otherwise
from the installed distribution itself: RECORD lists every installed file with its hash, and a wheel is a
zip of those files and the dist-info. That rebuild needs no network, no build backend and no source, checks
every file against RECORD, and writes the same bytes for the same files. Both are cached by content.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from importlib.metadata import PathDistribution
from pathlib import Path

from mlpack import __version__
from mlpack.errors import EngineError
from mlpack.options import cache_dir

PYTHON_VERSION = "3.11"  # the base image's CPython (Debian bookworm); the wheelhouse is fetched for it


def manylinux(arch: str) -> list[str]:
    """The manylinux platform tags pip may take for a glibc 2.36 machine (Debian bookworm) of ``arch``."""
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"{tag}_{arch}" for tag in legacy]


MANYLINUX = manylinux("x86_64")
# written by the installer, not shipped in the wheel; RECORD is written anew for the wheel's own files
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no clock in the wheel's bytes


def run_pip(args: list[str], what: str, target: str = "the image's platform") -> None:
    """pip in this interpreter; a failure becomes one EngineError naming the missing wheel when there is one.
    While someone watches (``progress.DETAIL``), pip's own lines (Collecting, Downloading, Saved) stream to them."""
    from mlpack import progress

    cmd = [sys.executable, "-m", "pip", *args]
    if progress.DETAIL.get() is None:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        returncode, output = result.returncode, (result.stderr or result.stdout)
    else:
        cmd = [a for a in cmd if a != "--quiet"] + (["--progress-bar", "off"] if args[:1] == ["download"] else [])
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as running:
            assert running.stdout is not None
            lines = []
            for line in running.stdout:
                lines.append(line)
                progress.detail(line)
            returncode = running.wait(timeout=1800)
        output = "".join(lines)
    if returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-8:])
        missing = [
            line for line in tail.splitlines() if "No matching distribution" in line or "Could not find" in line
        ]
        if missing:
            raise EngineError(f"{what} failed: no wheel for {target} ({missing[-1].strip()}).")
        raise EngineError(f"{what} failed:\n{tail}")


def cached(folder: Path, fill: Callable[[Path], None]) -> Path:
    """``folder`` in the cache, filled once: staged beside it (the same file system, so the move is atomic)
    and removed if filling fails, so the cache never holds a half-written entry and no temporary folder stays."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        fill(staging)
        try:
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():  # not another process filling it first: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def runtime_wheels(lock: Path, key: str, arch: str = "x86_64") -> Path:
    """Every pinned, hashed requirement as a wheel for the image's platform and Python; no sdists."""
    platforms = [arg for tag in manylinux(arch) for arg in ("--platform", tag)]

    def download(folder: Path) -> None:
        run_pip(["download", "--quiet", "--disable-pip-version-check", "--require-hashes", "--only-binary=:all:",
                 *platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp", "-d", str(folder),
                 "-r", str(lock)], "Downloading the runtime wheels")  # fmt: skip

    return cached(cache_dir("wheels") / (key if arch == "x86_64" else f"{key}-{arch}"), download)


def source_root() -> Path | None:
    """mlpack's source tree when this mlpack runs from one (a checkout or an editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("name") == "mlpack" and (root / "templates").is_dir() else None


def mlpack_wheel(folder: Path) -> str:
    """Copy mlpack's wheel into ``folder`` and return its file name."""
    root = source_root()
    cache = _from_source(root) if root else _from_installation()
    built = sorted(cache.glob("mlpack-*.whl"))
    if not built:
        raise EngineError("Building mlpack's wheel produced no wheel.")
    shutil.copy2(built[-1], folder / built[-1].name)
    return built[-1].name


def _source_files(root: Path) -> list[Path]:
    """What a wheel is built from: the package, its templates, and the metadata files pyproject names."""
    tops = [
        p
        for pattern in ("pyproject.toml", "README*", "LICEN[CS]E*", "COPYING*", "NOTICE*")
        for p in root.glob(pattern)
    ]
    trees = [p for tree in ("mlpack", "templates") for p in (root / tree).rglob("*")]
    return sorted(
        {p for p in [*tops, *trees] if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    )


def _from_source(root: Path) -> Path:
    """pip wheel from a clean copy of the source: setuptools' build/ folder in a checkout keeps modules that
    were since deleted and would ship them; the copy also leaves the checkout as it was."""
    files = _source_files(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())

    def build(staging: Path) -> None:
        source = staging / ".source"
        for path in files:
            (source / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / path.relative_to(root))
        run_pip(["wheel", "--quiet", "--disable-pip-version-check", "--no-deps", "-w", str(staging), str(source)],
                "Building mlpack's wheel")  # fmt: skip
        shutil.rmtree(source)

    return cached(cache_dir("wheels") / f"mlpack-{digest.hexdigest()[:16]}", build)


def installed_distribution() -> PathDistribution:
    """The dist-info beside the mlpack that is running: the record of exactly these files, whatever else
    sys.path holds."""
    site = Path(__file__).resolve().parents[2]
    for info in sorted(site.glob("mlpack-*.dist-info")):
        dist = PathDistribution(info)
        if dist.version == __version__ and (info / "RECORD").is_file():
            return dist
    raise EngineError(
        f"mlpack in {site} has neither its source tree nor an installation record (mlpack-{__version__}.dist-info "
        "with RECORD), so its wheel cannot be rebuilt for the image: reinstall mlpack with pip."
    )


def installed_files(dist: PathDistribution) -> list[tuple[str, bytes]]:
    """The distribution's own files as RECORD lists them, each checked against its recorded hash."""
    site = Path(str(dist.locate_file("")))
    found: list[tuple[str, bytes]] = []
    for entry in dist.files or []:
        name = entry.as_posix()
        if name.startswith(("../", "/")) or "__pycache__" in entry.parts or entry.hash is None:
            continue  # console scripts (regenerated from entry_points.txt) and the installer's bytecode
        if entry.parts[0].endswith(".dist-info") and entry.name in INSTALLER_FILES:
            continue
        try:
            data = (site / name).read_bytes()
        except OSError as exc:
            raise EngineError(
                f"The installed mlpack is incomplete ({name}: {exc.strerror}); reinstall it."
            ) from None
        if _record_hash(data, entry.hash.mode) != entry.hash.value:
            raise EngineError(f"The installed mlpack's {name} differs from its RECORD; reinstall mlpack.")
        found.append((name, data))
    if not any(name == "mlpack/__init__.py" for name, _ in found):
        raise EngineError("The installed mlpack's RECORD does not list its modules; reinstall mlpack with pip.")
    return sorted(found)


def _record_hash(data: bytes, mode: str = "sha256") -> str:
    return base64.urlsafe_b64encode(hashlib.new(mode, data).digest()).rstrip(b"=").decode()


def wheel_name(dist: PathDistribution, files: list[tuple[str, bytes]]) -> str:
    """NAME-VERSION-TAGS.whl from the dist-info's folder name and the Tag lines its WHEEL file carries."""
    info = next(name.split("/")[0] for name, _ in files if name.split("/")[0].endswith(".dist-info"))
    wheel = dict(files).get(f"{info}/WHEEL", b"").decode()
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise EngineError(f"The installed mlpack's {info}/WHEEL names no tag; reinstall mlpack with pip.")
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]  # the compressed tag set
    return f"{info.removesuffix('.dist-info')}-{'-'.join('.'.join(p) for p in parts)}.whl"


def write_wheel(target: Path, files: list[tuple[str, bytes]]) -> None:
    """A reproducible wheel: modules first, then the dist-info with a fresh RECORD last; fixed dates and
    modes, so the same files always give the same bytes."""
    info = next(name.split("/")[0] for name, _ in files if name.split("/")[0].endswith(".dist-info"))
    ordered = sorted(files, key=lambda item: (item[0].startswith(f"{info}/"), item[0]))
    record = "".join(f"{name},sha256={_record_hash(data)},{len(data)}\n" for name, data in ordered)
    ordered.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in ordered:
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.create_system = 3  # Unix, so the mode below is read everywhere
            entry.external_attr = 0o100644 << 16
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


def _from_installation() -> Path:
    dist = installed_distribution()
    files = installed_files(dist)
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    name = wheel_name(dist, files)
    return cached(
        cache_dir("wheels") / f"mlpack-installed-{digest.hexdigest()[:16]}",
        lambda staging: write_wheel(staging / name, files),
    )
