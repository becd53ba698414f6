"""env/bom.cdx.json: every build's CycloneDX 1.6 ML-BOM, validated against CycloneDX's own schema, and
checked against what it describes: the ONNX file, the model's signature, the parity figures, the locks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from mlpack.environment import parse_requirements_lock
from tests.conftest import CliRunner

pytest.importorskip("cyclonedx")


def strict_errors(text: str) -> Any:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def test_the_bom_of_a_built_package_is_valid_and_true(built: Path) -> None:
    text = (built / "env" / "bom.cdx.json").read_text()
    assert strict_errors(text) is None
    bom, manifest = json.loads(text), mlpack.open_package(built).manifest
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256((built / "model.onnx").read_bytes()).hexdigest()}
    ]
    card = model["modelCard"]["modelParameters"]
    assert card["task"] == "classification" and card["modelArchitecture"].endswith("RandomForestClassifier")
    assert [i["format"] for i in card["inputs"]] == [f"X: tensor(float) {list(manifest.model.inputs[0].shape)}"]
    assert {o["format"].split(":")[0] for o in card["outputs"]} == {"label", "probabilities"}
    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    parity = {o["name"]: o for o in manifest.parity.outputs}  # type: ignore[union-attr]
    assert {"slice": "probabilities", "type": "parity max_abs (native model vs onnxruntime)",
            "value": str(parity["probabilities"]["max_abs"])} in metrics  # fmt: skip

    # every runtime-lock pin is a component with the lock's hashes; the model depends on exactly those
    pins = parse_requirements_lock((built / "env" / "requirements.lock").read_text())
    components = {c["name"].lower().replace("_", "-"): c for c in bom["components"]}
    lock_text = (built / "env" / "requirements.lock").read_text()
    for name, version in pins.items():
        component = components[name]
        assert component["version"] == version and component["purl"] == f"pkg:pypi/{name}@{version}"
        assert {h["content"] for h in component["hashes"]} >= {
            line.split("sha256:")[1][:64] for line in lock_text.split(f"{name}=={version}")[1].split("==")[0].splitlines()
            if "--hash=sha256:" in line
        }  # fmt: skip
    (model_edges,) = [d for d in bom["dependencies"] if d["ref"] == "model"]
    assert sorted(model_edges["dependsOn"]) == sorted(f"pkg:pypi/{n}@{v}" for n, v in pins.items())
    edges = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    sklearn = components["scikit-learn"]["bom-ref"]
    assert components["numpy"]["bom-ref"] in edges[sklearn] and components["scipy"]["bom-ref"] in edges[sklearn]


def test_the_bom_records_lineage_as_datasets_and_is_the_same_bytes_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    x = np.random.default_rng(1).normal(size=(40, 2))
    model = LinearRegression().fit(x, x @ [1.0, -2.0])
    boms = []
    for out in ("a", "b"):
        package = mlpack.build(model, x[:8], name="reg", out=tmp_path / out, resolve=False, timings=False,
                               lineage={"training-data": "s3://bucket/train.parquet", "owner": "ml-team"})  # fmt: skip
        boms.append((package.path / "env" / "bom.cdx.json").read_bytes())
    assert boms[0] == boms[1] and strict_errors(boms[0].decode()) is None
    card = json.loads(boms[0])["metadata"]["component"]["modelCard"]["modelParameters"]
    assert card["task"] == "regression"
    assert {"type": "dataset", "name": "training-data", "description": "s3://bucket/train.parquet"} in card[
        "datasets"
    ]
    assert {"type": "other", "name": "owner", "description": "ml-team"} in card["datasets"]


def test_a_truncated_bom_is_tampered(package: Path, cli: CliRunner) -> None:
    bom = package / "env" / "bom.cdx.json"
    bom.write_bytes(bom.read_bytes()[:200])
    done = cli("verify", package, "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3 and report["verdict"] == "tampered"
    assert [p["file"] for p in report["integrity"]] == ["env/bom.cdx.json"]
