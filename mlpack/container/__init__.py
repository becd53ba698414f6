"""mlpack containerize: a hermetic image from a template, verified inside before it is tagged for release.

Shared here: the build context (package, wheelhouse of the runtime lock, rendered Dockerfile) and the
image's labels. The engines live beside it: ``engine`` (Docker SDK, Docker or Podman) and ``oci``
(daemonless OCI layout).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.errors import EngineError, UsageError
from mlpack.package import RUNTIME_LOCK, Package, open_intact

PYTHON_VERSION = "3.11"  # the base image's CPython (Debian bookworm); the wheelhouse is fetched for it
MANYLINUX = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
]  # fmt: skip
DIGEST_LABEL = "org.mlpack.package.digest"


@dataclass(frozen=True)
class Context:
    folder: Path  # the build context: Dockerfile, package/, wheels/, requirements.lock
    package: Package
    mlpack_wheel: str


def labels(package: Package) -> dict[str, str]:
    """OCI annotations for the image; created comes from SOURCE_DATE_EPOCH (else the package's created)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    created = (
        dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat().replace("+00:00", "Z")
        if epoch
        else package.manifest.created
    )
    return {
        "org.opencontainers.image.title": package.name,
        "org.opencontainers.image.version": package.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": f"{package.name} {package.version} served by mlpack (KServe V2)",
        "org.opencontainers.image.vendor": "mlpack",
        DIGEST_LABEL: package.digest,
        "org.mlpack.version": __version__,
    }


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        missing = [
            line for line in tail.splitlines() if "No matching distribution" in line or "Could not find" in line
        ]
        if missing:
            raise EngineError(f"{what} failed: no wheel for the image's platform ({missing[-1].strip()}).")
        raise EngineError(f"{what} failed:\n{tail}")


def project_root() -> Path:
    """Where this mlpack's source lives, to build the wheel that goes into the image."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise EngineError("mlpack's source tree is not available to build its wheel; install mlpack from source.")
    return root


def download_wheels(lock: Path, folder: Path) -> None:
    """Every pinned, hashed requirement as a wheel for the image's platform and Python; no sdists."""
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--require-hashes",
          "--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp",
          "-d", str(folder), "-r", str(lock)], "Downloading the runtime wheels")  # fmt: skip


def _source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    files = [
        root / "pyproject.toml",
        *sorted((root / "mlpack").rglob("*.py")),
        *sorted((root / "templates").glob("*")),
    ]
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_mlpack_wheel(folder: Path) -> str:
    """mlpack's own wheel, built once per source state: an unchanged rebuild reuses it."""
    root = project_root()
    cache = wheel_cache() / f"mlpack-{_source_hash(root)}"
    if not any(cache.glob("mlpack-*.whl")):
        staging = Path(tempfile.mkdtemp(prefix="mlpack-wheel-"))
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
              "-w", str(staging), str(root)], "Building mlpack's wheel")  # fmt: skip
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(staging, cache)
    built = sorted(cache.glob("mlpack-*.whl"))
    if not built:
        raise EngineError("Building mlpack's wheel produced no wheel.")
    shutil.copy2(built[-1], folder / built[-1].name)
    return built[-1].name


def wheel_cache() -> Path:
    root = os.environ.get("MLPACK_CACHE_DIR") or os.path.join(os.path.expanduser("~/.cache"), "mlpack")
    return Path(root) / "wheels"


def render(package_path: str | Path, base: str, folder: Path | None = None) -> Context:
    """Lay out a build context; wheels are cached by the runtime lock's hash, so a rebuild fetches nothing."""
    package = open_intact(package_path, "rebuild it: a tampered package is never containerized.")
    lock = package.path / RUNTIME_LOCK
    if not lock.is_file():
        reason = package.manifest.environment.runtime_lock.get("reason", "")
        raise UsageError(
            f"{package.path} has no runtime lock ({reason or 'it was built offline'}); rebuild it where the "
            "package index can be reached."
        )
    import jinja2

    context = folder or Path(tempfile.mkdtemp(prefix="mlpack-context-"))
    shutil.copytree(package.path, context / "package", dirs_exist_ok=True)
    shutil.copy2(lock, context / "requirements.lock")
    cache = wheel_cache() / package.manifest.files[RUNTIME_LOCK][:16]
    if not cache.is_dir():
        staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache.parent if cache.parent.exists() else None))
        download_wheels(lock, staging)
        cache.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, cache)
    wheels = context / "wheels"
    shutil.copytree(cache, wheels, dirs_exist_ok=True)
    mlpack_wheel = build_mlpack_wheel(wheels)
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=False, keep_trailing_newline=True
    ).get_template("Dockerfile.j2")
    text = template.render(
        base=base, name=package.name, version=package.version, digest=package.digest, mlpack_version=__version__,
        mlpack_wheel=mlpack_wheel, labels=labels(package),
    )  # fmt: skip
    (context / "Dockerfile").write_text(text)
    return Context(folder=context, package=package, mlpack_wheel=mlpack_wheel)


def templates_dir() -> Path:
    """templates/ ships inside the wheel as mlpack/templates; a source checkout has it at the top level."""
    shipped = resources.files("mlpack").joinpath("templates")
    if shipped.is_dir():
        return Path(str(shipped))
    return project_root() / "templates"


def verify_report(output: str) -> dict[str, Any]:
    """The JSON report that `mlpack verify --json` printed inside the container."""
    start = output.find("{")
    try:  # raw_decode: engines may interleave other output after the object
        return dict(json.JSONDecoder().raw_decode(output[start:])[0]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}
