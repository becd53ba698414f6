"""Package signatures in the OpenSSF Model Signing (OMS) format, offline, with EC keys or certificates.

``PKG/mlpack.sig`` is a Sigstore bundle: a DSSE envelope around an in-toto statement that lists every file of
the package (mlpack.json included, the signature itself excluded) with its digest, signed by the key. The
``model-signing`` library makes and checks it (``mlpack[sign]``), so its own CLI reads mlpack's signatures and
mlpack reads its. A valid signature must also cover every file the package holds: a signer that left a file
out (OMS records what it ignored) vouches for less than the package, and is refused.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.errors import IntegrityError, ServiceError, UsageError
from mlpack.fileio import write_atomic
from mlpack.package import PROVENANCE, SIGNATURE, Package, check_integrity, describe_problems, open_package

ACCEPTED = "EC keys on P-256, P-384 or P-521, in PEM (mlpack keygen makes one)"


def _model_signing() -> Any:
    try:
        import model_signing
    except ImportError as exc:
        raise UsageError(
            f"Signatures need the model-signing library ({exc.name} is missing): run pip install 'mlpack[sign]'."
        ) from None
    return model_signing


@dataclass(frozen=True)
class Signature:
    """What verify says of a package's signature."""

    status: str  # verified | unsigned | unchecked (signed, but no key given)
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


def keygen(out: str | Path, force: bool = False) -> tuple[Path, Path]:
    """An EC P-256 key pair: OUT (private, PKCS#8 PEM, mode 0600) and OUT.pub (public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = Path(out), Path(f"{out}.pub")
    for path in (private, public):
        if path.exists() and not force:
            raise UsageError(f"{path} exists: choose another name, or pass --force to replace the pair.")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(private, private_pem, mode=0o600)
    write_atomic(public, public_pem)
    return private, public


def check_arguments(
    key: str | Path | None, required: bool, chain: Sequence[str | Path] = (), identity: Identity | None = None
) -> None:
    """Refuse, before any work, a public key mlpack cannot use or a required signature with nothing to check
    it by."""
    if required and key is None and not chain and identity is None:
        raise UsageError(
            "A required signature needs a key to check it: give --key PUBLIC.pem (or --certificate-chain, or "
            "--identity with --issuer for a keyless Sigstore signature)."
        )
    if identity is not None and (key is not None or chain):
        raise UsageError("Check a signature by one means: --key, --certificate-chain or --identity/--issuer.")
    if key is not None:
        _check_key(Path(key), private=False)


def check_private_key(path: str | Path) -> None:
    _check_key(Path(path), private=True)


def _check_key(path: Path, private: bool) -> None:
    """One sentence for a key model signing cannot use: not PEM, or not an EC key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not path.is_file():
        raise UsageError(f"The key {path} does not exist.")
    data = path.read_bytes()
    try:
        key: Any = (
            serialization.load_pem_private_key(data, password=None)
            if private
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError) as exc:
        what = "private" if private else "public"
        raise UsageError(f"{path} is not a {what} key in PEM ({str(exc).splitlines()[0][:120]}).") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
        raise UsageError(f"{path} is an {kind} key; model signing takes {ACCEPTED}.")


@dataclass(frozen=True)
class Identity:
    """Who a keyless (Sigstore) signature must come from: the certificate's identity (an e-mail, or a CI
    workflow's URI) and the OIDC issuer that vouched for it."""

    identity: str
    issuer: str


def identity_from(identity: str | None, issuer: str | None) -> Identity | None:
    if (identity is None) != (issuer is None):
        raise UsageError("A keyless signature is checked by --identity and --issuer together: give both.")
    return Identity(identity, issuer) if identity is not None and issuer is not None else None


def _service_failure(exc: BaseException) -> bool:
    """A Sigstore service (OIDC, Fulcio, Rekor, the TUF trust root) that could not be reached."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                             TimeoutError)) or type(seen).__module__.startswith(("urllib3", "tuf")) \
                or type(seen).__name__ == "TUFError":  # fmt: skip
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def sign(
    path: str | Path, key: str | Path | None = None, *, certificate: str | Path | None = None,
    chain: Sequence[str | Path] = (), sigstore: bool = False, identity_token: str | None = None,
) -> Path:  # fmt: skip
    """Sign an intact package with a private key (and its certificate, if given), or keyless with Sigstore (an
    OIDC identity token, or the CI's ambient one; needs Sigstore's public services): writes PKG/mlpack.sig."""
    if sigstore == (key is not None):
        raise UsageError("Sign with --key PRIVATE.pem (offline) or --sigstore (keyless), one of the two.")
    package = open_package(path)
    problems = check_integrity(package)
    if problems:
        raise IntegrityError(
            f"{package.path} does not match its manifest ({describe_problems(problems)}): not signed."
        )
    if key is not None:
        _check_key(Path(key), private=True)
    model_signing = _model_signing()
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)
    config = model_signing.signing.Config().set_hashing_config(hashing)
    if key is None:
        try:  # fetches Sigstore's trust root (TUF) at once
            config.use_sigstore_signer(
                identity_token=identity_token, use_ambient_credentials=identity_token is None
            )
        except Exception as exc:
            if _service_failure(exc):
                raise ServiceError(
                    "Keyless signing needs Sigstore's services (its TUF trust root, Fulcio, Rekor) and they could not "
                    f"be reached ({str(exc)[:160]}): sign offline with --key instead."
                ) from None
            raise UsageError(f"Keyless signing could not start: {str(exc)[:200]}") from None
    elif certificate is not None:
        config.use_certificate_signer(private_key=key, signing_certificate=certificate, certificate_chain=chain)
    else:
        config.use_elliptic_key_signer(private_key=key)
    staged = package.path.parent / f".{package.path.name}.sig.{os.getpid()}.tmp"  # beside, never inside
    try:
        config.sign(package.path, staged)
        staged.replace(package.path / SIGNATURE)
    except Exception as exc:
        staged.unlink(missing_ok=True)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if sigstore and _service_failure(exc):
            raise ServiceError(
                f"Keyless signing needs Sigstore's services (an OIDC identity, Fulcio, Rekor) and they could not be "
                f"reached ({reason}): sign offline with --key instead."
            ) from None
        raise UsageError(f"Signing {package.path} failed: {reason}") from None
    return package.path / SIGNATURE


def check(
    path: str | Path, *, key: str | Path | None = None, chain: Sequence[str | Path] = (), required: bool = False,
    identity: Identity | None = None,
) -> Signature:  # fmt: skip
    """The package's signature checked against a public key (or a certificate chain). A signature that fails,
    one over another package, or one that leaves a package file out is an IntegrityError (tampered); so is a
    missing one when ``required``."""
    check_arguments(key, required, chain, identity)
    root = Path(path)
    signature = root / SIGNATURE
    if not signature.is_file():
        if required:
            raise IntegrityError(f"{root} is not signed ({SIGNATURE} is missing) and a signature is required.")
        return Signature("unsigned", f"no {SIGNATURE}")
    if key is None and not chain and identity is None:
        return Signature("unchecked", f"signed ({SIGNATURE}); give --key to check it")
    model_signing = _model_signing()
    config = model_signing.verifying.Config()
    if key is not None:
        config.use_elliptic_key_verifier(public_key=key)
    elif chain:
        config.use_certificate_verifier(certificate_chain=list(chain))
    try:
        if identity is not None:  # fetches Sigstore's trust root (TUF) at once
            config.use_sigstore_verifier(identity=identity.identity, oidc_issuer=identity.issuer)
        config.verify(root, signature)
    except Exception as exc:  # model_signing raises ValueError and the bundle parsers their own errors
        if identity is not None and _service_failure(exc):
            raise ServiceError(
                "Checking a keyless signature needs Sigstore's trust root, which could not be fetched "
                f"({_reason(exc)[:160]}): run where Sigstore is reachable, or sign with a key."
            ) from None
        raise IntegrityError(f"The signature {signature} does not verify: {_reason(exc).rstrip('.')}.") from None
    left_out = sorted(_package_files(root) - _signed_files(signature))
    if left_out:
        raise IntegrityError(
            f"The signature {signature} is valid but does not cover {', '.join(left_out[:5])}: it vouches for "
            "less than the package."
        )
    by = (
        f"the key {key}"
        if key
        else f"{identity.identity} ({identity.issuer})"
        if identity
        else "the certificate chain"
    )
    return Signature("verified", f"signed by {by}")


def check_trust(
    package: Package, key: str | Path | None, chain: Sequence[str | Path] = (), required: bool = False,
    identity: Identity | None = None,
) -> dict[str, str]:  # fmt: skip
    """The package's signature (with ``key`` or ``chain``), and under a key its provenance too: it must be about
    this very package, and signed by the key where it is signed. Returns the signature's status; raises
    IntegrityError (tampered) for anything that fails. verify, verify --machine and pull --key all ask this."""
    status = check(package.path, key=key, chain=chain, required=required, identity=identity)
    if key is not None and (package.path / PROVENANCE).is_file():
        from mlpack import provenance

        provenance.check_subject(package.path / PROVENANCE, package.digest, key)
    return status.to_dict()


def _reason(exc: Exception) -> str:
    """model_signing's failure in a few words: the files that differ from what was signed, by name."""
    import re

    text = " ".join(str(exc).split())
    text = text.replace("\\'", "'")  # the diff arrives as a list's repr, its quotes escaped
    changed = re.findall(r"Hash mismatch for '([^']+)'", text)
    extra = re.search(r"Extra files found in model '[^']*': ([^\]\"']+)", text)
    missing = re.search(r"Missing files in model '[^']*': ([^\]\"']+)", text)
    parts = [f"changed since signing: {', '.join(changed)}"] if changed else []
    parts += [f"not signed: {extra[1].strip()}"] if extra else []
    parts += [f"signed but gone: {missing[1].strip()}"] if missing else []
    return "; ".join(parts) or text[:240] or type(exc).__name__


def _package_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {SIGNATURE}


def _signed_files(signature: Path) -> set[str]:
    """The files an (already verified) OMS bundle lists: its in-toto statement's resources."""
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return {str(resource["name"]) for resource in statement["predicate"]["resources"]}
