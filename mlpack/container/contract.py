"""What every mlpack serving image promises, defined once: who it runs as, where the package lies, how it
starts, how an orchestrator probes it, what it is labelled with, and how the release gate verifies it.

The Dockerfile template and the daemonless OCI writer both take their values from here, so the two engines
cannot drift apart; they differ only in the interpreter (``VENV_PYTHON`` in the venv the Dockerfile makes,
``SYSTEM_PYTHON`` with PYTHONPATH in the OCI layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpack import __version__, clock
from mlpack.oci import spec
from mlpack.options import DEFAULT_PORT
from mlpack.package import Package

USER = "65532:65532"  # distroless' "nonroot": no name needed in /etc/passwd, never root
PORT = DEFAULT_PORT
MODELS_ROOT = "/models"
READY_PATH = "/v2/health/ready"  # KServe V2 readiness: the package verified and loaded
HEALTH_INTERVAL_S = 10
HEALTH_TIMEOUT_S = 3
HEALTH_START_PERIOD_S = 30  # start-up verifies every file's hash before the server answers
VENV = "/opt/mlpack"  # the venv the Dockerfile makes
VENV_PYTHON = f"{VENV}/bin/python"
SYSTEM_PYTHON = "/usr/bin/python3"
DIGEST_LABEL = spec.PACKAGE_DIGEST
_NANOSECONDS = 1_000_000_000


def models_dir(name: str) -> str:
    return f"{MODELS_ROOT}/{name}"


def labels(package: Package) -> dict[str, str]:
    """OCI annotations for the image; created comes from SOURCE_DATE_EPOCH (else the package's created)."""
    epoch = clock.source_date_epoch()
    return {
        spec.TITLE: package.name,
        spec.VERSION: package.version,
        spec.CREATED: clock.iso(epoch) if epoch is not None else package.manifest.created,
        "org.opencontainers.image.description": f"{package.name} {package.version} served by mlpack (KServe V2)",
        "org.opencontainers.image.vendor": "mlpack",
        DIGEST_LABEL: package.digest,
        "org.mlpack.version": __version__,
    }


@dataclass(frozen=True)
class Contract:
    """The promises of the image serving package ``name`` with the interpreter at ``python``."""

    name: str
    python: str
    user: str = USER
    port: int = PORT
    interval_s: int = HEALTH_INTERVAL_S
    timeout_s: int = HEALTH_TIMEOUT_S
    start_period_s: int = HEALTH_START_PERIOD_S

    @property
    def models(self) -> str:
        return models_dir(self.name)

    @property
    def entrypoint(self) -> list[str]:
        return [self.python, "-m", "mlpack", "serve", self.models, "--host", "0.0.0.0", "--port", str(self.port)]

    @property
    def healthcheck(self) -> list[str]:
        """The probe as an exec-form command: the image has no shell guaranteed, and no curl."""
        probe = (
            "import sys, urllib.request; sys.exit(urllib.request.urlopen("
            f"'http://127.0.0.1:{self.port}{READY_PATH}', timeout={self.timeout_s - 1}).status != 200)"
        )
        return [self.python, "-c", probe]

    @property
    def gate(self) -> list[str]:
        """What the release gate runs inside the candidate: verify the package where the image serves it."""
        return [self.python, "-m", "mlpack", "verify", self.models, "--json"]

    def image_config(self, image_labels: dict[str, str]) -> dict[str, Any]:
        """The runtime part of an image config (Docker's schema, which Podman and Docker honour), as an
        engine writes it from the Dockerfile: durations in nanoseconds, the probe under ``CMD``."""
        return {
            "User": self.user,
            "ExposedPorts": {f"{self.port}/tcp": {}},
            "Entrypoint": self.entrypoint,
            "Cmd": None,
            "Labels": image_labels,
            "Healthcheck": {
                "Test": ["CMD", *self.healthcheck],
                "Interval": self.interval_s * _NANOSECONDS,
                "Timeout": self.timeout_s * _NANOSECONDS,
                "StartPeriod": self.start_period_s * _NANOSECONDS,
            },
        }

    def template_values(self) -> dict[str, Any]:
        """The names templates/Dockerfile.j2 renders the contract from."""
        return {
            "user": self.user,
            "port": self.port,
            "models": self.models,
            "entrypoint": self.entrypoint,
            "healthcheck": self.healthcheck,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "start_period_s": self.start_period_s,
        }
