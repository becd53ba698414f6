"""A real container engine for the tests: Podman's API service behind the Docker SDK, and a base image made
with mmdebstrap (Debian bookworm's python3), both set up once per session and never faked.

On these machines Podman needs a private mount namespace that hides the hybrid cgroup mount (docs/design.md "Containers").
A missing tool fails loudly with the install command instead of skipping. Below them, the checks the
container tests share: mlpack's folders left in TMPDIR, and the image contract as a Dockerfile declares it.
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
from typing import Any

import pytest

from mlpack.container.contract import SYSTEM_PYTHON, VENV_PYTHON

BASE_IMAGE = "localhost/mlpack-test-base:bookworm"
NANOSECONDS = 1_000_000_000
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


def arm64_base_tarball(cache: Path) -> Path:
    """A bookworm arm64 rootfs holding CPython and the C libraries wheels link against, unpacked (not
    installed: nothing runs under emulation) with mmdebstrap --variant=extract, and cached."""
    tarball = cache / f"bookworm-arm64-python3-{EPOCH}.tar"
    if not tarball.is_file():
        _require("mmdebstrap")
        cache.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        packages = "python3-minimal,python3.11-minimal,libpython3.11-stdlib,libstdc++6,libgcc-s1"
        subprocess.run(["mmdebstrap", "--quiet", "--variant=extract", "--arch=arm64", f"--include={packages}",
                        "bookworm", str(partial)], check=True, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
                       timeout=900)  # fmt: skip
        partial.rename(tarball)
    return tarball


def leftovers(tmp: Path) -> list[str]:
    """mlpack's temporary folders (build contexts, OCI work folders) still in TMPDIR."""
    return sorted(path.name for path in tmp.glob("mlpack-*"))


def fresh_tmp(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    return tmp, {"TMPDIR": str(tmp)}


def dockerfile_promises(text: str) -> dict[str, Any]:
    """User, port, entrypoint and healthcheck as a rendered Dockerfile declares them."""
    found = {}
    for line in text.splitlines():
        keyword, _, rest = line.partition(" ")
        if keyword in ("USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT"):
            found[keyword] = rest
    flags, _, probe = found["HEALTHCHECK"].partition(" CMD ")
    timings = dict(flag.removeprefix("--").split("=") for flag in flags.split())
    return {
        "user": found["USER"],
        "port": f"{found['EXPOSE']}/tcp",
        "entrypoint": json.loads(found["ENTRYPOINT"]),
        "probe": json.loads(probe),
        "timings": {key: int(value.removesuffix("s")) * NANOSECONDS for key, value in timings.items()},
    }


def assert_same_contract(dockerfile: str, config: dict[str, Any]) -> None:
    """The rendered Dockerfile and an image config promise the same; only the interpreter differs."""
    declared = dockerfile_promises(dockerfile)
    health = config["Healthcheck"]
    assert config["User"] == declared["user"] == "65532:65532"
    assert list(config["ExposedPorts"]) == [declared["port"]] == ["8080/tcp"]
    assert config["Entrypoint"][1:] == declared["entrypoint"][1:]
    assert declared["entrypoint"][1:5] == ["-m", "mlpack", "serve", "/models/forest"]
    assert {declared["entrypoint"][0], config["Entrypoint"][0]} == {VENV_PYTHON, SYSTEM_PYTHON}
    assert health["Test"][0] == "CMD" and health["Test"][2:] == declared["probe"][1:]
    assert "/v2/health/ready" in declared["probe"][-1]
    timings = {"interval": health["Interval"], "timeout": health["Timeout"], "start-period": health["StartPeriod"]}
    assert timings == declared["timings"] == {"interval": 10 * NANOSECONDS, "timeout": 3 * NANOSECONDS,
                                               "start-period": 30 * NANOSECONDS}  # fmt: skip


def empty_base(engine: Any, tmp_path: Path, repository: str = "localhost/mlpack-test-empty") -> str:
    """A base with no shell and no Python: any build step fails."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"void\n"))
    (tmp_path / "empty.tar").write_bytes(buffer.getvalue())
    engine.api.import_image(src=str(tmp_path / "empty.tar"), repository=repository, tag="latest")
    return f"{repository}:latest"


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / digest.replace(":", "/")).read_bytes()
