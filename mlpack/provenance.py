"""env/provenance.intoto.json: an in-toto Statement v1 with an SLSA Provenance v1 predicate, written by every
build after the manifest, about the package digest (so the manifest cannot list it: its subject binds it
instead). With a key it is a DSSE envelope signed with that EC key, as in-toto tooling reads it.

What a build records: the builder (mlpack and its version), the build type, the external parameters (the
model and sample as given, the options that decide the outputs), and the resolved dependencies: the model's
source file and every package of the build lock with its artifact digest (or RECORD fingerprint).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.environment import build_lock_entries
from mlpack.errors import IntegrityError
from mlpack.fileio import canonical_json
from mlpack.manifest import Manifest
from mlpack.package import PROVENANCE

__all__ = ["PROVENANCE", "check_subject", "envelope", "read", "statement"]

STATEMENT = "https://in-toto.io/Statement/v1"
SLSA = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/mlpack/mlpack/build/v1"  # what the external parameters below mean
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def _dependencies(manifest: Manifest, package: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    source = manifest.model.source_file
    if source is not None:
        found.append({"name": source.name, "digest": {"sha256": source.sha256}})
    lock = package / (manifest.environment.build_lock_file or "env/pylock.toml")
    for entry in build_lock_entries(lock) if lock.is_file() else []:
        artifact = next((a for a in entry["artifacts"] if a["sha256"]), None)
        record = entry["record_sha256"]
        if artifact is None and record is None:
            continue  # nothing to pin it by
        dependency: dict[str, Any] = {
            "uri": f"pkg:pypi/{entry['name']}@{entry['version']}",
            "digest": {"sha256": artifact["sha256"]} if artifact else {"mlpack-record-sha256": record},
        }
        if artifact and "://" in artifact["url"]:
            dependency["downloadLocation"] = artifact["url"]
        found.append(dependency)
    return found


def statement(manifest: Manifest, package: Path, digest: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The in-toto statement about the package whose manifest has the sha256 ``digest``."""
    return {
        "_type": STATEMENT,
        "subject": [
            {"name": f"{manifest.name}-{manifest.version}", "digest": {"sha256": digest.removeprefix("sha256:")}}
        ],
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": parameters,
                "internalParameters": {
                    "python": manifest.environment.python,
                    "onnxruntime": manifest.runtime.onnxruntime,
                },
                "resolvedDependencies": _dependencies(manifest, package),
            },
            "runDetails": {
                "builder": {
                    "id": f"https://github.com/mlpack/mlpack@{__version__}",
                    "version": {"mlpack": __version__},
                },
                "metadata": {"finishedOn": manifest.created} if manifest.created else {},
            },
        },
    }


def _pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding, what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def envelope(document: dict[str, Any], key: str | Path) -> dict[str, Any]:
    """The statement in a DSSE envelope signed with an EC private key (ECDSA, SHA-256)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    body = canonical_json(document)
    private: Any = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    signature = private.sign(_pae(PAYLOAD_TYPE, body), ec.ECDSA(hashes.SHA256()))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }


def read(path: Path, key: str | Path | None = None) -> dict[str, Any]:
    """The statement of a provenance file; a DSSE envelope's signature is checked when ``key`` (a public key)
    is given. A file that is neither, or whose signature fails, is an IntegrityError."""
    try:
        data = json.loads(path.read_text())
        if "payloadType" not in data:
            return dict(data)
        body = base64.b64decode(data["payload"])
        if key is not None:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            public: Any = serialization.load_pem_public_key(Path(key).read_bytes())
            try:
                public.verify(base64.b64decode(data["signatures"][0]["sig"]), _pae(data["payloadType"], body),
                              ec.ECDSA(hashes.SHA256()))  # fmt: skip
            except InvalidSignature:
                raise IntegrityError(f"The provenance {path} is not signed by {key}.") from None
        return dict(json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise IntegrityError(f"The provenance {path} is not an in-toto statement: {exc}.") from None


def check_subject(path: Path, digest: str, key: str | Path | None = None) -> None:
    """A provenance file must be about this package (its subject is the package digest)."""
    document = read(path, key)
    subjects = [s.get("digest", {}).get("sha256") for s in document.get("subject", [])]
    if digest.removeprefix("sha256:") not in subjects:
        raise IntegrityError(f"The provenance {path} is about another package (subject {subjects}), not {digest}.")


TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"


def test_result(
    name: str, version: str, digest: str, outcomes: list[tuple[str, str]], passed: bool, machine: dict[str, Any]
) -> dict[str, Any]:
    """An in-toto test-result statement about the package digest: each (test, verdict) as passed (identical),
    warned (equivalent: within tolerance, not bit-identical) or failed, and the machine it ran on."""
    predicate = {
        "result": "PASSED" if passed else "FAILED",
        "configuration": [{"name": "machine", "annotations": machine}],
        "passedTests": [test for test, verdict in outcomes if verdict == "identical"],
        "warnedTests": [f"{test}: {verdict}" for test, verdict in outcomes if verdict == "equivalent"],
        "failedTests": [
            f"{test}: {verdict}" for test, verdict in outcomes if verdict not in ("identical", "equivalent")
        ],
    }
    return {
        "_type": STATEMENT,
        "subject": [{"name": f"{name}-{version}", "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": TEST_RESULT,
        "predicate": predicate,
    }


def write_attestation(out: str | Path, document: dict[str, Any], key: str | Path | None) -> Path:
    """The statement at OUT, in a DSSE envelope signed with ``key`` (an EC private key) when one is given."""
    from mlpack.fileio import write_atomic

    if key is not None:
        from mlpack.signing import check_private_key

        check_private_key(key)
    write_atomic(Path(out), canonical_json(envelope(document, key) if key is not None else document))
    return Path(out)
