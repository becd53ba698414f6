"""Registry logins as Docker clients do them: where credentials come from, the challenge a registry answers
with, Basic auth, and the bearer-token flow (docs/design.md "Registry logins").

Credentials for a registry, first found wins:

1. ``MLPACK_REGISTRY_USERNAME`` and ``MLPACK_REGISTRY_PASSWORD``, for the registry ``MLPACK_REGISTRY`` names
   (CI: no file on disk);
2. Docker's config, ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``): ``credHelpers[registry]``
   through its helper binary ``docker-credential-<name>``, else ``auths[registry].auth`` (base64
   ``user:password``, what ``docker login`` writes without a store), else ``credsStore`` through its helper.

A registry says how it wants them in its 401 ``WWW-Authenticate`` challenge: ``Basic`` (the credentials on
every request) or ``Bearer realm=…,service=…,scope=…`` (a token from the realm, asked for with the
credentials, or anonymously without; cached per realm, service, scope and user until it expires). Credentials
travel only over HTTPS, or to a loopback address.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlpack.errors import RegistryError, UsageError

ENV_REGISTRY = "MLPACK_REGISTRY"
ENV_USERNAME = "MLPACK_REGISTRY_USERNAME"
ENV_PASSWORD = "MLPACK_REGISTRY_PASSWORD"  # the variable's name, not a password
TOKEN_USER = "<token>"  # Docker's user name for an identity (refresh) token
HELPER_TIMEOUT_S = 30.0
DEFAULT_TOKEN_TTL_S = 60  # the token spec's default when a token service gives no expires_in


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # or, with username "<token>", an identity token (OAuth2 refresh token)
    source: str  # where they came from, for messages: never the secret itself

    def __repr__(self) -> str:  # a traceback or a log line must never show the password
        return f"Credentials(username={self.username!r}, source={self.source!r})"

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """A registry's ``WWW-Authenticate`` answer: the scheme (basic or bearer) and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The first Bearer or Basic challenge in a ``WWW-Authenticate`` header, or None. Quoted values may hold
    commas (a scope such as ``repository:a/b:pull,push``). Pure."""
    for found in re.finditer(r"(?i)\b(bearer|basic)\b", header):
        params: dict[str, str] = {}
        rest = header[found.end() :]
        while rest.strip():
            match = _PARAM.match(rest)
            if not match:
                break
            value = match[2] if match[2] is not None else match[3]
            params[match[1].lower()] = re.sub(r"\\(.)", r"\1", value)
            rest = rest[match.end() :]
        return Challenge(found[1].lower(), params)
    return None


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (brackets and a port allowed). Pure."""
    name = host.strip()
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_send_credentials(url: str) -> bool:
    """Credentials go over HTTPS, or over plain HTTP to a loopback address only. Pure."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.netloc.rpartition("@")[2]))


def system_trust() -> str | bool:
    """The system's CA bundle (what curl and openssl trust), not certifi's copy of Mozilla's: private CAs that
    an administrator installed are trusted as everywhere else on the machine. True (requests' default) where
    Python knows no system bundle."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return True


def trust_bundle(ca_cert: Path) -> Path:
    """A temporary PEM bundle of the system's CAs and ``ca_cert`` (the caller deletes it): a private CA is
    trusted beside the system's, as Docker's certs.d does, so a token service on a public host still works."""
    import tempfile

    try:
        extra = ca_cert.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"--ca-cert {ca_cert} cannot be read ({exc.strerror}): give the PEM file of the CA."
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in extra:
        raise UsageError(f"--ca-cert {ca_cert} holds no PEM certificate: give the CA's certificate in PEM.")
    system = system_trust()
    base = Path(system).read_bytes() if isinstance(system, str) else b""
    with tempfile.NamedTemporaryFile("wb", prefix="mlpack-ca-", suffix=".pem", delete=False) as out:
        out.write(base + b"\n" + extra)
    return Path(out.name)


# --- where credentials come from -------------------------------------------------------------------------


def docker_config_path() -> Path:
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def _read_docker_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"Docker's config {path} cannot be read ({exc}): fix or remove it.") from None
    if not isinstance(data, dict):
        raise UsageError(f"Docker's config {path} is not a JSON object: fix or remove it.")
    return data


def _key(server: str) -> str:
    """A config key as a registry host: ``https://host:5000/v1/`` and ``host:5000`` are the same entry."""
    return server.split("://", 1)[-1].split("/", 1)[0].lower()


def _entry(table: Any, registry: str) -> Any:
    if not isinstance(table, dict):
        return None
    wanted = registry.lower()
    for server, value in table.items():
        if isinstance(server, str) and _key(server) == wanted:
            return value
    return None


def find_credentials(registry: str) -> Credentials | None:
    """The credentials configured for ``registry`` (host[:port]), or None for anonymous access."""
    named = os.environ.get(ENV_REGISTRY)
    user, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    if (user or password) and not named:
        raise UsageError(
            f"{ENV_USERNAME}/{ENV_PASSWORD} are set but {ENV_REGISTRY} is not: name the registry (host[:port]) "
            "they are for, so they are never sent to another."
        )
    if named and _key(named) == registry.lower():
        if not (user and password):
            raise UsageError(f"{ENV_REGISTRY} is {named}: set both {ENV_USERNAME} and {ENV_PASSWORD}.")
        return Credentials(user, password, "the environment")
    path = docker_config_path()
    config = _read_docker_config(path)
    helper = _entry(config.get("credHelpers"), registry)
    if isinstance(helper, str) and helper:
        return _helper_get(helper, registry)
    auth = _entry(config.get("auths"), registry)
    if isinstance(auth, dict):
        if isinstance(auth.get("identitytoken"), str) and auth["identitytoken"]:
            return Credentials(TOKEN_USER, auth["identitytoken"], str(path))
        if isinstance(auth.get("auth"), str) and auth["auth"]:
            try:
                name, sep, secret = base64.b64decode(auth["auth"], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                raise UsageError(f"Docker's config {path} holds an unreadable login for {registry}: log in again.")
            return Credentials(name, secret, str(path))
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return _helper_get(store, registry)
    return None


def _helper(name: str, action: str, given: str, registry: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(f"docker-credential-{name}")
    if binary is None:
        raise RegistryError(
            f"Docker's config {docker_config_path()} keeps the login for {registry} in the credential helper "
            f"docker-credential-{name}, which is not on PATH: install it, or remove it from the config."
        )
    try:
        return subprocess.run(
            [binary, action], input=given, capture_output=True, text=True, timeout=HELPER_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RegistryError(
            f"The credential helper docker-credential-{name} failed for {registry} ({exc})."
        ) from None


def _helper_get(name: str, registry: str) -> Credentials | None:
    done = _helper(name, "get", registry, registry)
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None  # the protocol's answer for "no login stored": anonymous access
        detail = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")[:200]
        raise RegistryError(f"The credential helper docker-credential-{name} failed for {registry}: {detail}")
    try:
        answer = json.loads(done.stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(
            f"The credential helper docker-credential-{name} answered for {registry} with something other "
            "than its JSON (Username, Secret)."
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise RegistryError(f"The credential helper docker-credential-{name} gave {registry} a non-text login.")
    return Credentials(user, secret, f"docker-credential-{name}")


def store_credentials(registry: str, credentials: Credentials) -> str:
    """Keep a login where ``docker login`` would: the registry's credential helper or the config's store, else
    ``auths`` in the config file (written atomically, readable by its owner only). Returns where."""

    path = docker_config_path()
    config = _read_docker_config(path)
    helper = _entry(config.get("credHelpers"), registry) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        given = json.dumps(
            {"ServerURL": registry, "Username": credentials.username, "Secret": credentials.password}
        )
        done = _helper(helper, "store", given, registry)
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")[:200]
            raise RegistryError(
                f"The credential helper docker-credential-{helper} could not store the login: {detail}"
            )
        return f"docker-credential-{helper}"
    known = config.get("auths")
    auths = {s: v for s, v in (known if isinstance(known, dict) else {}).items() if _key(s) != registry.lower()}
    secret = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    auths[registry] = {"auth": secret}
    _write_config(path, {**config, "auths": auths})
    return str(path)


def _write_config(path: Path, config: dict[str, Any]) -> None:
    """Docker's config written back as docker writes it (tab-indented), atomically, readable by its owner only."""
    from mlpack.fileio import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)


def erase_credentials(registry: str) -> str | None:
    """Forget the login for ``registry``; where it was kept, or None if there was none."""

    path = docker_config_path()
    config = _read_docker_config(path)
    helper = _entry(config.get("credHelpers"), registry) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        done = _helper(helper, "erase", registry, registry)
        return f"docker-credential-{helper}" if done.returncode == 0 else None
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    kept = {server: value for server, value in auths.items() if _key(server) != registry.lower()}
    if len(kept) == len(auths):
        return None
    _write_config(path, {**config, "auths": kept})
    return str(path)


# --- tokens ------------------------------------------------------------------------------------------------


_TOKENS: dict[tuple[str, str, str, str], tuple[str, float]] = {}  # (realm, service, scope, user) -> token, expiry
_TOKENS_LOCK = threading.Lock()


def cached_token(realm: str, service: str, scope: str, user: str) -> str | None:
    with _TOKENS_LOCK:
        found = _TOKENS.get((realm, service, scope, user))
    return found[0] if found and time.monotonic() < found[1] else None


def keep_token(realm: str, service: str, scope: str, user: str, token: str, expires_in: float) -> None:
    # renewed a little before the service's own expiry (a tenth of the lifetime, at most 10 s), so a request
    # never leaves with a token that expires on its way
    margin = min(10.0, expires_in / 10)
    with _TOKENS_LOCK:
        _TOKENS[(realm, service, scope, user)] = (token, time.monotonic() + expires_in - margin)


def forget_token(realm: str, service: str, scope: str, user: str) -> None:
    with _TOKENS_LOCK:
        _TOKENS.pop((realm, service, scope, user), None)


def read_token(answer: Any) -> tuple[str, float]:
    """The token and its lifetime from a token service's JSON (``token`` or OAuth2's ``access_token``). Pure."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("no token in it")
    expires = answer.get("expires_in", DEFAULT_TOKEN_TTL_S)
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= 0:
        expires = DEFAULT_TOKEN_TTL_S
    return token, float(expires)
