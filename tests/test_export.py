"""Exports: the Triton config read by Triton's own protobuf, the exported model run in onnxruntime, and KServe
manifests written as YAML that every YAML reader takes the same way."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

import mlpack
from mlpack.errors import IntegrityError, UsageError
from mlpack.export import export_triton, kserve_manifest, service_name, to_yaml, triton_config
from mlpack.fileio import load_npz
from mlpack.manifest import SessionSettings, TensorSpec
from mlpack.package import INPUTS, MODEL, OUTPUTS, Package, open_package
from mlpack.reference import open_session, run
from tests import kserve_crd
from tests.conftest import CliRunner


@pytest.fixture(scope="module")
def model_config() -> ModuleType:
    """Triton's ModelConfig protobuf, loaded from its file: ``import tritonclient.grpc`` needs grpcio."""
    spec = importlib.util.find_spec("tritonclient")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse(text: str, model_config: ModuleType) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(text, model_config.ModelConfig())


def tensors(entries: Any, model_config: ModuleType) -> list[tuple[str, str, list[int], list[int] | None]]:
    return [
        (t.name, model_config.DataType.Name(t.data_type), list(t.dims), list(t.reshape.shape) if t.HasField("reshape") else None)
        for t in entries
    ]  # fmt: skip


def assert_reproduces_reference(model_file: Path, package: Package) -> None:
    """The exported bytes, run with the recorded session options, give the golden outputs bit for bit."""
    actual = run(open_session(model_file, package.manifest.runtime.session), load_npz(package.path / INPUTS))
    expected = load_npz(package.path / OUTPUTS)
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


# ---- Triton


def test_triton_repository_matches_the_package(built: Path, tmp_path: Path, model_config: ModuleType) -> None:
    folder = export_triton(built, tmp_path / "repo")
    assert folder == tmp_path / "repo" / "forest"
    assert os.listdir(tmp_path / "repo") == ["forest"]  # no partial folder left beside it
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
    ]
    assert (folder / "1" / MODEL).read_bytes() == (built / MODEL).read_bytes()

    config = parse((folder / "config.pbtxt").read_text(), model_config)
    package = open_package(built)
    assert (config.name, config.platform, config.max_batch_size) == ("forest", "onnxruntime_onnx", 1024)
    # the batch axis leaves dims; the [batch] label becomes [batch, 1] for clients, reshaped for the model
    assert tensors(config.input, model_config) == [("X", "TYPE_FP32", [4], None)]
    assert tensors(config.output, model_config) == [
        ("label", "TYPE_INT64", [1], []),
        ("probabilities", "TYPE_FP32", [3], None),
    ]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {
        "mlpack.digest": package.digest,
        "mlpack.name": "forest",
        "mlpack.version": "1",
        "mlpack.exported_by": f"mlpack {mlpack.__version__}",
        "intra_op_thread_count": "1",  # the recorded session options, replayed by Triton's onnxruntime backend
        "inter_op_thread_count": "1",
        "execution_mode": "0",
    }
    assert [model_config.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_CPU"]
    assert not config.HasField("optimization")  # ORT_ENABLE_ALL is the backend's default
    assert not config.HasField("dynamic_batching")  # merged requests could change a row's answer
    assert_reproduces_reference(folder / "1" / MODEL, package)


def test_triton_config_follows_shapes_types_and_session_options(built: Path, model_config: ModuleType) -> None:
    package = open_package(built)
    manifest = package.manifest
    unbatched = triton_config(package, max_batch_size=0)
    config = parse(unbatched, model_config)
    assert config.max_batch_size == 0
    assert tensors(config.input, model_config) == [("X", "TYPE_FP32", [-1, 4], None)]
    assert [list(t.dims) for t in config.output] == [[-1], [-1, 3]]

    fixed = replace(manifest.model, inputs=(TensorSpec('x "1"\n', "tensor(double)", (1, "features")),))
    session = SessionSettings(graph_optimization_level="ORT_DISABLE_ALL", execution_mode="ORT_PARALLEL",
                              intra_op_num_threads=4, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))  # fmt: skip
    runtime = replace(manifest.runtime, session=session)
    odd = replace(package, manifest=replace(manifest, model=fixed, runtime=runtime))
    config = parse(triton_config(odd), model_config)
    assert config.max_batch_size == 0  # a fixed first dimension: Triton must not batch it
    assert tensors(config.input, model_config) == [('x "1"\n', "TYPE_FP64", [1, -1], None)]
    assert config.optimization.graph.level == 2  # the backend's "disable all"
    assert config.parameters["execution_mode"].string_value == "1"
    assert config.parameters["intra_op_thread_count"].string_value == "4"
    assert [model_config.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_GPU"]

    with pytest.raises(UsageError, match="cannot batch"):
        triton_config(odd, max_batch_size=8)
    sequence = replace(
        manifest.model, outputs=(TensorSpec("zipmap", "seq(map(int64,tensor(float)))", (), "value"),)
    )
    with pytest.raises(UsageError, match="only tensors"):
        triton_config(replace(package, manifest=replace(manifest, model=sequence)))


def test_tampered_package_is_refused_and_nothing_is_written(package: Path, tmp_path: Path) -> None:
    data = bytearray((package / OUTPUTS).read_bytes())
    data[len(data) // 2] ^= 1
    (package / OUTPUTS).write_bytes(bytes(data))
    (package / "notes.txt").write_text("added")
    with pytest.raises(IntegrityError) as caught:
        export_triton(package, tmp_path / "repo")
    assert "reference/outputs.npz (changed)" in caught.value.message
    assert "notes.txt (extra)" in caught.value.message
    assert not (tmp_path / "repo").exists()
    with pytest.raises(IntegrityError):
        kserve_manifest(package, storage_uri="s3://bucket/models")


def test_existing_target_needs_force(built: Path, tmp_path: Path) -> None:
    folder = export_triton(built, tmp_path)
    (folder / "stale.txt").write_text("from an older export")
    with pytest.raises(UsageError) as caught:
        export_triton(built, tmp_path)
    message = caught.value.message
    assert "already exists" in message and "--force" in message and "\n" not in message
    assert (folder / "stale.txt").exists()  # refused: untouched
    assert export_triton(built, tmp_path, force=True) == folder
    assert not (folder / "stale.txt").exists()
    assert os.listdir(tmp_path) == ["forest"]
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        export_triton(built, tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "forest").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        export_triton(built, tmp_path / "other", force=True)


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package with string inputs and string labels (a ColumnTransformer over a DataFrame)."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 60), "city": rng.choice(["paris", "lyon", "nice"], 60)})
    labels = np.where(frame.age > 40, "churn", "stay")
    columns = ColumnTransformer([("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["city"])])
    model = make_pipeline(columns, LogisticRegression()).fit(frame, labels)
    out = tmp_path_factory.mktemp("churn")
    return mlpack.build(model, sample=frame, name="Churn_Model", version="2.1", out=out, resolve=False).path


def test_string_inputs_and_labels(churn: Path, tmp_path: Path, model_config: ModuleType) -> None:
    folder = export_triton(churn, tmp_path)
    config = parse((folder / "config.pbtxt").read_text(), model_config)
    assert config.name == "Churn_Model" and config.max_batch_size == 1024
    assert tensors(config.input, model_config) == [
        ("age", "TYPE_FP32", [1], None),
        ("city", "TYPE_STRING", [1], None),
    ]
    assert tensors(config.output, model_config)[0] == ("label", "TYPE_STRING", [1], [])
    assert_reproduces_reference(folder / "1" / MODEL, open_package(churn))


def test_external_data_travels_with_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("MLPACK_EXTERNAL_DATA_BYTES", "1000")  # this MLP's weights count as "large"
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(4, 128), torch.nn.ReLU(), torch.nn.Linear(128, 3)
    ).eval()  # tensors > 1 KiB
    sample = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    package = mlpack.build(mlp, sample=sample, name="mlp", out=tmp_path / "dist", resolve=False)
    assert package.manifest.to_dict()["model"]["files"] == [MODEL, "model.onnx.data"]
    folder = export_triton(package.path, tmp_path / "repo")
    for name in package.manifest.to_dict()["model"]["files"]:
        assert (folder / "1" / name).read_bytes() == (package.path / name).read_bytes()
    assert_reproduces_reference(folder / "1" / MODEL, package)  # onnxruntime finds the data beside the graph


# ---- KServe


def test_kserve_manifest_for_a_modelcar_image(built: Path) -> None:
    manifest = kserve_manifest(built, image="registry.example.com/team/forest:1")
    digest = open_package(built).digest
    assert manifest == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "forest",
            "labels": {"mlpack/name": "forest", "mlpack/version": "1"},
            "annotations": {
                "mlpack/digest": digest,
                "mlpack/name": "forest",
                "mlpack/version": "1",
                "mlpack/exported-by": f"mlpack {mlpack.__version__}",
            },
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "protocolVersion": "v2",
                    "storageUri": "oci://registry.example.com/team/forest:1",
                    "runtime": "mlpack-forest",  # the image serves itself: its ClusterServingRuntime
                }
            }
        },
    }
    assert kserve_manifest(built, image="oci://registry.example.com/team/forest:1") == manifest
    assert to_yaml(manifest) == (
        "apiVersion: serving.kserve.io/v1beta1\n"
        "kind: InferenceService\n"
        "metadata:\n"
        "  name: forest\n"
        "  labels:\n"
        "    mlpack/name: forest\n"
        '    mlpack/version: "1"\n'  # quoted, or YAML would read the number 1
        "  annotations:\n"
        f"    mlpack/digest: {digest}\n"
        "    mlpack/name: forest\n"
        '    mlpack/version: "1"\n'
        f'    mlpack/exported-by: "mlpack {mlpack.__version__}"\n'
        "spec:\n"
        "  predictor:\n"
        "    model:\n"
        "      modelFormat:\n"
        "        name: onnx\n"
        "      protocolVersion: v2\n"
        "      storageUri: oci://registry.example.com/team/forest:1\n"
        "      runtime: mlpack-forest\n"
    )


def test_kserve_manifest_for_a_storage_uri_with_a_derived_name(churn: Path) -> None:
    manifest = kserve_manifest(churn, storage_uri="s3://models/triton")
    model = manifest["spec"]["predictor"]["model"]
    assert model == {"modelFormat": {"name": "onnx"}, "protocolVersion": "v2", "storageUri": "s3://models/triton"}
    assert manifest["metadata"]["name"] == "churn-model"  # Churn_Model, made a valid Kubernetes name
    assert manifest["metadata"]["labels"] == {"mlpack/name": "Churn_Model", "mlpack/version": "2.1"}
    assert kserve_manifest(churn, storage_uri="gs://b/m", name="churn-v2")["metadata"]["name"] == "churn-v2"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("forest", "forest"), ("Churn_Model.v2", "churn-model-v2"), ("3d-unet", "model-3d-unet"), ("a" * 80, "a" * 53),
     ("x--", "x"), ("___", "model")],
)  # fmt: skip
def test_service_names_are_valid_kubernetes_names(given: str, expected: str) -> None:
    name = service_name(given)
    assert name == expected
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 53


def test_kserve_usage_errors(built: Path) -> None:
    for kwargs in ({}, {"image": "r/forest:1", "storage_uri": "s3://b/m"}):
        with pytest.raises(UsageError, match=r"exactly one of --image .* or --storage-uri"):
            kserve_manifest(built, **kwargs)
    for kwargs in ({"image": "has space:1"}, {"image": ""}, {"storage_uri": "models/forest"}, {"storage_uri": ""}):
        with pytest.raises(UsageError, match="is not"):
            kserve_manifest(built, **kwargs)
    with pytest.raises(UsageError, match=r"not a valid InferenceService name.*'my-model'"):
        kserve_manifest(built, image="r/forest:1", name="My_Model")


# ---- YAML

TRICKY = ["yes", "No", "on", "OFF", "y", "true", "null", "~", "", " lead", "trail ", "1", "1.0", "0x1F", "1e3",
          "1:20", "2024-01-01", ".inf", "-", "- item", "a: b", "a #b", "#c", "key:", "@at", "*ref", "&anchor", "!tag",
          "%d", "|", ">", "'q'", '"q"', "multi\nline", "tab\there", "ünï", "emoji 😀", "line\u2028sep", "nul\0",
          "{a}", "[1]", "?", ",", "=", "<<", "oci://r:5000/m:1", "sha256:ab", "/models", "plain_word"]  # fmt: skip


def test_to_yaml_quotes_what_yaml_would_misread() -> None:
    lines = to_yaml({"values": TRICKY}).splitlines()
    assert lines[0] == "values:"
    for value, line in zip(TRICKY, lines[1:], strict=True):
        literal = line.removeprefix("  - ")
        if literal.startswith('"'):
            assert json.loads(literal) == value  # the double-quoted form reads the same as JSON
        else:
            assert literal == value and re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./:@+-]*", value)
            assert value.lower() not in {"yes", "no", "on", "off", "y", "n", "true", "false", "null"}
    assert [line.removeprefix("  - ") for line in lines[-4:]] == [
        "oci://r:5000/m:1",
        "sha256:ab",
        "/models",
        "plain_word",
    ]


def test_to_yaml_structure_and_scalars() -> None:
    data = {"a": [1, 2.5, 1e-05, True, None, {"b": [], "c": {}}], "d": [[1, 2], ()], "e": {"f": {"g": "h"}},
            "t": ("x", "y")}  # fmt: skip
    assert to_yaml(data) == (
        "a:\n  - 1\n  - 2.5\n  - 1.0e-05\n  - true\n  - null\n  - b: []\n    c: {}\n"
        'd:\n  - - 1\n    - 2\n  - []\ne:\n  f:\n    g: h\nt:\n  - x\n  - "y"\n'  # YAML 1.1 reads a bare y as true
    )
    assert to_yaml({"nan": float("nan"), "inf": float("-inf")}) == "nan: .nan\ninf: -.inf\n"
    assert to_yaml([]) == "[]\n" and to_yaml("1") == '"1"\n'
    with pytest.raises(TypeError):
        to_yaml({1: "int key"})
    with pytest.raises(TypeError):
        to_yaml({"set": {1}})


def test_to_yaml_round_trips_through_pyyaml(built: Path) -> None:
    """Where PyYAML (YAML 1.1, the strictest reader about plain words) is installed, it reads back the data."""
    import yaml

    data: dict[str, Any] = {"values": TRICKY, "numbers": [0, -3, 2.5, 1e-05, 1e20, True, False, None]}
    data["manifest"] = kserve_manifest(built, image="registry.example.com/forest:1")
    assert yaml.safe_load(to_yaml(data)) == data


def test_exports_through_the_cli(package: Path, tmp_path: Path, cli: CliRunner) -> None:
    result = cli("export", "triton", package, tmp_path / "repo", "--json")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "forest" / "config.pbtxt").is_file()
    assert (tmp_path / "repo" / "forest" / "1" / "model.onnx").read_bytes() == (
        package / "model.onnx"
    ).read_bytes()
    again = cli("export", "triton", package, tmp_path / "repo")
    assert again.returncode == 2 and "--force" in again.stderr
    yaml_text = cli("export", "kserve", package, "--image", "127.0.0.1:5000/forest:1")
    assert yaml_text.returncode == 0
    assert (
        "storageUri: oci://127.0.0.1:5000/forest:1" in yaml_text.stdout
        or '"oci://127.0.0.1:5000/forest:1"' in yaml_text.stdout
    )
    assert "protocolVersion: v2" in yaml_text.stdout
    neither = cli("export", "kserve", package)
    assert neither.returncode == 2 and "Traceback" not in neither.stderr


# ---- KServe runtime and verify Jobs, checked against the Kubernetes API's own models (the kubernetes client
# deserialises with client-side validation; a round trip that drops nothing means every field is one it knows)


def k8s_round_trip(document: dict[str, Any], kind: str) -> None:
    from kubernetes.client import ApiClient

    client = ApiClient()
    parsed = client.deserialize(json.dumps(document), kind, "application/json")
    assert client.sanitize_for_serialization(parsed) == document  # type: ignore[no-untyped-call]


def test_kserve_for_an_image_is_a_runtime_that_serves_it_and_a_service_naming_it(
    built: Path, cli: CliRunner
) -> None:
    import requests

    done = cli("export", "kserve", built, "--image", "registry.example.com/team/forest:1", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["kind"] == "List"
    runtime, service = listing["items"]
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ClusterServingRuntime")
    assert kserve_crd.problems(runtime) == [] and kserve_crd.problems(service) == []
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    assert (
        runtime["spec"]["supportedModelFormats"][0]["name"]
        == service["spec"]["predictor"]["model"]["modelFormat"]["name"]
    )
    (container,) = runtime["spec"]["containers"]
    k8s_round_trip(container, "V1Container")
    with pytest.raises(AssertionError):  # the check is not vacuous: a misspelt field does not survive it
        k8s_round_trip({**container, "readinesProbe": container["readinessProbe"]}, "V1Container")
    k8s_round_trip({"apiVersion": "v1", "kind": "Pod", "metadata": runtime["metadata"],
                    "spec": {"containers": [container]}}, "V1Pod")  # fmt: skip
    assert container["image"] == "registry.example.com/team/forest:1"
    # the probes ask what mlpack serve answers, on the port it listens on in the image
    from mlpack.container.contract import PORT

    assert container["ports"] == [{"containerPort": PORT, "protocol": "TCP"}]
    server = subprocess.Popen([sys.executable, "-m", "mlpack", "serve", str(built), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        url = next(m[0] for line in server.stdout if (m := re.search(r"http://[0-9.]+:[0-9]+", line)))
        for probe in ("readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            deadline = time.monotonic() + 60
            while (
                answer := requests.get(url + path, timeout=5)
            ).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert answer.status_code == 200, (probe, path, answer.text)
    finally:
        server.terminate()
        server.wait(timeout=30)
    yaml_text = cli("export", "kserve", built, "--image", "registry.example.com/team/forest:1").stdout
    documents = [yaml.safe_load(part) for part in yaml_text.split("---\n")]
    assert documents == listing["items"]  # the YAML stream kubectl applies is the same two documents


def test_kserve_documents_pass_kserves_own_crds_and_the_check_has_teeth(built: Path, churn: Path) -> None:
    """Both forms, checked against KServe's generated CRDs (tests/data/kserve) with the API server's rules;
    then the documents spoilt as a hand edit would spoil them, each refused for its own reason."""
    from mlpack.export import kserve_documents

    documents = [*kserve_documents(built, image="registry.example.com/team/forest:1"),
                 *kserve_documents(churn, storage_uri="s3://models/triton", name="churn-v2")]  # fmt: skip
    assert [d["kind"] for d in documents] == ["ClusterServingRuntime", "InferenceService", "InferenceService"]
    for document in documents:
        assert kserve_crd.problems(document) == [], document["kind"]
    runtime, service = json.loads(json.dumps(documents[:2]))
    container = runtime["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    container["ports"].append({"containerPort": container["ports"][0]["containerPort"]})  # TCP by default
    container["resources"]["limits"]["memory"] = "2 GB"
    runtime["spec"]["supportedModelFormats"][0]["priority"] = 0
    service["spec"]["predictor"]["model"]["storageURI"] = service["spec"]["predictor"]["model"].pop("storageUri")
    service["metadata"]["name"] = "9-forest"
    service["metadata"]["labels"]["mlpack/name"] = "two words"
    found = kserve_crd.problems(runtime) + kserve_crd.problems(service)
    expected = ["'readinesProbe' was unexpected", "duplicate entry for keys", "limits.memory: '2 GB' does not match",
                "priority: 0 is less than the minimum", "'storageURI' was unexpected", "not a DNS-1035 label",
                "'two words' is not a label value"]  # fmt: skip
    for reason in expected:
        assert sum(reason in problem for problem in found) == 1, (reason, found)
    assert len(found) == len(expected), found


def test_verify_jobs_one_per_node_pool(built: Path, cli: CliRunner) -> None:
    from mlpack.container.contract import VENV_PYTHON, models_dir

    done = cli("export", "verify-job", built, "--image", "registry.example.com/team/forest:1", "--json",
               "--node-pool", "aarch64=kubernetes.io/arch=arm64",
               "--node-pool", "x86-64-v3=node.kubernetes.io/instance-type=m6i.large,topology.kubernetes.io/zone=eu-1a")  # fmt: skip
    assert done.returncode == 0, done.stderr
    arm, x86 = json.loads(done.stdout)["items"]
    for job in (arm, x86):
        k8s_round_trip(job, "V1Job")
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        # the package where the image holds it, verified by the image's own mlpack
        assert container["command"] == [VENV_PYTHON, "-m", "mlpack", "verify", models_dir("forest"), "--json"]
        assert job["metadata"]["annotations"]["mlpack/digest"] == open_package(built).digest
    assert arm["metadata"]["name"] == "verify-forest-aarch64"
    assert arm["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert x86["spec"]["template"]["spec"]["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "m6i.large", "topology.kubernetes.io/zone": "eu-1a"}  # fmt: skip
    oci = cli("export", "verify-job", built, "--image", "r.example/f:1", "--node-pool", "native=pool=a",
              "--python", "/usr/bin/python3", "--json")  # fmt: skip
    assert (
        json.loads(oci.stdout)["items"][0]["spec"]["template"]["spec"]["containers"][0]["command"][0]
        == "/usr/bin/python3"
    )
    for bad in ("aarch64", "aarch64=", "Bad Class=a=b", "x=a=b c"):
        refused = cli("export", "verify-job", built, "--image", "r.example/f:1", "--node-pool", bad)
        assert refused.returncode == 2 and "--node-pool" in refused.stderr, bad
