"""A daemonless image writer: an OCI image layout with deterministic layers (sorted entries, uid/gid 0,
fixed mtimes from SOURCE_DATE_EPOCH, gzip without name or time, canonical JSON), so the same package and
base give the same image digest on any machine, in any folder, at any time.

Bases: ``oci:DIR[:TAG]`` and ``docker-archive:FILE`` (the transports skopeo and Podman name), or a rootfs tar.
Above the base go two layers: the runtime (wheels of the runtime lock, installed for the image's platform
with pip --target, --no-index and --require-hashes) and the package under /models/<name>.

Several platforms (linux/amd64, linux/arm64) make one image each, from a base per platform, listed by an
image index. Before the layout is written, the release gate runs ``mlpack verify`` from every platform's
unpacked image (``unpacked``): natively for this machine's architecture, under QEMU for the other and for
each extra x86 machine class asked for. Nothing is written unless every run passes.
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
from mlpack.container import PYTHON_VERSION, intact, labels, render
from mlpack.container.contract import DIGEST_LABEL, SYSTEM_PYTHON, Contract
from mlpack.container.wheels import manylinux
from mlpack.errors import EngineError, GateFailed, UsageError
from mlpack.oci.spec import (
    CREATED,
    IMAGE_CONFIG,
    IMAGE_INDEX,
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
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}  # OCI platform -> machine architecture
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def platforms_from(values: list[str] | None) -> list[str]:
    """--platform values (repeatable, or comma-separated) in order; this machine's platform by default."""
    import platform as host

    names = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    for name in names:
        if name not in PLATFORMS:
            raise UsageError(f"Unknown platform {name!r}; choose from {', '.join(PLATFORMS)}.")
    default = next((p for p, arch in PLATFORMS.items() if arch == host.machine()), "linux/amd64")
    return list(dict.fromkeys(names)) or [default]


def bases_from(values: list[str], platforms: list[str]) -> dict[str, str]:
    """--base values: PLATFORM=BASE for one platform, or a bare BASE for every platform not named."""
    named: dict[str, str] = {}
    shared: str | None = None
    for value in values:
        head, sep, rest = value.partition("=")
        if sep and head in PLATFORMS:
            named[head] = rest
        elif sep and head.startswith("linux/"):
            raise UsageError(f"Unknown platform {head!r} in --base; choose from {', '.join(PLATFORMS)}.")
        else:
            shared = value
    missing = [p for p in platforms if p not in named and shared is None]
    if missing:
        raise UsageError(f"No base for {missing[0]}: give --base {missing[0]}=oci:DIR (or a rootfs tar).")
    return {p: named.get(p) or str(shared) for p in platforms}


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


def _base(base: str, layout: Layout, arch: str = "x86_64") -> tuple[list[Blob], dict[str, Any]]:
    """The base's layers (copied into the layout as they are) and its config; refused when it is an image
    of another architecture than the platform's."""
    layers, config = _any_base(base, layout, arch)
    if config.get("architecture", OCI_ARCH[arch]) != OCI_ARCH[arch]:
        raise EngineError(
            f"The base {base} is a {config.get('architecture')} image; linux/{OCI_ARCH[arch]} needs a "
            f"linux/{OCI_ARCH[arch]} base."
        )
    return layers, config


def _any_base(base: str, layout: Layout, arch: str) -> tuple[list[Blob], dict[str, Any]]:
    if base.startswith("oci:"):
        return _oci_base(base, layout, arch)
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
    config: dict[str, Any] = {"architecture": OCI_ARCH[arch], "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                              "rootfs": {"type": "layers", "diff_ids": [layer.digest]}, "history": [{"created_by": f"rootfs {rootfs.name}"}]}  # fmt: skip
    return [layer], config


def _oci_base(base: str, layout: Layout, arch: str) -> tuple[list[Blob], dict[str, Any]]:
    folder, _, tag = base.removeprefix("oci:").partition(":")
    root = Path(folder)
    try:
        manifests = read_index(root, tag or None)
    except FileNotFoundError:
        raise EngineError(f"The base {base} is missing: {root} holds no OCI layout (index.json).") from None
    if len(manifests) != 1:
        raise EngineError(f"The base {base} names {len(manifests)} images; give one tag (oci:DIR:TAG).")
    manifest = json.loads(blob_path(root, manifests[0]["digest"]).read_bytes())
    if manifest.get("mediaType") == IMAGE_INDEX:  # a multi-platform base: the platform's own image
        wanted = [
            m
            for m in manifest.get("manifests", [])
            if (m.get("platform") or {}).get("architecture") == OCI_ARCH[arch]
        ]
        if not wanted:
            raise EngineError(f"The base {base} has no linux/{OCI_ARCH[arch]} image.")
        manifest = json.loads(blob_path(root, wanted[0]["digest"]).read_bytes())
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


def _install_runtime(wheels: Path, lock: Path, mlpack_wheel: str, target: Path, arch: str = "x86_64") -> None:
    """pip installs for the image's platform and Python without running the image: --target, binary only."""
    platforms = [arg for tag in manylinux(arch) for arg in ("--platform", tag)]
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
    manifest_blob = _manifest(layout, config, layers, annotations)
    write_index(layout.root, manifest_blob.descriptor(), ref)
    return manifest_blob


def _manifest(layout: Layout, config: bytes, layers: list[Blob], annotations: dict[str, str]) -> Blob:
    config_blob = layout.add(config, IMAGE_CONFIG)
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "config": config_blob.descriptor(),
                                "layers": [layer.descriptor() for layer in layers]}  # fmt: skip
    if annotations:
        manifest["annotations"] = annotations
    return layout.add(canonical(manifest), IMAGE_MANIFEST)


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
    layers: dict[str, int]  # layer role -> compressed size (of the first platform's image)
    platforms: dict[str, str]  # platform -> its image manifest's digest
    gate: list[dict[str, Any]]  # per platform and machine class: the verdict of mlpack verify inside
    pushed: str = ""  # REFERENCE@DIGEST, when --push sent the layout to a registry

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_image(
    package: str | Path, out: str | Path, base: str | dict[str, str], tag: str | None = None,
    context_dir: Path | None = None, platforms: list[str] | None = None, machines: list[str] | None = None,
    progress: Any = None,
) -> OciResult:  # fmt: skip
    """Write the image (one per platform, under an image index when there are several) as an OCI layout at
    ``out``, after the gate passed in every one; nothing is left there on failure, and nothing in the
    temporary folder in any case (the rendered contexts only in ``context_dir``, when it is given).
    ``machines`` adds x86 machine classes (x86-64-v2, ...) to the gate of the linux/amd64 image."""
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty: give a new folder for the OCI layout.")
    platforms = platforms or platforms_from(None)
    bases = base if isinstance(base, dict) else {p: base for p in platforms}
    classes = _gate_classes(platforms, machines or [])
    checked = intact(package)
    say = progress or (lambda _step: None)
    work = Path(tempfile.mkdtemp(prefix="mlpack-oci-"))
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        layout = Layout(partial)
        images: dict[str, tuple[Blob, dict[str, int]]] = {}
        for platform in platforms:
            arch = PLATFORMS[platform]
            say(f"writing the {platform} image")
            images[platform] = _platform_image(
                checked, layout, bases[platform], arch, work, context_dir, len(platforms)
            )
        gate = _gate(layout, checked.name, images, classes, work, say)
        ref = tag or f"{checked.name}-{checked.version}"
        first = images[platforms[0]][0]
        if len(platforms) == 1:
            write_index(layout.root, first.descriptor(), ref)
            top = first
        else:  # an image index: one manifest per platform, the index named by the tag
            entries = [{**images[p][0].descriptor(), "platform": {"architecture": OCI_ARCH[PLATFORMS[p]], "os": "linux"}}
                       for p in platforms]  # fmt: skip
            top = layout.add(canonical({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": entries}),
                             IMAGE_INDEX)  # fmt: skip
            write_index(layout.root, top.descriptor(), ref)
        if target.exists():
            target.rmdir()
        os.replace(partial, target)
        return OciResult(layout=str(target), tag=ref, digest=top.digest, package_digest=checked.digest,
                         layers=images[platforms[0]][1], platforms={p: images[p][0].digest for p in platforms},
                         gate=gate)  # fmt: skip
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _platform_image(
    checked: Any, layout: Layout, base: str, arch: str, work: Path, context_dir: Path | None, count: int
) -> tuple[Blob, dict[str, int]]:
    """One platform's image in the layout: its base, the runtime for its architecture, the package."""
    base_layers, base_config = _base(base, layout, arch)
    where = (
        (context_dir / OCI_ARCH[arch] if count > 1 else context_dir) if context_dir else work / f"context-{arch}"
    )
    context = render(checked, base, where, arch)
    contract = Contract(context.package.name, SYSTEM_PYTHON)
    _install_runtime(context.folder / "wheels", context.folder / "requirements.lock", context.mlpack_wheel,
                     work / f"runtime-{arch}", arch)  # fmt: skip
    runtime_tar = deterministic_tar(work / f"runtime-{arch}", SITE)
    package_tar = deterministic_tar(context.folder / "package", contract.models.lstrip("/"))
    runtime = layout.add(gzip_bytes(runtime_tar), LAYER_GZIP)
    model = layout.add(gzip_bytes(package_tar), LAYER_GZIP)
    image_labels = labels(context.package)
    config = image_config(base_config, contract, image_labels, [runtime_tar, package_tar])
    manifest = _manifest(layout, canonical(config), [*base_layers, runtime, model], image_labels)
    return manifest, {"runtime": runtime.size, "package": model.size}


def _gate_classes(platforms: list[str], machines: list[str]) -> list[tuple[str, str, str | None]]:
    """(platform, class, QEMU CPU model or None for native) for every gate run: each platform as the
    class its images are for, and linux/amd64 also as each x86 class asked for."""
    import platform as host

    from mlpack.machines import CLASSES, resolve

    runs: list[tuple[str, str, str | None]] = []
    for platform in platforms:
        arch = PLATFORMS[platform]
        if arch == host.machine():
            runs.append((platform, "native", None))
        else:
            runs.append((platform, "aarch64" if arch == "aarch64" else arch, CLASSES["aarch64"].qemu_cpu
                         if arch == "aarch64" else "max"))  # fmt: skip
    chosen, _ = resolve(machines)
    for name in chosen:
        if name == "native":
            continue
        machine = CLASSES[name]
        if machine.arch != "x86_64" or "linux/amd64" not in platforms:
            raise UsageError(f"--machines {name} needs a linux/amd64 image to run in: add --platform linux/amd64.")
        if machine.qemu_cpu is None:
            raise UsageError(f"--machines {name}: QEMU cannot emulate it, so the gate cannot run the image as it.")
        runs.append(("linux/amd64", name, machine.qemu_cpu))
    return runs


def _gate(
    layout: Layout, name: str, images: dict[str, tuple[Blob, dict[str, int]]],
    runs: list[tuple[str, str, str | None]], work: Path, say: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """mlpack verify from each platform's unpacked image, as each class; GateFailed unless all pass."""
    from mlpack.container import unpacked

    results = []
    roots: dict[str, tuple[Path, dict[str, Any]]] = {}
    for platform, machine, cpu in runs:
        if platform not in roots:
            root = work / f"rootfs-{OCI_ARCH[PLATFORMS[platform]]}"
            manifest = json.loads(blob_path(layout.root, images[platform][0].digest).read_bytes())
            unpacked.unpack(layout.root, manifest, root)
            roots[platform] = root, json.loads(blob_path(layout.root, manifest["config"]["digest"]).read_bytes())
        root, config = roots[platform]
        say(f"release gate: mlpack verify inside the {platform} image" + (f" as {machine}" if cpu else ""))
        report = unpacked.run(root, config, Contract(name, SYSTEM_PYTHON).gate, PLATFORMS[platform], cpu)
        results.append({"platform": platform, "machine": machine, "verdict": report.get("verdict"),
                        "passed": bool(report.get("passed")) and report.get("exit_code") == 0,
                        "message": report.get("message", "")})  # fmt: skip
        if not results[-1]["passed"]:
            raise GateFailed(
                f"The {platform} image does not pass mlpack verify"
                + (f" as {machine}" if cpu else "")
                + f" ({report.get('verdict')}): {report.get('message', '')} Nothing was written.",
                report,
            )
    return results
