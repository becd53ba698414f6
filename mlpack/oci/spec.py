"""The OCI image and distribution specs as mlpack uses them: media types, annotation keys, descriptors,
canonical JSON, and the index.json of an image layout, read and written here only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlpack.fileio import write_atomic

IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"  # the config of an artifact that has none: the bytes {}
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What a manifest GET accepts: the OCI manifest, and also indexes and Docker manifests so that a non-mlpack
# image is answered (and then refused as "not an mlpack package") rather than reported as a 404.
MANIFEST_ACCEPT = ", ".join((IMAGE_MANIFEST, IMAGE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

# mlpack's own artifact (a package pushed to a registry)
ARTIFACT_TYPE = "application/vnd.mlpack.package.v1"
PACKAGE_CONFIG = "application/vnd.mlpack.manifest.v1+json"
MODEL_LAYER = "application/vnd.mlpack.model.onnx"
FILE_LAYER = "application/vnd.mlpack.file.v1"
# mlpack.sig and env/provenance.intoto.json: about the package, so not listed in its mlpack.json; each vouches
# for itself (the signature over every file, the provenance by its subject digest)
TRUST_LAYER = "application/vnd.mlpack.trust.v1+json"

# CNCF ModelPack (github.com/modelpack/model-spec): push --format modelpack; raw layers, one file each
MODELPACK_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MODELPACK_DOC = "application/vnd.cncf.model.doc.v1.raw"
MODELPACK_DATASET = "application/vnd.cncf.model.dataset.v1.raw"
MODELPACK_FILEPATH = "org.cncf.model.filepath"

# annotations
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
VERSION = "org.opencontainers.image.version"
REF_NAME = "org.opencontainers.image.ref.name"
PACKAGE_DIGEST = "org.mlpack.package.digest"
PACKAGE_NAME = "org.mlpack.package.name"
PACKAGE_VERSION = "org.mlpack.package.version"

INDEX = "index.json"
LAYOUT_MARKER = "oci-layout"


def canonical(data: Any) -> bytes:
    """Sorted keys, no whitespace: the same manifest or config always has the same digest."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor(
    media_type: str, digest: str, size: int, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        found["annotations"] = annotations
    return found


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def write_index(layout: Path, manifest: dict[str, Any], ref: str) -> None:
    """Name the image ``ref`` in the layout's index.json (the layout holds this one image)."""
    entry = {**manifest, "annotations": {REF_NAME: ref}}
    write_atomic(layout / LAYOUT_MARKER, canonical({"imageLayoutVersion": "1.0.0"}))
    write_atomic(layout / INDEX, canonical({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [entry]}))


def read_index(layout: Path, ref: str | None = None) -> list[dict[str, Any]]:
    """The manifest descriptors a layout's index.json lists, those named ``ref`` only when it is given."""
    try:
        index = json.loads((layout / INDEX).read_text())
        manifests = index["manifests"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FileNotFoundError(f"{layout} holds no readable OCI layout index ({exc})") from None
    if not isinstance(manifests, list):
        raise FileNotFoundError(f"{layout}/{INDEX} lists no manifests")
    if ref:
        manifests = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME) == ref]
    return [dict(m) for m in manifests]
