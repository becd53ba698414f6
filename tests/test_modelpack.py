"""push --format modelpack: the package as a CNCF ModelPack artifact (github.com/modelpack/model-spec) in a real
registry (Distribution), read back by skopeo (any OCI tool) and by mlpack pull, which reads both forms."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
import requests
from registry_fixture import Registry

from mlpack.oci import artifact, spec
from mlpack.package import MANIFEST, MODEL, open_package
from tests.conftest import CliRunner, one_sentence_error

pytestmark = [pytest.mark.registry, pytest.mark.xdist_group("registry")]

# The ModelPack config as the model-spec's docs/config.md defines it: descriptor, config and modelfs required;
# modelfs of type "layers" with one diff id per layer; the model config's known fields only.
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["descriptor", "config", "modelfs"],
    "additionalProperties": False,
    "properties": {
        "descriptor": {"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1}, "version": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"}, "family": {"type": "string"},
            "description": {"type": "string"}}},
        "config": {"type": "object", "additionalProperties": False, "properties": {
            k: {"type": "string"} for k in ("architecture", "format", "paramSize", "precision", "quantization")}},
        "modelfs": {"type": "object", "required": ["type", "diff_ids"], "additionalProperties": False,
                    "properties": {"type": {"enum": ["layers"]},
                                   "diff_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1}}},
    },
}  # fmt: skip


@pytest.fixture
def signed(built: Path, tmp_path: Path, cli: CliRunner) -> tuple[Path, Path]:
    """A signed copy of the session's package, and the public key."""
    copy = tmp_path / "pkg" / built.name
    shutil.copytree(built, copy)
    assert cli("keygen", tmp_path / "key").returncode == 0
    assert cli("sign", copy, "--key", tmp_path / "key").returncode == 0
    return copy, tmp_path / "key.pub"


def get(reg: Registry, path: str, accept: str = spec.IMAGE_MANIFEST) -> requests.Response:
    answer = requests.get(f"{reg.url}/v2/{path}", headers={"Accept": accept}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def test_a_package_pushed_as_a_modelpack_is_one_and_pulls_back(
    reg: Registry, signed: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    package, public = signed
    pushed = cli("push", package, f"{reg.host}/models/forest", "--format", "modelpack", "--json")
    assert pushed.returncode == 0, pushed.stderr
    digest = json.loads(pushed.stdout)["digest"]

    body = get(reg, "models/forest/manifests/1").content
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == digest
    manifest = json.loads(body)
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    assert manifest["annotations"][spec.PACKAGE_DIGEST] == open_package(package).digest
    config = json.loads(get(reg, f"models/forest/blobs/{manifest['config']['digest']}").content)
    jsonschema.validate(config, CONFIG_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert config["config"]["format"] == "onnx"
    assert config["modelfs"]["diff_ids"] == [
        layer["digest"] for layer in manifest["layers"]
    ]  # raw: diff id = digest
    assert config["descriptor"]["name"] == "forest" and config["descriptor"]["version"] == "1"

    layers = {layer["annotations"]["org.cncf.model.filepath"]: layer for layer in manifest["layers"]}
    assert manifest["layers"][0]["annotations"]["org.cncf.model.filepath"] == MODEL  # the weights first
    assert layers[MODEL]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert layers["reference/inputs.npz"]["mediaType"] == "application/vnd.cncf.model.dataset.v1.raw"
    assert layers[MANIFEST]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    on_disk = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()}
    assert set(layers) == on_disk  # every file of the package, mlpack.json and the signature included
    for path, layer in layers.items():
        assert layer["digest"] == f"sha256:{hashlib.sha256((package / path).read_bytes()).hexdigest()}"

    # any OCI tool reads it: skopeo copies it out, checking every blob's digest
    copy = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/models/forest:1",
                           f"oci:{tmp_path / 'layout'}:forest"], capture_output=True, text=True)  # fmt: skip
    assert copy.returncode == 0, copy.stderr

    pulled = cli("pull", f"{reg.host}/models/forest:1", tmp_path / "out", "--key", public, "--require-signature")
    assert pulled.returncode == 0, pulled.stderr
    got = tmp_path / "out" / package.name
    assert open_package(got).digest == open_package(package).digest
    verified = cli("verify", got, "--key", public, "--require-signature", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["verdict"] == "identical", verified.stdout
    shown = cli("inspect", f"{reg.host}/models/forest:1", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["package_digest"] == open_package(package).digest


def test_the_modelpack_form_is_reproducible(reg: Registry, built: Path) -> None:
    package = open_package(built)
    assert artifact.modelpack_manifest(package) == artifact.modelpack_manifest(package)
    first = artifact.push(built, f"{reg.host}/forest", format="modelpack")
    again = artifact.push(built, f"{reg.host}/forest", format="modelpack")
    assert first.digest == again.digest and again.uploaded == ()
    mlpack_form = artifact.push(built, f"{reg.host}/forest:mlpack-form")
    assert mlpack_form.digest != first.digest and mlpack_form.package_digest == first.package_digest


def test_a_modelpack_without_mlpack_json_is_not_pulled(reg: Registry, tmp_path: Path, cli: CliRunner) -> None:
    """Another tool's ModelPack (weights and a config, no mlpack.json): refused in one sentence, nothing written."""
    weights = b"\x08\x07onnx-bytes"
    config = spec.canonical({"descriptor": {"name": "other"}, "config": {"format": "onnx"},
                             "modelfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(weights).hexdigest()}"]}})  # fmt: skip
    for data in (weights, config):
        started = requests.post(f"{reg.url}/v2/other/blobs/uploads/", timeout=10)
        requests.put(requests.compat.urljoin(started.url, started.headers["Location"]),
                     params={"digest": f"sha256:{hashlib.sha256(data).hexdigest()}"}, data=data,
                     timeout=10).raise_for_status()  # fmt: skip
    manifest = spec.canonical({
        "schemaVersion": 2, "mediaType": spec.IMAGE_MANIFEST, "artifactType": spec.MODELPACK_TYPE,
        "config": spec.descriptor(spec.MODELPACK_CONFIG, f"sha256:{hashlib.sha256(config).hexdigest()}", len(config)),
        "layers": [spec.descriptor(spec.MODELPACK_WEIGHT, f"sha256:{hashlib.sha256(weights).hexdigest()}",
                                   len(weights), {spec.MODELPACK_FILEPATH: "model.onnx"})],
    })  # fmt: skip
    requests.put(f"{reg.url}/v2/other/manifests/1", data=manifest, headers={"Content-Type": spec.IMAGE_MANIFEST},
                 timeout=10).raise_for_status()  # fmt: skip
    refused = cli("pull", f"{reg.host}/other:1", tmp_path / "out")
    assert refused.returncode == 2 and "without mlpack.json" in one_sentence_error(refused)
    assert not list((tmp_path / "out").rglob("*"))
    bad = cli("push", tmp_path, f"{reg.host}/x", "--format", "gguf")
    assert bad.returncode == 2
