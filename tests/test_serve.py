"""mlpack serve against real clients: tritonclient (JSON and binary tensors) and plain HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
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
    # each worker verifies and becomes ready on its own: the first answers may be one worker's 503
    labels: list[int] = []
    deadline = time.monotonic() + 60
    while len(labels) < 8 and time.monotonic() < deadline:
        answers = [server.post(f"/v2/models/{name}/infer", json=body) for name in sorted(names)]
        if all(answer.status_code == 200 for answer in answers):
            labels += [answer.json()["outputs"][0]["data"][0] for answer in answers]
        else:
            assert all("not ready" in a.json()["error"] for a in answers if a.status_code != 200), answers
    assert labels == [2] * 8


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
        model.predict({"X": X.astype(np.int32)})  # only the cast the build recorded (float64) is made
    with pytest.raises(UsageError, match="Unknown input 'Y'"):
        model.predict({"Y": X})
    (package / "hardware.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"hardware\.json"):
        mlpack.load(package)


# ---- hardening: hostile requests, framing, non-finite outputs, limits, shutdown, idle connections

GOOD = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def tiny_model(folder: Path, name: str, op: str, elem_type: int, sample: np.ndarray) -> Path:
    """A one-node ONNX model (x -> op -> y, one dynamic axis) packaged into ``folder``."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])], name,
        [helper.make_tensor_value_info("x", elem_type, [None])], [helper.make_tensor_value_info("y", elem_type, [None])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return mlpack.build(
        model.SerializeToString(), sample={"x": sample}, name=name, out=folder, resolve=False, timings=False
    ).path


@pytest.fixture(scope="module")
def hostile(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the many hostile requests: the forest, a string identity, and log(x) (NaN for x < 0)."""
    from onnx import TensorProto

    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(built, folder / built.name)
    tiny_model(folder, "text", "Identity", TensorProto.STRING, np.array(["a", "bc"], dtype=object))
    tiny_model(folder, "logm", "Log", TensorProto.FLOAT, np.array([1.0, 2.0, 3.0], dtype=np.float32))
    tiny_model(folder, "ints", "Identity", TensorProto.INT64, np.array([1, 2], dtype=np.int64))
    tiny_model(folder, "flags", "Identity", TensorProto.BOOL, np.array([True, False]))
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "serve", str(folder), "--port", "0", "--max-elements", "1000",
         "--idle-timeout", "1", "--max-connections", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, line + process.stderr.read()
    server = Server(process, match.group(1))
    assert server.wait_ready().status_code == 200
    yield server
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert "Traceback" not in stderr, stderr


def exchange(server: Server, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it (a socket timeout fails)."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            assert len(received) < 2**20
    return received


def post_head(headers: str, body: bytes = b"") -> bytes:
    return f"POST /v2/models/forest/infer HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (post_head("Content-Length: -1\r\n", b'{"inputs": []}'), 400),
        (post_head("Content-Length: abc\r\n", b'{"inputs": []}'), 400),
        (post_head("Content-Length: 14\r\nContent-Length: 14\r\n", b'{"inputs": []}'), 400),
        (post_head("Transfer-Encoding: chunked\r\n", b'e\r\n{"inputs": []}\r\n0\r\n\r\n'), 411),
    ],
    ids=["negative", "non-numeric", "twice", "chunked"],
)
def test_bad_framing_gets_one_error_and_a_closed_connection(hostile: Server, request_bytes: bytes,
                                                            status: int) -> None:  # fmt: skip
    received = exchange(hostile, request_bytes)
    assert received.count(b"HTTP/1.1 ") == 1, received  # one answer, never a second from a misread body
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"Connection: close" in head, head
    assert "error" in json.loads(body)
    assert hostile.post("/v2/models/forest/infer", json=GOOD).status_code == 200


def binary_request(model: str, tensor: dict[str, Any], blob: bytes) -> tuple[str, dict[str, Any]]:
    head = json.dumps({"inputs": [tensor]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    return f"/v2/models/{model}/infer", {"data": head + blob, "headers": headers}


def forest(**changes: Any) -> tuple[str, dict[str, Any]]:
    return "/v2/models/forest/infer", {"json": {"inputs": [{**GOOD["inputs"][0], **changes}]}}


def text_bytes(blob: bytes, shape: list[int]) -> tuple[str, dict[str, Any]]:
    tensor = {"name": "x", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}
    return binary_request("text", tensor, blob)


def tiny(model: str, datatype: str, data: list[Any]) -> tuple[str, dict[str, Any]]:
    tensor = {"name": "x", "shape": [len(data)], "datatype": datatype, "data": data}
    return f"/v2/models/{model}/infer", {"json": {"inputs": [tensor]}}


X_BLOB = np.ones((1, 4), dtype=np.float32).tobytes()
HOSTILE: dict[str, tuple[str, dict[str, Any]]] = {
    # JSON's own types must be the datatype's: the server never casts a value into another one
    "fp32-given-a-bool": forest(data=[True, 1.0, 1.0, 1.0]),
    "fp32-given-a-numeral-string": forest(data=["70.5", 1.0, 1.0, 1.0]),
    "fp32-given-null": forest(data=[None, 1.0, 1.0, 1.0]),
    "fp32-overflowing": forest(data=[1e300, 1.0, 1.0, 1.0]),
    "int64-given-a-fraction": tiny("ints", "INT64", [1.9, 2]),
    "int64-given-a-bool": tiny("ints", "INT64", [True, 2]),
    "int64-beyond-its-range": tiny("ints", "INT64", [2**70, 2]),
    "bool-given-a-string": tiny("flags", "BOOL", ["false"]),
    "bool-given-a-fraction": tiny("flags", "BOOL", [0.5]),
    "bytes-given-a-number": tiny("text", "BYTES", [5]),
    "input-given-twice": ("/v2/models/forest/infer", {"json": {"inputs": [GOOD["inputs"][0], GOOD["inputs"][0]]}}),
    "binary-data-no-input-claims": binary_request(
        "forest",
        {"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
        X_BLOB + b"more",
    ),
    "binary-data-output-a-string": (
        "/v2/models/forest/infer",
        {"json": {**GOOD, "parameters": {"binary_data_output": "false"}}},
    ),
    "name-list": forest(name=["X"]),
    "name-dict": forest(name={"X": 1}),
    "shape-huge": forest(shape=[2**62, 4]),
    "shape-huge-binary": binary_request(
        "forest",
        {"name": "X", "shape": [2**62, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
        X_BLOB,
    ),
    "shape-bool": forest(shape=[True, 4]),
    "shape-negative": forest(shape=[-1, 4]),
    "shape-float": forest(shape=[1.0, 4]),
    "shape-string": forest(shape="1,4"),
    "tensor-parameters-list": forest(parameters=[1]),
    "tensor-parameters-string": forest(parameters="binary"),
    "request-parameters-list": ("/v2/models/forest/infer", {"json": {**GOOD, "parameters": [1]}}),
    "request-parameters-string": ("/v2/models/forest/infer", {"json": {**GOOD, "parameters": "x"}}),
    "binary-size-string": binary_request(
        "forest",
        {"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": "16"}},
        X_BLOB,
    ),
    "binary-size-negative": binary_request(
        "forest",
        {"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": -16}},
        X_BLOB,
    ),
    "binary-size-past-data": binary_request(
        "forest",
        {"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 99}},
        X_BLOB,
    ),
    "header-length-non-numeric": (
        "/v2/models/forest/infer",
        {"data": json.dumps(GOOD).encode(), "headers": {"Inference-Header-Content-Length": "ten"}},
    ),
    "header-length-negative": (
        "/v2/models/forest/infer",
        {"data": json.dumps(GOOD).encode(), "headers": {"Inference-Header-Content-Length": "-1"}},
    ),
    "output-parameters-list": (
        "/v2/models/forest/infer",
        {"json": {**GOOD, "outputs": [{"name": "label", "parameters": [1]}]}},
    ),
    "output-name-list": ("/v2/models/forest/infer", {"json": {**GOOD, "outputs": [{"name": ["label"]}]}}),
    "outputs-object": ("/v2/models/forest/infer", {"json": {**GOOD, "outputs": {"name": "label"}}}),
    "id-object": ("/v2/models/forest/infer", {"json": {**GOOD, "id": {"a": 1}}}),
    "id-nan": ("/v2/models/forest/infer", {"data": json.dumps(GOOD)[:-1] + ', "id": NaN}'}),
    "nested-100000": (
        "/v2/models/forest/infer",
        {"data": b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"},
    ),
    "nested-data": forest(data=[[[[1.0]]], 2.0, 3.0, 4.0]),
    "bytes-not-utf8": text_bytes(struct.pack("<I", 2) + b"\xff\xfe", [1]),
    "bytes-prefix-past-data": text_bytes(struct.pack("<I", 50) + b"abc", [1]),
    "bytes-prefix-truncated": text_bytes(struct.pack("<I", 1) + b"a" + b"\x01\x00", [2]),
    "bytes-count-mismatch": text_bytes(struct.pack("<I", 1) + b"a", [3]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_get_400_and_the_server_keeps_serving(hostile: Server, case: str) -> None:
    path, kwargs = HOSTILE[case]
    response = hostile.post(path, **kwargs)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"].endswith("."), response.text
    assert hostile.post("/v2/models/forest/infer", json=GOOD).status_code == 200


def test_bytes_inputs_still_round_trip(hostile: Server) -> None:
    blob = struct.pack("<I", 1) + b"a" + struct.pack("<I", 3) + "é!".encode()
    path, kwargs = text_bytes(blob, [2])
    response = hostile.post(path, **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["a", "é!"]


def test_json_null_is_a_missing_string_and_floats_take_the_strings_replies_use(hostile: Server) -> None:
    """A missing string is "" in a package (as in the golden sample), never the text "None"; a float input
    takes "NaN", "Infinity" and "-Infinity", which replies write for values JSON has no number for."""
    path, kwargs = tiny("text", "BYTES", ["a", None, "b"])
    response = hostile.post(path, **kwargs)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == ["a", "", "b"], response.text
    path, kwargs = tiny("logm", "FP32", ["NaN", "Infinity", 1.0])
    response = hostile.post(path, **kwargs)
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == ["NaN", "Infinity", 0.0]
    path, kwargs = tiny("ints", "INT64", [1, -(2**63)])
    assert hostile.post(path, **kwargs).json()["outputs"][0]["data"] == [1, -(2**63)]
    path, kwargs = tiny("flags", "BOOL", [True, False])
    assert hostile.post(path, **kwargs).json()["outputs"][0]["data"] == [True, False]


def test_non_finite_outputs_are_strings_in_json_and_bits_in_binary(hostile: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [-1.0, 0.0, 1.0, float("inf")]}]}
    response = hostile.post("/v2/models/logm/infer", data=json.dumps(body))  # json.dumps writes Infinity
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text.replace('"NaN"', "") and "Infinity" not in response.text.replace(
        '"Infinity"', ""
    ).replace('"-Infinity"', "")
    assert json.loads(response.text, parse_constant=pytest.fail)["outputs"][0]["data"] == [
        "NaN", "-Infinity", 0.0, "Infinity"
    ]  # fmt: skip
    client = httpclient.InferenceServerClient(url=hostile.url.removeprefix("http://"))
    tensor = httpclient.InferInput("x", [4], "FP32")
    tensor.set_data_from_numpy(np.array([-1.0, 0.0, 1.0, np.inf], dtype=np.float32), binary_data=True)
    result = client.infer("logm", [tensor], outputs=[httpclient.InferRequestedOutput("y", binary_data=True)])
    got = result.as_numpy("y")
    assert np.isnan(got[0]) and got[1] == -np.inf and got[2] == 0 and got[3] == np.inf


def test_element_cap_answers_413_from_the_declared_shape(hostile: Server) -> None:
    too_many = hostile.post("/v2/models/forest/infer", json={"inputs": [{**GOOD["inputs"][0], "shape": [251, 4]}]})
    assert too_many.status_code == 413 and "limit is 1000" in too_many.json()["error"], too_many.text
    data = np.ones((250, 4), dtype=np.float32)
    at_cap = {"inputs": [{"name": "X", "shape": [250, 4], "datatype": "FP32", "data": data.ravel().tolist()}]}
    assert hostile.post("/v2/models/forest/infer", json=at_cap).status_code == 200


def test_idle_connections_are_closed_while_others_are_served(hostile: Server) -> None:
    import socket

    host, port = hostile.url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)), timeout=10)
    stalled = socket.create_connection((host, int(port)), timeout=10)
    stalled.sendall(post_head("Content-Length: 100\r\n", b'{"inputs"'))  # a body that never completes
    try:
        started = time.monotonic()
        assert hostile.post("/v2/models/forest/infer", json=GOOD).status_code == 200
        assert idle.recv(1) == b""  # closed by the server after --idle-timeout 1
        answer = b""
        while chunk := stalled.recv(4096):  # a 408, then closed
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer, answer
        assert 0.5 < time.monotonic() - started < 8
    finally:
        idle.close()
        stalled.close()
    assert hostile.post("/v2/models/forest/infer", json=GOOD).status_code == 200


def test_slow_clients_at_the_connection_cap_make_way_for_good_ones(hostile: Server) -> None:
    """50 connections trickling request heads against a cap of 16: the good client is answered every time, and
    the slow connections that waited longest are the ones closed."""
    import socket

    host, port = hostile.url.removeprefix("http://").split(":")
    slow: list[socket.socket] = []
    try:
        for i in range(50):
            connection = socket.create_connection((host, int(port)), timeout=10)
            connection.sendall(b"POST /v2/models/forest/infer HTTP/1.1\r\nHost: x\r\n")  # and never more
            slow.append(connection)
            if i % 10 == 9:
                with requests.Session() as good:  # a fresh connection, as the cap is full of slow ones
                    assert (
                        good.post(hostile.url + "/v2/models/forest/infer", json=GOOD, timeout=10).status_code
                        == 200
                    )
        time.sleep(0.5)
        closed = []
        for connection in slow:
            connection.setblocking(False)
            try:
                closed.append(connection.recv(1) == b"")
            except BlockingIOError:
                closed.append(False)  # still open: nothing to read yet
            except ConnectionResetError:
                closed.append(True)
        assert sum(closed) >= 50 - 16, closed
        assert not any(closed[-10:]), closed  # the newest slow ones are still waiting: the oldest made way
    finally:
        for connection in slow:
            connection.close()
    assert hostile.post("/v2/models/forest/infer", json=GOOD).status_code == 200


def test_a_newcomer_gets_503_when_every_connection_is_busy() -> None:
    """The cap's other branch, on a real server socket: no connection is waiting, so none can make way."""
    import socket

    from mlpack.serving.http import Limits, V2Server
    from mlpack.serving.workers import bind

    listener = bind("127.0.0.1", 0)
    server = V2Server(listener, {}, Limits(max_connections=1))
    port = listener.getsockname()[1]
    with (
        socket.create_connection(("127.0.0.1", port)) as first,
        socket.create_connection(("127.0.0.1", port)) as second,
    ):
        busy, _ = accept(listener)
        assert server._admit(busy)
        server.busy(busy)  # its request is being answered
        newcomer, address = accept(listener)
        server.process_request(newcomer, address)
        second.settimeout(5)
        answer = second.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"busy with a request" in answer, answer
        server.waiting(busy)  # answered: now it may make way for the next newcomer
        third = socket.create_connection(("127.0.0.1", port))
        newest, _ = accept(listener)
        assert server._admit(newest) and server.evicted == 1
        first.settimeout(5)
        assert first.recv(1) == b""  # the waiting one was closed
        for connection in (busy, newest, third):
            connection.close()
    server.server_close()


def test_the_body_budget_makes_large_requests_take_turns() -> None:
    """Two workers' worth of decoding at once: a third large body waits for one to finish, or gets 503."""
    import threading

    from mlpack.serving.http import BodyBudget

    budget = BodyBudget(100)
    assert budget.acquire(60, 1) and budget.acquire(40, 1)
    started = time.monotonic()
    assert not budget.acquire(1, 0.2)  # full: refused after its wait
    assert 0.15 < time.monotonic() - started < 2
    later = threading.Timer(0.2, budget.release, args=(60,))
    later.start()
    assert budget.acquire(60, 5)  # woken by the release
    later.join()
    budget.release(60)
    budget.release(40)
    assert budget.used == 0


def accept(listener: Any) -> tuple[Any, Any]:
    deadline = time.monotonic() + 5
    while True:
        try:
            connection, address = listener.accept()
            return connection, address
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_two_workers_stop_promptly_on_sigterm(package: Path) -> None:
    """Workers sharing a socket: the one that loses the race to accept() must not stay blocked in it."""
    stops = []
    for _ in range(10):
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpack", "serve", str(package), "--port", "0", "--workers", "2",
             "--no-verify-on-start"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            match = re.search(r"listening on (http://\S+)", process.stderr.readline())
            assert match
            server = Server(process, match.group(1))
            answered, deadline = 0, time.monotonic() + 30
            while answered < 2 and time.monotonic() < deadline:  # each worker becomes ready on its own
                answered += server.post("/v2/models/forest/infer", json=GOOD).status_code == 200
            assert answered == 2
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=5)
            stops.append(time.monotonic() - started)
        finally:  # a hung worker outlives its supervisor: kill the whole session this test started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert max(stops) < 5, stops


def test_a_host_beyond_loopback_warns_about_authentication(package: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "serve", str(package), "--host", "0.0.0.0", "--port", "0",
         "--no-verify-on-start"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        warning = process.stderr.readline()
        assert "no authentication" in warning and "proxy or KServe" in warning, warning
        assert "listening on" in process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
