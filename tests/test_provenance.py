"""env/provenance.intoto.json: an in-toto Statement v1 with an SLSA Provenance v1 predicate about the package
digest, parsed by in-toto's own protobuf schemas; DSSE-signed when the build has a key; verify refuses one
about another package or signed by another key."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

import mlpack
from mlpack import provenance
from mlpack.errors import IntegrityError
from tests.conftest import CliRunner

pytest.importorskip("in_toto_attestation")


def parsed(document: dict) -> None:  # type: ignore[type-arg]
    """Strict parses against in-toto's Statement and SLSA Provenance v1 protos: unknown fields fail."""
    from google.protobuf.json_format import ParseDict
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    wire = {("type" if key == "_type" else key): value for key, value in document.items()}
    Statement.copy_from_pb(ParseDict(wire, statement_pb2.Statement())).validate()
    ParseDict(document["predicate"], provenance_pb2.Provenance())


def test_every_build_states_its_provenance_about_the_package_digest(built: Path) -> None:
    statement = provenance.read(built / provenance.PROVENANCE)
    parsed(statement)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"]["sha256"] == mlpack.open_package(built).digest.removeprefix("sha256:")
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["name"] == "forest" and definition["externalParameters"]["resolve"]
    lock = tomllib.loads((built / "env" / "pylock.toml").read_text())
    hashed = {f"pkg:pypi/{p['name']}@{p['version']}": p["wheels"][0]["hashes"]["sha256"]
              for p in lock["packages"] if p.get("wheels")}  # fmt: skip
    resolved = {d["uri"]: d["digest"].get("sha256") for d in definition["resolvedDependencies"]}
    assert hashed and all(resolved[uri] == sha for uri, sha in hashed.items())
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder["version"]["mlpack"] == mlpack.__version__


def test_a_signed_build_signs_its_provenance_and_verify_holds_it_to_the_package(
    tmp_path: Path, cli: CliRunner
) -> None:
    from sklearn.linear_model import LogisticRegression

    assert cli("keygen", tmp_path / "key").returncode == 0
    assert cli("keygen", tmp_path / "other").returncode == 0
    x = np.random.default_rng(2).normal(size=(50, 3))
    model = LogisticRegression().fit(x, (x[:, 1] > 0).astype(int))
    packages = [
        mlpack.build(model, x[:n], name=f"p{n}", out=tmp_path / "dist", resolve=False, timings=False,
                     sign_key=tmp_path / "key").path
        for n in (8, 9)
    ]  # fmt: skip
    target = packages[0] / provenance.PROVENANCE
    envelope = json.loads(target.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    parsed(provenance.read(target, tmp_path / "key.pub"))
    with pytest.raises(IntegrityError, match="not signed by"):
        provenance.read(target, tmp_path / "other.pub")
    done = cli("verify", packages[0], "--key", tmp_path / "key.pub", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["signature"]["status"] == "verified"

    shutil.copy(packages[1] / provenance.PROVENANCE, target)  # another package's (valid, signed) provenance
    (packages[0] / "mlpack.sig").unlink()  # so that only the provenance check can notice
    done = cli("verify", packages[0], "--key", tmp_path / "key.pub", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3 and "about another package" in report["message"]


def test_verify_attests_its_result_as_an_in_toto_test_result(
    package: Path, tmp_path: Path, cli: CliRunner
) -> None:
    from google.protobuf.json_format import ParseDict
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2

    assert cli("keygen", tmp_path / "key").returncode == 0
    done = cli("verify", package, "--attest", tmp_path / "passed.json", "--attest-key", tmp_path / "key")
    assert done.returncode == 0, done.stdout
    statement = provenance.read(tmp_path / "passed.json", tmp_path / "key.pub")  # DSSE, checked with the key
    parsed_result = ParseDict(statement["predicate"], test_result_pb2.TestResult())
    assert parsed_result.result == "PASSED" and sorted(parsed_result.passed_tests) == ["label", "probabilities"]
    assert statement["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    assert statement["subject"][0]["digest"]["sha256"] == mlpack.open_package(package).digest.removeprefix(
        "sha256:"
    )

    outputs = package / "reference" / "outputs.npz"
    outputs.write_bytes(outputs.read_bytes()[:-8] + b"\0" * 8)
    done = cli("verify", package, "--attest", tmp_path / "failed.json")
    assert done.returncode == 3
    failed = json.loads((tmp_path / "failed.json").read_text())  # no key: the statement itself
    assert failed["predicate"]["result"] == "FAILED" and failed["predicate"]["failedTests"] == [
        "package: tampered"
    ]
