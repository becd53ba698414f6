"""mlpack inspect: what a package holds, read from its manifest without running anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.manifest import Manifest, to_json
from mlpack.package import MANIFEST, open_package


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str  # from the manifest (the manifest's own: its digest); inspect checks nothing
    bytes: int | None  # size on disk; None when the file is missing


@dataclass(frozen=True)
class Inspection:
    package: str
    digest: str
    manifest: Manifest
    files: list[FileEntry]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "package": self.package,
            "name": m.name,
            "version": m.version,
            "digest": self.digest,
            "created": m.created,
            "mlpack_version": m.mlpack_version,
            "source": to_json(m.source) if m.source else {},
            "model": {
                k: to_json(getattr(m.model, k))
                for k in ("file", "sha256", "opset_imports", "producer", "inputs", "outputs")
            },
            "parity": {
                "status": m.parity.status if m.parity else None,
                "input_cast": m.parity.input_cast if m.parity else None,
            },
            "reference": to_json(m.reference),
            "runtime": to_json(m.runtime),
            "tolerances": to_json(m.tolerances),
            "environment": to_json(m.environment),
            "hardware": to_json(m.hardware),
            "lineage": m.lineage,
            "files": [to_json(f) for f in self.files],
        }


def inspect(path: str | Path) -> Inspection:
    """Manifest, package digest and files (sizes from disk, hashes from the manifest)."""
    package = open_package(path)

    def size(relative: str) -> int | None:
        file = package.path / relative
        return file.stat().st_size if file.is_file() else None

    files = [
        FileEntry(relative, digest, size(relative)) for relative, digest in sorted(package.manifest.files.items())
    ]
    files.append(FileEntry(MANIFEST, package.digest.removeprefix("sha256:"), size(MANIFEST)))
    return Inspection(package=str(package.path), digest=package.digest, manifest=package.manifest, files=files)
