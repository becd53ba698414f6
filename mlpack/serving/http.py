"""The REST endpoints of the Open Inference Protocol (KServe V2), from the standard library's HTTP server:
thin routing onto the data plane, and every ``RequestError`` answered as JSON with its status, so that the
server keeps serving.

GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready]
POST /v2/models/NAME[/versions/V]/infer
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlpack import __version__
from mlpack.errors import RequestError
from mlpack.options import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_ELEMENTS
from mlpack.serving import dataplane
from mlpack.serving.codec import header_int, split_request
from mlpack.serving.dataplane import Entry, log


class Handler(BaseHTTPRequestHandler):
    server: V2Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    # Headers and body leave in one send, without Nagle's wait: otherwise every reply sits out the client's
    # 40 ms delayed ACK (measured: p50 43.9 ms -> 0.32 ms at batch 1).
    disable_nagle_algorithm = True
    wbufsize = -1
    server_version = f"mlpack/{__version__}"

    def setup(self) -> None:
        # A client that goes quiet mid-request or idles on keep-alive is dropped after --idle-timeout (the
        # TimeoutError ends the connection in BaseHTTPRequestHandler), instead of holding a thread for ever.
        super().setup()
        self.connection.settimeout(self.server.limits.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.limits.access_log:
            log(format % args)

    def _send(
        self,
        status: int,
        body: bytes | list[bytes],
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        pieces = [body] if isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, pieces))))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        for piece in pieces:
            self.wfile.write(piece)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, separators=(",", ":")).encode())

    def _error(self, status: int, message: str) -> None:
        # once the body is left unread the connection cannot carry another request: say so, then close it
        extra = {"Connection": "close"} if self.close_connection else None
        self._send(status, json.dumps({"error": message}, separators=(",", ":")).encode(), extra=extra)

    def _body_length(self) -> int:
        """The request body's length from a single, plain Content-Length; anything else closes the connection,
        since the server could not tell where this request's body ends and the next request begins."""
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise RequestError(
                HTTPStatus.LENGTH_REQUIRED, "Chunked request bodies are not accepted; send Content-Length."
            )
        values = self.headers.get_all("Content-Length") or []
        if len(values) > 1:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "Content-Length is given more than once.")
        try:
            return header_int("Content-Length", values[0].strip()) if values else 0
        except RequestError:
            self.close_connection = True
            raise

    def _parts(self) -> list[str]:
        return [p for p in self.path.split("?", 1)[0].split("/") if p]

    def _entry(self, parts: list[str]) -> tuple[Entry, list[str]]:
        """/v2/models/NAME[/versions/V]/REST... -> the entry and REST."""
        name = parts[2] if len(parts) > 2 else ""
        rest, version = parts[3:], None
        if rest[:1] == ["versions"]:
            version, rest = (rest[1] if len(rest) > 1 else ""), rest[2:]
        return dataplane.get_model(self.server.models, name, version), rest

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, handle: Callable[[list[str]], None]) -> None:
        """Every failure ends in one JSON answer: its status for a RequestError, 408 for a stalled body, 500
        for a bug (which costs one request, not the connection and a bare traceback)."""
        try:
            handle(self._parts())
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except TimeoutError:  # the body stalled past --idle-timeout: say so, and free the thread
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._error(HTTPStatus.REQUEST_TIMEOUT, "The request body did not arrive in time.")
        except OSError:
            raise  # the client went away: BaseHTTPRequestHandler's own handling, nothing left to answer
        except Exception as exc:
            log(f"internal error on {self.command} {self.path}: {type(exc).__name__}: {exc}")
            self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal error: {type(exc).__name__}.")

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.waiting(self.connection)  # answered: from now it waits for the client's next request

    def _get(self, parts: list[str]) -> None:
        self.server.busy(self.connection)
        if parts == ["v2", "health", "live"]:
            return self._json(200, {"live": True})
        if parts == ["v2", "health", "ready"]:
            ready = dataplane.server_ready(self.server.models)
            return self._json(200 if ready["ready"] else 503, ready)
        if parts == ["v2"]:
            return self._json(200, dataplane.server_metadata())
        if parts[:2] == ["v2", "models"]:
            entry, rest = self._entry(parts)
            if rest == ["ready"]:
                return self._json(200 if entry.ready else 503, dataplane.model_ready(entry))
            if rest == []:
                return self._json(200, dataplane.model_metadata(entry))
        raise RequestError(HTTPStatus.NOT_FOUND, f"No such endpoint: GET {self.path}")

    def _post(self, parts: list[str]) -> None:
        length = self._body_length()
        if length > self.server.limits.max_body:
            self.close_connection = True  # the body stays unread: the connection cannot be reused
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"The body has {length} bytes; the limit is {self.server.limits.max_body}.",
            )
        body = self.rfile.read(length)
        self.server.busy(self.connection)
        if parts[:2] != ["v2", "models"]:
            raise RequestError(HTTPStatus.NOT_FOUND, f"No such endpoint: POST {self.path}")
        entry, rest = self._entry(parts)
        if rest != ["infer"]:
            raise RequestError(HTTPStatus.NOT_FOUND, f"No such endpoint: POST {self.path}")
        dataplane.ready_model(entry)  # a model that is not ready answers 503 before the body is judged
        header = self.headers.get("Inference-Header-Content-Length")
        json_length = None if header is None else header_int("Inference-Header-Content-Length", header.strip())
        if not self.server.budget.acquire(length, self.server.limits.idle_timeout):
            raise RequestError(
                HTTPStatus.SERVICE_UNAVAILABLE, "The server is busy with other large requests; try again shortly."
            )
        try:
            request, binary = split_request(body, json_length)
            del body  # from here the parsed request (and a view for binary data) holds what is needed
            answer, head_length = dataplane.infer(entry, request, binary, self.server.limits.max_elements).encode()
        finally:
            self.server.budget.release(length)
        if head_length is None:
            return self._send(200, answer)
        self._send(200, answer, "application/octet-stream", {"Inference-Header-Content-Length": str(head_length)})


class BodyBudget:
    """The request-body bytes one worker decodes and answers at once. Each byte of JSON costs up to a dozen
    in Python objects until the reply is encoded, so without this, twenty clients sending the largest allowed
    body together could take the machine's memory. It is taken only once a whole body has arrived, so that
    slow clients cannot hold it; a request waits its turn for up to the idle timeout, then gets 503."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used = capacity, 0
        self._free = threading.Condition()

    def acquire(self, size: int, timeout: float | None) -> bool:
        with self._free:
            if not self._free.wait_for(lambda: self.used + size <= self.capacity, timeout):
                return False
            self.used += size
            return True

    def release(self, size: int) -> None:
        with self._free:
            self.used -= size
            self._free.notify_all()


@dataclass(frozen=True)
class Limits:
    """What one worker allows its clients (see ``mlpack serve --help``)."""

    max_body: int = DEFAULT_MAX_BODY
    max_elements: int | None = DEFAULT_MAX_ELEMENTS
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    access_log: bool = False


class V2Server(ThreadingHTTPServer):
    """Serves on a socket bound beforehand, so that forked workers can share it.

    At most ``max_connections`` connections are open at once. The one more that arrives at the cap closes the
    connection that has waited longest for its client (idle on keep-alive, or still trickling in a request
    head or body), so that slow or idle clients cannot turn good ones away; if every connection is busy with
    a request, the newcomer gets 503 instead."""

    daemon_threads = True
    request_queue_size = 512

    def __init__(self, sock: socket.socket, models: dict[str, Entry], limits: Limits) -> None:
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        # Non-blocking, so that of several workers woken by one connection the ones that lose the race to
        # accept() get BlockingIOError (ignored by socketserver) instead of blocking there, deaf to shutdown().
        sock.setblocking(False)
        self.socket = sock
        self.models = models
        self.limits = limits
        self.budget = BodyBudget(BODIES_AT_ONCE * limits.max_body)
        self._lock = threading.Lock()
        # each open connection -> since when it has waited for its client, or None while a request is served
        self._waiting_since: dict[socket.socket, float | None] = {}
        self.evicted = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._admit(request):
            super().process_request(request, client_address)
            return
        with contextlib.suppress(OSError):
            request.settimeout(1)
            request.sendall(_AT_CAPACITY)
        self.shutdown_request(request)

    def _admit(self, connection: socket.socket) -> bool:
        with self._lock:
            if len(self._waiting_since) >= self.limits.max_connections:
                waiting = [(since, c) for c, since in self._waiting_since.items() if since is not None]
                if not waiting:
                    return False
                _, oldest = min(waiting, key=lambda pair: pair[0])
                del self._waiting_since[oldest]
                self.evicted += 1
                with contextlib.suppress(OSError):  # wakes its thread's read with end-of-file: it ends
                    oldest.shutdown(socket.SHUT_RDWR)
            self._waiting_since[connection] = time.monotonic()
            return True

    def busy(self, connection: socket.socket) -> None:
        """A whole request has arrived: its connection is not evicted while it is answered."""
        with self._lock:
            if connection in self._waiting_since:
                self._waiting_since[connection] = None

    def waiting(self, connection: socket.socket) -> None:
        with self._lock:
            if connection in self._waiting_since:
                self._waiting_since[connection] = time.monotonic()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (or was closed to make way) is no news; anything else is one log line,
        not socketserver's traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log(f"connection from {client_address[0]} ended by {type(exc).__name__}: {exc}")

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._waiting_since.pop(request, None)
        super().shutdown_request(request)


BODIES_AT_ONCE = 2  # bodies of the largest allowed size one worker decodes and answers at once

_BUSY = b'{"error":"Every connection is busy with a request; try again shortly."}'
_AT_CAPACITY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY)
)
