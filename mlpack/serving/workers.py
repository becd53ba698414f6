"""The serving process: bind once, then run one worker in-process or fork several onto the shared socket,
and stop them all on SIGTERM or Ctrl-C."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpack.errors import UsageError
from mlpack.options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_PORT,
)
from mlpack.serving.dataplane import entries_for, find_packages, log, prepare
from mlpack.serving.http import Limits, V2Server


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may well resolve beyond this machine
        return False


def run_worker(sock: socket.socket, paths: list[Path], verify_on_start: bool, limits: Limits) -> None:
    """One worker's server on the shared socket."""
    models = entries_for(paths)
    server = V2Server(sock, models, limits)
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
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    access_log: bool = False,
    on_listen: Callable[[str, int], None] | None = None,
) -> None:
    """Serve one package or a folder of packages until SIGTERM or Ctrl-C. Several workers share one socket.

    ``max_elements`` caps the input elements a request may declare (413 beyond); ``idle_timeout`` is how long
    a connection may idle or stall mid-request before it is closed (None: never); ``max_connections`` is how
    many connections each worker keeps open (the one that has waited longest is closed for a newcomer)."""
    paths = find_packages(Path(path))
    entries_for(paths)  # refuse bad packages and clashing names before listening
    if workers < 1:
        raise UsageError("--workers must be at least 1.")
    if max_elements < 1:
        raise UsageError("--max-elements must be at least 1.")
    if max_body < 1:
        raise UsageError("--max-body-bytes must be at least 1.")
    if idle_timeout is not None and idle_timeout <= 0:
        raise UsageError("--idle-timeout must be more than 0 seconds.")
    if max_connections < 1:
        raise UsageError("--max-connections must be at least 1.")
    max_connections = _within_open_file_limit(max_connections, workers)
    sock = bind(host, port)
    if not is_loopback(host):
        log(
            f"WARNING: listening on {host}, beyond this machine, with no authentication; put it behind a proxy or KServe."
        )
    if on_listen:
        on_listen(host, sock.getsockname()[1])
    limits = Limits(max_body, max_elements, idle_timeout, max_connections, access_log)
    if workers == 1:
        run_worker(sock, paths, verify_on_start, limits)
        return
    children: list[int] = []
    stopping = threading.Event()
    stop = _stopper(children, stopping)
    # installed before the first fork, so that a SIGTERM while forking is not the default death that would
    # orphan the workers already started
    signal.signal(signal.SIGTERM, stop)
    for _ in range(workers):
        if stopping.is_set():  # SIGTERM came while forking: start no more
            break
        pid = os.fork()  # each worker opens its own onnxruntime sessions after the fork
        if pid == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's: run_worker sets its own
                run_worker(sock, paths, verify_on_start, limits)
            finally:
                os._exit(0)
        children.append(pid)
    sock.close()
    _supervise(children, stop)


def _within_open_file_limit(max_connections: int, workers: int) -> int:
    """Raise this process's soft limit on open files towards the hard one, so that the connection cap and
    not the file table decides who is turned away; lower the cap, saying so, if the limit cannot hold it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_FILES  # each worker has its own table
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if soft - _SPARE_FILES < 1:
            raise UsageError(f"The open-file limit ({soft}) is too low to serve; raise it with ulimit -n.")
        log(f"at most {soft - _SPARE_FILES} connections per worker: the open-file limit is {soft} (ulimit -n)")
        return soft - _SPARE_FILES
    return max_connections


_SPARE_FILES = 64  # the model files, the listening socket, onnxruntime's and Python's own


def _stopper(children: list[int], stopping: threading.Event) -> Callable[..., None]:
    def stop(*_: Any) -> None:
        stopping.set()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    return stop


def _supervise(children: list[int], stop: Callable[..., None]) -> None:
    """Wait for the workers; SIGTERM or Ctrl-C here is passed on to each of them."""
    try:
        for child in children:
            os.waitpid(child, 0)
    except KeyboardInterrupt:
        stop()
        for child in children:
            os.waitpid(child, 0)
