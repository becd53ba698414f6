"""Push a package to an OCI registry and pull it back, as an OCI artifact (docs/design.md "Registries").

The artifact is one OCI image manifest (``artifactType`` = ``application/vnd.mlpack.package.v1``):

- config: the exact bytes of ``mlpack.json`` (``application/vnd.mlpack.manifest.v1+json``), so the
  config digest *is* the package digest;
- one layer per file in the manifest's ``files`` map, sorted by path, each titled with its relative path
  (``org.opencontainers.image.title``): ``model.onnx`` as ``application/vnd.mlpack.model.onnx``, every
  other file as ``application/vnd.mlpack.file.v1``; layers are the raw bytes, never compressed, so a
  layer digest equals the sha256 the package manifest records for that file;
- then ``mlpack.sig`` and ``env/provenance.intoto.json`` where the package has them, as
  ``application/vnd.mlpack.trust.v1+json``: they are about the package, so mlpack.json cannot list them, and
  each vouches for itself (verify --key checks both);
- annotations: package digest, name and version (``org.mlpack.package.*``), plus the standard
  ``org.opencontainers.image.created`` and ``org.opencontainers.image.version``.

The signature, the BOM, the provenance and any verify attestations given are also attached as OCI 1.1
referrers of that manifest (``referrers.py``), so registry tools list them beside the package, and a
signature made after the push can still reach a pull.

``push --format modelpack`` writes the same files as a CNCF ModelPack artifact instead (``modelpack_manifest``:
``artifactType application/vnd.cncf.model.manifest.v1+json``, a ModelPack config with ``format: onnx`` and the
layers' diff ids, ``model.onnx`` as a raw weight layer, the golden tensors as raw dataset layers, mlpack.json and
the rest as raw doc layers, each with ``org.cncf.model.filepath``), so ModelPack consumers (KitOps, Docker Model
Runner, modctl) can pull it; mlpack's digest is the ``org.mlpack.package.digest`` annotation. Pull reads both.

The manifest is serialised canonically (sorted keys, no whitespace), so the same package always gives
the same manifest digest on any machine. Only the OCI distribution HTTP API is used (``client.py``), so
any OCI 1.1 registry works.

Pull trusts nothing it receives: manifest bytes against a digest reference, every blob against its
descriptor while it streams to disk, every title against path traversal, ``mlpack.json`` against the typed
manifest parser, the layer set against the package manifest, and finally the package's own integrity
check, all inside a hidden staging folder that only becomes ``DIR/<name>-<version>`` once everything
verified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlpack.errors import IntegrityError, UsageError
from mlpack.fileio import sha256_bytes, sha256_file
from mlpack.manifest import Manifest
from mlpack.oci import spec
from mlpack.oci.client import Client, Progress
from mlpack.oci.reference import DIGEST, Reference, parse_reference
from mlpack.oci.referrers import Referrer
from mlpack.package import (
    MANIFEST,
    MODEL,
    PROVENANCE,
    SIGNATURE,
    TRUST_FILES,
    Package,
    check_integrity,
    describe_problems,
    open_intact,
    open_package,
    package_dir_name,
    staging,
)

Layers = list[tuple[str, dict[str, Any]]]  # (title, descriptor), in the manifest's order


@dataclass(frozen=True)
class PushResult:
    reference: str  # host/repository:tag (or @digest) that was written
    digest: str  # sha256 of the OCI manifest: pull REPOSITORY@DIGEST gets exactly this artifact
    package_digest: str  # sha256 of mlpack.json, the package's identity ("" for an image)
    uploaded: tuple[str, ...] = ()  # files whose blobs were sent
    skipped: tuple[str, ...] = ()  # files whose blobs the registry already held
    referrers: tuple[str, ...] = ()  # "kind title" of each referrer attached
    referrers_via: str = ""  # "referrers API" or "tag sha256-…"

    @property
    def pinned(self) -> str:
        """The reference by digest, immune to the tag being moved later."""
        ref = parse_reference(self.reference)
        return str(replace(ref, tag=None, digest=self.digest))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "pinned": self.pinned,
            "digest": self.digest,
            "package_digest": self.package_digest,
            "uploaded": list(self.uploaded),
            "skipped": list(self.skipped),
            "referrers": list(self.referrers),
            "referrers_via": self.referrers_via,
        }


def artifact_manifest(package: Package) -> bytes:
    """The OCI manifest of a package, canonical: the same package gives the same bytes everywhere.

    Pure apart from reading file sizes: layer digests come from the package manifest, so call it only on
    a package that passed check_integrity.
    """
    config = (package.path / MANIFEST).read_bytes()
    layers = [
        spec.descriptor(
            spec.MODEL_LAYER if relative == MODEL else spec.FILE_LAYER,
            f"sha256:{sha256}",
            (package.path / relative).stat().st_size,
            {spec.TITLE: relative},
        )
        for relative, sha256 in sorted(package.manifest.files.items())
    ] + [
        spec.descriptor(
            spec.TRUST_LAYER,
            f"sha256:{sha256_file(package.path / relative)}",
            (package.path / relative).stat().st_size,
            {spec.TITLE: relative},
        )
        for relative in TRUST_FILES
        if (package.path / relative).is_file()
    ]
    annotations = {
        spec.PACKAGE_DIGEST: f"sha256:{sha256_bytes(config)}",
        spec.PACKAGE_NAME: package.name,
        spec.PACKAGE_VERSION: package.version,
        spec.VERSION: package.version,
    }
    if package.manifest.created:
        annotations[spec.CREATED] = package.manifest.created
    manifest = {
        "schemaVersion": 2,
        "mediaType": spec.IMAGE_MANIFEST,
        "artifactType": spec.ARTIFACT_TYPE,
        "config": spec.descriptor(spec.PACKAGE_CONFIG, f"sha256:{sha256_bytes(config)}", len(config)),
        "layers": layers,
        "annotations": annotations,
    }
    return spec.canonical(manifest)


def modelpack_manifest(package: Package) -> tuple[bytes, bytes]:
    """The package as a CNCF ModelPack artifact: (manifest, config), both canonical. Pure apart from reading
    file sizes (and mlpack.json's bytes), like artifact_manifest; call it on a package that passed integrity."""
    config_bytes = (package.path / MANIFEST).read_bytes()
    files = {MANIFEST: sha256_bytes(config_bytes), **package.manifest.files}
    files |= {t: sha256_file(package.path / t) for t in TRUST_FILES if (package.path / t).is_file()}

    def media(title: str) -> str:
        if title == MODEL:
            return spec.MODELPACK_WEIGHT
        return spec.MODELPACK_DATASET if title.endswith(".npz") else spec.MODELPACK_DOC

    order = [MODEL, *sorted(t for t in files if t != MODEL)]  # the weights first, as ModelPack readers expect
    layers = [spec.descriptor(media(t), f"sha256:{files[t]}", (package.path / t).stat().st_size,
                              {spec.TITLE: t, spec.MODELPACK_FILEPATH: t}) for t in order]  # fmt: skip
    m = package.manifest
    descriptor: dict[str, Any] = {"name": m.name, "version": m.version,
                                  "description": "An mlpack package: an ONNX model with its golden inputs and outputs, "
                                  "environment lock and hardware profile; mlpack verify proves it."}  # fmt: skip
    if m.created:
        descriptor["createdAt"] = m.created
    if m.source is not None:
        descriptor["family"] = m.source.framework
    model_config: dict[str, Any] = {"format": "onnx"}
    if m.source is not None and m.source.model_class:
        model_config["architecture"] = m.source.model_class
    config = spec.canonical({"descriptor": descriptor, "config": model_config,
                             "modelfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}})  # fmt: skip
    annotations = {spec.PACKAGE_DIGEST: f"sha256:{files[MANIFEST]}", spec.PACKAGE_NAME: m.name,
                   spec.PACKAGE_VERSION: m.version, spec.VERSION: m.version}  # fmt: skip
    if m.created:
        annotations[spec.CREATED] = m.created
    manifest = {
        "schemaVersion": 2, "mediaType": spec.IMAGE_MANIFEST, "artifactType": spec.MODELPACK_TYPE,
        "config": spec.descriptor(spec.MODELPACK_CONFIG, f"sha256:{sha256_bytes(config)}", len(config)),
        "layers": layers, "annotations": annotations,
    }  # fmt: skip
    return spec.canonical(manifest), config


FORMATS = ("mlpack", "modelpack")


def package_referrers(package: Package, attestations: Sequence[str | Path] = ()) -> list[Referrer]:
    """What a push attaches about a package: its signature, BOM and provenance where it has them, and the verify
    attestations given (each must be an in-toto statement about this package's digest)."""
    from mlpack.bom import BOM
    from mlpack.oci import referrers

    kinds = [("signature", referrers.SIGNATURE, SIGNATURE), ("bom", referrers.BOM, BOM),
             ("provenance", referrers.IN_TOTO, PROVENANCE)]  # fmt: skip
    found = [Referrer(kind, media, title, (package.path / title).read_bytes())
             for kind, media, title in kinds if (package.path / title).is_file()]  # fmt: skip
    return found + [_attestation(given, package.digest) for given in attestations]


def _attestation(given: str | Path, package_digest: str) -> Referrer:
    """A verify attestation to attach: an in-toto statement (signed or not) about this package's digest."""
    from mlpack.oci import referrers
    from mlpack.provenance import check_subject

    path = Path(given)
    if not path.is_file():
        raise UsageError(f"--attestation {path} is no file: give one that mlpack verify --attest wrote.")
    try:
        check_subject(path, package_digest)
    except IntegrityError as exc:
        raise UsageError(f"--attestation {path}: {exc.message}") from None
    return Referrer("attestation", referrers.IN_TOTO, f"attestations/{path.name}", path.read_bytes())


def attach(
    ref: str, *, signature: str | Path | None = None, attestations: Sequence[str | Path] = (),
    insecure: bool | None = None, ca_cert: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Attach a signature (``mlpack sign`` of the same package) or verify attestations to a package already in
    a registry, as referrers of its manifest: the artifact, and so its digest, stays as it was. A pull with
    ``--key`` takes the signature from there when the artifact carries none."""
    from mlpack.oci import referrers

    source = _pinned_or_tagged(ref)
    if signature is None and not attestations:
        raise UsageError("Nothing to attach: give --signature FILE or --attestation FILE.")
    items: list[Referrer] = []
    if signature is not None:
        path = Path(signature)
        try:
            data = path.read_bytes()
            json.loads(data)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--signature {path} is no signature file mlpack sign wrote ({exc}).") from None
        items.append(Referrer("signature", referrers.SIGNATURE, SIGNATURE, data))
    with Client(source, insecure, push=True, ca_cert=ca_cert) as client:
        client.ping()
        body, digest = _manifest(client, source)
        config_descriptor, _ = _read_manifest(body, str(source))
        items += [_attestation(given, config_descriptor["digest"]) for given in attestations]
        attached, via = referrers.attach(client, spec.descriptor(spec.IMAGE_MANIFEST, digest, len(body)), items)
    return {
        "reference": str(source), "digest": digest, "package_digest": config_descriptor["digest"],
        "attached": [{"kind": r.kind, "title": r.title, "digest": d} for r, d in zip(items, attached, strict=True)],
        "referrers_via": via,
    }  # fmt: skip


def push(
    package: str | Path, ref: str, *, insecure: bool | None = None, ca_cert: str | Path | None = None,
    attestations: Sequence[str | Path] = (), format: str = "mlpack", progress: Progress | None = None,
) -> PushResult:  # fmt: skip
    """Upload a verified package as an OCI artifact (``format``: mlpack's own, or a CNCF ModelPack); blobs the
    registry already holds are not sent again. Then attach its signature, BOM, provenance and ``attestations``
    as referrers of the artifact's manifest. Logs in with the credentials configured for the registry
    (``auth.py``) when it asks for them."""
    from mlpack.oci import referrers

    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}.")
    local = open_intact(package, "rebuild it: a tampered package is never pushed.")
    attached = package_referrers(local, attestations)
    target = parse_reference(ref)
    if target.tag is None and target.digest is None:
        target = replace(target, tag=local.version)
    if format == "modelpack":
        body, config_bytes = modelpack_manifest(local)
    else:
        body, config_bytes = artifact_manifest(local), (local.path / MANIFEST).read_bytes()
    digest = f"sha256:{sha256_bytes(body)}"
    if target.digest is not None and target.digest != digest:
        raise IntegrityError(
            f"{local.path} gives the artifact digest {digest}, not {target.digest} as REF demands: "
            "push by tag, or give the right digest."
        )
    manifest = json.loads(body)
    uploaded: list[str] = []
    skipped: list[str] = []
    with Client(target, insecure, push=True, ca_cert=ca_cert, progress=progress) as client:
        client.ping()
        config_title = MANIFEST if format == "mlpack" else "the ModelPack config"
        blobs = [
            (config_title, manifest["config"]),
            *((d["annotations"][spec.TITLE], d) for d in manifest["layers"]),
        ]
        for title, descriptor in blobs:
            if client.blob_exists(descriptor["digest"]):
                skipped.append(title)
                continue
            if descriptor is manifest["config"]:
                client.upload(descriptor, config_bytes, title)
            else:
                with open(local.path / title, "rb") as stream:
                    client.upload(descriptor, stream, title)
            uploaded.append(title)
        client.put_manifest(target.tag or digest, body, digest)
        subject = spec.descriptor(spec.IMAGE_MANIFEST, digest, len(body))
        _, via = referrers.attach(client, subject, attached)
    written = replace(target, digest=None) if target.tag else target
    return PushResult(str(written), digest, local.digest, tuple(uploaded), tuple(skipped),
                      tuple(f"{r.kind} {r.title}" for r in attached), via)  # fmt: skip


def pull(
    ref: str, dest: str | Path, *, force: bool = False, insecure: bool | None = None,
    key: str | Path | None = None, require_signature: bool = False, ca_cert: str | Path | None = None,
    progress: Progress | None = None,
) -> Package:  # fmt: skip
    """Fetch an artifact into DEST/<name>-<version>; nothing appears there unless every byte verified, and,
    with ``key`` (an EC public key), unless its signature verifies (``require_signature``: and it has one)."""
    if key is not None or require_signature:  # a key that cannot check anything is refused before the network
        from mlpack import signing

        signing.check_arguments(key, require_signature)
    source = _pinned_or_tagged(ref)
    with Client(source, insecure, ca_cert=ca_cert, progress=progress) as client:
        client.ping()
        body, actual = _manifest(client, source)
        config_descriptor, layers = _read_manifest(body, str(source))
        config_bytes = client.get_blob(config_descriptor, MANIFEST)
        config = _read_config(config_bytes, layers, str(source))
        try:
            folder_name = package_dir_name(config.name, config.version)
        except UsageError as exc:
            raise IntegrityError(f"{source} is unsafe to unpack (path traversal): {exc.message}") from None
        target = Path(dest) / folder_name
        with staging(target, force, "another DIR") as folder:
            (folder / MANIFEST).write_bytes(config_bytes)
            for title, descriptor in layers:
                client.download(descriptor, folder / title, title)
            if key is not None or require_signature:  # a signature or provenance attached after the push
                _trust_from_referrers(client, actual, folder)
            problems = check_integrity(open_package(folder))
            if problems:
                raise IntegrityError(
                    f"{source} does not verify after download ({describe_problems(problems)}); nothing was written."
                )
            if key is not None or require_signature:
                from mlpack import signing

                try:
                    signing.check_trust(open_package(folder), key, required=require_signature)
                except IntegrityError as exc:
                    said = exc.message.replace(f"{folder}/", "").replace(str(folder), "the package")
                    raise IntegrityError(f"{source}: {said} Nothing was written.") from None
    return open_package(target)


def _pinned_or_tagged(ref: str) -> Reference:
    """REF parsed, and refused unless it names a tag or a digest (a bare repository names nothing to read)."""
    source = parse_reference(ref)
    if source.tag is None and source.digest is None:
        raise UsageError(f"{ref!r} names no tag or digest: add :VERSION or @sha256:<hex>.")
    return source


def _manifest(client: Client, source: Reference) -> tuple[bytes, str]:
    """The manifest REF names and its digest, checked against the digest REF pins (else the one the registry
    states): pull, attach and inspect trust no manifest that does not hash to what it was asked for."""
    body, stored = client.get_manifest(source.digest or str(source.tag))
    actual = f"sha256:{sha256_bytes(body)}"
    expected = source.digest or stored
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"The registry answered {source} with a manifest whose digest is {actual}, not {expected}: "
            "its copy is corrupt or was tampered with; nothing was written."
        )
    return body, actual


def _trust_from_referrers(client: Client, digest: str, folder: Path) -> None:
    """Write the signature and provenance referrers of ``digest`` into the staging folder where the artifact's
    own layers brought none (the newest listed wins); each is then checked like one that came as a layer."""
    from mlpack.oci import referrers

    wanted = {"signature": SIGNATURE, "provenance": PROVENANCE}
    found, _ = referrers.listed(client, digest)
    for descriptor in reversed(found):
        kind = (descriptor.get("annotations") or {}).get(referrers.KIND)
        title = wanted.get(kind) if isinstance(kind, str) else None
        if title is None or (folder / title).exists():
            continue
        got = referrers.fetch(client, descriptor, digest)
        if got is not None and got.title == title:
            (folder / title).parent.mkdir(parents=True, exist_ok=True)
            (folder / title).write_bytes(got.data)


def inspect_remote(ref: str, *, insecure: bool | None = None, ca_cert: str | Path | None = None) -> dict[str, Any]:
    """What a package in a registry is, without pulling it: its manifest summary (from mlpack.json, checked
    against the artifact), its files, and what refers to it (signature, BOM, provenance, attestations, or
    another tool's). Reads nothing but manifests, the config and the referrers list."""
    from mlpack.oci import referrers

    source = _pinned_or_tagged(ref)
    with Client(source, insecure, ca_cert=ca_cert) as client:
        client.ping()
        body, digest = _manifest(client, source)
        config_descriptor, layers = _read_manifest(body, str(source))
        config = _read_config(client.get_blob(config_descriptor, MANIFEST), layers, str(source))
        found, via = referrers.listed(client, digest)
    return {
        "reference": str(source), "digest": digest, "package_digest": config_descriptor["digest"],
        "name": config.name, "version": config.version,
        "files": [{"path": title, "size": d["size"], "digest": d["digest"]} for title, d in layers],
        "referrers": [{"digest": d.get("digest"), "artifactType": d.get("artifactType", ""),
                       "kind": (d.get("annotations") or {}).get(referrers.KIND, ""),
                       "title": (d.get("annotations") or {}).get(spec.TITLE, ""), "size": d.get("size")}
                      for d in found],
        "referrers_via": via,
    }  # fmt: skip


def _safe_title(title: str) -> bool:
    parts = title.split("/")
    return (
        bool(title)
        and "\\" not in title
        and "\x00" not in title
        and all(part not in ("", ".", "..") for part in parts)
        and title != MANIFEST
    )


def _read_manifest(body: bytes, source: str) -> tuple[dict[str, Any], Layers]:
    """Check that the manifest is an mlpack package, in mlpack's form or as a ModelPack, with safe, distinct
    titles; return the descriptor of its mlpack.json (the config, or the ModelPack's mlpack.json layer) and the
    other layers."""
    try:
        manifest = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise UsageError(f"{source} is not an mlpack package: its manifest is not JSON.") from None
    config = manifest.get("config") if isinstance(manifest, dict) else None
    modelpack = isinstance(manifest, dict) and manifest.get("artifactType") == spec.MODELPACK_TYPE
    if (
        not isinstance(manifest, dict)
        or manifest.get("mediaType", spec.IMAGE_MANIFEST) != spec.IMAGE_MANIFEST
        or manifest.get("artifactType", spec.ARTIFACT_TYPE) not in (spec.ARTIFACT_TYPE, spec.MODELPACK_TYPE)
        or not isinstance(config, dict)
        or config.get("mediaType") != (spec.MODELPACK_CONFIG if modelpack else spec.PACKAGE_CONFIG)
        or not isinstance(manifest.get("layers"), list)
        or (modelpack and not _modelpack_package_layer(manifest["layers"]))
    ):
        kind = None
        if isinstance(manifest, dict):
            kind = manifest.get("artifactType") or (config or {}).get("mediaType") or manifest.get("mediaType")
        if modelpack:
            kind = f"{kind} without mlpack.json"
        raise UsageError(
            f"{source} is not an mlpack package ({kind or 'unknown artifact type'}): "
            "pull it with docker, podman or oras instead."
        )
    if modelpack:
        config = _modelpack_package_layer(manifest["layers"])
        manifest = {**manifest, "layers": [d for d in manifest["layers"] if d is not config]}
    _check_descriptor(config, MANIFEST, source)
    layers: Layers = []
    seen: set[str] = set()
    for descriptor in manifest["layers"]:
        title = _title(descriptor)
        if not isinstance(title, str):
            raise IntegrityError(f"{source} has a layer without a title: the artifact is malformed.")
        # casefold: two titles differing only in case would overwrite each other on macOS and Windows.
        if not _safe_title(title) or title.casefold() in seen:
            raise IntegrityError(
                f"{source} names the file {title!r}, which is unsafe or collides with another (path traversal): "
                "refusing to pull it."
            )
        seen.add(title.casefold())
        _check_descriptor(descriptor, title, source)
        layers.append((title, descriptor))
    # A file and a folder of the same name cannot both be written.
    for title in seen:
        parent = title.rpartition("/")[0]
        while parent:
            if parent in seen:
                raise IntegrityError(
                    f"{source} names {parent!r} both as a file and as a folder (path traversal): refusing to pull it."
                )
            parent = parent.rpartition("/")[0]
    return config, layers


def _title(descriptor: Any) -> Any:
    """A layer's file path: ModelPack's ``org.cncf.model.filepath``, else the OCI title."""
    annotations = descriptor.get("annotations") if isinstance(descriptor, dict) else None
    if not isinstance(annotations, dict):
        return None
    return annotations.get(spec.MODELPACK_FILEPATH, annotations.get(spec.TITLE))


def _modelpack_package_layer(layers: list[Any]) -> Any:
    """The one layer of a ModelPack that holds mlpack.json (None if there is not exactly one)."""
    found = [d for d in layers if _title(d) == MANIFEST]
    return found[0] if len(found) == 1 and isinstance(found[0], dict) else None


def _check_descriptor(descriptor: dict[str, Any], title: str, source: str) -> None:
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise IntegrityError(f"{source} gives {title} the digest {digest!r}; mlpack accepts only sha256 digests.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise IntegrityError(f"{source} gives {title} the size {size!r}: the artifact is malformed.")


def _read_config(data: bytes, layers: Layers, source: str) -> Manifest:
    """Parse mlpack.json with the typed parser (a hostile one is refused in one sentence), then require the
    layer set to be exactly the package's files with their hashes, all before anything is written."""
    manifest = Manifest.from_bytes(data, f"{MANIFEST} of {source}")
    files = manifest.files
    for title, descriptor in layers:
        if title in TRUST_FILES and descriptor.get("mediaType") not in (spec.TRUST_LAYER, spec.MODELPACK_DOC):
            raise IntegrityError(
                f"{source} carries {title} as {descriptor.get('mediaType')}: refusing to pull it."
            )
    titles = {title: d["digest"] for title, d in layers if not (title in TRUST_FILES and title not in files)}
    missing = sorted(set(files) - set(titles))
    extra = sorted(set(titles) - set(files))
    if missing or extra:
        parts = [f"no layer for {', '.join(missing[:5])}"] if missing else []
        parts += [f"unlisted layers {', '.join(extra[:5])}"] if extra else []
        detail = "; ".join(parts)
        raise IntegrityError(f"{source} does not match its own mlpack.json ({detail}): refusing to pull it.")
    for title, digest in sorted(titles.items()):
        if digest != f"sha256:{files[title]}":
            raise IntegrityError(
                f"{source} gives {title} the digest {digest}, but its mlpack.json says sha256:{files[title]}: "
                "refusing to pull it."
            )
    return manifest
