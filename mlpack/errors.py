"""One exception root for mlpack; each subclass carries the CLI exit code (DESIGN.md "Exit codes")."""

from __future__ import annotations


class MlpackError(Exception):
    """Base of every error mlpack raises on purpose. The message is one sentence saying what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(MlpackError):
    """Bad input: a missing file, a sample that does not fit, an unsupported model, a refused pickle."""

    exit_code = 2


class ConversionError(MlpackError):
    """The model could not be converted, or the conversion does not reproduce the native outputs."""

    exit_code = 1


class IntegrityError(MlpackError):
    """A package file was changed, removed or added, or the manifest is corrupt."""

    exit_code = 3


class RuntimeEnvironmentError(MlpackError):
    """This environment cannot run the model (missing runtime, unsupported opset, newer format)."""

    exit_code = 4


class EngineError(MlpackError):
    """A container engine or registry failed."""

    exit_code = 5
