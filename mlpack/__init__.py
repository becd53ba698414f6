"""mlpack: package a trained model so that it gives the same answers on the next machine, and prove it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["MlpackError", "__version__", "build", "inspect", "load", "open_package", "pull", "push", "verify"]

if TYPE_CHECKING:
    from mlpack.builder import build
    from mlpack.errors import MlpackError
    from mlpack.inspector import inspect
    from mlpack.oci.artifact import pull, push
    from mlpack.package import open_package
    from mlpack.runtime import load
    from mlpack.verifier import verify

_LAZY = {
    "build": "mlpack.builder",
    "verify": "mlpack.verifier",
    "inspect": "mlpack.inspector",
    "open_package": "mlpack.package",
    "load": "mlpack.runtime",
    "push": "mlpack.oci.artifact",
    "pull": "mlpack.oci.artifact",
    "MlpackError": "mlpack.errors",
}


def __getattr__(name: str) -> Any:
    """Import lazily so that `import mlpack` and the CLI start fast. (Modules are named builder, verifier,
    inspector so that they never shadow the functions build, verify, inspect on this package.)"""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlpack' has no attribute {name!r}")
