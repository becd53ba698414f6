"""Every exception mlpack raises on purpose, grouped by meaning; each carries its CLI exit code.

Exit codes (docs/design.md "Exit codes"): 0 success, identical or equivalent · 1 outputs differ (conversion
parity, verify's mismatch, the release gate) · 2 usage or bad input · 3 integrity (tampered, missing or
unsafe files) · 4 this environment cannot run the model · 5 a container engine, registry or index failed.
Nothing outside this module defines an exception class; the CLI maps them to exit codes in one place.
"""

from __future__ import annotations

from typing import Any


class MlpackError(Exception):
    """Base of every error mlpack raises on purpose. The message is one sentence saying what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra fields for ``--json`` error objects; empty unless a subclass has data worth printing."""
        return {}


# ---- 2: the caller's input


class UsageError(MlpackError):
    """Bad input: a missing file, a sample that does not fit, an unsupported model, a refused pickle."""

    exit_code = 2


class RequestError(UsageError):
    """A bad inference request; carries the HTTP status the server answers with (400, 404, 413, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)


# ---- 1: outputs that differ


class ConversionError(MlpackError):
    """The model could not be converted to ONNX."""

    exit_code = 1


class MachineError(ConversionError):
    """The golden outputs do not hold on a machine class the build was asked to prove (``--machines``)."""

    def __init__(self, message: str, machines: list[Any]) -> None:
        super().__init__(message)
        self.machines = machines

    def details(self) -> dict[str, Any]:
        return {"machines": self.machines}


class ParityError(ConversionError):
    """Conversion changed the outputs beyond tolerance; carries the per-output comparisons."""

    def __init__(self, message: str, comparisons: list[Any]) -> None:
        super().__init__(message)
        self.comparisons = comparisons

    def details(self) -> dict[str, Any]:
        return {"parity": [c.to_dict() for c in self.comparisons]}


class GateFailed(MlpackError):
    """A candidate image does not reproduce the golden outputs: it was removed and not tagged."""

    exit_code = 1

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report

    def details(self) -> dict[str, Any]:
        return {"report": self.report}


# ---- 3: integrity


class IntegrityError(MlpackError):
    """A package file was changed, removed or added, or the manifest is corrupt or hostile."""

    exit_code = 3


# ---- 4: this environment


class RuntimeEnvironmentError(MlpackError):
    """This environment cannot run the model (missing runtime, unsupported opset, newer format)."""

    exit_code = 4


# ---- 5: services mlpack talks to


class ServiceError(MlpackError):
    """Something outside mlpack failed: a container engine, a registry, a package index."""

    exit_code = 5


class EngineError(ServiceError):
    """A container engine failed or refused (unreachable, missing base, failed build step)."""


class RegistryError(ServiceError):
    """An OCI registry failed or refused (unreachable, HTTP error, TLS, not compliant)."""


class LockUnavailable(ServiceError):
    """No package index could answer a lock query; builds go on and the manifest says why."""
