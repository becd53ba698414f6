"""env/bom.cdx.json: a CycloneDX 1.6 ML-BOM of the package, written by every build.

The model is the BOM's subject (a ``machine-learning-model`` component with the ONNX file's hash and a
``modelCard``: its inputs and outputs, the task where the outputs say it, the conversion parity and the
golden replays on other machine classes as performance metrics, the lineage as datasets). Every package of
the build lock and the runtime lock is a ``library`` component with its purl and hashes, and the dependency
graph links them as their metadata declares. Written as plain JSON from the manifest and the locks, so the
same build gives the same bytes (no random serial number, no timestamp); the tests validate it
against CycloneDX's own 1.6 schema.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path
from typing import Any

from mlpack import __version__
from mlpack.manifest import Manifest

BOM = "env/bom.cdx.json"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{_name(name)}@{version}"


def _runtime_pins(text: str) -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: name -> (version, sha256 hashes of the artifacts it accepts)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = _name(pin[1])
            pins[current] = (pin[2], [])
        if current is not None:
            pins[current][1].extend(_HASH.findall(line))
    return pins


def _build_packages(path: Path) -> list[dict[str, Any]]:
    """pylock.toml's packages (with their artifacts) and the ones it could not lock, as the lock lists them."""
    data = tomllib.loads(path.read_text())
    found = []
    for package in data.get("packages", []):
        artifacts = [
            {"url": a.get("url") or a.get("path") or "", "sha256": a.get("hashes", {}).get("sha256")}
            for a in [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        ]
        record = package.get("tool", {}).get("mlpack", {}).get("record-sha256")
        found.append({"name": package["name"], "version": package.get("version"), "artifacts": artifacts,
                      "record": record})  # fmt: skip
    for package in data.get("tool", {}).get("mlpack", {}).get("unlocked", []):
        found.append({"name": package["name"], "version": package.get("version"), "artifacts": [],
                      "record": package.get("record-sha256")})  # fmt: skip
    return found


def _library(entry: dict[str, Any], runtime: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
    name, version = entry["name"], entry["version"] or "unknown"
    scopes = ["build"] + (["runtime"] if _name(name) in runtime else [])
    component: dict[str, Any] = {
        "type": "library", "bom-ref": _purl(name, version), "name": name, "version": version,
        "purl": _purl(name, version),
    }  # fmt: skip
    hashes = sorted(
        {*runtime.get(_name(name), ("", []))[1], *(a["sha256"] for a in entry["artifacts"] if a["sha256"])}
    )
    if hashes:
        component["hashes"] = [{"alg": "SHA-256", "content": h} for h in hashes]
    references = [
        {"type": "distribution", "url": a["url"], "hashes": [{"alg": "SHA-256", "content": a["sha256"]}]}
        for a in entry["artifacts"]
        if a["url"] and a["sha256"] and "://" in a["url"]
    ]
    if references:
        component["externalReferences"] = references
    properties = [{"name": "mlpack:lock", "value": scope} for scope in scopes]
    if entry["record"]:  # the installed files' RECORD: what verify compares when no artifact hash exists
        properties.append({"name": "mlpack:record-sha256", "value": entry["record"]})
    component["properties"] = properties
    return component


def _dependencies(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each locked package's declared requirements among the locked packages (markers for extras left out)."""
    from importlib.metadata import distributions

    from packaging.requirements import InvalidRequirement, Requirement

    refs = {_name(c["name"]): c["bom-ref"] for c in components}
    requires: dict[str, list[str]] = {}
    for dist in distributions():  # the first on sys.path wins, as imports resolve them
        requires.setdefault(_name(dist.metadata["Name"] or ""), list(dist.requires or []))
    graph = []
    for component in components:
        needs: set[str] = set()
        for text in requires.get(_name(component["name"]), []):
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None:
                try:
                    if not requirement.marker.evaluate({"extra": ""}):
                        continue
                except Exception:  # a marker this environment cannot evaluate: leave the edge out
                    continue
            ref = refs.get(_name(requirement.name))
            if ref and ref != component["bom-ref"]:
                needs.add(ref)
        graph.append({"ref": component["bom-ref"], "dependsOn": sorted(needs)})
    return graph


def _task(manifest: Manifest) -> str | None:
    kinds = {spec.kind for spec in manifest.model.outputs}
    if kinds & {"label", "probabilities"}:
        return "classification"
    if manifest.source is not None and manifest.source.converter in ("sklearn", "xgboost", "lightgbm"):
        return "regression" if kinds == {"value"} else None
    return None


def _model_card(manifest: Manifest) -> dict[str, Any]:
    def signature(specs: Any) -> list[dict[str, str]]:
        return [{"format": f"{s.name}: {s.type} {list(s.shape)}"} for s in specs]

    parameters: dict[str, Any] = {
        "inputs": signature(manifest.model.inputs),
        "outputs": signature(manifest.model.outputs),
    }
    task = _task(manifest)
    if task:
        parameters["task"] = task
    if manifest.source is not None:
        parameters["architectureFamily"] = (
            f"{manifest.source.framework} {manifest.source.framework_version}".strip()
        )
        parameters["modelArchitecture"] = manifest.source.model_class
    datasets = []
    for key, value in sorted(manifest.lineage.items()):
        if value in (None, "", {}):
            continue
        kind = "source-code" if key == "git" else "dataset" if "data" in key.lower() else "other"
        datasets.append({"type": kind, "name": key, "description": str(value)})
    if datasets:
        parameters["datasets"] = datasets
    metrics = []
    if manifest.parity is not None:
        for output in manifest.parity.outputs:
            for figure in ("max_abs", "max_ulp", "identical_elements"):
                if output.get(figure) is not None:
                    metrics.append({"type": f"parity {figure} ({manifest.parity.compared})",
                                    "value": str(output[figure]), "slice": str(output["name"])})  # fmt: skip
    for evidence in manifest.machines:
        metrics.append({"type": f"golden replay on {evidence.get('machine')} ({evidence.get('emulator')})",
                        "value": str(evidence.get("verdict")), "slice": "all outputs"})  # fmt: skip
    card: dict[str, Any] = {"modelParameters": parameters}
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    return card


def bom(manifest: Manifest, package: Path) -> dict[str, Any]:
    """The BOM of a package whose model, golden files and locks are written and whose manifest is final but
    for the BOM's own entry."""
    runtime_file = package / (manifest.environment.runtime_lock_file or "env/requirements.lock")
    runtime = _runtime_pins(runtime_file.read_text()) if runtime_file.is_file() else {}
    build_file = package / (manifest.environment.build_lock_file or "env/pylock.toml")
    entries = _build_packages(build_file) if build_file.is_file() else []
    listed = {_name(e["name"]) for e in entries}
    entries += [{"name": n, "version": v, "artifacts": [], "record": None} for n, (v, _) in runtime.items()
                if n not in listed]  # fmt: skip
    libraries = sorted((_library(e, runtime) for e in entries), key=lambda c: c["bom-ref"])
    model = {
        "type": "machine-learning-model", "bom-ref": "model", "name": manifest.name, "version": manifest.version,
        "hashes": [{"alg": "SHA-256", "content": manifest.model.sha256}],
        "modelCard": _model_card(manifest),
    }  # fmt: skip
    runtime_refs = sorted(
        c["bom-ref"] for c in libraries if {"name": "mlpack:lock", "value": "runtime"} in c["properties"]
    )
    # no timestamp, and a serial number from what the BOM describes: a rebuild of the same model is the same
    # file (the manifest's "created" is the one field a rebuild without SOURCE_DATE_EPOCH changes)
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"mlpack:{manifest.name}:{manifest.version}:{manifest.model.sha256}")
    metadata: dict[str, Any] = {
        "tools": {"components": [{"type": "application", "name": "mlpack", "version": __version__}]},
        "component": model,
    }
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{serial}", "version": 1,
        "metadata": metadata, "components": libraries,
        "dependencies": [{"ref": "model", "dependsOn": runtime_refs}, *_dependencies(libraries)],
    }  # fmt: skip
