"""mlpack inspect: what a package holds, read from its manifest without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpack.package import MANIFEST, open_package


def inspect(path: str | Path) -> dict[str, Any]:
    """Manifest summary, package digest and files (sizes from disk, hashes from the manifest)."""
    package = open_package(path)
    m = package.manifest
    files = [
        {
            "path": relative,
            "sha256": digest,
            "bytes": (package.path / relative).stat().st_size if (package.path / relative).is_file() else None,
        }
        for relative, digest in sorted(m["files"].items())
    ]
    files.append(
        {
            "path": MANIFEST,
            "sha256": package.digest.removeprefix("sha256:"),
            "bytes": (package.path / MANIFEST).stat().st_size,
        }
    )
    return {
        "package": str(package.path),
        "name": package.name,
        "version": package.version,
        "digest": package.digest,
        "created": m.get("created"),
        "mlpack_version": m.get("mlpack_version"),
        "source": m.get("source", {}),
        "model": {
            k: m["model"].get(k) for k in ("file", "sha256", "opset_imports", "producer", "inputs", "outputs")
        },
        "parity": {
            "status": m.get("parity", {}).get("status"),
            "input_cast": m.get("parity", {}).get("input_cast"),
        },
        "reference": m["reference"],
        "runtime": m["runtime"],
        "tolerances": m["tolerances"],
        "environment": m.get("environment", {}),
        "hardware": m.get("hardware", {}),
        "lineage": m.get("lineage", {}),
        "files": files,
    }
