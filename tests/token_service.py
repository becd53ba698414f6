"""What the login tests run beside a real registry (Distribution): a token service as the Docker registry token
spec describes it (docs.docker.com/registry/spec/auth/token), a certificate authority for TLS, and a credential
helper binary speaking Docker's helper protocol.

The token service is the part a hosted registry (Docker Hub, GHCR, Harbor) keeps to itself: it checks a login
(Basic, or an OAuth2 refresh token) and answers with a JWT that Distribution verifies against ``cert.pem``
(``auth: token: rootcertbundle``), found by the libtrust key id in the JWT header. Every request is recorded,
so a test can count how often a client asked.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

SERVICE = "mlpack-test-registry"
ISSUER = "mlpack-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """Distribution's name for a key: sha256 of its DER SubjectPublicKeyInfo, 240 bits, base32 in groups of 4."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def certificate(
    key: ec.EllipticCurvePrivateKey, subject: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False, ip: str | None = None,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 that it signed: (server cert, server key, CA cert)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(ca_key, "mlpack test CA", None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(server_key, "127.0.0.1", (ca, ca_key), ip="127.0.0.1")
    paths = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    paths[0].write_bytes(_pem(server))
    paths[1].write_bytes(_key_pem(server_key))
    paths[2].write_bytes(_pem(ca))
    return paths


@dataclass
class TokenService:
    """Users: name -> (password, actions allowed on every repository); refresh tokens: token -> user."""

    folder: Path
    users: dict[str, tuple[str, set[str]]]
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    lifetime_s: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)  # one per token asked for
    port: int = 0

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.folder / "token-cert.pem"
        self.cert_path.write_bytes(_pem(certificate(self.key, "mlpack test token issuer", None)))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> str:
        """The ``auth:`` section of Distribution's config.yml that trusts this service."""
        return (
            f"  token:\n    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {self.cert_path}\n"
        )

    def token(self, user: str, scopes: list[str]) -> str:
        allowed = self.users[user][1]
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = sorted(set(actions.split(",")) & allowed)
            if kind == "repository" and name:
                access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + self.lifetime_s, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}  # fmt: skip
        header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(self.key.public_key())}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def __enter__(self) -> TokenService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _grant(self, user: str | None, query: dict[str, list[str]], how: str) -> None:
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                service.requests.append({"user": user, "scopes": scopes, "how": how,
                                         "service": query.get("service", [""])[0]})  # fmt: skip
                if user is None:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "login required"}]})
                    return
                token = service.token(user, scopes)
                issued = datetime.datetime.now(datetime.UTC).isoformat()
                self._answer(200, {"token": token, "access_token": token, "expires_in": service.lifetime_s,
                                   "issued_at": issued})  # fmt: skip

            def do_GET(self) -> None:  # the http.server API
                query = parse_qs(urlsplit(self.path).query)
                user = None
                given = self.headers.get("Authorization", "")
                if given.startswith("Basic "):
                    name, _, password = base64.b64decode(given[6:]).decode().partition(":")
                    if name in service.users and service.users[name][0] == password:
                        user = name
                self._grant(user, query, "basic" if given else "anonymous")

            def do_POST(self) -> None:  # OAuth2: grant_type=refresh_token
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                refresh = form.get("refresh_token", [""])[0]
                user = service.refresh_tokens.get(refresh) if form.get("grant_type") == ["refresh_token"] else None
                self._grant(user, form, "refresh_token")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


HELPER = '''#!{python}
"""docker-credential-{name}: Docker's credential helper protocol (get, store, erase, list), kept in a JSON file."""
import json, sys
from pathlib import Path

store = Path({store!r})
data = json.loads(store.read_text()) if store.exists() else {{}}
action = sys.argv[1]
given = sys.stdin.read()
if action == "store":
    entry = json.loads(given)
    data[entry["ServerURL"]] = {{"Username": entry["Username"], "Secret": entry["Secret"]}}
    store.write_text(json.dumps(data))
elif action == "get":
    server = given.strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": server, **data[server]}}))
elif action == "erase":
    data.pop(given.strip(), None)
    store.write_text(json.dumps(data))
elif action == "list":
    print(json.dumps({{k: v["Username"] for k, v in data.items()}}))
'''


def credential_helper(folder: Path, name: str) -> Path:
    """Write ``docker-credential-NAME`` into folder (put it on PATH); it keeps logins in folder/NAME.json."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"docker-credential-{name}"
    path.write_text(HELPER.format(python=sys.executable, name=name, store=str(folder / f"{name}.json")))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path
