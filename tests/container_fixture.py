"""A real container engine for the tests: Podman's API service behind the Docker SDK, and a base image made
with mmdebstrap (Debian bookworm's python3), both set up once per session and never faked.

On these machines Podman needs a private mount namespace that hides the hybrid cgroup mount (DESIGN.md).
A missing tool fails loudly with the install command instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BASE_IMAGE = "localhost/mlpack-test-base:bookworm"
EPOCH = "1700000000"  # mmdebstrap then makes the same tarball every time


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: apt-get install -y podman crun skopeo umoci mmdebstrap (see .ci/run).")
    return path


@contextmanager
def podman_service(folder: Path) -> Iterator[str]:
    """DOCKER_HOST for a Podman API service of our own, unless one is already given and answering."""
    import docker

    given = os.environ.get("DOCKER_HOST")
    if given:
        try:
            docker.from_env().ping()
            yield given
            return
        except Exception:
            pass
    _require("podman")
    socket = folder / "podman.sock"
    script = (
        "mount -t tmpfs none /sys/fs/cgroup/unified 2>/dev/null || true; "
        f"exec podman system service --time=0 unix://{socket}"
    )
    with open(folder / "podman.log", "w") as log:
        process = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                   stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    url = f"unix://{socket}"
    deadline = time.monotonic() + 30
    while True:
        try:
            docker.DockerClient(base_url=url).ping()
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"Podman's API service did not start: {(folder / 'podman.log').read_text()[-2000:]}")
            time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def base_image(cache: Path) -> str:
    """Import (once) a bookworm rootfs with python3 and python3-venv as BASE_IMAGE."""
    import docker

    try:
        docker.from_env().images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    tarball = base_tarball(cache)
    engine = docker.from_env()
    repository, tag = BASE_IMAGE.rsplit(":", 1)
    answer = engine.api.import_image(src=str(tarball), repository=repository, tag=tag)
    image_id = json.loads(answer.strip().splitlines()[-1])["status"] if isinstance(answer, str) else None
    engine.images.get(image_id or f"{repository}:latest").tag(repository, tag)  # Podman's API drops the tag
    return BASE_IMAGE


def base_tarball(cache: Path) -> Path:
    """A bookworm rootfs with python3 and python3-venv, made once with mmdebstrap and cached."""
    tarball = cache / f"bookworm-python3-{EPOCH}.tar"
    if not tarball.is_file():
        _require("mmdebstrap")
        cache.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
                        str(partial)], check=True, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH}, timeout=900)  # fmt: skip
        partial.rename(tarball)
    return tarball
