"""OCI 1.1 referrers: a pushed package's signature, BOM, provenance and verify attestations attached to its
manifest by subject. Against a real Distribution (no referrers API: the sha256-<hex> tag schema), and through
tests/referrers_proxy.py, which adds the referrers API in front of it, for the API path."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import requests
from referrers_proxy import ReferrersProxy
from registry_fixture import Registry

from mlpack.oci import referrers, spec
from mlpack.package import open_package
from tests.conftest import CliRunner, one_sentence_error

pytestmark = [pytest.mark.registry, pytest.mark.xdist_group("registry")]


@pytest.fixture
def keys(tmp_path: Path, cli: CliRunner) -> tuple[Path, Path]:
    done = cli("keygen", tmp_path / "key")
    assert done.returncode == 0, done.stderr
    return tmp_path / "key", tmp_path / "key.pub"


@pytest.fixture
def package(built: Path, tmp_path: Path) -> Path:
    """A copy of the session's package, without a signature: each test signs or attaches what it needs."""
    copy = tmp_path / "pkg" / built.name
    shutil.copytree(built, copy)
    (copy / "mlpack.sig").unlink(missing_ok=True)
    return copy


def attestation(package: Path, out: Path, cli: CliRunner, key: Path) -> Path:
    done = cli("verify", package, "--attest", out, "--attest-key", key)
    assert done.returncode == 0, done.stderr
    return out


def manifest_of(url: str, repository: str, reference: str) -> tuple[bytes, dict[str, object]]:
    answer = requests.get(f"{url}/v2/{repository}/manifests/{reference}",
                          headers={"Accept": f"{spec.IMAGE_MANIFEST}, {spec.IMAGE_INDEX}"}, timeout=10)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.content, answer.json()


def test_push_attaches_signature_bom_provenance_and_attestations_by_the_tag_schema(
    reg: Registry, package: Path, keys: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    assert cli("sign", package, "--key", keys[0]).returncode == 0
    proof = attestation(package, tmp_path / "proof.json", cli, keys[0])
    pushed = cli("push", package, f"{reg.host}/forest", "--attestation", proof, "--json")
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    digest = result["digest"]
    assert result["referrers_via"] == f"tag sha256-{digest[7:]}"

    # what any OCI 1.1 client reads on a registry without the API: an index under the fallback tag
    _, index = manifest_of(reg.url, "forest", f"sha256-{digest[7:]}")
    assert index["mediaType"] == spec.IMAGE_INDEX
    listed = index["manifests"]
    assert isinstance(listed, list)
    kinds = {d["annotations"][referrers.KIND]: d for d in listed}
    assert set(kinds) == {"signature", "bom", "provenance", "attestation"}
    expected = {"signature": (referrers.SIGNATURE, package / "mlpack.sig"),
                "bom": (referrers.BOM, package / "env/bom.cdx.json"),
                "provenance": (referrers.IN_TOTO, package / "env/provenance.intoto.json"),
                "attestation": (referrers.IN_TOTO, proof)}  # fmt: skip
    for kind, (artifact_type, source) in expected.items():
        descriptor = kinds[kind]
        assert descriptor["artifactType"] == artifact_type
        body, manifest = manifest_of(reg.url, "forest", descriptor["digest"])
        assert f"sha256:{hashlib.sha256(body).hexdigest()}" == descriptor["digest"]
        assert manifest["subject"] == {"mediaType": spec.IMAGE_MANIFEST, "digest": digest,
                                       "size": len(manifest_of(reg.url, "forest", "1")[0])}  # fmt: skip
        assert manifest["config"] == referrers.EMPTY and manifest["artifactType"] == artifact_type
        layers = manifest["layers"]
        assert isinstance(layers, list) and len(layers) == 1
        layer = layers[0]
        blob = requests.get(f"{reg.url}/v2/forest/blobs/{layer['digest']}", timeout=10).content
        assert blob == source.read_bytes()

    # pushing again lists each referrer once (the index is read and extended, never duplicated)
    assert cli("push", package, f"{reg.host}/forest", "--attestation", proof).returncode == 0
    _, again = manifest_of(reg.url, "forest", f"sha256-{digest[7:]}")
    assert again["manifests"] == listed

    shown = cli("inspect", f"{reg.host}/forest:1", "--json")
    assert shown.returncode == 0, shown.stderr
    remote = json.loads(shown.stdout)
    assert remote["digest"] == digest and remote["package_digest"] == open_package(package).digest
    assert sorted(r["kind"] for r in remote["referrers"]) == ["attestation", "bom", "provenance", "signature"]
    text = cli("inspect", f"{reg.host}/forest:1")
    assert (
        "referrers    4 (from the tag sha256-" in text.stdout and "application/vnd.cyclonedx+json" in text.stdout
    )


def test_a_signature_attached_after_the_push_reaches_pull(
    reg: Registry, package: Path, keys: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    pushed = cli("push", package, f"{reg.host}/forest", "--json")
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["digest"]
    unsigned = cli("pull", f"{reg.host}/forest:1", tmp_path / "none", "--key", keys[1], "--require-signature")
    assert unsigned.returncode == 3 and not list((tmp_path / "none").rglob("*"))  # no staging folder left either

    signed = tmp_path / "signed" / package.name
    shutil.copytree(package, signed)
    assert cli("sign", signed, "--key", keys[0]).returncode == 0
    done = cli("attach", f"{reg.host}/forest:1", "--signature", signed / "mlpack.sig", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == digest  # the artifact is unchanged: same digest
    pulled = cli("pull", f"{reg.host}/forest:1", tmp_path / "out", "--key", keys[1], "--require-signature")
    assert pulled.returncode == 0, pulled.stderr
    got = tmp_path / "out" / package.name
    assert (got / "mlpack.sig").read_bytes() == (signed / "mlpack.sig").read_bytes()
    assert cli("verify", got, "--key", keys[1], "--require-signature").returncode == 0

    other = cli("keygen", tmp_path / "other")
    assert other.returncode == 0
    foreign = cli("pull", f"{reg.host}/forest:1", tmp_path / "foreign", "--key", tmp_path / "other.pub")
    assert foreign.returncode == 3 and "Nothing was written" in one_sentence_error(foreign)
    assert ".partial" not in foreign.stderr and not list((tmp_path / "foreign").rglob("*"))


def test_an_attestation_about_another_package_is_refused(
    reg: Registry, package: Path, keys: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    assert cli("push", package, f"{reg.host}/forest").returncode == 0
    proof = attestation(package, tmp_path / "proof.json", cli, keys[0])
    envelope = json.loads(proof.read_text())  # signed (DSSE): a plain copy with another subject
    plain = json.loads(base64.b64decode(envelope["payload"]))
    plain["subject"][0]["digest"]["sha256"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(plain))
    refused = cli("attach", f"{reg.host}/forest:1", "--attestation", tmp_path / "other.json")
    assert refused.returncode == 2 and "about another package" in one_sentence_error(refused)
    nothing = cli("attach", f"{reg.host}/forest:1")
    assert nothing.returncode == 2 and "Nothing to attach" in one_sentence_error(nothing)


def test_a_registry_with_the_referrers_api_is_used_through_it(
    reg: Registry, package: Path, keys: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    assert cli("sign", package, "--key", keys[0]).returncode == 0
    with ReferrersProxy(reg.url) as proxy:
        pushed = cli("push", package, f"{proxy.host}/forest", "--json")
        assert pushed.returncode == 0, pushed.stderr
        result = json.loads(pushed.stdout)
        assert result["referrers_via"] == "referrers API"
        digest = result["digest"]
        # each referrer went up by digest and the registry indexed it: no fallback tag was written
        assert ("PUT", f"/v2/forest/manifests/sha256-{digest[7:]}") not in proxy.log
        assert ("GET", f"/v2/forest/manifests/sha256-{digest[7:]}") not in proxy.log
        assert len(proxy.index[("forest", digest)]) == 3  # signature, BOM, provenance

        shown = cli("inspect", f"{proxy.host}/forest:1", "--json")
        assert shown.returncode == 0, shown.stderr
        remote = json.loads(shown.stdout)
        assert remote["referrers_via"] == "referrers API"
        assert sorted(r["kind"] for r in remote["referrers"]) == ["bom", "provenance", "signature"]
        assert ("GET", f"/v2/forest/referrers/{digest}") in proxy.log
        pulled = cli("pull", f"{proxy.host}/forest:1", tmp_path / "out", "--key", keys[1], "--require-signature")
        assert pulled.returncode == 0, pulled.stderr
    # and the registry itself holds no fallback tag for it
    missing = requests.get(f"{reg.url}/v2/forest/manifests/sha256-{digest[7:]}", timeout=10)
    assert missing.status_code == 404


def test_the_fallback_index_merges_without_duplicates() -> None:
    one = {"mediaType": spec.IMAGE_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 10}
    two = {"mediaType": spec.IMAGE_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 20}
    first = referrers.merged_index(None, [one])
    assert json.loads(first)["manifests"] == [one]
    assert json.loads(referrers.merged_index(first, [one, two]))["manifests"] == [one, two]
    assert json.loads(referrers.merged_index(b"not json", [two]))["manifests"] == [two]
    assert referrers.fallback_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
