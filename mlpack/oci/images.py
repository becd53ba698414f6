"""Push an OCI image layout's one image, or its one image index with an image per platform, to a registry
with the bytes unchanged, so the pushed manifest keeps the digest it had when it was gated
(``containerize --push``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlpack.errors import IntegrityError, UsageError
from mlpack.fileio import sha256_bytes
from mlpack.oci import spec
from mlpack.oci.artifact import PushResult
from mlpack.oci.client import Client, Progress
from mlpack.oci.reference import DIGEST, parse_reference


def push_layout(
    layout: str | Path, ref: str, *, insecure: bool | None = None, ca_cert: str | Path | None = None,
    package: str | Path | None = None, progress: Progress | None = None,
) -> PushResult:  # fmt: skip
    """Push the one image of an OCI image layout (as written by ``containerize``) to REF, bytes unchanged,
    so the pushed manifest keeps its digest; blobs the registry already holds are not sent again. With
    ``package`` (the one the image serves), its signature, BOM and provenance are attached to the image as
    OCI 1.1 referrers, as ``mlpack push`` attaches them to a package."""
    from mlpack.oci import referrers
    from mlpack.oci.artifact import package_referrers
    from mlpack.package import open_package

    attached = package_referrers(open_package(package)) if package is not None else []
    root = Path(layout)
    try:
        entries = spec.read_index(root)
    except FileNotFoundError as exc:
        raise UsageError(f"{root} is not an OCI layout with exactly one image ({exc}).") from None
    if len(entries) != 1:
        raise UsageError(f"{root} is not an OCI layout with exactly one image (its index lists {len(entries)}).")
    target = parse_reference(ref)
    if target.tag is None and target.digest is None:
        raise UsageError(f"{ref} names no tag: give REPOSITORY:TAG.")
    expected = _digest_of(entries[0], root)
    body = _blob(root, expected).read_bytes()
    digest = f"sha256:{sha256_bytes(body)}"
    if digest != expected:
        raise IntegrityError(f"The OCI layout at {root} is corrupt: its manifest does not hash to {expected}.")
    images = _images(body, root)  # (digest, manifest bytes) per image: the platforms of an index, or this one
    uploaded: list[str] = []
    skipped: list[str] = []
    with Client(target, insecure, push=True, ca_cert=ca_cert, progress=progress) as client:
        client.ping()
        for image_digest, manifest in images:
            for descriptor in _blob_descriptors(manifest, root):
                if client.blob_exists(descriptor["digest"]):
                    skipped.append(descriptor["digest"])
                    continue
                with open(_blob(root, descriptor["digest"]), "rb") as stream:
                    client.upload(descriptor, stream, descriptor["digest"])
                uploaded.append(descriptor["digest"])
            if image_digest != digest:  # an index's image: by digest, before the index that names it
                client.put_manifest(image_digest, manifest, image_digest)
        media_type = spec.IMAGE_INDEX if len(images) > 1 or images[0][0] != digest else spec.IMAGE_MANIFEST
        client.put_manifest(target.tag or digest, body, digest, media_type)
        _, via = referrers.attach(client, spec.descriptor(media_type, digest, len(body)), attached)
    return PushResult(str(replace(target, digest=None)), digest, "", tuple(uploaded), tuple(skipped),
                      tuple(f"{r.kind} {r.title}" for r in attached), via)  # fmt: skip


def _images(body: bytes, root: Path) -> list[tuple[str, bytes]]:
    """The image manifests to push: an image index's, each checked against its digest, or ``body`` itself."""
    try:
        top = json.loads(body)
    except (ValueError, RecursionError):
        raise UsageError(f"The OCI layout at {root} holds a manifest that is not JSON.") from None
    if not isinstance(top, dict) or top.get("mediaType") != spec.IMAGE_INDEX:
        return [(f"sha256:{sha256_bytes(body)}", body)]
    images = []
    for entry in top.get("manifests") or []:
        child = _digest_of(entry, root)
        data = _blob(root, child).read_bytes()
        if f"sha256:{sha256_bytes(data)}" != child:
            raise IntegrityError(
                f"The OCI layout at {root} is corrupt: an image manifest does not hash to {child}."
            )
        images.append((child, data))
    if not images:
        raise UsageError(f"The OCI layout at {root} holds an image index that lists no images.")
    return images


def _digest_of(descriptor: Any, root: Path) -> str:
    """A descriptor's digest, checked: it becomes a path under blobs/, so it must be a plain sha256."""
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise UsageError(f"The OCI layout at {root} names the blob {digest!r}; mlpack pushes only sha256 blobs.")
    return digest


def _blob(root: Path, digest: str) -> Path:
    path = spec.blob_path(root, digest)
    if not path.is_file():
        raise UsageError(f"The OCI layout at {root} is incomplete: it lacks the blob {digest}.")
    return path


def _blob_descriptors(body: bytes, root: Path) -> list[dict[str, Any]]:
    """The config and layers of the image manifest, in that order: every blob the registry must hold first."""
    try:
        manifest = json.loads(body)
        descriptors = [manifest["config"], *manifest["layers"]]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise UsageError(
            f"The OCI layout at {root} holds no image manifest: config or layers are missing."
        ) from None
    for descriptor in descriptors:
        _digest_of(descriptor, root)
        size = descriptor.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise UsageError(f"The OCI layout at {root} gives {descriptor['digest']} the size {size!r}.")
    return [dict(d) for d in descriptors]
