"""``mlpack diff A B``: what changed between two packages (two versions of a model, or a rebuild), and whether
any of it moves numbers.

Compared: the manifest's fields (identity, source, session options, tolerances, golden sample), the model graph
(opsets, input and output signatures, op counts by type, each initializer's bytes by name), the runtime and
build locks package by package, the recorded hardware, and, where the signatures match, each package's model
on the other's golden inputs, judged against the other's golden outputs with the same figures as verify.

What moves numbers: the model's bytes (ops or weights), the onnxruntime session options or version, a runtime
package (onnxruntime, numpy), a numeric hardware field, or a cross-replay that is not bit-identical. The build
lock, the creation time and lineage are context. Exit 0 when nothing moves numbers, 1 otherwise.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpack.manifest import Manifest, TensorSpec, to_json
from mlpack.package import BUILD_LOCK, HARDWARE, RUNTIME_LOCK, Package, open_intact


@dataclass(frozen=True)
class Change:
    section: str  # manifest, model, runtime-lock, build-lock, hardware, outputs
    field: str
    a: Any
    b: Any
    moves_numbers: bool

    def to_dict(self) -> dict[str, Any]:
        return {"section": self.section, "field": self.field, "a": self.a, "b": self.b,
                "moves_numbers": self.moves_numbers}  # fmt: skip


@dataclass(frozen=True)
class PackageDiff:
    a: dict[str, str]  # path, name, version, digest
    b: dict[str, str]
    changes: list[Change] = field(default_factory=list)
    cross: list[dict[str, Any]] = field(default_factory=list)  # each model on the other's golden inputs

    @property
    def moves_numbers(self) -> bool:
        return any(c.moves_numbers for c in self.changes)

    @property
    def exit_code(self) -> int:
        return 1 if self.moves_numbers else 0

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "moves_numbers": self.moves_numbers, "exit_code": self.exit_code,
                "changes": [c.to_dict() for c in self.changes], "cross": self.cross}  # fmt: skip


def _identity(package: Package) -> dict[str, str]:
    return {"path": str(package.path), "name": package.name, "version": package.version, "digest": package.digest}


def _signature(specs: tuple[TensorSpec, ...]) -> list[str]:
    return [f"{s.name}: {s.type} {list(s.shape)}" for s in specs]


def graph_summary(path: Path) -> dict[str, Any]:
    """Op counts by (domain, type), each initializer's sha256 and each node's attributes' sha256, from the ONNX
    file (external data included)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    ops = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model.graph.node)
    weights = {
        init.name: hashlib.sha256(numpy_helper.to_array(init).tobytes()).hexdigest()
        for init in model.graph.initializer
    }
    # a node's attributes hold the weights of tree ensembles, label maps and constants: hashed per node
    attributes = {
        f"{n.name or i}:{n.op_type}": hashlib.sha256(
            b"".join(a.SerializeToString() for a in n.attribute)
        ).hexdigest()
        for i, n in enumerate(model.graph.node)
    }
    return {"ops": dict(sorted(ops.items())), "initializers": weights, "attributes": attributes}


def _entries(section: str, a: Mapping[str, Any], b: Mapping[str, Any], moves: Any) -> list[Change]:
    """A change per key whose value differs (present on one side only included). ``moves(key)`` says whether
    that key's difference moves numbers."""
    return [Change(section, key, a.get(key), b.get(key), bool(moves(key)))
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]  # fmt: skip


def manifest_changes(a: Manifest, b: Manifest) -> list[Change]:
    """Field by field over the parts of mlpack.json that describe the model and how it runs. Pure."""
    from mlpack.hardware import flatten

    flat_a = {k: v for k, v in flatten(to_json(a)).items() if not k.startswith(IGNORED)}
    flat_b = {k: v for k, v in flatten(to_json(b)).items() if not k.startswith(IGNORED)}
    return _entries("manifest", flat_a, flat_b, lambda key: key.startswith(NUMERIC_MANIFEST))


# Described elsewhere in the diff (files by their own sections, hardware field by field, the model's graph) or
# per build by nature (when, by which mlpack, parity details): not repeated as manifest fields.
IGNORED = ("files.", "hardware.", "model.", "environment.", "performance.", "created", "parity.outputs",
           "lineage.", "machines.")  # fmt: skip
NUMERIC_MANIFEST = ("runtime.", "tolerances.", "reference.row_batches", "reference.runs")


def model_changes(a: Package, b: Package) -> list[Change]:
    ma, mb = a.manifest.model, b.manifest.model
    changes = _entries("model", {"opsets": ma.opset_imports, "inputs": _signature(ma.inputs),
                                 "outputs": _signature(ma.outputs), "ir_version": ma.ir_version},
                       {"opsets": mb.opset_imports, "inputs": _signature(mb.inputs),
                        "outputs": _signature(mb.outputs), "ir_version": mb.ir_version},
                       lambda key: True)  # fmt: skip
    if ma.sha256 == mb.sha256:
        return changes
    before = len(changes)
    ga, gb = graph_summary(a.path / ma.file), graph_summary(b.path / mb.file)
    changes += _entries("model", {f"ops.{k}": v for k, v in ga["ops"].items()},
                        {f"ops.{k}": v for k, v in gb["ops"].items()}, lambda key: True)  # fmt: skip
    wa, wb = ga["initializers"], gb["initializers"]
    if changed := sorted(k for k in set(wa) & set(wb) if wa[k] != wb[k]):
        changes.append(Change("model", "initializers with other bytes", None, changed[:20], True))
    if only_a := sorted(set(wa) - set(wb)):
        changes.append(Change("model", "initializers only in A", only_a[:20], None, True))
    if only_b := sorted(set(wb) - set(wa)):
        changes.append(Change("model", "initializers only in B", None, only_b[:20], True))
    na, nb = ga["attributes"], gb["attributes"]
    if nodes := sorted(k for k in set(na) & set(nb) if na[k] != nb[k]):
        changes.append(Change("model", "nodes with other attributes", None, nodes[:20], True))
    if len(changes) == before:
        # the same ops and weights in other bytes (names, metadata, node order): onnxruntime may fuse otherwise
        changes.append(Change("model", "sha256", ma.sha256, mb.sha256, True))
    return changes


def lock_changes(a: Package, b: Package) -> list[Change]:
    from mlpack.environment import parse_requirements_lock, read_build_lock

    changes = []

    def runtime(p: Package) -> dict[str, str]:
        lock = p.path / RUNTIME_LOCK
        return parse_requirements_lock(lock.read_text()) if lock.is_file() else {}

    def build(p: Package) -> dict[str, Any]:
        lock = p.path / BUILD_LOCK
        return {name: e["version"] for name, e in read_build_lock(lock).items()} if lock.is_file() else {}

    changes += _entries("runtime-lock", runtime(a), runtime(b), lambda key: True)
    changes += _entries("build-lock", build(a), build(b), lambda key: False)
    return changes


def hardware_changes(a: Package, b: Package) -> list[Change]:
    """The machines the two were built on, field by field (hardware.json): A's as built, B's as here."""
    import json

    from mlpack import hardware

    profiles = [
        json.loads((p.path / HARDWARE).read_text()) if (p.path / HARDWARE).is_file() else {} for p in (a, b)
    ]
    return [Change("hardware", c["field"], c["built"], c["here"], c["moves_numbers"])
            for c in hardware.diff(profiles[0], profiles[1])]  # fmt: skip


def cross_replay(a: Package, b: Package) -> list[dict[str, Any]]:
    """B's model on A's golden inputs against A's golden outputs, and A's on B's: the same figures as verify,
    with the golden side's tolerances. Only where the input and output signatures match."""
    from mlpack import compare
    from mlpack.fileio import load_npz
    from mlpack.reference import open_session, run

    results = []
    for golden, model in ((a, b), (b, a)):
        gm, mm = golden.manifest, model.manifest
        if _signature(gm.model.inputs) != _signature(mm.model.inputs) or [o.name for o in gm.model.outputs] != [
            o.name for o in mm.model.outputs
        ]:
            results.append({"model": model.name, "inputs": golden.name, "compared": False,
                            "reason": "the input or output signatures differ"})  # fmt: skip
            continue
        session = open_session(model.path / mm.model.file, gm.runtime.session)
        feeds = load_npz(golden.path / gm.reference.inputs)
        actual = run(session, feeds, gm.reference.row_batches, gm.reference.runs)
        expected = load_npz(golden.path / gm.reference.outputs)
        outputs = compare.compare(expected, actual, gm.kinds, gm.tolerances)
        results.append({
            "model": f"{model.name} {model.version}", "inputs": f"{golden.name} {golden.version}", "compared": True,
            "verdict": compare.verdict(outputs), "outputs": [o.to_dict() for o in outputs],
        })  # fmt: skip
    return results


def diff(a: str | Path, b: str | Path) -> PackageDiff:
    """Every difference between packages A and B (each intact first), and their models on each other's inputs."""
    pa = open_intact(a, "diff compares intact packages only.")
    pb = open_intact(b, "diff compares intact packages only.")
    changes = manifest_changes(pa.manifest, pb.manifest) + model_changes(pa, pb) + lock_changes(pa, pb)
    changes += hardware_changes(pa, pb)
    cross = cross_replay(pa, pb)
    for result in cross:
        if result["compared"] and result["verdict"] != "identical":
            changes.append(Change("outputs", f"{result['model']} on the golden inputs of {result['inputs']}",
                                  "identical", result["verdict"], True))  # fmt: skip
    return PackageDiff(_identity(pa), _identity(pb), changes, cross)


def render(result: PackageDiff) -> str:
    """The text form: what moves numbers first, then the rest; each cross-replay's verdict."""
    a, b = result.a, result.b
    lines = [f"A  {a['name']} {a['version']}  {a['digest']}", f"B  {b['name']} {b['version']}  {b['digest']}"]
    if a["digest"] == b["digest"]:
        lines.append("the same package (same digest)")
    for moves in (True, False):
        chosen = [c for c in result.changes if c.moves_numbers == moves]
        if chosen:
            lines.append("moves numbers:" if moves else "context (does not move numbers):")
            lines += [f"  {c.section:<12} {c.field}: {_short(c.a)} -> {_short(c.b)}" for c in chosen]
    for cross in result.cross:
        if not cross["compared"]:
            lines.append(
                f"cross-replay  {cross['model']} on {cross['inputs']}'s inputs: not compared ({cross['reason']})"
            )
            continue
        worst = max(
            (o.get("max_abs") or 0.0 for o in cross["outputs"] if isinstance(o.get("max_abs"), float)), default=0.0
        )
        lines.append(f"cross-replay  {cross['model']} on {cross['inputs']}'s golden inputs: {cross['verdict']}"
                     + (f" (max abs {worst:.3g})" if cross["verdict"] != "identical" else ""))  # fmt: skip
    lines.append("verdict: " + ("these differences move numbers (exit 1)" if result.moves_numbers
                                else "nothing that moves numbers differs (exit 0)"))  # fmt: skip
    return "\n".join(lines)


def _short(value: Any, limit: int = 70) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
