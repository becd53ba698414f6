"""A registry with the OCI 1.1 referrers API, for the one test of that path: Debian's Distribution 2.8 has no
such API and no registry that has one can be installed here, so this proxy adds it in front of a real
Distribution, as the distribution spec v1.1 says a registry does. Every request passes through to Distribution
unchanged; a manifest PUT with a ``subject`` is indexed and answered with ``OCI-Subject``, and
``GET /v2/<name>/referrers/<digest>`` answers from that index. Every request is logged, so the test can check
that a client used the API and did not keep the fallback tag."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
HOP_BY_HOP = {"connection", "transfer-encoding", "keep-alive", "content-length", "content-encoding"}


class ReferrersProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # http://127.0.0.1:PORT
        self.log: list[tuple[str, str]] = []
        self.index: dict[tuple[str, str], list[dict[str, Any]]] = {}

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ReferrersProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                proxy.log.append((self.command, parts.path))
                found = REFERRERS.match(parts.path)
                if found and self.command == "GET":
                    wanted = parse_qs(parts.query).get("artifactType")
                    listed = [d for d in proxy.index.get((found["name"], found["digest"]), [])
                              if not wanted or d.get("artifactType") in wanted]  # fmt: skip
                    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                       "manifests": listed}).encode()  # fmt: skip
                    self._send(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"}, body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = requests.request(self.command, proxy.upstream + self.path, headers=headers, data=data,
                                          allow_redirects=False, timeout=60)  # fmt: skip
                extra: dict[str, str] = {}
                manifest = MANIFEST.match(parts.path)
                if manifest and self.command == "PUT" and answer.status_code == 201 and data:
                    document = json.loads(data)
                    subject = document.get("subject")
                    if isinstance(subject, dict):
                        descriptor = {"mediaType": document.get("mediaType"), "size": len(data),
                                      "digest": answer.headers["Docker-Content-Digest"],
                                      "artifactType": document.get("artifactType") or document["config"]["mediaType"],
                                      "annotations": document.get("annotations", {})}  # fmt: skip
                        proxy.index.setdefault((manifest["name"], subject["digest"]), []).append(descriptor)
                        extra["OCI-Subject"] = subject["digest"]
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                self._send(answer.status_code, {**kept, **extra}, answer.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
