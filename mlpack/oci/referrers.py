"""OCI 1.1 referrers: what vouches for a pushed package (its signature, bill of materials, provenance, verify
attestations), attached to the package's manifest by ``subject`` so registry tools (oras discover, cosign
tree, Harbor's accessories) show them beside it, and found again by pull and ``inspect REF``.

Each is an image manifest with an ``artifactType``, the empty config and one layer holding the file, titled by
its name. Pushing one by digest to a registry with the referrers API is answered with an ``OCI-Subject``
header; without that header (Distribution 2.8, Debian's docker-registry) the client keeps the referrers tag
schema: an image index tagged ``sha256-<hex of the subject>`` listing every referrer, read, extended and put
back. Reading asks ``GET /v2/<name>/referrers/<digest>`` first and falls back to that tag on a 404, as the
distribution spec v1.1 says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlpack.fileio import sha256_bytes
from mlpack.oci import spec
from mlpack.oci.client import Client

# artifactType per kind: the media types the ecosystem reads (the signature file is a Sigstore bundle)
SIGNATURE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BOM = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"
KIND = "org.mlpack.referrer.kind"  # annotation: signature, bom, provenance, attestation
EMPTY_DATA = b"{}"
EMPTY = {**spec.descriptor(spec.EMPTY_CONFIG, f"sha256:{sha256_bytes(EMPTY_DATA)}", 2), "data": "e30="}


@dataclass(frozen=True)
class Referrer:
    """One thing attached to a package: its kind, artifactType, title and the bytes it carries."""

    kind: str
    artifact_type: str
    title: str
    data: bytes


def manifest(referrer: Referrer, subject: dict[str, Any]) -> bytes:
    """The referrer's image manifest, canonical (the same file about the same package: the same digest). Pure."""
    layer = spec.descriptor(
        referrer.artifact_type, f"sha256:{sha256_bytes(referrer.data)}", len(referrer.data),
        {spec.TITLE: referrer.title},
    )  # fmt: skip
    return spec.canonical({
        "schemaVersion": 2, "mediaType": spec.IMAGE_MANIFEST, "artifactType": referrer.artifact_type,
        "config": EMPTY, "layers": [layer], "subject": subject,
        "annotations": {KIND: referrer.kind, spec.TITLE: referrer.title},
    })  # fmt: skip


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:<hex>`` becomes the tag ``sha256-<hex>``. Pure."""
    return digest.replace(":", "-")


def merged_index(existing: bytes | None, added: list[dict[str, Any]]) -> bytes:
    """The fallback tag's index with ``added`` listed once each (by digest), the ones already there kept. Pure."""
    manifests: list[dict[str, Any]] = []
    if existing:
        try:
            found = json.loads(existing).get("manifests")
        except (ValueError, AttributeError):
            found = None
        manifests = [m for m in found or [] if isinstance(m, dict) and isinstance(m.get("digest"), str)]
    known = {m["digest"] for m in manifests}
    manifests += [d for d in added if d["digest"] not in known]
    return spec.canonical({"schemaVersion": 2, "mediaType": spec.IMAGE_INDEX, "manifests": manifests})


def attach(client: Client, subject: dict[str, Any], referrers: list[Referrer]) -> tuple[list[str], str]:
    """Push each referrer about ``subject``; keep the fallback tag where the registry has no referrers API.
    Returns the referrer manifest digests and how they were attached ("referrers API" or "tag sha256-…")."""
    if not referrers:
        return [], ""
    if not client.blob_exists(EMPTY["digest"]):
        client.upload(EMPTY, EMPTY_DATA, "the empty config")
    digests: list[str] = []
    unindexed: list[dict[str, Any]] = []
    for referrer in referrers:
        body = manifest(referrer, subject)
        digest = f"sha256:{sha256_bytes(body)}"
        layer = json.loads(body)["layers"][0]
        if not client.blob_exists(layer["digest"]):
            client.upload(layer, referrer.data, referrer.title)
        headers = client.put_manifest(digest, body, digest)
        digests.append(digest)
        if headers.get("OCI-Subject") != subject["digest"]:  # no referrers API: the client keeps the index
            unindexed.append({**spec.descriptor(spec.IMAGE_MANIFEST, digest, len(body)),
                              "artifactType": referrer.artifact_type,
                              "annotations": {KIND: referrer.kind, spec.TITLE: referrer.title}})  # fmt: skip
    if not unindexed:
        return digests, "referrers API"
    tag = fallback_tag(subject["digest"])
    existing = client.get_manifest_if_any(tag)
    body = merged_index(existing, unindexed)
    client.put_manifest(tag, body, f"sha256:{sha256_bytes(body)}", spec.IMAGE_INDEX)
    return digests, f"tag {tag}"


def listed(client: Client, digest: str) -> tuple[list[dict[str, Any]], str]:
    """The descriptors of what refers to ``digest``, and whence: the referrers API, else the fallback tag."""
    found = client.referrers(digest)
    if found is not None:
        return found, "referrers API"
    body = client.get_manifest_if_any(fallback_tag(digest))
    if body is None:
        return [], f"tag {fallback_tag(digest)} (none)"
    try:
        manifests = json.loads(body).get("manifests") or []
    except (ValueError, AttributeError):
        manifests = []
    return [m for m in manifests if isinstance(m, dict)], f"tag {fallback_tag(digest)}"


def fetch(client: Client, descriptor: dict[str, Any], subject: str) -> Referrer | None:
    """A referrer's file, checked: its manifest by digest, about ``subject``, one layer that hashes right.
    None for a referrer that is not mlpack's shape (another tool's): it is listed, never trusted."""
    body, _ = client.get_manifest(descriptor["digest"])
    if f"sha256:{sha256_bytes(body)}" != descriptor["digest"]:
        return None
    try:
        document = json.loads(body)
        (layer,) = document["layers"]
        title = layer["annotations"][spec.TITLE]
        kind = document.get("annotations", {}).get(KIND, "")
        about = document["subject"]["digest"]
    except (ValueError, KeyError, TypeError):
        return None
    if about != subject or not isinstance(title, str):
        return None
    data = client.get_blob(layer, title)
    return Referrer(kind, str(document.get("artifactType", "")), title, data)
