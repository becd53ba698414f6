"""Push a package to an OCI registry and pull it back, as an OCI artifact (DESIGN.md "Containers").

The artifact is one OCI image manifest (``artifactType`` = ``application/vnd.mlpack.package.v1``):

- config: the exact bytes of ``mlpack.json`` (``application/vnd.mlpack.manifest.v1+json``), so the
  config digest *is* the package digest;
- one layer per file in the manifest's ``files`` map, sorted by path, each titled with its relative path
  (``org.opencontainers.image.title``): ``model.onnx`` as ``application/vnd.mlpack.model.onnx``, every
  other file as ``application/vnd.mlpack.file.v1``; layers are the raw bytes, never compressed, so a
  layer digest equals the sha256 the package manifest records for that file;
- annotations: package digest, name and version (``org.mlpack.package.*``), plus the standard
  ``org.opencontainers.image.created`` and ``org.opencontainers.image.version``.

The manifest is serialised canonically (sorted keys, no whitespace), so the same package always gives
the same manifest digest on any machine. Only the OCI distribution HTTP API is used (via ``requests``),
so any OCI 1.1 registry works; anonymous access only, for now.

Pull trusts nothing it receives: manifest bytes against a digest reference, every blob against its
descriptor while it streams to disk, every title against path traversal, the layer set against the
package manifest, and finally the package's own integrity check, all inside a hidden staging folder
that only becomes ``DIR/<name>-<version>`` once everything verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from mlpack import __version__
from mlpack.errors import EngineError, IntegrityError, UsageError
from mlpack.fileio import CHUNK, sha256_bytes
from mlpack.package import (
    MANIFEST,
    MODEL,
    Package,
    check_integrity,
    describe_problems,
    open_intact,
    open_package,
    package_dir_name,
    staging,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.mlpack.package.v1"
CONFIG_TYPE = "application/vnd.mlpack.manifest.v1+json"
MODEL_TYPE = "application/vnd.mlpack.model.onnx"
FILE_TYPE = "application/vnd.mlpack.file.v1"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
IMAGE_VERSION = "org.opencontainers.image.version"
PACKAGE_DIGEST = "org.mlpack.package.digest"
PACKAGE_NAME = "org.mlpack.package.name"
PACKAGE_VERSION = "org.mlpack.package.version"
# Asked for alongside the OCI manifest so that a non-mlpack image gets "not an mlpack package", not a 404.
_ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
MAX_MANIFEST = 4 << 20  # registries themselves refuse bigger manifests; caps memory on a hostile answer
MAX_CONFIG = 16 << 20  # mlpack.json is read whole (it names the target folder), so it is capped
TIMEOUT = (10.0, 300.0)  # connect, then between bytes: a slow link may take long, a dead one may not
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?P<registry>\[[0-9A-Fa-f:.]+\](?::[0-9]+)?|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z0-9+._-]+:[A-Za-z0-9=_-]+))?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """Where an artifact lives: ``host[:port]/repository[:tag][@sha256:…]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"

    @property
    def hostname(self) -> str:
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.partition(":")[0]

    def base_url(self, insecure: bool | None = None) -> str:
        """Plain HTTP only for loopback (unless insecure=False) or when asked (insecure=True), as Docker does."""
        plain = insecure if insecure is not None else self.hostname.lower() in LOOPBACK
        return f"{'http' if plain else 'https'}://{self.registry}"


@dataclass(frozen=True)
class PushResult:
    reference: str  # host/repository:tag (or @digest) that was written
    digest: str  # sha256 of the OCI manifest: pull REPOSITORY@DIGEST gets exactly this artifact
    package_digest: str  # sha256 of mlpack.json, the package's identity
    uploaded: tuple[str, ...] = ()  # files whose blobs were sent
    skipped: tuple[str, ...] = ()  # files whose blobs the registry already held

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
        }


def parse_reference(ref: str) -> Reference:
    """Parse REF strictly: a typo must fail here, not become a request to some other host."""
    if "://" in ref:
        raise UsageError(
            f"{ref!r} is a URL; give REF as host[:port]/repository[:tag] (plain HTTP: pass --insecure)."
        )
    match = _REFERENCE.match(ref)
    if not match:
        hint = " (repository names are lowercase)" if ref != ref.lower() and "@" not in ref else ""
        raise UsageError(
            f"{ref!r} is not a registry reference{hint}: write host[:port]/repository[:tag] or …@sha256:<hex>."
        )
    registry = match["registry"]
    # Docker's rule: the first component is a host only if it looks like one, so "team/model" is refused
    # rather than sent to a host called "team".
    if not (registry.startswith("[") or "." in registry or ":" in registry or registry == "localhost"):
        raise UsageError(
            f"{ref!r} names no registry host: write host[:port]/repository[:tag], e.g. 127.0.0.1:5000/{ref}."
        )
    digest = match["digest"]
    if digest is not None and not _DIGEST.match(digest):
        raise UsageError(f"{digest!r} is not a sha256 digest: write sha256: followed by 64 lowercase hex digits.")
    return Reference(registry, match["repository"], match["tag"], digest)


def artifact_manifest(package: Package) -> bytes:
    """The OCI manifest of a package, canonical: the same package gives the same bytes everywhere.

    Pure apart from reading file sizes: layer digests come from the package manifest, so call it only on
    a package that passed check_integrity.
    """
    config = (package.path / MANIFEST).read_bytes()
    layers = [
        _descriptor(
            MODEL_TYPE if relative == MODEL else FILE_TYPE,
            f"sha256:{sha256}",
            (package.path / relative).stat().st_size,
            relative,
        )
        for relative, sha256 in sorted(package.manifest.files.items())
    ]
    annotations = {
        PACKAGE_DIGEST: f"sha256:{sha256_bytes(config)}",
        PACKAGE_NAME: package.name,
        PACKAGE_VERSION: package.version,
        IMAGE_VERSION: package.version,
    }
    if package.manifest.created:
        annotations[CREATED] = package.manifest.created
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": _descriptor(CONFIG_TYPE, f"sha256:{sha256_bytes(config)}", len(config)),
        "layers": layers,
        "annotations": annotations,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def push(package: str | Path, ref: str, *, insecure: bool | None = None) -> PushResult:
    """Upload a verified package as an OCI artifact; blobs the registry already holds are not sent again."""
    local = open_intact(package, "rebuild it: a tampered package is never pushed.")
    target = parse_reference(ref)
    if target.tag is None and target.digest is None:
        target = replace(target, tag=local.version)
    body = artifact_manifest(local)
    digest = f"sha256:{sha256_bytes(body)}"
    if target.digest is not None and target.digest != digest:
        raise IntegrityError(
            f"{local.path} gives the artifact digest {digest}, not {target.digest} as REF demands: "
            "push by tag, or give the right digest."
        )
    manifest = json.loads(body)
    config_bytes = (local.path / MANIFEST).read_bytes()
    uploaded: list[str] = []
    skipped: list[str] = []
    with _Client(target, insecure) as client:
        client.ping()
        blobs = [(MANIFEST, manifest["config"]), *((d["annotations"][TITLE], d) for d in manifest["layers"])]
        for title, descriptor in blobs:
            if client.blob_exists(descriptor["digest"]):
                skipped.append(title)
                continue
            if title == MANIFEST:
                client.upload(descriptor, config_bytes, title)
            else:
                with open(local.path / title, "rb") as stream:
                    client.upload(descriptor, stream, title)
            uploaded.append(title)
        client.put_manifest(target.tag or digest, body, digest)
    written = replace(target, digest=None) if target.tag else target
    return PushResult(str(written), digest, local.digest, tuple(uploaded), tuple(skipped))


def pull(ref: str, dest: str | Path, *, force: bool = False, insecure: bool | None = None) -> Package:
    """Fetch an artifact into DEST/<name>-<version>; nothing appears there unless every byte verified."""
    source = parse_reference(ref)
    if source.tag is None and source.digest is None:
        raise UsageError(f"{ref!r} names no tag or digest: add :VERSION or @sha256:<hex>.")
    with _Client(source, insecure) as client:
        client.ping()
        body, stored = client.get_manifest(source.digest or str(source.tag))
        actual = f"sha256:{sha256_bytes(body)}"
        expected = source.digest or stored
        if expected is not None and actual != expected:
            raise IntegrityError(
                f"The registry answered {source} with a manifest whose digest is {actual}, not {expected}: "
                "its copy is corrupt or was tampered with; nothing was written."
            )
        config_descriptor, layers = _read_manifest(body, str(source))
        config_bytes = client.get_blob(config_descriptor, MANIFEST)
        config = _read_config(config_bytes, layers, str(source))
        try:
            folder_name = package_dir_name(str(config["name"]), str(config["version"]))
        except UsageError as exc:
            raise IntegrityError(f"{source} is unsafe to unpack (path traversal): {exc.message}") from None
        target = Path(dest) / folder_name
        with staging(target, force) as folder:
            (folder / MANIFEST).write_bytes(config_bytes)
            for title, descriptor in layers:
                client.download(descriptor, folder / title, title)
            problems = check_integrity(open_package(folder))
            if problems:
                raise IntegrityError(
                    f"{source} does not verify after download ({describe_problems(problems)}); nothing was written."
                )
    return open_package(target)


def _descriptor(media_type: str, digest: str, size: int, title: str | None = None) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if title is not None:
        descriptor["annotations"] = {TITLE: title}
    return descriptor


def _safe_title(title: str) -> bool:
    parts = title.split("/")
    return (
        bool(title)
        and "\\" not in title
        and "\x00" not in title
        and all(part not in ("", ".", "..") for part in parts)
        and title != MANIFEST
    )


def _read_manifest(body: bytes, source: str) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Check that the manifest is an mlpack artifact with safe, distinct titles; return config and layers."""
    try:
        manifest = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{source} is not an mlpack package: its manifest is not JSON.") from None
    config = manifest.get("config") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST
        or manifest.get("artifactType", ARTIFACT_TYPE) != ARTIFACT_TYPE
        or not isinstance(config, dict)
        or config.get("mediaType") != CONFIG_TYPE
        or not isinstance(manifest.get("layers"), list)
    ):
        kind = None
        if isinstance(manifest, dict):
            kind = manifest.get("artifactType") or (config or {}).get("mediaType") or manifest.get("mediaType")
        raise UsageError(
            f"{source} is not an mlpack package ({kind or 'unknown artifact type'}): "
            "pull it with docker, podman or oras instead."
        )
    _check_descriptor(config, MANIFEST, source)
    layers: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for descriptor in manifest["layers"]:
        title = descriptor.get("annotations", {}).get(TITLE) if isinstance(descriptor, dict) else None
        if not isinstance(title, str):
            raise IntegrityError(f"{source} has a layer without a title: the artifact is malformed.")
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


def _check_descriptor(descriptor: dict[str, Any], title: str, source: str) -> None:
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise IntegrityError(f"{source} gives {title} the digest {digest!r}; mlpack accepts only sha256 digests.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise IntegrityError(f"{source} gives {title} the size {size!r}: the artifact is malformed.")


def _read_config(data: bytes, layers: list[tuple[str, dict[str, Any]]], source: str) -> dict[str, Any]:
    """The layer set must be exactly the package's files with their hashes, checked before anything is written."""
    try:
        config = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IntegrityError(f"The mlpack.json in {source} is corrupt: it is not JSON.") from None
    files = config.get("files") if isinstance(config, dict) else None
    if not isinstance(files, dict) or "name" not in config or "version" not in config:
        raise IntegrityError(f"The mlpack.json in {source} is corrupt: it lacks name, version or files.")
    titles = {title: descriptor["digest"] for title, descriptor in layers}
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
    return dict(config)


class _Client:
    """One registry repository over HTTP; every failure becomes an EngineError sentence."""

    def __init__(self, ref: Reference, insecure: bool | None) -> None:
        self.base = ref.base_url(insecure)
        self.repository = ref.repository
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"mlpack/{__version__}"

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def _url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repository}/{path}"

    @contextlib.contextmanager
    def _network(self) -> Iterator[None]:
        try:
            yield
        except requests.exceptions.SSLError as exc:
            found = re.search(r"\[SSL[^\]]*\][^'\"()]*|certificate verify failed[^'\"()]*", str(exc))
            reason = found[0].strip() if found else "TLS error"
            raise EngineError(
                f"TLS with the registry at {self.base} failed ({reason}): "
                "pass --insecure for a plain-HTTP registry, or fix its certificate."
            ) from None
        except requests.exceptions.Timeout:
            raise EngineError(
                f"The registry at {self.base} did not answer within {TIMEOUT[1]:.0f} s: check that it is up."
            ) from None
        except requests.exceptions.ConnectionError:
            raise EngineError(f"registry not reachable at {self.base}: start it or check the address.") from None
        except requests.exceptions.RequestException as exc:
            raise EngineError(
                f"Talking to the registry at {self.base} failed ({exc.__class__.__name__}: {_short(str(exc))}): "
                "check the address and try again."
            ) from None

    def _request(self, method: str, url: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        with self._network():
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        if response.status_code not in ok:
            _raise_for(response, what, self.base)
        return response

    def ping(self) -> None:
        """GET /v2/ first, so a wrong address or a registry that wants a login fails with a clear sentence."""
        self._request("GET", f"{self.base}/v2/", "the API check (GET /v2/)", (200,)).close()

    def blob_exists(self, digest: str) -> bool:
        response = self._request("HEAD", self._url(f"blobs/{digest}"), f"a check for blob {digest}", (200, 404))
        response.close()
        return response.status_code == 200

    def upload(self, descriptor: dict[str, Any], data: Any, title: str) -> None:
        """POST for an upload session, then one monolithic PUT streaming the bytes (never read whole)."""
        what = f"the upload of {title}"
        started = self._request("POST", self._url("blobs/uploads/"), what, (202,))
        started.close()
        location = started.headers.get("Location")
        if not location:
            raise EngineError(
                f"The registry at {self.base} started {what} without a Location: it is not OCI-compliant."
            )
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(descriptor["size"])}
        url = urljoin(started.url, location)
        self._request(
            "PUT", url, what, (201, 204), params={"digest": descriptor["digest"]}, data=data, headers=headers
        ).close()

    def put_manifest(self, reference: str, body: bytes, digest: str) -> None:
        what = f"the manifest {self.repository}:{reference}"
        response = self._request(
            "PUT",
            self._url(f"manifests/{reference}"),
            what,
            (201, 204),
            data=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        response.close()
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise EngineError(
                f"The registry at {self.base} stored {what} as {stored}, not {digest}: it rewrote the manifest."
            )

    def get_manifest(self, reference: str) -> tuple[bytes, str | None]:
        """The manifest bytes and the digest the registry says they have."""
        what = f"the manifest {self.repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        with self._network():
            response = self.session.get(
                self._url(f"manifests/{reference}"), headers={"Accept": _ACCEPT}, timeout=TIMEOUT, stream=True
            )
            with response:
                if response.status_code != 200:
                    _raise_for(response, what, self.base)
                body = _read_capped(response, MAX_MANIFEST, what)
        stored = response.headers.get("Docker-Content-Digest")
        return body, stored if stored and _DIGEST.match(stored) else None

    def _blob_chunks(self, descriptor: dict[str, Any], title: str) -> Iterator[bytes]:
        """Stream a blob, refusing it the moment it outgrows its descriptor and at the end unless it hashes right."""
        what = f"the blob of {title}"
        digest = hashlib.sha256()
        size = 0
        with self._network():
            response = self.session.get(self._url(f"blobs/{descriptor['digest']}"), timeout=TIMEOUT, stream=True)
            with response:
                if response.status_code != 200:
                    _raise_for(response, what, self.base)
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > descriptor["size"]:
                        break
                    digest.update(chunk)
                    yield chunk
        actual = f"sha256:{digest.hexdigest()}"
        if size != descriptor["size"] or actual != descriptor["digest"]:
            found = f"{size} bytes" if size != descriptor["size"] else f"sha256 {actual[7:23]}…"
            raise IntegrityError(
                f"The registry's copy of {title} does not match its digest ({found}, expected "
                f"{descriptor['size']} bytes with sha256 {descriptor['digest'][7:23]}…): "
                "it is corrupt or was tampered with; nothing was written."
            )

    def get_blob(self, descriptor: dict[str, Any], title: str) -> bytes:
        if descriptor["size"] > MAX_CONFIG:
            raise IntegrityError(f"The artifact's {title} claims {descriptor['size']} bytes: too big to be one.")
        return b"".join(self._blob_chunks(descriptor, title))

    def download(self, descriptor: dict[str, Any], path: Path, title: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as out:
            for chunk in self._blob_chunks(descriptor, title):
                out.write(chunk)


def _read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    data = bytearray()
    for chunk in response.iter_content(CHUNK):
        data += chunk
        if len(data) > limit:
            raise EngineError(f"The registry sent more than {limit >> 20} MiB for {what}: that is no manifest.")
    return bytes(data)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raise_for(response: requests.Response, what: str, base: str) -> None:
    """Turn an HTTP error into one sentence with the status and the registry's own error message."""
    detail = ""
    if response.request.method != "HEAD":
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(
                f"{e.get('code', 'ERROR')}: {e.get('message', '')}".rstrip(": ")
                for e in errors
                if isinstance(e, dict)
            )
        except (ValueError, AttributeError, requests.exceptions.RequestException):
            detail = ""
    status = response.status_code
    if status in (401, 403):
        hint = "mlpack does not log in to registries yet: use one that allows anonymous push and pull"
    elif status == 404:
        hint = "check the repository, tag or digest"
    else:
        hint = "check the registry's log"
    reason = f" ({_short(detail)})" if detail else f" {response.reason}" if response.reason else ""
    raise EngineError(f"The registry at {base} refused {what}: HTTP {status}{reason}; {hint}.")


def push_layout(layout: str | Path, ref: str, *, insecure: bool | None = None) -> PushResult:
    """Push the one image of an OCI image layout (as written by ``containerize``) to REF, bytes unchanged,
    so the pushed manifest keeps its digest; blobs the registry already holds are not sent again."""
    root = Path(layout)
    try:
        index = json.loads((root / "index.json").read_text())
        (entry,) = index["manifests"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{root} is not an OCI layout with exactly one image ({exc}).") from None
    target = parse_reference(ref)
    if target.tag is None and target.digest is None:
        raise UsageError(f"{ref} names no tag: give REPOSITORY:TAG.")

    def blob(digest: str) -> Path:
        return root / "blobs" / digest.replace(":", "/")

    body = blob(entry["digest"]).read_bytes()
    digest = f"sha256:{sha256_bytes(body)}"
    if digest != entry["digest"]:
        raise IntegrityError(
            f"The OCI layout at {root} is corrupt: its manifest does not hash to {entry['digest']}."
        )
    manifest = json.loads(body)
    uploaded: list[str] = []
    skipped: list[str] = []
    with _Client(target, insecure) as client:
        client.ping()
        for descriptor in [manifest["config"], *manifest["layers"]]:
            if client.blob_exists(descriptor["digest"]):
                skipped.append(descriptor["digest"])
                continue
            with open(blob(descriptor["digest"]), "rb") as stream:
                client.upload(descriptor, stream, descriptor["digest"])
            uploaded.append(descriptor["digest"])
        client.put_manifest(target.tag or digest, body, digest)
    return PushResult(str(replace(target, digest=None)), digest, "", tuple(uploaded), tuple(skipped))
