"""The typed manifest (mlpack/manifest.py): round trips, refusals in one sentence, and the published schema."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs installed

from mlpack.errors import IntegrityError, RuntimeEnvironmentError
from mlpack.fileio import canonical_json
from mlpack.manifest import FORMAT, Manifest, Source, Tolerance, json_schema, to_json

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "manifest-format-1.schema.json"


def sha(seed: int) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()


def manifest_dict() -> dict[str, Any]:
    """A manifest as `mlpack build` writes it for a scikit-learn classifier on iris (every field present)."""
    return {
        "created": "2026-01-02T03:04:05Z",
        "environment": {
            "build_lock": {
                "artifacts": "offline",
                "packages": 91,
                "reason": "artifact lookup skipped (resolve=False)",
                "unlocked": 90,
                "with_artifact_hash": 0,
            },
            "build_lock_file": "env/pylock.toml",
            "python": "3.11.7",
            "runtime": {"numpy": "2.1.0", "onnxruntime": "1.20.1", "packaging": "24.2", "typer": None},
            "runtime_lock": {"reason": "resolution skipped (resolve=False)", "status": "missing"},
            "runtime_lock_file": None,
        },
        "files": {
            "env/pylock.toml": sha(1),
            "hardware.json": sha(2),
            "model.onnx": sha(3),
            "reference/inputs.npz": sha(4),
            "reference/outputs.npz": sha(5),
        },
        "format": 1,
        "hardware": {
            "arch": "x86_64",
            "cpu": "GenuineIntel Xeon",
            "file": "hardware.json",
            "gpus": [],
            "logical_cores": 8,
            "numeric_flags": ["avx", "avx2", "fma", "sse4_2"],
        },
        "lineage": {"git": None, "team": "risk", "run": {"id": 7}},
        "mlpack_version": "0.1.0",
        "model": {
            "file": "model.onnx",
            "files": ["model.onnx"],
            "inputs": [{"name": "X", "shape": ["?", 4], "type": "tensor(float)"}],
            "ir_version": 8,
            "opset_imports": {"ai.onnx": 17, "ai.onnx.ml": 1},
            "outputs": [
                {"kind": "label", "name": "label", "shape": ["?"], "type": "tensor(int64)"},
                {"kind": "probabilities", "name": "probabilities", "shape": ["?", 3], "type": "tensor(float)"},
            ],
            "producer": "skl2onnx 1.17.0",
            "sha256": sha(3),
            "source_file": {"name": "model.skops", "sha256": sha(6)},
            "source_sha256": sha(7),
        },
        "name": "iris",
        "parity": {
            "compared": "native model vs onnxruntime",
            "input_cast": {"X": "float64->float32"},
            "outputs": [{"name": "label", "identical": True, "max_abs": 0.0, "worst": None}],
            "status": "passed",
        },
        "performance": {"omitted": "timings=False"},
        "reference": {
            "inputs": "reference/inputs.npz",
            "outputs": "reference/outputs.npz",
            "row_batches": False,
            "rows": 150,
        },
        "runtime": {
            "onnxruntime": "1.20.1",
            "session": {
                "execution_mode": "ORT_SEQUENTIAL",
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "inter_op_num_threads": 1,
                "intra_op_num_threads": 1,
                "providers": ["CPUExecutionProvider"],
            },
        },
        "source": {
            "converter": "sklearn",
            "framework": "sklearn",
            "framework_version": "1.5.2",
            "model_class": "sklearn.linear_model._logistic.LogisticRegression",
            "precision": "float32",
            "tool": "skl2onnx",
        },
        "tolerances": {
            "label": {"atol": 0.0, "labels": "exact-unless-tied", "rtol": 0.0},
            "probabilities": {"atol": 1e-05, "labels": "exact-unless-tied", "rtol": 0.0001},
        },
        "version": "1",
    }


def minimal_dict() -> dict[str, Any]:
    """Only the required sections: what an older or hand-written format 1 manifest may hold."""
    full = manifest_dict()
    return {key: full[key] for key in ("format", "name", "version", "model", "reference", "runtime")} | {
        "tolerances": full["tolerances"],
        "files": full["files"],
    }


def assert_one_sentence(message: str, *names: str) -> None:
    assert message.startswith("The manifest "), message
    assert message.endswith("."), message
    assert "\n" not in message and ". " not in message, message
    for name in names:
        assert name in message, message


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real package: a LogisticRegression on iris, built offline without timings (about 2 s)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlpack

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    out = tmp_path_factory.mktemp("unit-manifest")
    package = mlpack.build(model, sample=X, name="iris", out=out, resolve=False, timings=False, project=False)
    return package.path


@pytest.fixture
def package(built: Path, tmp_path: Path) -> Path:
    """A private copy of the package, free to tamper with."""
    target = tmp_path / built.name
    shutil.copytree(built, target)
    return target


# ---- round trips


def test_hand_written_manifest_round_trips() -> None:
    data = manifest_dict()
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert manifest.kinds == {"label": "label", "probabilities": "probabilities"}
    assert manifest.model.inputs[0].shape == ("?", 4)
    assert manifest.model.inputs[0].kind is None
    assert manifest.tolerances["probabilities"] == Tolerance(atol=1e-05, rtol=0.0001)
    assert manifest.runtime.session.providers == ("CPUExecutionProvider",)
    assert manifest.source is not None and manifest.source.details == {"precision": "float32", "tool": "skl2onnx"}
    assert manifest.model.source_file is not None and manifest.model.source_file.name == "model.skops"


def test_round_trip_does_not_share_or_change_the_input() -> None:
    data = manifest_dict()
    before = copy.deepcopy(data)
    out = Manifest.from_dict(data).to_dict()
    assert data == before
    out["files"]["extra"] = sha(9)
    assert "extra" not in data["files"]


def test_records_are_frozen() -> None:
    manifest = Manifest.from_dict(manifest_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.name = "other"  # type: ignore[misc]


def test_optional_sections_take_their_defaults() -> None:
    manifest = Manifest.from_dict(minimal_dict())
    assert manifest.source is None and manifest.parity is None
    assert manifest.lineage == {} and manifest.performance == {} and manifest.created == ""
    assert manifest.hardware.logical_cores == 0 and manifest.environment.runtime_lock_file is None
    written = manifest.to_dict()
    assert written["source"] is None and written["hardware"]["gpus"] == []
    assert Manifest.from_dict(written).to_dict() == written  # what mlpack writes, it reads back unchanged


def test_inputs_are_written_without_a_kind_and_outputs_with_one() -> None:
    written = Manifest.from_dict(manifest_dict()).to_dict()
    assert "kind" not in written["model"]["inputs"][0]
    assert [o["kind"] for o in written["model"]["outputs"]] == ["label", "probabilities"]


def test_converter_details_sit_beside_the_fixed_source_fields_and_never_override_them() -> None:
    source = Source("sklearn", "sklearn", "1.5", "Model", details={"converter": "forged", "tool": "skl2onnx"})
    assert to_json(source) == {
        "converter": "sklearn",
        "framework": "sklearn",
        "framework_version": "1.5",
        "model_class": "Model",
        "tool": "skl2onnx",
    }
    data = manifest_dict()
    data["source"]["details"] = {"nested": True}  # a detail that happens to be called "details"
    manifest = Manifest.from_dict(data)
    assert manifest.source is not None and manifest.source.details["details"] == {"nested": True}
    assert manifest.to_dict() == data


def test_integers_are_accepted_where_numbers_belong() -> None:
    data = manifest_dict()
    data["tolerances"]["probabilities"]["atol"] = 0
    manifest = Manifest.from_dict(data)
    assert manifest.tolerances["probabilities"].atol == 0.0
    assert isinstance(manifest.tolerances["probabilities"].atol, float)


def test_a_real_manifest_round_trips_to_the_same_bytes(built: Path) -> None:
    raw = (built / "mlpack.json").read_bytes()
    data = json.loads(raw)
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert canonical_json(manifest.to_dict()) == raw  # format 1 bytes stay the same
    assert manifest.name == "iris" and manifest.reference.rows == 150
    assert set(manifest.files) >= {"model.onnx", "reference/inputs.npz", "reference/outputs.npz"}


# ---- refusals


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return mutate


def _files_as_list(data: dict[str, Any]) -> None:
    data["files"] = sorted(data["files"])


# (mutation, words the one sentence must contain); each is a type error the schema refuses too
TYPE_ERRORS: dict[str, tuple[Mutation, tuple[str, ...]]] = {
    "files as a list": (_files_as_list, ("files must be an object, not list",)),
    "name as a number": (_set("name", 5), ("name must be a string, not 5",)),
    "version as a number": (_set("version", 1.5), ("version must be a string",)),
    "shape with a float": (
        _set("model/inputs/0/shape/1", 4.5),
        ("model.inputs[0].shape[1] must be an integer or a string, not 4.5",),
    ),
    "shape with a bool": (_set("model/inputs/0/shape/1", True), ("model.inputs[0].shape[1]",)),
    "rows as a bool": (_set("reference/rows", True), ("reference.rows must be an integer, not True",)),
    "threads as a bool": (
        _set("runtime/session/intra_op_num_threads", False),
        ("runtime.session.intra_op_num_threads must be an integer",),
    ),
    "format as a bool": (_set("format", True), ("format must be an integer",)),
    "ir_version as a string": (_set("model/ir_version", "8"), ("model.ir_version must be an integer",)),
    "row_batches as a number": (
        _set("reference/row_batches", 0),
        ("reference.row_batches must be true or false",),
    ),
    "tolerance as a string": (
        _set("tolerances/label/atol", "0"),
        ("tolerances['label'].atol must be a number",),
    ),
    "tolerance as a bool": (_set("tolerances/label/rtol", False), ("tolerances['label'].rtol must be a number",)),
    "file hash as a number": (_set("files/model.onnx", 3), ("files['model.onnx'] must be a string",)),
    "providers as a string": (
        _set("runtime/session/providers", "CPUExecutionProvider"),
        ("runtime.session.providers must be a list",),
    ),
    "model as a list": (_set("model", []), ("model must be an object",)),
    "source as a string": (_set("source", "sklearn"), ("source must be an object",)),
    "source file without hash": (_delete("model/source_file/sha256"), ("it lacks model.source_file.sha256",)),
    "missing reference": (_delete("reference"), ("it lacks reference",)),
    "missing tolerances": (_delete("tolerances"), ("it lacks tolerances",)),
    "missing inputs": (_delete("model/inputs"), ("it lacks model.inputs",)),
    "output without a name": (_delete("model/outputs/1/name"), ("it lacks model.outputs[1].name",)),
    "null name": (_set("name", None), ("name must be a string, not NoneType",)),
}

# rules beyond types: from_dict refuses them (the schema, which holds types only, does not)
VALUE_ERRORS: dict[str, tuple[Mutation, tuple[str, ...]]] = {
    "negative tolerance": (
        _set("tolerances/probabilities/atol", -1e-6),
        ("the tolerance of 'probabilities' must be finite and not negative",),
    ),
    "nan tolerance": (_set("tolerances/probabilities/rtol", float("nan")), ("tolerance of 'probabilities'",)),
    "infinite tolerance": (_set("tolerances/label/atol", float("inf")), ("tolerance of 'label'",)),
    "unknown label rule": (_set("tolerances/label/labels", "fuzzy"), ("label rule of 'label' is 'fuzzy'",)),
    "unknown output kind": (
        _set("model/outputs/1/kind", "logits"),
        ("output 'probabilities' has kind 'logits'", "label, probabilities, value"),
    ),
    "output without a kind": (_delete("model/outputs/0/kind"), ("output 'label' has kind None",)),
    "output without a tolerance": (_delete("tolerances/label"), ("output 'label' has no tolerance",)),
    "non-hex file hash": (_set("files/hardware.json", "z" * 64), ("the hash of 'hardware.json'", "sha256")),
    "upper-case file hash": (_set("files/hardware.json", sha(2).upper()), ("the hash of 'hardware.json'",)),
    "short file hash": (_set("files/hardware.json", sha(2)[:40]), ("the hash of 'hardware.json'",)),
    "format 0": (_set("format", 0), ("format 0 does not exist",)),
    "no outputs": (_set("model/outputs", []), ("no inputs or no outputs",)),
    "output named twice": (_set("model/outputs/1/name", "label"), ("names a tensor twice",)),
    "negative threads": (_set("runtime/session/inter_op_num_threads", -2), ("thread counts",)),
    "unknown optimisation level": (
        _set("runtime/session/graph_optimization_level", "ORT_TURBO"),
        ("ORT_TURBO/ORT_SEQUENTIAL are unknown",),
    ),
    "no reference rows": (_set("reference/rows", 0), ("the reference holds no rows",)),
    "model file not hashed": (
        _set("model/file", "/tmp/elsewhere.onnx"),
        ("model.file '/tmp/elsewhere.onnx' is not among the hashed files",),
    ),
    "external data not hashed": (
        _set("model/files", ["model.onnx", "model.onnx.data"]),
        ("model.files[1] 'model.onnx.data' is not among the hashed files",),
    ),
    "reference outside the package": (
        _set("reference/outputs", "../outputs.npz"),
        ("reference.outputs '../outputs.npz' is not among the hashed files",),
    ),
    "model file not among the model's files": (
        _set("model/files", ["reference/inputs.npz"]),
        ("model.file 'model.onnx' is not among model.files",),
    ),
}


@pytest.mark.parametrize("case", sorted(TYPE_ERRORS) + sorted(VALUE_ERRORS))
def test_corrupt_manifests_are_refused_in_one_sentence_naming_the_field(case: str) -> None:
    mutate, words = {**TYPE_ERRORS, **VALUE_ERRORS}[case]
    data = manifest_dict()
    mutate(data)
    with pytest.raises(IntegrityError) as caught:
        Manifest.from_dict(data, "pkg/mlpack.json")
    assert caught.value.exit_code == 3
    assert_one_sentence(caught.value.message, "pkg/mlpack.json is corrupt", *words)


@pytest.mark.parametrize("value", [[], "manifest", 3, None])
def test_a_manifest_that_is_no_object_is_refused(value: Any) -> None:
    with pytest.raises(IntegrityError) as caught:
        Manifest.from_dict(value)
    assert_one_sentence(caught.value.message, "mlpack.json is corrupt: it is not a JSON object")


def test_a_newer_format_needs_a_newer_mlpack() -> None:
    data = manifest_dict()
    data["format"] = FORMAT + 1
    with pytest.raises(RuntimeEnvironmentError) as caught:
        Manifest.from_dict(data, "pkg/mlpack.json")
    assert caught.value.exit_code == 4
    assert (
        caught.value.message
        == "pkg/mlpack.json uses package format 2; this mlpack reads format 1: upgrade mlpack."
    )


def test_a_newer_format_is_reported_even_when_its_fields_are_unknown() -> None:
    with pytest.raises(RuntimeEnvironmentError):
        Manifest.from_dict({"format": 7, "everything": "else changed"})


def test_unknown_top_level_keys_are_tolerated_but_not_written_back() -> None:
    data = manifest_dict()
    data["future_field"] = {"x": 1}
    written = Manifest.from_dict(data).to_dict()
    assert "future_field" not in written
    assert written == manifest_dict()


# ---- the published JSON Schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def test_the_published_schema_is_what_the_types_give_now() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "docs/manifest-format-1.schema.json is stale: regenerate it from mlpack.manifest.json_schema()"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/Manifest"
    assert set(schema["$defs"]["Manifest"]["required"]) == {
        "format", "name", "version", "model", "reference", "runtime", "tolerances", "files",
    }  # fmt: skip


def test_schema_descriptions_are_docstrings_or_names_never_generated_signatures() -> None:
    for name, definition in json_schema()["$defs"].items():
        description = definition["description"]
        assert description and not description.startswith(f"{name}("), (name, description)
    assert json_schema()["$defs"]["Tolerance"]["description"] == "Tolerance"
    assert json_schema()["$defs"]["SessionSettings"]["description"].startswith("Everything that selects kernels")


def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_real_and_hand_written_manifests_validate_against_the_schema(built: Path) -> None:
    check = validator()
    for data in (json.loads((built / "mlpack.json").read_text()), manifest_dict(), minimal_dict()):
        errors = [error.message for error in check.iter_errors(data)]
        assert errors == []


@pytest.mark.parametrize("case", sorted(TYPE_ERRORS))
def test_the_schema_refuses_what_from_dict_refuses_for_its_type(case: str) -> None:
    mutate, _ = TYPE_ERRORS[case]
    data = manifest_dict()
    mutate(data)
    assert not validator().is_valid(data)


def test_the_schema_refuses_unknown_keys_inside_a_section() -> None:
    data = manifest_dict()
    data["runtime"]["session"]["turbo"] = True
    assert not validator().is_valid(data)
    data = manifest_dict()
    data["source"]["any_detail"] = [1, 2]  # converter details sit beside the fixed source fields
    data["top_level_future_field"] = 1
    assert validator().is_valid(data)


# ---- the CLI on a hostile manifest


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlpack", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mlpack: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def replace_manifest(package: Path, mutate: Mutation) -> None:
    data = json.loads((package / "mlpack.json").read_text())
    mutate(data)
    (package / "mlpack.json").write_text(json.dumps(data, indent=2))


def test_verify_accepts_the_untouched_package(package: Path) -> None:
    result = verify(package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: identical" in result.stdout


@pytest.mark.parametrize("case", ["files as a list", "shape with a float", "missing reference"])
def test_verify_refuses_a_hostile_manifest_with_exit_3_and_one_line(package: Path, case: str) -> None:
    mutate, words = TYPE_ERRORS[case]
    replace_manifest(package, mutate)
    result = verify(package)
    assert result.returncode == 3, result.stdout + result.stderr
    line = error_line(result)
    assert "is corrupt" in line and str(package / "mlpack.json") in line
    for word in words:
        assert word in line


def test_verify_refuses_an_impossible_value_with_exit_3(package: Path) -> None:
    replace_manifest(package, _set("tolerances/probabilities/atol", -1.0))
    result = verify(package)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the tolerance of 'probabilities' must be finite and not negative" in error_line(result)


def test_verify_refuses_a_model_file_outside_the_package(package: Path, tmp_path: Path) -> None:
    """A manifest must not point verify at an unhashed model elsewhere and still report identical outputs."""
    elsewhere = tmp_path / "elsewhere.onnx"
    shutil.move(package / "model.onnx", elsewhere)

    def point_outside(data: dict[str, Any]) -> None:
        data["model"]["file"] = str(elsewhere)
        data["model"]["files"] = [str(elsewhere)]
        del data["files"]["model.onnx"]

    replace_manifest(package, point_outside)
    result = verify(package)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"model.file '{elsewhere}' is not among the hashed files" in error_line(result)


def test_verify_refuses_a_manifest_that_is_not_json(package: Path) -> None:
    (package / "mlpack.json").write_text('{"format": 1, "name": ')
    result = verify(package)
    assert result.returncode == 3
    assert "is corrupt: JSONDecodeError" in error_line(result)


def test_verify_of_a_newer_format_exits_4(package: Path) -> None:
    replace_manifest(package, _set("format", 2))
    result = verify(package)
    assert result.returncode == 4
    assert "uses package format 2; this mlpack reads format 1: upgrade mlpack." in error_line(result)
