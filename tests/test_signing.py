"""Signed packages (OpenSSF Model Signing): keygen, sign, build --sign-key, verify --key first, certificates,
and the model_signing CLI reading mlpack's signatures and mlpack reading its. Real keys, real signatures,
offline."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CliRunner, one_sentence_error

pytest.importorskip("model_signing")
MODEL_SIGNING = str(Path(sys.executable).with_name("model_signing"))  # the library's own CLI


@pytest.fixture
def keys(tmp_path: Path, cli: CliRunner) -> tuple[Path, Path]:
    made = cli("keygen", tmp_path / "release")
    assert made.returncode == 0, made.stderr
    private, public = tmp_path / "release", tmp_path / "release.pub"
    assert private.stat().st_mode & 0o777 == 0o600 and b"BEGIN PUBLIC KEY" in public.read_bytes()
    return private, public


def verify_json(cli: CliRunner, package: Path, *args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = cli("verify", package, "--json", *args)
    return done.returncode, json.loads(done.stdout)


def test_a_signed_package_verifies_and_a_changed_tolerance_is_tampered(
    package: Path, keys: tuple[Path, Path], cli: CliRunner
) -> None:
    private, public = keys
    assert cli("sign", package, "--key", private).returncode == 0
    code, report = verify_json(cli, package, "--key", public)
    assert code == 0 and report["verdict"] == "identical" and report["signature"]["status"] == "verified"
    code, report = verify_json(cli, package)  # signed, but nobody asked to check it: said so
    assert code == 0 and report["signature"]["status"] == "unchecked"

    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["tolerances"]["probabilities"]["atol"] = 0.5  # the attack: loosen what "equivalent" means
    (package / "mlpack.json").write_text(json.dumps(manifest, indent=2))
    code, report = verify_json(cli, package)
    assert code == 0  # every file still matches the manifest: without the signature nothing notices
    code, report = verify_json(cli, package, "--key", public)
    assert code == 3 and report["verdict"] == "tampered"
    assert "changed since signing: mlpack.json" in report["message"]


def test_foreign_and_edited_signatures_and_missing_ones_are_tampered(
    package: Path, keys: tuple[Path, Path], cli: CliRunner, tmp_path: Path
) -> None:
    private, public = keys
    code, _ = verify_json(cli, package, "--key", public, "--require-signature")
    assert code == 3  # unsigned, and a signature is required
    required = cli("verify", package, "--require-signature")
    assert required.returncode == 2 and "needs a key" in one_sentence_error(required)

    assert cli("sign", package, "--key", private).returncode == 0
    assert cli("keygen", tmp_path / "other").returncode == 0
    code, report = verify_json(cli, package, "--key", tmp_path / "other.pub")
    assert code == 3 and "Key mismatch" in report["message"]

    signature = package / "mlpack.sig"
    bundle = json.loads(signature.read_text())
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = bundle["dsseEnvelope"]["signatures"][0]["sig"][::-1]
    signature.write_text(json.dumps(bundle))
    code, report = verify_json(cli, package, "--key", public)
    assert code == 3 and report["signature"]["status"] == "failed"
    signature.write_text(signature.read_text()[:100])  # truncated
    code, report = verify_json(cli, package, "--key", public)
    assert code == 3 and "does not verify" in report["message"]


def test_keys_of_other_types_are_refused_naming_what_is_accepted(
    package: Path, tmp_path: Path, cli: CliRunner
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    for name, key in (
        ("ed", ed25519.Ed25519PrivateKey.generate()),
        ("rsa", rsa.generate_private_key(65537, 2048)),
    ):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        (tmp_path / f"{name}.pem").write_bytes(pem)
        refused = cli("sign", package, "--key", tmp_path / f"{name}.pem")
        assert refused.returncode == 2
        assert "takes EC keys on P-256, P-384 or P-521" in one_sentence_error(refused)
        assert not (package / "mlpack.sig").exists()


def test_build_signs_as_its_last_step(tmp_path: Path, keys: tuple[Path, Path], cli: CliRunner) -> None:
    from sklearn.linear_model import LogisticRegression

    import mlpack

    private, public = keys
    x = np.random.default_rng(0).normal(size=(60, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    package = mlpack.build(model, x[:10], name="signed", out=tmp_path / "dist", resolve=False, timings=False,
                           sign_key=private)  # fmt: skip
    assert (package.path / "mlpack.sig").is_file()
    assert mlpack.verify(package.path, key=public).signature["status"] == "verified"
    with pytest.raises(mlpack.MlpackError, match="does not exist"):  # refused before any work is done
        mlpack.build(
            model, x[:10], name="unsigned", out=tmp_path / "dist", resolve=False, sign_key=tmp_path / "no"
        )
    assert not (tmp_path / "dist" / "unsigned-1").exists()


def test_the_model_signing_cli_and_mlpack_read_each_others_signatures(
    package: Path, keys: tuple[Path, Path], cli: CliRunner, tmp_path: Path
) -> None:
    private, public = keys
    assert cli("sign", package, "--key", private).returncode == 0
    theirs = subprocess.run([MODEL_SIGNING, "verify", "key", str(package), "--signature", str(package / "mlpack.sig"),
                             "--public_key", str(public)], capture_output=True, text=True)  # fmt: skip
    assert theirs.returncode == 0 and "Verification succeeded" in theirs.stdout + theirs.stderr

    (package / "mlpack.sig").unlink()
    signed = subprocess.run([MODEL_SIGNING, "sign", "key", str(package), "--signature", str(package / "mlpack.sig"),
                             "--private_key", str(private)], capture_output=True, text=True)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    code, report = verify_json(cli, package, "--key", public)
    assert code == 0 and report["signature"]["status"] == "verified"

    # a valid signature that leaves a file out vouches for less than the package
    (package / "mlpack.sig").unlink()
    signed = subprocess.run([MODEL_SIGNING, "sign", "key", str(package), "--signature", str(package / "mlpack.sig"),
                             "--private_key", str(private), "--ignore-paths", str(package / "hardware.json")],
                            capture_output=True, text=True)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    code, report = verify_json(cli, package, "--key", public)
    assert code == 3 and "does not cover hardware.json" in report["message"]


def test_certificate_signing_checks_the_chain(package: Path, tmp_path: Path, cli: CliRunner) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                         crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
        )  # fmt: skip
        return builder.sign(signer, hashes.SHA256())

    def pem(item: x509.Certificate | ec.EllipticCurvePrivateKey, path: Path) -> Path:
        if isinstance(item, x509.Certificate):
            path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))  # fmt: skip
        return path

    ca_key, leaf_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("mlpack test CA", ca_key, None, ca_key, ca=True)
    leaf = certificate("release signer", leaf_key, ca.subject, ca_key, ca=False)
    rogue_ca = certificate("another CA", rogue_key, None, rogue_key, ca=True)
    signed = cli("sign", package, "--key", pem(leaf_key, tmp_path / "leaf.key"), "--certificate",
                 pem(leaf, tmp_path / "leaf.pem"), "--chain", pem(ca, tmp_path / "ca.pem"))  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    code, report = verify_json(cli, package, "--certificate-chain", tmp_path / "ca.pem")
    assert code == 0 and report["signature"]["status"] == "verified"
    code, report = verify_json(cli, package, "--certificate-chain", pem(rogue_ca, tmp_path / "rogue.pem"))
    assert code == 3 and report["verdict"] == "tampered"


def test_keyless_signing_says_what_it_needs_when_sigstore_cannot_be_reached(
    package: Path, keys: tuple[Path, Path], cli: CliRunner
) -> None:
    """--sigstore and --identity/--issuer are offered where the network allows. Here every request goes to a
    closed port on loopback (a proxy that is not there), as on a machine with no way out: one sentence each,
    exit 5, nothing written; and the options are checked before any of that."""
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtZUBleGFtcGxlLmNvbSJ9."
    signed = cli("sign", package, "--sigstore", "--identity-token", token, env=offline)
    assert signed.returncode == 5 and "sign offline with --key" in one_sentence_error(signed)
    assert not (package / "mlpack.sig").exists()
    assert cli("sign", package, "--key", keys[0]).returncode == 0
    checked = cli("verify", package, "--identity", "me@example.com", "--issuer", "https://accounts.google.com",
                  env=offline)  # fmt: skip
    assert checked.returncode == 5 and "Sigstore's trust root" in one_sentence_error(checked)

    both = cli("sign", package, "--sigstore", "--key", keys[0])
    assert both.returncode == 2 and "one of the two" in one_sentence_error(both)
    half = cli("verify", package, "--identity", "me@example.com")
    assert half.returncode == 2 and "--identity and --issuer together" in one_sentence_error(half)
    mixed = cli("verify", package, "--identity", "me@example.com", "--issuer", "https://x", "--key", keys[1])
    assert mixed.returncode == 2 and "by one means" in one_sentence_error(mixed)
