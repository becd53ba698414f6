"""`mlpack serve` under hostile clients: a good client among 1,000 slow connections, and the server's memory
after the largest request its limits let through.

The iris RandomForestClassifier(100 trees) is built with mlpack.build(resolve=False) into a temporary folder and
served by one worker.

1. Slow connections. A good client sends batch-1 JSON requests, each on a fresh connection (at a connection
   cap a newcomer has to get in, not ride an old keep-alive), first with nothing else connected (the baseline,
   same run), then while 1,000 connections trickle a request head one byte every few seconds and reconnect
   whenever the server closes them (slowloris). Twice: with the default --max-connections (1024: all 1,000
   stay open) and with --max-connections 200 (the server keeps closing the slow connection that waited
   longest). Targets: no errors for the good client; its p99 <= 10x the baseline p99 + 50 ms.
2. Memory. A fresh server per request kind: its RSS when ready (baseline) against its peak RSS (VmHWM) and
   RSS after one maximal request under the default limits (64 MiB body, 16 Mi input elements). Binary: just
   under 4 Mi rows of FP32 in the binary tensor extension, binary outputs. JSON: as many rows as fit the body
   limit, as numbers with one decimal, JSON outputs. Targets: peak growth <= 6x the body for binary (body,
   input array, outputs, reply) and <= 14x for JSON, where json.loads alone holds 8x: a 24-byte float and
   an 8-byte list slot for each 4-byte number.

Only 127.0.0.1 is contacted, every loop is bounded, and every server started is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import threading
import time
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import numpy as np
from _common import MLPACK, build_iris, conclude
from bench_serve import HOST, Server, percentile

SLOW_CONNECTIONS = 1000
TRICKLE_S = 5.0  # below the server's default --idle-timeout of 60 s, so the slow ones are never idle-closed
MAX_BODY = 64 * 2**20
MAX_ELEMENTS = 16 * 2**20
Verdict = tuple[str, float, float, str, str]  # what, measured, limit, unit, comparison
GROWTH_TARGET = {"binary": 6.0, "JSON": 14.0}
GOOD_BODY = json.dumps(
    {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [6.7, 3.0, 5.2, 2.3]}]}
).encode()


def start(pkg: Path, root: Path, *flags: str) -> Server:
    command = [str(MLPACK), "serve", str(pkg), "--port", "0", *flags]
    server = Server("mlpack", "mlpack serve " + " ".join(flags), command, root / f"serve-{time.time_ns()}.log")
    server.wait_port()
    server.wait_ready("/v2/health/ready")
    return server


def good_client(port: int, requests: int) -> tuple[list[float], int]:
    """Latencies (ms) of batch-1 requests, each on a fresh connection, and the count that failed."""
    latencies, errors = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        connection = HTTPConnection(HOST, port, timeout=10)
        try:
            connection.request("POST", "/v2/models/iris/infer", GOOD_BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or json.loads(answer)["outputs"][0]["data"] != [2]:
                errors += 1
                continue
        except (OSError, HTTPException, ValueError):
            errors += 1
            continue
        finally:
            connection.close()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, errors


class Slowloris:
    """``count`` connections that each send a request head one byte at a time and reconnect when closed."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.sockets: list[socket.socket | None] = [None] * count
        self.reconnects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        with contextlib.suppress(OSError):
            sock = socket.create_connection((HOST, self.port), timeout=5)
            sock.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            self.sockets[i] = sock

    def __enter__(self) -> Slowloris:
        for i in range(self.count):
            self._open(i)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(TRICKLE_S):
            for i, sock in enumerate(self.sockets):
                try:
                    if sock is None:
                        raise OSError
                    with contextlib.suppress(BlockingIOError):
                        if sock.recv(4096) == b"":
                            raise OSError  # closed by the server
                    sock.send(b"X")
                except OSError:
                    if sock is not None:
                        sock.close()
                    self.sockets[i] = None
                    self.reconnects += 1
                    self._open(i)

    def open_now(self) -> int:
        return sum(s is not None for s in self.sockets)

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def part_slow(pkg: Path, root: Path, requests: int) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for flags in ((), ("--max-connections", "200")):
        server = start(pkg, root, *flags)
        try:
            good_client(server.port, 20)  # warm-up
            base, base_errors = good_client(server.port, requests)
            with Slowloris(server.port, SLOW_CONNECTIONS) as slow:
                time.sleep(TRICKLE_S + 1)  # one trickle round: the server has seen them all
                under, errors = good_client(server.port, requests)
                still_open, reconnects = slow.open_now(), slow.reconnects
            label = " ".join(flags) or "default cap (1024)"
            b99, u99 = percentile(base, 99), percentile(under, 99) if under else float("inf")
            print(
                f"[{label}] baseline: p50 {percentile(base, 50):.2f} ms, p99 {b99:.2f} ms, errors {base_errors}/"
                f"{requests}; with {SLOW_CONNECTIONS} slow connections ({still_open} open at the end, "
                f"{reconnects} reconnects after being closed): p50 {percentile(under, 50):.2f} ms, "
                f"p99 {u99:.2f} ms, errors {errors}/{requests}; p99 ratio {u99 / b99:.2f}x"
            )
            verdicts.append((f"[{label}] good-client errors", errors, 0, "", "<="))
            verdicts.append((f"[{label}] good-client p99", u99, 10 * b99 + 50, " ms", "<="))
        finally:
            server.stop()
    return verdicts


def status_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def maximal_request(kind: str) -> tuple[bytes, dict[str, str]]:
    rows = MAX_ELEMENTS // 4
    if kind == "binary":
        rows = min(rows, (MAX_BODY - 1024) // 16)  # the body limit binds first: room for the JSON head
        data = np.random.default_rng(0).uniform(0, 8, (rows, 4)).astype(np.float32).tobytes()
        head = json.dumps({
            "inputs": [{"name": "X", "shape": [rows, 4], "datatype": "FP32",
                        "parameters": {"binary_data_size": len(data)}}],
            "parameters": {"binary_data_output": True},
        }).encode()  # fmt: skip
        return head + data, {"Inference-Header-Content-Length": str(len(head))}
    # JSON: iris-like numbers with one decimal, each a Python float once parsed (small ints would be shared
    # objects); as many rows as the body limit allows
    rows = min(rows, (MAX_BODY - 1024) // 16) // 2 * 2
    values = ",".join(["5.1,3.5,1.4,0.2", "6.7,3.0,5.2,2.3"] * (rows // 2))
    body = f'{{"inputs":[{{"name":"X","shape":[{rows},4],"datatype":"FP32","data":[{values}]}}]}}'.encode()
    return body, {"Content-Type": "application/json"}


def part_memory(pkg: Path, root: Path) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for kind in ("binary", "JSON"):
        body, headers = maximal_request(kind)
        assert len(body) <= MAX_BODY, len(body)
        server = start(pkg, root)
        try:
            good_client(server.port, 5)
            (pid,) = [server.process.pid]
            before = status_kib(pid)
            started = time.perf_counter()
            connection = HTTPConnection(HOST, server.port, timeout=300)
            connection.request("POST", "/v2/models/iris/infer", body, headers)
            response = connection.getresponse()
            answer = response.read()
            seconds = time.perf_counter() - started
            connection.close()
            time.sleep(1)
            after = status_kib(pid)
            growth = (after["VmHWM"] - before["VmRSS"]) / 1024
            body_mib = len(body) / 2**20
            print(
                f"[{kind}] {body_mib:.1f} MiB request, {len(answer) / 2**20:.1f} MiB reply (status "
                f"{response.status}) in {seconds:.1f} s; server RSS ready {before['VmRSS'] / 1024:.0f} MiB, "
                f"peak {after['VmHWM'] / 1024:.0f} MiB, after {after['VmRSS'] / 1024:.0f} MiB; "
                f"peak growth {growth:.0f} MiB = {growth / body_mib:.1f}x the body"
            )
            verdicts.append((f"[{kind}] failed replies", int(response.status != 200), 0, "", "<="))
            verdicts.append(
                (f"[{kind}] peak RSS growth per MiB of body", growth / body_mib, GROWTH_TARGET[kind], "x", "<=")
            )
        finally:
            server.stop()
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="good-client requests per measurement")
    parser.add_argument("--skip", choices=("slow", "memory"), help="leave one part out")
    args = parser.parse_args()
    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pkg = build_iris(root / "dist")
        if args.skip != "slow":
            verdicts += part_slow(pkg, root, args.requests)
        if args.skip != "memory":
            verdicts += part_memory(pkg, root)
    for what, value, limit, unit, op in verdicts:
        conclude(what, value, limit, unit, op)


if __name__ == "__main__":
    main()
