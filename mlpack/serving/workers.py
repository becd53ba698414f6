"""The serving process: bind once, then run one worker in-process or fork several onto the shared socket,
and stop them all on SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpack.errors import UsageError
from mlpack.options import DEFAULT_MAX_BODY, DEFAULT_PORT
from mlpack.serving.dataplane import entries_for, find_packages, prepare
from mlpack.serving.http import V2Server


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.listen(512)
    return sock


def run_worker(
    sock: socket.socket, paths: list[Path], verify_on_start: bool, max_body: int, access_log: bool
) -> None:
    models = entries_for(paths)
    server = V2Server(sock, models, max_body, access_log)
    for entry in models.values():  # models load and verify while the server already answers health checks
        threading.Thread(target=prepare, args=(entry, verify_on_start), daemon=True).start()
    # shutdown() waits for serve_forever to return, so it cannot run on the thread the signal interrupts.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def serve(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    workers: int = 1,
    verify_on_start: bool = True,
    max_body: int = DEFAULT_MAX_BODY,
    access_log: bool = False,
    on_listen: Callable[[str, int], None] | None = None,
) -> None:
    """Serve one package or a folder of packages until SIGTERM or Ctrl-C. Several workers share one socket."""
    paths = find_packages(Path(path))
    entries_for(paths)  # refuse bad packages and clashing names before listening
    if workers < 1:
        raise UsageError("--workers must be at least 1.")
    sock = bind(host, port)
    if on_listen:
        on_listen(host, sock.getsockname()[1])
    if workers == 1:
        run_worker(sock, paths, verify_on_start, max_body, access_log)
        return
    children = []
    for _ in range(workers):
        pid = os.fork()  # each worker opens its own onnxruntime sessions after the fork
        if pid == 0:
            try:
                run_worker(sock, paths, verify_on_start, max_body, access_log)
            finally:
                os._exit(0)
        children.append(pid)
    sock.close()
    _supervise(children)


def _supervise(children: list[int]) -> None:
    """Wait for the workers; SIGTERM or Ctrl-C here is passed on to each of them."""

    def stop(*_: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        for child in children:
            os.waitpid(child, 0)
    except KeyboardInterrupt:
        stop()
        for child in children:
            os.waitpid(child, 0)
