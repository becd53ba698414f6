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

import uuid
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mlpack import __version__
from mlpack.environment import build_lock_entries, parse_requirements_lock, requirements_lock_hashes
from mlpack.manifest import Manifest

BOM = "env/bom.cdx.json"


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{canonicalize_name(name)}@{version}"


def _library(entry: dict[str, Any], runtime: dict[str, list[str]], built: bool = True) -> dict[str, Any]:
    """A locked package as a CycloneDX library; ``runtime``: the runtime lock's hashes by canonical name;
    ``built``: the build lock lists it too."""
    name, version = entry["name"], entry["version"] or "unknown"
    scopes = ["build"] * built + ["runtime"] * (canonicalize_name(name) in runtime)
    component: dict[str, Any] = {
        "type": "library", "bom-ref": _purl(name, version), "name": name, "version": version,
        "purl": _purl(name, version),
    }  # fmt: skip
    hashes = sorted(
        {
            *runtime.get(canonicalize_name(name), []),
            *(a["sha256"] for a in entry["artifacts"] if a["sha256"]),
        }
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
    if entry["record_sha256"]:  # the installed files' RECORD: what verify compares when no artifact hash exists
        properties.append({"name": "mlpack:record-sha256", "value": entry["record_sha256"]})
    component["properties"] = properties
    return component


def _dependencies(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each locked package's declared requirements among the locked packages (markers for extras left out)."""
    from importlib.metadata import distributions

    from packaging.requirements import InvalidRequirement, Requirement

    refs = {canonicalize_name(c["name"]): c["bom-ref"] for c in components}
    requires: dict[str, list[str]] = {}
    for dist in distributions():  # the first on sys.path wins, as imports resolve them
        requires.setdefault(canonicalize_name(dist.metadata["Name"] or ""), list(dist.requires or []))
    graph = []
    for component in components:
        needs: set[str] = set()
        for text in requires.get(canonicalize_name(component["name"]), []):
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
            ref = refs.get(canonicalize_name(requirement.name))
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
    runtime_text = runtime_file.read_text() if runtime_file.is_file() else ""
    runtime = requirements_lock_hashes(runtime_text)
    build_file = package / (manifest.environment.build_lock_file or "env/pylock.toml")
    entries = build_lock_entries(build_file) if build_file.is_file() else []
    listed = {canonicalize_name(e["name"]) for e in entries}
    runtime_only: list[dict[str, Any]] = [{"name": n, "version": v, "artifacts": [], "record_sha256": None}
                    for n, v in parse_requirements_lock(runtime_text).items() if n not in listed]  # fmt: skip
    libraries = sorted(
        [*(_library(e, runtime) for e in entries), *(_library(e, runtime, built=False) for e in runtime_only)],
        key=lambda c: c["bom-ref"],
    )
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
