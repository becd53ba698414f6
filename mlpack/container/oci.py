"""A daemonless image writer: an OCI image layout with deterministic layers (sorted entries, uid/gid 0,
fixed mtimes from SOURCE_DATE_EPOCH, gzip without name or time, canonical JSON), so the same package and
base give the same image digest on any machine, in any folder, at any time.

Bases: ``oci:DIR[:TAG]`` and ``docker-archive:FILE`` (the transports skopeo and Podman name), or a rootfs tar.
Above the base go two layers: the runtime (wheels of the runtime lock, installed for the image's platform
with pip --target, --no-index and --require-hashes) and the package under /models/<name>.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack import __version__, clock
from mlpack.container import MANYLINUX, PYTHON_VERSION, intact, labels, render
from mlpack.container.contract import DIGEST_LABEL, SYSTEM_PYTHON, Contract
from mlpack.errors import EngineError, UsageError
from mlpack.oci.spec import (
    CREATED,
    IMAGE_CONFIG,
    IMAGE_MANIFEST,
    LAYER_GZIP,
    LAYER_TAR,
    blob_path,
    canonical,
    descriptor,
    read_index,
    write_index,
)

SITE = "opt/mlpack/site-packages"


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int

    def descriptor(self) -> dict[str, Any]:
        return descriptor(self.media_type, self.digest, self.size)


class Layout:
    """Blobs written once, by digest, into DIR/blobs/sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, media_type: str) -> Blob:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        path = blob_path(self.root, digest)
        if not path.exists():
            path.write_bytes(data)
        return Blob(media_type, digest, len(data))

    def add_file(self, source: Path, media_type: str) -> Blob:
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        target = blob_path(self.root, f"sha256:{digest.hexdigest()}")
        if not target.exists():
            shutil.copyfile(source, target)
        return Blob(media_type, f"sha256:{digest.hexdigest()}", target.stat().st_size)


def deterministic_tar(tree: Path, prefix: str = "") -> bytes:
    """A tar of ``tree`` (under ``prefix``) that depends only on file names, contents and executable bits."""
    epoch = clock.source_date_epoch() or 0
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = [p for p in Path(prefix).parts if p]
        for depth in range(1, len(parts) + 1):  # parent folders first, as every layer should carry them
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            tar.addfile(info)
        for path in sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix()):
            name = "/".join([*parts, *path.relative_to(tree).parts])
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if path.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                tar.addfile(info)
            elif path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", filename="", mtime=0, compresslevel=6) as f:
        f.write(data)
    return buffer.getvalue()


def _base(base: str, layout: Layout) -> tuple[list[Blob], dict[str, Any]]:
    """The base's layers (copied into the layout as they are) and its config."""
    if base.startswith("oci:"):
        return _oci_base(base, layout)
    if base.startswith("docker-archive:"):
        archive = Path(base.split(":", 1)[1])
        if not archive.is_file():
            raise EngineError(f"The base {base} is missing: no such file.")
        layers, raw = _docker_archive(archive, layout)
        return layers, json.loads(raw)
    rootfs = Path(base)
    if not rootfs.is_file():
        raise EngineError(f"The base {base} is missing: give oci:DIR[:TAG], docker-archive:FILE or a rootfs tar.")
    layer = layout.add_file(rootfs, LAYER_TAR)
    config: dict[str, Any] = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                              "rootfs": {"type": "layers", "diff_ids": [layer.digest]}, "history": [{"created_by": f"rootfs {rootfs.name}"}]}  # fmt: skip
    return [layer], config


def _oci_base(base: str, layout: Layout) -> tuple[list[Blob], dict[str, Any]]:
    folder, _, tag = base.removeprefix("oci:").partition(":")
    root = Path(folder)
    try:
        manifests = read_index(root, tag or None)
    except FileNotFoundError:
        raise EngineError(f"The base {base} is missing: {root} holds no OCI layout (index.json).") from None
    if len(manifests) != 1:
        raise EngineError(f"The base {base} names {len(manifests)} images; give one tag (oci:DIR:TAG).")
    manifest = json.loads(blob_path(root, manifests[0]["digest"]).read_bytes())
    config = json.loads(blob_path(root, manifest["config"]["digest"]).read_bytes())
    layers = [
        layout.add_file(blob_path(root, layer["digest"]), layer["mediaType"]) for layer in manifest["layers"]
    ]
    return layers, config


def _docker_archive(archive: Path, layout: Layout) -> tuple[list[Blob], bytes]:
    """The archive's layers and its config's bytes, unchanged, so the config keeps the digest (the image id)
    that the engine gave it."""
    with tarfile.open(archive) as tar:
        entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [layout.add(tar.extractfile(name).read(), LAYER_TAR) for name in entry["Layers"]]  # type: ignore[union-attr]
    return layers, config


def _install_runtime(wheels: Path, lock: Path, mlpack_wheel: str, target: Path) -> None:
    """pip installs for the image's platform and Python without running the image: --target, binary only."""
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    common = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
              "--no-compile", "--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION,
              "--implementation", "cp", "--target", str(target), "--find-links", str(wheels)]  # fmt: skip
    for extra in (["--require-hashes", "-r", str(lock)], ["--no-deps", f"mlpack=={mlpack_wheel.split('-')[1]}"]):
        result = subprocess.run([*common, *extra], capture_output=True, text=True, timeout=1800, check=False)
        if result.returncode != 0:
            raise EngineError("Installing the runtime failed:\n" + "\n".join(result.stderr.splitlines()[-8:]))
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts carry this machine's interpreter path


def _finish(layout: Layout, config: bytes, layers: list[Blob], ref: str, annotations: dict[str, str]) -> Blob:
    """Config, manifest and index.json: the image named ``ref`` in the layout."""
    config_blob = layout.add(config, IMAGE_CONFIG)
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "config": config_blob.descriptor(),
                                "layers": [layer.descriptor() for layer in layers]}  # fmt: skip
    if annotations:
        manifest["annotations"] = annotations
    manifest_blob = layout.add(canonical(manifest), IMAGE_MANIFEST)
    write_index(layout.root, manifest_blob.descriptor(), ref)
    return manifest_blob


def layout_from_archive(archive: Path, folder: Path, tag: str) -> Path:
    """A docker-archive (as an engine saves an image) rewritten as an OCI layout, layers and config unchanged."""
    layout = Layout(folder)
    layers, config = _docker_archive(archive, layout)
    _finish(layout, config, layers, tag, {})
    return folder


def image_config(
    base_config: dict[str, Any], contract: Contract, image_labels: dict[str, str], layers: list[bytes]
) -> dict[str, Any]:
    """The base's config with the contract's promises on top, and a diff id and history line per layer
    (``layers``: the uncompressed runtime and package layers)."""
    inherited = dict(base_config.get("config") or {})
    env = [e for e in inherited.get("Env") or [] if not e.startswith("PYTHONPATH=")]
    created = image_labels[CREATED] or clock.iso(0)
    promised = contract.image_config({**(inherited.get("Labels") or {}), **image_labels})
    steps = [
        f"mlpack {__version__}: runtime lock installed (pip --no-index --require-hashes)",
        f"mlpack {__version__}: package {image_labels[DIGEST_LABEL]} at {contract.models}",
    ]
    return {
        "architecture": base_config.get("architecture", "amd64"),
        "os": base_config.get("os", "linux"),
        "created": created,
        "config": {**inherited, **promised, "Env": [*env, f"PYTHONPATH=/{SITE}", "PYTHONDONTWRITEBYTECODE=1"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": [
                *base_config["rootfs"]["diff_ids"],
                *(f"sha256:{hashlib.sha256(t).hexdigest()}" for t in layers),
            ],
        },
        "history": [*(base_config.get("history") or []), *({"created": created, "created_by": s} for s in steps)],
    }


@dataclass(frozen=True)
class OciResult:
    layout: str
    tag: str
    digest: str  # the image manifest's digest: the image's identity
    package_digest: str
    layers: dict[str, int]  # layer role -> compressed size

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_image(
    package: str | Path, out: str | Path, base: str, tag: str | None = None, context_dir: Path | None = None
) -> OciResult:
    """Write the image as an OCI layout at ``out``; nothing is left there on failure, and nothing in the
    temporary folder in any case (the rendered context only in ``context_dir``, when it is given)."""
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty: give a new folder for the OCI layout.")
    checked = intact(package)
    work = Path(tempfile.mkdtemp(prefix="mlpack-oci-"))
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        layout = Layout(partial)
        base_layers, base_config = _base(base, layout)
        context = render(checked, base, context_dir or work / "context")
        contract = Contract(context.package.name, SYSTEM_PYTHON)
        _install_runtime(context.folder / "wheels", context.folder / "requirements.lock", context.mlpack_wheel,
                         work / "runtime")  # fmt: skip
        runtime_tar = deterministic_tar(work / "runtime", SITE)
        package_tar = deterministic_tar(context.folder / "package", contract.models.lstrip("/"))
        runtime = layout.add(gzip_bytes(runtime_tar), LAYER_GZIP)
        model = layout.add(gzip_bytes(package_tar), LAYER_GZIP)
        image_labels = labels(context.package)
        config = image_config(base_config, contract, image_labels, [runtime_tar, package_tar])
        ref = tag or f"{context.package.name}-{context.package.version}"
        manifest = _finish(layout, canonical(config), [*base_layers, runtime, model], ref, image_labels)
        if target.exists():
            target.rmdir()
        os.replace(partial, target)
        return OciResult(layout=str(target), tag=ref, digest=manifest.digest, package_digest=context.package.digest,
                         layers={"runtime": runtime.size, "package": model.size})  # fmt: skip
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
