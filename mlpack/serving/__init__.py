"""mlpack serve: the Open Inference Protocol (KServe V2) over REST.

- ``codec``: V2 tensors in and out (JSON and the binary tensor extension).
- ``dataplane``: served models, readiness, metadata and inference, with no transport in it.
- ``http``: the REST endpoints, thin routing onto the data plane.
- ``workers``: binding, forked workers on one socket, SIGTERM, and ``serve()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpack.serving.workers import serve

__all__ = ["serve"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the codec alone does not pull in the HTTP server and onnxruntime.
    if name == "serve":
        from mlpack.serving.workers import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
