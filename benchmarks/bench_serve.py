"""Overhead, throughput and steadiness under load of `mlpack serve` (KServe V2 REST over loopback HTTP).

The iris RandomForestClassifier(100 trees) is built with mlpack.build(resolve=False) into a temporary folder.

1. Latency at batch 1: sequential requests on one keep-alive connection (http.client) to `mlpack serve` (one
   worker) against a bare onnxruntime session.run of the same model.onnx on the same row in this process
   (intra_op_num_threads=1), alternating in blocks. Target: HTTP p50 <= raw p50 + 1.5 ms.
2. Throughput at batch 1 and concurrency 8 (threads, each with its own keep-alive connection):
   `mlpack serve --workers 2` against `mlflow models serve --env-manager local --workers 2` on the same
   scikit-learn model (saved with mlflow.sklearn.save_model by $MLFLOW_PYTHON), alternating rounds of the
   same load generator. Target: mlpack >= 3x mlflow's requests/second. Without mlflow, or when its server
   does not come up, a plain FastAPI app calling the model's predict_proba (uvicorn, 2 workers) stands in.
3. Load: 10,000 requests at concurrency 32 against a fresh `mlpack serve --workers 2`, every response's
   label checked against the known answer, the server processes' RSS sampled at start, middle and end.
   Targets: no errors; RSS growth < 20 MB.

Only 127.0.0.1 is contacted, every loop is bounded in count and time, and every server started is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pickle
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import numpy as np
from _common import MLPACK, conclude, iris_forest, median

HOST = "127.0.0.1"
HEADERS = {"Content-Type": "application/json"}
LATENCY_TARGET_MS = 1.5
THROUGHPUT_TARGET = 3.0
RSS_TARGET_MB = 20.0
START_TIMEOUT_S = 120.0  # mlflow's server imports a lot before it answers
LATENCY_BUDGET_S = 120.0  # part 1 stops early (and says so) past this
LOAD_BUDGET_S = 120.0  # part 3 likewise; requests not sent in time count as errors
LISTENING = re.compile(r"listening on http://[^\s:]+:(\d+)")

PROBE = """
import importlib.util, json
print(json.dumps({m: importlib.util.find_spec(m) is not None for m in ("mlflow", "fastapi", "uvicorn", "sklearn")}))
"""

SAVE_MLFLOW = """
import inspect, pickle, sys
import mlflow, mlflow.sklearn, sklearn
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
options = {}
if "skops_trusted_types" in inspect.signature(mlflow.sklearn.save_model).parameters:
    options["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]  # MLflow 3 saves with skops by default
mlflow.sklearn.save_model(model, sys.argv[2], **options)
print(mlflow.__version__, sklearn.__version__)
"""

# The stand-in when mlflow's server cannot run: the same request and response as mlflow's /invocations.
FASTAPI_APP = """
import os, pickle
import numpy as np
from fastapi import FastAPI, Request

with open(os.environ["BENCH_SERVE_MODEL"], "rb") as f:
    model = pickle.load(f)
app = FastAPI()


@app.get("/ping")
def ping():
    return {}


@app.post("/invocations")
async def invocations(request: Request):
    rows = np.asarray((await request.json())["inputs"], dtype=np.float64)
    return {"predictions": model.classes_[model.predict_proba(rows).argmax(axis=1)].tolist()}
"""


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """A server in its own session, so that it and every worker it forks or spawns stop together."""

    def __init__(
        self, name: str, label: str, command: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.label, self.log, self.stopped = name, label, log, False
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.port = 0

    def tail(self, chars: int = 2500) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited with code {self.process.returncode}:\n{self.tail()}")

    def wait_port(self, timeout: float = START_TIMEOUT_S) -> int:
        """The port from the 'listening on' line (mlpack serve --port 0)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            if found := LISTENING.search(self.log.read_text(errors="replace")):
                self.port = int(found.group(1))
                return self.port
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not say where it listens within {timeout:.0f} s:\n{self.tail()}")

    def wait_ready(self, path: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            with contextlib.suppress(OSError, HTTPException):
                conn = HTTPConnection(HOST, self.port, timeout=5)
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} was not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the whole process group, then SIGKILL to whatever is left after 15 s. Once only."""
        if self.stopped:
            return
        self.stopped, group = True, self.process.pid
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader, else its zombie keeps the group alive
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
        print(f"warning: {self.label} (process group {group}) did not stop")


def start_mlpack(pkg: Path, root: Path, workers: int) -> Server:
    command = [str(MLPACK), "serve", str(pkg), "--port", "0", "--workers", str(workers)]
    label = f"mlpack serve --workers {workers}"
    return Server("mlpack", label, command, root / f"mlpack-{workers}-{time.time_ns()}.log")


def rss_mb(pid: int) -> dict[int, float]:
    """RSS in MiB of a process and all its descendants (psutil if present, else /proc)."""
    try:
        import psutil
    except ImportError:
        pids, found = [pid], {}
        for current in pids:  # grows as children are found
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{current}/status").read_text()
                found[current] = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
                for task in Path(f"/proc/{current}/task").glob("*/children"):
                    pids.extend(int(child) for child in task.read_text().split())
        return found
    parent = psutil.Process(pid)
    sizes = {}
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            sizes[process.pid] = process.memory_info().rss / 2**20
    return sizes


# ---- the load generator


@dataclass
class Endpoint:
    """Where to POST, one pre-encoded body per test row, the label each row must get, and how to read it."""

    label: str
    port: int
    path: str
    bodies: list[bytes]
    expected: list[int]
    label_of: Callable[[bytes], int]

    def check(self) -> None:
        """Every row once, before any timing: the server must answer each correctly."""
        conn = HTTPConnection(HOST, self.port, timeout=10)
        try:
            for row, body in enumerate(self.bodies):
                conn.request("POST", self.path, body, HEADERS)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200 or self.label_of(data) != self.expected[row]:
                    raise RuntimeError(
                        f"{self.label} answered row {row} with HTTP {response.status}: {data[:300]!r}"
                    )
        finally:
            conn.close()


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds, one per request answered or failed
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's user+system time: the load generator's own cost

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


def hammer(
    endpoint: Endpoint, requests: int, concurrency: int, seconds: float, on_half: Callable[[], None] | None = None
) -> Run:
    """Up to `requests` POSTs, for at most `seconds`, from `concurrency` threads with a keep-alive connection each.

    Request i sends test row i % rows and must get that row's label back; anything else is an error.
    """
    run = Run()
    issued, finished = itertools.count(), itertools.count(1)  # next() on a count is atomic under the GIL
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        conn = HTTPConnection(HOST, endpoint.port, timeout=10)
        try:
            while time.perf_counter() < stop_at and (i := next(issued)) < requests:
                row = i % len(endpoint.bodies)
                started = time.perf_counter()
                try:
                    conn.request("POST", endpoint.path, endpoint.bodies[row], HEADERS)
                    response = conn.getresponse()
                    data = response.read()
                    elapsed = time.perf_counter() - started
                    problem = None
                    if response.status != 200:
                        problem = f"HTTP {response.status}: {data[:200]!r}"
                    elif (got := endpoint.label_of(data)) != endpoint.expected[row]:
                        problem = f"row {row}: label {got}, expected {endpoint.expected[row]}"
                except (OSError, HTTPException, ValueError, LookupError, TypeError) as exc:
                    elapsed = time.perf_counter() - started
                    problem = f"{type(exc).__name__}: {exc}"
                    conn.close()
                    conn = HTTPConnection(HOST, endpoint.port, timeout=10)
                run.latencies.append(elapsed)
                if problem:
                    run.errors.append(problem)
                if next(finished) == requests // 2 and on_half:
                    on_half()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    cpu, started = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)  # each request has a 10 s socket timeout
    run.seconds, run.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return run


def describe(run: Run) -> str:
    return (
        f"{len(run.latencies):6d} requests in {run.seconds:5.2f} s = {run.rps:7.1f} req/s; "
        f"p50 {median(run.latencies) * 1000:6.2f} ms, p99 {percentile(run.latencies, 99) * 1000:6.2f} ms; "
        f"{len(run.errors)} errors; load generator CPU {run.cpu_seconds / run.seconds:.0%} of one core"
    )


def mlpack_endpoint(port: int, rows: np.ndarray, expected: list[int]) -> Endpoint:
    def body(row: np.ndarray) -> bytes:
        tensor = {"name": "X", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
        return json.dumps({"inputs": [tensor]}).encode()

    def label_of(data: bytes) -> int:
        return int(next(o for o in json.loads(data)["outputs"] if o["name"] == "label")["data"][0])

    return Endpoint("mlpack", port, "/v2/models/iris/infer", [body(r) for r in rows], expected, label_of)


def invocations_endpoint(label: str, port: int, rows: np.ndarray, expected: list[int]) -> Endpoint:
    def label_of(data: bytes) -> int:
        return int(json.loads(data)["predictions"][0])

    bodies = [json.dumps({"inputs": [row.tolist()]}).encode() for row in rows]
    return Endpoint(label, port, "/invocations", bodies, expected, label_of)


# ---- the baseline server for part 2


def probe(python: str) -> dict[str, bool]:
    try:
        result = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=60)
        return dict(json.loads(result.stdout))
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


def start_mlflow(python: str, root: Path) -> Server:
    saved = subprocess.run(
        [python, "-c", SAVE_MLFLOW, str(root / "model.pkl"), str(root / "mlflow-model")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if saved.returncode != 0:
        raise RuntimeError(f"mlflow.sklearn.save_model failed:\n{saved.stderr[-2500:]}")
    version = saved.stdout.split()[0]
    port = free_port()
    command = [python, "-m", "mlflow", "models", "serve", "-m", str(root / "mlflow-model"),
               "--env-manager", "local", "--host", HOST, "--port", str(port), "--workers", "2"]  # fmt: skip
    # mlflow starts its server as `bash -c "exec uvicorn ..."`: the interpreter's bin/ goes first on PATH,
    # as activating its virtual environment would do.
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    label = f"mlflow {version} models serve --env-manager local --workers 2"
    server = Server("mlflow", label, command, root / "mlflow.log", env)
    server.port = port
    return server


def start_fastapi(python: str, root: Path) -> Server:
    (root / "bench_serve_app.py").write_text(FASTAPI_APP)
    port = free_port()
    command = [python, "-m", "uvicorn", "bench_serve_app:app", "--app-dir", str(root), "--host", HOST,
               "--port", str(port), "--workers", "2", "--no-access-log"]  # fmt: skip
    env = {**os.environ, "BENCH_SERVE_MODEL": str(root / "model.pkl")}
    label = "a FastAPI app calling predict_proba, uvicorn --workers 2"
    server = Server("FastAPI", label, command, root / "fastapi.log", env)
    server.port = port
    return server


def baseline_python() -> str | None:
    """This interpreter if it has mlflow, else $MLFLOW_PYTHON if set (as in bench_build.py)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:
        return sys.executable
    return os.environ.get("MLFLOW_PYTHON") or None


def start_baseline(choice: str, root: Path) -> Server | None:
    """mlflow's server if it can run, else the FastAPI stand-in if that can; None (and why) if neither."""
    python = baseline_python()
    found = probe(python) if python else {}
    if choice in ("auto", "mlflow"):
        if not found.get("mlflow"):
            print(f"mlflow: not importable by {python or 'this interpreter; MLFLOW_PYTHON is not set'}")
        else:
            assert python is not None
            server = None
            try:
                server = start_mlflow(python, root)
                server.wait_ready("/ping")
                return server
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                print(f"mlflow's server could not run: {exc}")
                if server:
                    server.stop()
        if choice == "mlflow":
            return None
    python = python or sys.executable
    found = found or probe(python)
    if not (found.get("fastapi") and found.get("uvicorn")):
        print(f"FastAPI stand-in: {python} lacks fastapi or uvicorn")
        return None
    server = start_fastapi(python, root)
    try:
        server.wait_ready("/ping")
    except RuntimeError as exc:
        print(f"the FastAPI stand-in could not run: {exc}")
        server.stop()
        return None
    return server


# ---- the three parts


def part_latency(port: int, pkg: Path, x_test: np.ndarray, expected: int, requests: int, block: int) -> float:
    """Sequential batch-1 requests against session.run in blocks, alternating who goes first; p50 difference (ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(pkg / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: x_test[:1].astype(np.float32)}
    endpoint = mlpack_endpoint(port, x_test[:1], [expected])
    conn = HTTPConnection(HOST, port, timeout=10)

    def over_http() -> float:
        # The clock covers sending the pre-encoded request and reading the whole answer; decoding the JSON
        # and checking the label happen after it stops.
        started = time.perf_counter()
        conn.request("POST", endpoint.path, endpoint.bodies[0], HEADERS)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200 or endpoint.label_of(data) != expected:
            raise RuntimeError(f"mlpack serve answered HTTP {response.status}: {data[:300]!r}")
        return elapsed

    def in_process() -> float:
        started = time.perf_counter()
        session.run(None, feeds)
        return time.perf_counter() - started

    kinds = {"mlpack serve (HTTP)": over_http, "onnxruntime session.run": in_process}
    times: dict[str, list[float]] = {label: [] for label in kinds}
    try:
        for action in kinds.values():  # warm-up
            for _ in range(100):
                action()
        deadline = time.monotonic() + LATENCY_BUDGET_S
        for b in range(-(-requests // block)):
            if time.monotonic() > deadline:
                print(f"  stopped after {LATENCY_BUDGET_S:.0f} s, before the {requests} requests asked for")
                break
            for label in list(kinds) if b % 2 == 0 else list(reversed(kinds)):
                times[label].extend(kinds[label]() for _ in range(block))
    finally:
        conn.close()

    print(f"1. latency at batch 1, one keep-alive connection, {len(times['mlpack serve (HTTP)'])} requests each")
    print(f"   (blocks of {block}, alternating; after 100 warm-up calls each)")
    for label, values in times.items():
        print(
            f"   {label:<24} p50 {median(values) * 1000:7.3f} ms   p99 {percentile(values, 99) * 1000:7.3f} ms"
            f"   mean {statistics.fmean(values) * 1000:7.3f} ms"
        )
    http, raw = times.values()
    p50 = (median(http) - median(raw)) * 1000
    p99 = (percentile(http, 99) - percentile(raw, 99)) * 1000
    print(f"   overhead of serving (HTTP - raw): p50 {p50:+.3f} ms, p99 {p99:+.3f} ms")
    return p50


def part_throughput(ours: Endpoint, theirs: Endpoint, rounds: int, seconds: float) -> float:
    for endpoint in (ours, theirs):
        endpoint.check()
        hammer(endpoint, 400, 8, 10.0)  # warm-up
    runs: dict[str, list[Run]] = {ours.label: [], theirs.label: []}
    for r in range(rounds):
        for endpoint in (ours, theirs) if r % 2 == 0 else (theirs, ours):
            runs[endpoint.label].append(hammer(endpoint, 10**7, 8, seconds))
    print(f"2. throughput at batch 1, concurrency 8 (8 threads, a keep-alive connection each), {rounds} round(s)")
    print(f"   of {seconds:g} s each, alternating; every answer's label checked")
    rates = {}
    for label, done in runs.items():
        rates[label] = median([run.rps for run in done])
        pooled = Run(
            latencies=[t for run in done for t in run.latencies],
            errors=[e for run in done for e in run.errors],
            seconds=sum(run.seconds for run in done),
            cpu_seconds=sum(run.cpu_seconds for run in done),
        )
        print(f"   {label}: median {rates[label]:.1f} req/s (rounds: {', '.join(f'{r.rps:.0f}' for r in done)})")
        print(f"      pooled: {describe(pooled)}")
        for error in sorted(set(pooled.errors))[:3]:
            print(f"      error: {error}")
    ratio = rates[ours.label] / rates[theirs.label]
    print(f"   ratio mlpack / {theirs.label} (medians): {ratio:.2f}x")
    return ratio


def part_load(server: Server, endpoint: Endpoint, requests: int) -> tuple[int, float]:
    samples: dict[str, dict[int, float]] = {"start": rss_mb(server.process.pid)}

    def at_half() -> None:
        samples["middle"] = rss_mb(server.process.pid)

    run = hammer(endpoint, requests, 32, LOAD_BUDGET_S, at_half)
    samples["end"] = rss_mb(server.process.pid)
    unsent = requests - len(run.latencies)
    errors = len(run.errors) + unsent
    print(f"3. load: {requests} requests at concurrency 32 against a fresh mlpack serve --workers 2")
    print(f"   {describe(run)}")
    if unsent:
        print(f"   {unsent} requests not sent within {LOAD_BUDGET_S:.0f} s (counted as errors)")
    for error in sorted(set(run.errors))[:5]:
        print(f"   error: {error}")
    for when, sizes in samples.items():
        parts = ", ".join(f"{pid}: {mb:.1f}" for pid, mb in sizes.items())
        print(f"   RSS at {when:<6} {sum(sizes.values()):7.1f} MiB (parent and workers: {parts})")
    growth = sum(samples["end"].values()) - sum(samples["start"].values())
    print(f"   RSS growth start -> end: {growth:+.1f} MiB")
    return errors, growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests in part 1 (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server in part 2 (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a round in part 2 (default 3)")
    parser.add_argument("--load-requests", type=int, default=10_000, help="requests in part 3 (default 10000)")
    parser.add_argument(
        "--baseline", choices=["auto", "mlflow", "fastapi"], default="auto",
        help="part 2's baseline: mlflow, falling back to FastAPI when mlflow's server cannot run (default auto)",
    )  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out

    import onnxruntime
    import sklearn

    import mlpack

    started = time.monotonic()
    model, x_test = iris_forest()
    verdicts: list[tuple[str, float | None, float, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, contextlib.ExitStack() as servers:
        root = Path(tmp)
        built = mlpack.build(model, sample=x_test, name="iris", version="1", out=root, resolve=False, force=True)
        pkg = Path(built.path)
        (root / "model.pkl").write_bytes(pickle.dumps(model))
        single = start_mlpack(pkg, root, workers=1)
        servers.callback(single.stop)
        baseline = start_baseline(args.baseline, root)  # slow to start: it comes up beside the first mlpack
        if baseline:
            servers.callback(baseline.stop)

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(pkg / "model.onnx"), options, providers=["CPUExecutionProvider"])
        onnx_labels = [int(v) for v in session.run(["label"], {"X": x_test.astype(np.float32)})[0]]
        native_labels = [int(v) for v in model.predict(x_test)]
        differ = sum(a != b for a, b in zip(onnx_labels, native_labels, strict=True))
        print(
            f"model: iris RandomForestClassifier(100 trees); {len(x_test)} test rows; mlpack {mlpack.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, scikit-learn {sklearn.__version__}; {os.cpu_count()} CPUs"
        )
        print(f"labels: onnxruntime and scikit-learn differ on {differ} of {len(x_test)} rows")
        print(f"baseline for part 2: {baseline.label if baseline else 'none'}")

        single.wait_port()
        single.wait_ready("/v2/health/ready")
        p50 = part_latency(single.port, pkg, x_test, onnx_labels[0], args.requests, 100)
        verdicts.append(("mlpack serve p50 - onnxruntime p50 at batch 1", p50, LATENCY_TARGET_MS, " ms", "<="))
        single.stop()

        double = start_mlpack(pkg, root, workers=2)
        servers.callback(double.stop)
        double.wait_port()
        double.wait_ready("/v2/health/ready")
        ours = mlpack_endpoint(double.port, x_test, onnx_labels)
        if baseline:
            theirs = invocations_endpoint(baseline.name, baseline.port, x_test, native_labels)
            ratio: float | None = part_throughput(ours, theirs, args.rounds, args.seconds)
            baseline.stop()
        else:
            ratio = None
            print("2. throughput: no baseline server could run (see above); not measured")
        name = baseline.name if baseline else "mlflow"
        verdicts.append((f"mlpack req/s / {name} req/s at concurrency 8", ratio, THROUGHPUT_TARGET, "x", ">="))
        double.stop()

        fresh = start_mlpack(pkg, root, workers=2)
        servers.callback(fresh.stop)
        fresh.wait_port()
        fresh.wait_ready("/v2/health/ready")
        errors, growth = part_load(fresh, mlpack_endpoint(fresh.port, x_test, onnx_labels), args.load_requests)
        verdicts.append(("errors in the load test", errors, 0, "", "<="))
        verdicts.append(("server RSS growth over the load test", growth, RSS_TARGET_MB, " MiB", "<"))
        fresh.stop()

    print(f"total {time.monotonic() - started:.0f} s")
    for what, value, limit, unit, op in verdicts:
        if value is None:
            print(f"target: {what} {op} {limit:g}{unit}: NOT MEASURED")
        else:
            conclude(what, value, limit, unit, op)


if __name__ == "__main__":
    main()
