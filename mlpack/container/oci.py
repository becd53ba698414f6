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

from mlpack import __version__
from mlpack.container import MANYLINUX, PYTHON_VERSION, labels, render
from mlpack.errors import EngineError, UsageError

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SITE = "opt/mlpack/site-packages"


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or 0)


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class Layout:
    """Blobs written once, by digest, into DIR/blobs/sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, media_type: str) -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / "sha256" / digest
        if not path.exists():
            path.write_bytes(data)
        return Blob(media_type, f"sha256:{digest}", len(data))

    def add_file(self, source: Path, media_type: str) -> Blob:
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        target = self.root / "blobs" / "sha256" / digest.hexdigest()
        if not target.exists():
            shutil.copyfile(source, target)
        return Blob(media_type, f"sha256:{digest.hexdigest()}", target.stat().st_size)


def deterministic_tar(tree: Path, prefix: str = "") -> bytes:
    """A tar of ``tree`` (under ``prefix``) that depends only on file names, contents and executable bits."""
    epoch = _epoch()
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
        spec = base[4:]
        folder, _, tag = spec.partition(":")
        root = Path(folder)
        if not (root / "index.json").is_file():
            raise EngineError(f"The base {base} is missing: {root} holds no OCI layout (index.json).")
        index = json.loads((root / "index.json").read_text())
        manifests = index.get("manifests", [])
        if tag:
            manifests = [
                m for m in manifests if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
            ]
        if len(manifests) != 1:
            raise EngineError(f"The base {base} names {len(manifests)} images; give one tag (oci:DIR:TAG).")

        def blob(digest: str) -> Path:
            return root / "blobs" / digest.replace(":", "/")

        manifest = json.loads(blob(manifests[0]["digest"]).read_bytes())
        config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
        layers = [layout.add_file(blob(layer["digest"]), layer["mediaType"]) for layer in manifest["layers"]]
        return layers, config
    if base.startswith("docker-archive:"):
        archive = Path(base.split(":", 1)[1])
        if not archive.is_file():
            raise EngineError(f"The base {base} is missing: no such file.")
        with tarfile.open(archive) as tar:
            entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
            layers = [layout.add(tar.extractfile(name).read(), LAYER_TAR) for name in entry["Layers"]]  # type: ignore[union-attr]
        return layers, config
    rootfs = Path(base)
    if not rootfs.is_file():
        raise EngineError(f"The base {base} is missing: give oci:DIR[:TAG], docker-archive:FILE or a rootfs tar.")
    layer = layout.add_file(rootfs, LAYER_TAR)
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.digest]}, "history": [{"created_by": f"rootfs {rootfs.name}"}]}  # fmt: skip
    return [layer], config


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


def layout_from_archive(archive: Path, folder: Path, tag: str) -> Path:
    """A docker-archive (as an engine saves an image) rewritten as an OCI layout, layers unchanged."""
    layout = Layout(folder)
    layers, config = _base(f"docker-archive:{archive}", layout)
    config_blob = layout.add(_json(config), CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_blob.descriptor(),
                "layers": [layer.descriptor() for layer in layers]}  # fmt: skip
    manifest_blob = layout.add(_json(manifest), MANIFEST)
    descriptor = {**manifest_blob.descriptor(), "annotations": {"org.opencontainers.image.ref.name": tag}}
    (folder / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor]}
    (folder / "index.json").write_bytes(_json(index))
    return folder


@dataclass(frozen=True)
class OciResult:
    layout: str
    tag: str
    digest: str  # the image manifest's digest: the image's identity
    package_digest: str
    layers: dict[str, int]  # layer role -> compressed size

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_image(package: str | Path, out: str | Path, base: str, tag: str | None = None) -> OciResult:
    """Write the image as an OCI layout at ``out``; nothing is left there on failure."""
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty: give a new folder for the OCI layout.")
    work = Path(tempfile.mkdtemp(prefix="mlpack-oci-"))
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        layout = Layout(partial)
        base_layers, base_config = _base(base, layout)
        context = render(package, base, work / "context")
        name = context.package.name
        _install_runtime(context.folder / "wheels", context.folder / "requirements.lock", context.mlpack_wheel,
                         work / "runtime")  # fmt: skip
        runtime_tar = deterministic_tar(work / "runtime", SITE)
        package_tar = deterministic_tar(context.folder / "package", f"models/{name}")
        runtime = layout.add(gzip_bytes(runtime_tar), LAYER)
        model = layout.add(gzip_bytes(package_tar), LAYER)
        image_labels = labels(context.package)
        inherited = dict(base_config.get("config") or {})
        env = [e for e in inherited.get("Env") or [] if not e.startswith("PYTHONPATH=")]
        created = image_labels["org.opencontainers.image.created"] or "1970-01-01T00:00:00Z"
        config = {
            "architecture": base_config.get("architecture", "amd64"),
            "os": base_config.get("os", "linux"),
            "created": created,
            "config": {
                **inherited,
                "Env": [*env, f"PYTHONPATH=/{SITE}", "PYTHONDONTWRITEBYTECODE=1"],
                "User": "65532:65532",
                "ExposedPorts": {"8080/tcp": {}},
                "Entrypoint": [
                    "/usr/bin/python3",
                    "-m",
                    "mlpack",
                    "serve",
                    f"/models/{name}",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    "8080",
                ],
                "Cmd": None,
                "Labels": {**(inherited.get("Labels") or {}), **image_labels},
                "Healthcheck": {
                    "Test": [
                        "CMD",
                        "/usr/bin/python3",
                        "-c",
                        "import sys, urllib.request; sys.exit("
                        "urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2).status != 200)",
                    ],
                    "Interval": 10_000_000_000,
                    "Timeout": 3_000_000_000,
                },
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": [
                    *base_config["rootfs"]["diff_ids"],
                    "sha256:" + hashlib.sha256(runtime_tar).hexdigest(),
                    "sha256:" + hashlib.sha256(package_tar).hexdigest(),
                ],
            },
            "history": [
                *(base_config.get("history") or []),
                {
                    "created": created,
                    "created_by": f"mlpack {__version__}: runtime lock installed (pip --no-index --require-hashes)",
                },
                {
                    "created": created,
                    "created_by": f"mlpack {__version__}: package {context.package.digest} at /models/{name}",
                },
            ],
        }
        config_blob = layout.add(_json(config), CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [blob.descriptor() for blob in [*base_layers, runtime, model]],
            "annotations": image_labels,
        }
        manifest_blob = layout.add(_json(manifest), MANIFEST)
        ref = tag or f"{name}-{context.package.version}"
        descriptor = {**manifest_blob.descriptor(), "annotations": {"org.opencontainers.image.ref.name": ref}}
        (partial / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
        (partial / "index.json").write_bytes(_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [descriptor]}))  # fmt: skip
        if target.exists():
            target.rmdir()
        os.replace(partial, target)
        return OciResult(layout=str(target), tag=ref, digest=manifest_blob.digest,
                         package_digest=context.package.digest,
                         layers={"runtime": runtime.size, "package": model.size})  # fmt: skip
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
