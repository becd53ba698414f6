"""mlpack serve against real clients: tritonclient (JSON and binary tensors) and plain HTTP."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

import mlpack
from mlpack.errors import IntegrityError, UsageError
from mlpack.fileio import load_npz


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)

    def wait_ready(self, timeout: float = 60) -> requests.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get("/v2/health/ready")
            pending = {"loading", "verifying"} & set(response.json().get("models", {}).values())
            if response.status_code == 200 or not pending:
                return response
            time.sleep(0.1)
        raise AssertionError("the server never settled")


Start = Callable[..., Server]


@pytest.fixture
def start() -> Iterator[Start]:
    processes: list[subprocess.Popen[str]] = []

    def run(*args: Any) -> Server:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpack", "serve", *map(str, args), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        processes.append(process)
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line + process.stderr.read()
        return Server(process, match.group(1))

    yield run
    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_health_metadata_and_json_inference(package: Path, start: Start) -> None:
    server = start(package)
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.wait_ready().json() == {"ready": True}
    assert server.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = server.get("/v2/models/forest").json()
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert server.get("/v2/models/forest/versions/1").json() == meta
    assert server.get("/v2/models/forest/ready").json()["ready"] is True

    inputs, outputs = load_npz(package / "reference/inputs.npz"), load_npz(package / "reference/outputs.npz")
    X = inputs["X"][:5]
    body = {
        "id": "r1",
        "inputs": [{"name": "X", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}],
    }
    for path in ("/v2/models/forest/infer", "/v2/models/forest/versions/1/infer"):
        answer = server.post(path, json=body).json()
        assert answer["id"] == "r1" and answer["model_name"] == "forest" and answer["model_version"] == "1"
        got = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
        assert np.array_equal(got["label"], outputs["label"][:5])
        assert np.array_equal(got["probabilities"].astype(np.float32), outputs["probabilities"][:5])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_unchanged(package: Path, start: Start, binary: bool) -> None:
    server = start(package)
    server.wait_ready()
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("forest")
    metadata = client.get_model_metadata("forest")
    assert metadata["inputs"][0]["datatype"] == "FP32"
    X = load_npz(package / "reference/inputs.npz")["X"]
    expected = load_npz(package / "reference/outputs.npz")
    tensor = httpclient.InferInput("X", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    result = client.infer("forest", [tensor], outputs=wanted, request_id="t1")
    assert result.get_response()["id"] == "t1"
    assert np.array_equal(result.as_numpy("label"), expected["label"])
    assert np.array_equal(result.as_numpy("probabilities"), expected["probabilities"])  # bit for bit


def test_keep_alive_requests_answer_without_delayed_ack_stalls(package: Path, start: Start) -> None:
    """Headers and body in one packet with Nagle off: a 40 ms delayed-ACK stall per request would show here."""
    import http.client

    server = start(package)
    server.wait_ready()
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps(
        {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    )
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        connection.request("POST", "/v2/models/forest/infer", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["outputs"][0]["data"] == [0]
        timings.append(time.perf_counter() - started)
    connection.close()
    assert sorted(timings)[len(timings) // 2] < 0.02, timings


def test_bad_requests_get_json_errors_and_the_server_keeps_serving(package: Path, start: Start) -> None:
    server = start(package, "--max-body-bytes", "4096")
    server.wait_ready()
    infer = "/v2/models/forest/infer"
    good = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}

    def tensor(**changes: Any) -> dict[str, Any]:
        return {"inputs": [{**good["inputs"][0], **changes}]}

    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v2/models/nope/infer", {"json": good}, 404, "Unknown model 'nope'"),
        ("/v2/models/forest/versions/9/infer", {"json": good}, 404, "no version '9'"),
        (infer, {"data": b"{not json"}, 400, "not valid JSON"),
        (infer, {"json": {"inputs": "X"}}, 400, "'inputs' list"),
        (infer, {"json": tensor(name="Y")}, 400, "Unknown input 'Y'"),
        (infer, {"json": tensor(shape=[1, 3], data=[1, 2, 3])}, 400, "must have shape"),
        (infer, {"json": tensor(datatype="FP64")}, 400, "must have datatype FP32"),
        (infer, {"json": tensor(shape=[2, 4])}, 400, "has 4 elements; shape [2, 4] needs 8"),
        (infer, {"json": tensor(data=["a", "b", "c", "d"])}, 400, "not FP32"),
        (infer, {"json": {"inputs": []}}, 400, "Missing input 'X'"),
        (infer, {"json": {**good, "outputs": [{"name": "nope"}]}}, 400, "Unknown output 'nope'"),
        (infer, {"data": b"x" * 5000}, 413, "limit is 4096"),
        ("/v2/nothing", {"json": good}, 404, "No such endpoint"),
    ]
    for path, kwargs, status, message in cases:
        response = server.post(path, **kwargs)
        assert response.status_code == status, (path, response.text)
        assert message in response.json()["error"], response.text
        assert server.post(infer, json=good).status_code == 200  # still serving
    only = server.post(infer, json={**good, "outputs": [{"name": "label"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]


def test_not_ready_when_start_up_verification_fails(package: Path, start: Start) -> None:
    """Golden outputs that this machine does not reproduce: the server says why and never becomes ready."""
    from mlpack.fileio import canonical_json, npz_bytes, sha256_file

    outputs = load_npz(package / "reference/outputs.npz")
    outputs["probabilities"][0, 0] += 0.5
    (package / "reference/outputs.npz").write_bytes(npz_bytes(outputs))
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["reference/outputs.npz"] = sha256_file(package / "reference/outputs.npz")
    (package / "mlpack.json").write_bytes(canonical_json(manifest))

    server = start(package)
    ready = server.wait_ready()
    assert ready.status_code == 503
    assert "mismatch" in ready.json()["models"]["forest"]
    assert server.get("/v2/health/live").status_code == 200
    answer = server.post("/v2/models/forest/infer", json={"inputs": []})
    assert answer.status_code == 503 and "not ready" in answer.json()["error"]
    skipped = start(package, "--no-verify-on-start")
    assert skipped.wait_ready().status_code == 200


def test_a_folder_of_packages_with_two_workers(built: Path, pipeline: Any, iris: Any, tmp_path: Path,
                                               start: Start) -> None:  # fmt: skip
    folder = tmp_path / "models"
    shutil.copytree(built, folder / built.name)
    mlpack.build(pipeline, sample=iris[0][:10], name="pipe", out=folder, resolve=False)
    server = start(folder, "--workers", "2")
    assert server.wait_ready().status_code == 200
    names = {"forest", "pipe"}
    for name in names:
        assert server.get(f"/v2/models/{name}/ready").json()["ready"] is True
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [6.7, 3.0, 5.2, 2.3]}]}
    labels = {server.post(f"/v2/models/{name}/infer", json=body).json()["outputs"][0]["data"][0] for name in names}
    assert labels == {2}
    worker_pids = {server.post("/v2/models/pipe/infer", json=body).headers.get("Connection") for _ in range(4)}
    assert worker_pids  # answered repeatedly across workers


def test_serve_refuses_what_it_cannot_serve(tmp_path: Path, package: Path, start: Start) -> None:
    (tmp_path / "empty").mkdir()
    empty = subprocess.run([sys.executable, "-m", "mlpack", "serve", str(tmp_path / "empty")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert empty.returncode == 2 and "neither an mlpack package nor a folder of packages" in empty.stderr
    (package / "model.onnx").write_bytes(b"changed")
    server = start(package)
    ready = server.wait_ready()
    assert ready.status_code == 503 and "model.onnx (changed)" in ready.json()["models"]["forest"]


def test_load_and_predict(package: Path) -> None:
    model = mlpack.load(package)
    X = load_npz(package / "reference/inputs.npz")["X"]
    expected = load_npz(package / "reference/outputs.npz")
    result = model.predict({"X": X})
    assert np.array_equal(result["label"], expected["label"])
    assert np.array_equal(model.predict(X, outputs=["probabilities"])["probabilities"], expected["probabilities"])
    with pytest.raises(UsageError, match="must be float32"):
        model.predict({"X": X.astype(np.float64)})
    with pytest.raises(UsageError, match="Unknown input 'Y'"):
        model.predict({"Y": X})
    (package / "hardware.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"hardware\.json"):
        mlpack.load(package)
