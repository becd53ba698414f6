"""A real OCI registry (Distribution, Debian's docker-registry) on loopback, for tests that push and pull.

CI installs it (`apt-get install docker-registry`); a missing binary fails loudly instead of skipping, so
the registry tests can never pass by not running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

BINARY = "/usr/bin/docker-registry"
STARTUP_S = 20.0


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:<port>, as a REF starts
    root: Path  # storage.filesystem.rootdirectory

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_file(self, digest: str) -> Path:
        """Where Distribution's filesystem driver keeps a blob (manifests included)."""
        hex_ = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def free_port() -> int:
    """A port nothing listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_registry(folder: Path, auth: str = "", tls: tuple[Path, Path, Path] | None = None) -> Iterator[Registry]:
    """Write a config.yml, serve it on a free loopback port, wait until /v2/ answers, stop it afterwards.

    ``auth`` is a config.yml ``auth:`` section's body (htpasswd or token, see test_registry_login.py);
    ``tls`` the server's certificate, its key and the CA that signed it, so it serves HTTPS."""
    binary = shutil.which(BINARY) or shutil.which("docker-registry")
    if binary is None:
        pytest.fail(
            f"{BINARY} is missing: install it with `apt-get install -y docker-registry` (the registry tests "
            "need a real registry and are never skipped)."
        )
    root = folder / "storage"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + (f"auth:\n{auth}" if auth else "")
    )
    log = folder / "registry.log"
    # REGISTRY_* variables would override the config file; the test registry must be exactly this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=folder
        )
    registry = Registry(f"127.0.0.1:{port}", root)
    scheme = "https" if tls else "http"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"docker-registry exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                # up once it answers: 200, or 401 where it asks for a login
                answer = requests.get(
                    f"{scheme}://{registry.host}/v2/", timeout=1, verify=str(tls[2]) if tls else True
                )
                if answer.status_code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not answer within {STARTUP_S:.0f} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def package_trust_kinds(package: Path) -> list[str]:
    found = {"signature": "mlpack.sig", "bom": "env/bom.cdx.json", "provenance": "env/provenance.intoto.json"}
    return sorted(kind for kind, path in found.items() if (package / path).is_file())


def image_referrers(url: str, repository: str, pushed: str) -> list[str]:
    """The kinds of mlpack referrers attached to a pushed image (Distribution: the sha256-<hex> tag's index),
    each checked to be about that image."""
    import requests

    from mlpack.oci import referrers, spec

    digest = pushed.rsplit("@", 1)[1]
    index = requests.get(f"{url}/v2/{repository}/manifests/sha256-{digest[7:]}",
                         headers={"Accept": spec.IMAGE_INDEX}, timeout=10).json()  # fmt: skip
    kinds = []
    for descriptor in index["manifests"]:
        manifest = requests.get(f"{url}/v2/{repository}/manifests/{descriptor['digest']}",
                                headers={"Accept": spec.IMAGE_MANIFEST}, timeout=10).json()  # fmt: skip
        assert manifest["subject"]["digest"] == digest
        kinds.append(descriptor["annotations"][referrers.KIND])
    return sorted(kinds)
