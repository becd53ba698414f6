"""One repository of an OCI registry over the distribution HTTP API (via ``requests``): anonymous access only,
for now. Every failure becomes one RegistryError sentence (exit 5) naming the registry and what was asked;
a blob that does not match its descriptor is an IntegrityError (exit 3)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urljoin

import requests

from mlpack import __version__
from mlpack.errors import IntegrityError, RegistryError
from mlpack.fileio import CHUNK
from mlpack.manifest import MAX_BYTES
from mlpack.oci import spec
from mlpack.oci.reference import DIGEST, Reference

MAX_MANIFEST = 4 << 20  # registries themselves refuse bigger manifests; caps memory on a hostile answer
MAX_CONFIG = MAX_BYTES  # the config blob is mlpack.json, read whole: the same cap as a package's own
TIMEOUT = (10.0, 300.0)  # connect, then between bytes: a slow link may take long, a dead one may not


class Client:
    """One registry repository over HTTP; every failure becomes a RegistryError sentence."""

    def __init__(self, ref: Reference, insecure: bool | None) -> None:
        self.base = ref.base_url(insecure)
        self.repository = ref.repository
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"mlpack/{__version__}"
        # requests falls back to ~/.netrc when a session has no auth: credentials must never leave for a
        # registry unless mlpack was given them. An auth hook that adds nothing keeps proxies (trust_env).
        self.session.auth = _no_credentials

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def _url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repository}/{path}"

    @contextlib.contextmanager
    def _network(self, what: str = "the request") -> Iterator[None]:
        try:
            yield
        except requests.exceptions.SSLError as exc:
            found = re.search(r"\[SSL[^\]]*\][^'\"()]*|certificate verify failed[^'\"()]*", str(exc))
            reason = found[0].strip() if found else "TLS error"
            raise RegistryError(
                f"TLS with the registry at {self.base} failed ({reason}): "
                "pass --insecure for a plain-HTTP registry, or fix its certificate."
            ) from None
        except requests.exceptions.Timeout:
            raise RegistryError(
                f"The registry at {self.base} did not answer within {TIMEOUT[1]:.0f} s: check that it is up."
            ) from None
        except requests.exceptions.ConnectionError as exc:
            if re.search(r"Connection aborted|RemoteDisconnected|Broken pipe|reset by peer", str(exc)):
                raise RegistryError(
                    f"The registry at {self.base} closed the connection during {what}: check its log and try again."
                ) from None
            raise RegistryError(f"registry not reachable at {self.base}: start it or check the address.") from None
        except requests.exceptions.RequestException as exc:
            raise RegistryError(
                f"Talking to the registry at {self.base} failed ({exc.__class__.__name__}: {_short(str(exc))}): "
                "check the address and try again."
            ) from None

    def _request(self, method: str, url: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        with self._network(what):
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

    def upload(self, descriptor: dict[str, Any], data: bytes | IO[bytes], title: str) -> None:
        """POST for an upload session, then one monolithic PUT streaming the bytes (never read whole)."""
        what = f"the upload of {title}"
        started = self._request("POST", self._url("blobs/uploads/"), what, (202,))
        started.close()
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(
                f"The registry at {self.base} started {what} without a Location: it is not OCI-compliant."
            )
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(descriptor["size"])}
        url = urljoin(started.url, location)
        self._request(
            "PUT", url, what, (201, 204), params={"digest": descriptor["digest"]}, data=data, headers=headers
        ).close()

    def put_manifest(
        self, reference: str, body: bytes, digest: str, media_type: str = spec.IMAGE_MANIFEST
    ) -> None:
        what = f"the manifest {self.repository}:{reference}"
        response = self._request(
            "PUT",
            self._url(f"manifests/{reference}"),
            what,
            (201, 204),
            data=body,
            headers={"Content-Type": media_type},
        )
        response.close()
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise RegistryError(
                f"The registry at {self.base} stored {what} as {stored}, not {digest}: it rewrote the manifest."
            )

    def get_manifest(self, reference: str) -> tuple[bytes, str | None]:
        """The manifest bytes and the digest the registry says they have."""
        what = f"the manifest {self.repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        with self._network(what):
            response = self.session.get(
                self._url(f"manifests/{reference}"),
                headers={"Accept": spec.MANIFEST_ACCEPT},
                timeout=TIMEOUT,
                stream=True,
            )
            with response:
                if response.status_code != 200:
                    _raise_for(response, what, self.base)
                body = _read_capped(response, MAX_MANIFEST, what)
        stored = response.headers.get("Docker-Content-Digest")
        return body, stored if stored and DIGEST.match(stored) else None

    def _blob_chunks(self, descriptor: dict[str, Any], title: str) -> Iterator[bytes]:
        """Stream a blob, refusing it the moment it outgrows its descriptor and at the end unless it hashes right."""
        what = f"the blob of {title}"
        digest = hashlib.sha256()
        size = 0
        with self._network(what):
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
    """Read a whole answer, but never more than limit: a hostile registry must not fill memory."""
    data = bytearray()
    for chunk in response.iter_content(CHUNK):
        data += chunk
        if len(data) > limit:
            raise RegistryError(f"The registry sent more than {limit >> 20} MiB for {what}: that is no manifest.")
    return bytes(data)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raise_for(response: requests.Response, what: str, base: str) -> NoReturn:
    """Turn an HTTP error into one sentence with the status and the registry's own error message."""
    detail = ""
    # A HEAD answer has no body to read the registry's errors from.
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
    raise RegistryError(f"The registry at {base} refused {what}: HTTP {status}{reason}; {hint}.")


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request
