"""mlpack containerize: a hermetic image from a template, verified inside before it is tagged for release.

Shared here: the build context (package, wheelhouse of the runtime lock, rendered Dockerfile), which lives
only as long as the build unless the caller names a folder to keep it in. Beside it: ``contract`` (what
every image promises), ``wheels`` (the wheelhouse and mlpack's own wheel), and the engines: ``engine``
(Docker SDK, Docker or Podman) and ``oci`` (daemonless OCI layout).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.container.contract import DIGEST_LABEL, VENV, VENV_PYTHON, Contract, labels
from mlpack.container.wheels import MANYLINUX, PYTHON_VERSION, mlpack_wheel, runtime_wheels, source_root
from mlpack.errors import EngineError, UsageError
from mlpack.package import RUNTIME_LOCK, Package, open_intact

__all__ = [
    "DIGEST_LABEL",
    "MANYLINUX",
    "PYTHON_VERSION",
    "Context",
    "build_context",
    "dockerfile",
    "labels",
    "render",
    "templates_dir",
    "verify_report",
]


@dataclass(frozen=True)
class Context:
    folder: Path  # the build context: Dockerfile, package/, wheels/, requirements.lock
    package: Package
    mlpack_wheel: str


def intact(package_path: str | Path) -> Package:
    """The package, refused (exit 3) unless every file is intact: checked before any engine, base image or
    index is contacted, so that a tampered package is never shipped nor waits on them."""
    return open_intact(package_path, "rebuild it: a tampered package is never containerized.")


def render(package: Package, base: str, folder: Path, arch: str = "x86_64") -> Context:
    """Lay out a build context for an intact package in ``folder``, with wheels for ``arch``; wheels are
    cached by the runtime lock's hash, so a rebuild fetches nothing."""
    lock = package.path / RUNTIME_LOCK
    if not lock.is_file():
        reason = package.manifest.environment.runtime_lock.get("reason", "")
        raise UsageError(
            f"{package.path} has no runtime lock ({reason or 'it was built offline'}); rebuild it where the "
            "package index can be reached."
        )
    shutil.copytree(package.path, folder / "package", dirs_exist_ok=True)
    shutil.copy2(lock, folder / "requirements.lock")
    wheels = folder / "wheels"
    cached = runtime_wheels(lock, package.manifest.files[RUNTIME_LOCK][:16], arch)
    shutil.copytree(cached, wheels, dirs_exist_ok=True)
    wheel = mlpack_wheel(wheels)
    # the RUN step's inputs are bind-mounted, which an engine's layer cache does not see: their digest goes
    # into the instruction, so a changed mlpack wheel or lock never reuses a layer built from the old ones
    inputs = hashlib.sha256((wheels / wheel).read_bytes() + b"\0" + lock.read_bytes()).hexdigest()
    (folder / "Dockerfile").write_text(dockerfile(package, base, wheel, inputs))
    return Context(folder=folder, package=package, mlpack_wheel=wheel)


@contextmanager
def build_context(package: Package, base: str, keep: Path | None = None) -> Iterator[Context]:
    """A rendered build context for the length of the ``with``: a temporary folder removed afterwards,
    success or failure (it holds the whole wheelhouse), or ``keep``, which the caller asked to keep."""
    folder = keep or Path(tempfile.mkdtemp(prefix="mlpack-context-"))
    try:
        yield render(package, base, folder)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def dockerfile(package: Package, base: str, wheel: str, inputs: str = "") -> str:
    """templates/Dockerfile.j2 rendered with the image contract's values for this package."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=False, keep_trailing_newline=True
    )
    # plain JSON: Jinja's own tojson escapes quotes and < > & for HTML, which a Dockerfile does not undo
    environment.filters["tojson"] = json.dumps
    values = Contract(package.name, VENV_PYTHON).template_values()
    return environment.get_template("Dockerfile.j2").render(
        base=base, name=package.name, version=package.version, digest=package.digest, mlpack_version=__version__,
        mlpack_wheel=wheel, labels=labels(package), venv=VENV, python=VENV_PYTHON, inputs=inputs, **values,
    )  # fmt: skip


def templates_dir() -> Path:
    """templates/ ships inside the wheel as mlpack/templates; a source checkout has it at the top level."""
    shipped = resources.files("mlpack").joinpath("templates")
    if shipped.is_dir():
        return Path(str(shipped))
    root = source_root()
    if root is None:
        raise EngineError("mlpack's templates are missing from this installation; reinstall mlpack with pip.")
    return root / "templates"


def verify_report(output: str) -> dict[str, Any]:
    """The JSON report that `mlpack verify --json` printed inside the container."""
    start = output.find("{")
    try:  # raw_decode: engines may interleave other output after the object
        return dict(json.JSONDecoder().raw_decode(output[start:])[0]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}
