"""One repository of an OCI registry over the distribution HTTP API (via ``requests``), anonymous or logged in
(``auth.py``: Basic, or bearer tokens cached per scope and renewed on expiry), over TLS with the system's
trust store or a given CA. Every failure becomes one RegistryError sentence (exit 5) naming the registry and
what was asked; a blob that does not match its descriptor is an IntegrityError (exit 3)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urljoin

import requests

from mlpack import __version__
from mlpack.errors import IntegrityError, RegistryError
from mlpack.fileio import CHUNK
from mlpack.manifest import MAX_BYTES
from mlpack.oci import auth, spec
from mlpack.oci.reference import DIGEST, Reference

MAX_MANIFEST = 4 << 20  # registries themselves refuse bigger manifests; caps memory on a hostile answer
MAX_CONFIG = MAX_BYTES  # the config blob is mlpack.json, read whole: the same cap as a package's own
TIMEOUT = (10.0, 300.0)  # connect, then between bytes: a slow link may take long, a dead one may not


class Client:
    """One registry repository over HTTP; every failure becomes a RegistryError sentence."""

    def __init__(
        self, ref: Reference, insecure: bool | None, *, push: bool = False, ca_cert: str | Path | None = None,
        scope: str | None = None, progress: Progress | None = None,
    ) -> None:  # fmt: skip
        self.progress = progress  # (title, bytes done, bytes in all) as blobs go up and come down
        # a CA certificate means TLS: a loopback registry is otherwise spoken to in plain HTTP
        self.base = ref.base_url(False if insecure is None and ca_cert is not None else insecure)
        self.registry = ref.registry
        self.repository = ref.repository
        # what a token is asked for: this repository, pull (and push when writing); "" for a login check
        self.scope = (
            scope if scope is not None else f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"mlpack/{__version__}"
        # requests falls back to ~/.netrc when a session has no auth: credentials must never leave for a
        # registry unless mlpack was given them. An auth hook that adds nothing keeps proxies (trust_env).
        self.session.auth = _no_credentials
        self.session.verify = auth.system_trust()
        # passed on every request: requests would otherwise let REQUESTS_CA_BUNDLE override the CA asked for
        self._verify: str | None = None
        self._bundle: Path | None = None
        if ca_cert is not None:
            self._bundle = auth.trust_bundle(Path(ca_cert))
            self._verify = str(self._bundle)
        self.challenge: auth.Challenge | None = None  # how the registry asked to be logged in to (ping)
        self.credentials: auth.Credentials | None = None
        self._looked_up = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        if self._bundle is not None:
            self._bundle.unlink(missing_ok=True)

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
                f"TLS with the registry at {self.base} failed ({reason}): pass --ca-cert FILE for a private CA, "
                "--insecure for a plain-HTTP registry, or fix its certificate."
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
        given = kwargs.pop("headers", {})
        for attempt in (1, 2):
            with self._network(what):
                response = self.session.request(
                    method, url, timeout=TIMEOUT, headers={**given, **self._authorization()}, verify=self._verify,
                    **kwargs,
                )  # fmt: skip
            # a token the registry no longer takes (expired early, revoked): renew it once, when the body
            # can be sent again (a streamed upload cannot; tokens are renewed before they expire anyway)
            data = kwargs.get("data")
            if (
                response.status_code != 401
                or attempt == 2
                or not self._bearer
                or not isinstance(data, bytes | None)
            ):
                break
            response.close()
            self._forget_token()
        if response.status_code not in ok:
            _raise_for(response, what, self.base, self._login_hint(response.status_code))
        return response

    def _lookup(self) -> auth.Credentials | None:
        if not self._looked_up:
            self.credentials = auth.find_credentials(self.registry)
            self._looked_up = True
        return self.credentials

    @property
    def _bearer(self) -> bool:
        return self.challenge is not None and self.challenge.scheme == "bearer"

    def _authorization(self) -> dict[str, str]:
        if self.challenge is None:
            return {}
        credentials = self._lookup()
        if self.challenge.scheme == "basic":
            return {"Authorization": credentials.basic} if credentials else {}
        return {"Authorization": f"Bearer {self._token()}"}

    def _token_key(self) -> tuple[str, str, str, str]:
        assert self.challenge is not None
        credentials = self._lookup()
        params = self.challenge.params
        return (
            params.get("realm", ""),
            params.get("service", ""),
            self.scope,
            credentials.username if credentials else "",
        )

    def _forget_token(self) -> None:
        auth.forget_token(*self._token_key())

    def _token(self) -> str:
        """A bearer token for this client's scope: the cached one until it expires, else a new one from the
        realm, asked for with the credentials (Basic, or an identity token as OAuth2's refresh token)."""
        realm, service, scope, user = self._token_key()
        found = auth.cached_token(realm, service, scope, user)
        if found:
            return found
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"The registry at {self.base} asks for a token but names no realm to get it from.")
        credentials = self._lookup()
        if credentials is not None and not auth.may_send_credentials(realm):
            raise RegistryError(
                f"The registry at {self.base} sends logins to the token service {realm} over plain HTTP: mlpack "
                "sends credentials only over HTTPS (or to loopback)."
            )
        what = f"a token for {self.registry} from {realm}"
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        with self._network(what):
            if credentials is not None and credentials.username == auth.TOKEN_USER:
                form = {**query, "grant_type": "refresh_token", "refresh_token": credentials.password,
                        "client_id": "mlpack"}  # fmt: skip
                response = self.session.post(realm, data=form, timeout=TIMEOUT, verify=self._verify)
            else:
                headers = {"Authorization": credentials.basic} if credentials else {}
                response = self.session.get(
                    realm, params=query, headers=headers, timeout=TIMEOUT, verify=self._verify
                )
        with response:
            if response.status_code in (401, 403):
                raise RegistryError(
                    f"The token service {realm} refused {what.split(' from ')[0]} (HTTP {response.status_code}); "
                    f"{self._login_hint(401)}."
                )
            if response.status_code != 200:
                _raise_for(response, what, realm, "check the token service's log")
            try:
                token, lifetime = auth.read_token(response.json())
            except ValueError as exc:
                raise RegistryError(
                    f"The token service {realm} answered {what} with no usable token ({exc})."
                ) from None
        auth.keep_token(realm, service, scope, user, token, lifetime)
        return token

    def _login_hint(self, status: int) -> str:
        """What to do about a 401 or 403, knowing whether (and whence) credentials were sent."""
        if status not in (401, 403):
            return "check the repository, tag or digest" if status == 404 else "check the registry's log"
        login = f"`mlpack login {self.registry}` (or docker login), or set {auth.ENV_REGISTRY}, {auth.ENV_USERNAME} and {auth.ENV_PASSWORD}"
        if self.credentials is None:
            return f"this registry needs a login: {login}"
        verb = "push to" if self.scope.endswith("push") else "pull from"
        if status == 403:
            return f"the login for {self.registry} ({self.credentials.source}) may not {verb} {self.repository}: ask the registry's owner for that right"
        return f"the login for {self.registry} ({self.credentials.source}) was refused or may not {verb} {self.repository}: check it, then {login}"

    def ping(self) -> None:
        """GET /v2/ first, so a wrong address fails with a clear sentence, and to learn how the registry wants
        to be logged in to (its 401 challenge); then GET /v2/ again logged in, which checks the login."""
        what = "the API check (GET /v2/)"
        response = self._request("GET", f"{self.base}/v2/", what, (200, 401))
        response.close()
        if response.status_code == 200:
            return
        challenge = auth.parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise RegistryError(
                f"The registry at {self.base} answered 401 without a Basic or Bearer challenge: mlpack cannot log in to it."
            )
        credentials = self._lookup()
        if credentials is not None and not auth.may_send_credentials(self.base):
            raise RegistryError(
                f"The registry at {self.base} asks for a login over plain HTTP: mlpack sends credentials only over "
                "HTTPS (or to loopback); serve it over TLS (--ca-cert FILE for a private CA)."
            )
        if challenge.scheme == "basic" and credentials is None:
            raise RegistryError(f"The registry at {self.base} refused {what}: HTTP 401; {self._login_hint(401)}.")
        self.challenge = challenge
        self._request("GET", f"{self.base}/v2/", what, (200,)).close()

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
        body: bytes | IO[bytes] | _Counted = data
        if self.progress is not None and not isinstance(data, bytes):
            report = self.progress
            body = _Counted(
                data, int(descriptor["size"]), lambda done: report(title, done, int(descriptor["size"]))
            )
        self._request(
            "PUT", url, what, (201, 204), params={"digest": descriptor["digest"]}, data=body, headers=headers
        ).close()
        if self.progress is not None:
            self.progress(title, int(descriptor["size"]), int(descriptor["size"]))

    def put_manifest(
        self, reference: str, body: bytes, digest: str, media_type: str = spec.IMAGE_MANIFEST
    ) -> Mapping[str, str]:
        """PUT a manifest; the registry's answer headers (``OCI-Subject`` says it indexed a referrer)."""
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
        return response.headers

    def get_manifest_if_any(self, reference: str) -> bytes | None:
        """A manifest's bytes, or None where the registry has none by that reference (404)."""
        try:
            return self.get_manifest(reference)[0]
        except _NotFound:
            return None

    def referrers(self, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's list for ``digest``, or None where the registry has no such API (404)."""
        what = f"the referrers of {digest}"
        response = self._request(
            "GET", self._url(f"referrers/{digest}"), what, (200, 404), headers={"Accept": spec.IMAGE_INDEX}
        )
        with response:
            if response.status_code == 404:
                return None
            body = _read_capped(response, MAX_MANIFEST, what)
        try:
            manifests = json.loads(body).get("manifests")
        except (ValueError, AttributeError):
            raise RegistryError(f"The registry at {self.base} answered {what} with no image index.") from None
        return [m for m in manifests or [] if isinstance(m, dict) and DIGEST.match(str(m.get("digest")))]

    def get_manifest(self, reference: str) -> tuple[bytes, str | None]:
        """The manifest bytes and the digest the registry says they have."""
        what = f"the manifest {self.repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        with self._network(what):
            response = self.session.get(
                self._url(f"manifests/{reference}"),
                headers={"Accept": spec.MANIFEST_ACCEPT, **self._authorization()},
                timeout=TIMEOUT,
                stream=True,
                verify=self._verify,
            )
            with response:
                if response.status_code != 200:
                    _raise_for(response, what, self.base, self._login_hint(response.status_code))
                body = _read_capped(response, MAX_MANIFEST, what)
        stored = response.headers.get("Docker-Content-Digest")
        return body, stored if stored and DIGEST.match(stored) else None

    def _blob_chunks(self, descriptor: dict[str, Any], title: str) -> Iterator[bytes]:
        """Stream a blob, refusing it the moment it outgrows its descriptor and at the end unless it hashes right."""
        what = f"the blob of {title}"
        digest = hashlib.sha256()
        size = 0
        with self._network(what):
            response = self.session.get(
                self._url(f"blobs/{descriptor['digest']}"),
                headers=self._authorization(),
                timeout=TIMEOUT,
                stream=True,
                verify=self._verify,
            )
            with response:
                if response.status_code != 200:
                    _raise_for(response, what, self.base, self._login_hint(response.status_code))
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
        done = 0
        with open(path, "xb") as out:
            for chunk in self._blob_chunks(descriptor, title):
                out.write(chunk)
                done += len(chunk)
                if self.progress is not None:
                    self.progress(title, done, int(descriptor["size"]))


def check_login(
    registry: str,
    credentials: auth.Credentials,
    *,
    insecure: bool | None = None,
    ca_cert: str | Path | None = None,
) -> bool:
    """Log in to ``registry`` (host[:port]) with ``credentials`` as ``docker login`` does: GET /v2/, meet its
    challenge with them. RegistryError if refused; False if the registry asks for no login at all (nothing
    could be checked), True if it took them."""
    from mlpack.oci.reference import parse_reference

    where = parse_reference(f"{registry}/login-check")
    with Client(where, insecure, ca_cert=ca_cert, scope="") as client:
        client.credentials, client._looked_up = credentials, True
        client.ping()
        return client.challenge is not None


Progress = Callable[[str, int, int], None]


class _Counted:
    """A file being uploaded that says how far it got: requests reads it in blocks and takes its length from
    ``len``, so the upload stays one streamed PUT with a Content-Length."""

    def __init__(self, stream: IO[bytes], size: int, report: Callable[[int], None]) -> None:
        self.stream, self.size, self.report, self.done = stream, size, report, 0

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        chunk = self.stream.read(amount)
        self.done += len(chunk)
        self.report(self.done)
        return chunk


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


class _NotFound(RegistryError):
    """A 404: for the callers that take "nothing there" as an answer (get_manifest_if_any)."""


def _raise_for(response: requests.Response, what: str, base: str, hint: str) -> NoReturn:
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
    reason = f" ({_short(detail)})" if detail else f" {response.reason}" if response.reason else ""
    error = _NotFound if status == 404 else RegistryError
    raise error(f"The registry at {base} refused {what}: HTTP {status}{reason}; {hint}.")


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request
