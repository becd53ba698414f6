"""mlpack containerize against a real engine (Podman via the Docker SDK): hermetic build, release gate, tags."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from container_fixture import base_image, podman_service

from mlpack.fileio import canonical_json, load_npz, npz_bytes, sha256_file
from tests.conftest import CliRunner, one_sentence_error

ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        old = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = url
        yield docker.from_env()
        if old is None:
            os.environ.pop("DOCKER_HOST")
        else:
            os.environ["DOCKER_HOST"] = old


@pytest.fixture(scope="module")
def base(engine: Any) -> str:
    cache = Path(os.environ.get("MLPACK_TEST_IMAGE_CACHE", os.path.expanduser("~/.cache/mlpack-test")))
    return base_image(cache)


def podman_healthcheck(image: str) -> dict[str, Any]:
    """Podman's Docker-compatible API leaves the healthcheck out of image inspection; its own CLI has it."""
    inspected = json.loads(subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True,
                                          check=True).stdout)[0]  # fmt: skip
    return dict(inspected.get("Healthcheck") or inspected["Config"]["Healthcheck"])


def run_in(engine: Any, image: str, *command: str) -> str:
    """Standard output only: some engines' combined logs interleave stderr into it."""
    container = engine.containers.create(image, entrypoint=list(command), network_mode="none", ulimits=ULIMITS)
    try:
        container.start()
        container.wait(timeout=300)
        return str(container.logs(stdout=True, stderr=False).decode())
    finally:
        container.remove(force=True)


def test_release_image_passes_the_gate_and_serves(engine: Any, base: str, built: Path, cli: CliRunner) -> None:
    started = time.monotonic()
    result = cli("containerize", built, "--base", base, "--tag", "localhost/mlpack-test/forest:1", "--json")
    first = time.monotonic() - started
    assert result.returncode == 0, result.stderr + result.stdout
    data = json.loads(result.stdout)
    assert data["verdict"] == "identical" and data["tag"] == "localhost/mlpack-test/forest:1"
    assert data["base_digest"]
    image = engine.images.get("localhost/mlpack-test/forest:1")
    labels = image.labels
    digest = json.loads((built / "mlpack.json").read_text())
    assert labels["org.mlpack.package.digest"] == data["package_digest"]
    assert labels["org.opencontainers.image.version"] == "1" and labels["org.opencontainers.image.created"]
    config = image.attrs["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"][:3] == ["/opt/mlpack/bin/mlpack", "serve", "/models/forest"]
    healthcheck = config.get("Healthcheck") or podman_healthcheck("localhost/mlpack-test/forest:1")
    assert "v2/health/ready" in " ".join(healthcheck["Test"]) and digest
    # only a runtime above the base: no training stack, no converter, no pip
    found = run_in(engine, image.id, "/opt/mlpack/bin/python", "-c",
                   "import importlib.util as u; print([m for m in ('onnx', 'skl2onnx', 'sklearn', 'scipy', 'torch', "
                   "'pip') if u.find_spec(m)])")  # fmt: skip
    assert found.strip() == "[]"
    base_layers = {layer["Id"] for layer in engine.api.history(base)}
    above = sum(layer["Size"] for layer in engine.api.history(image.id) if layer["Id"] not in base_layers)
    assert above <= 200 * 10**6, f"{above / 1e6:.0f} MB above the base"
    # the container serves: ready once the package verified inside it
    container = engine.containers.run(image.id, detach=True, network_mode="none", ulimits=ULIMITS)
    try:
        probe = ("import time, urllib.request\nfor _ in range(100):\n    try:\n        print(urllib.request.urlopen("
                 "'http://127.0.0.1:8080/v2/health/ready', timeout=1).status); break\n    except Exception:\n"
                 "        time.sleep(0.2)")  # fmt: skip
        _, output = container.exec_run(["/opt/mlpack/bin/python", "-c", probe])
        assert output.decode().strip() == "200", output
    finally:
        container.remove(force=True)
    # nothing changed: the rebuild reuses every cached layer and gives the same image
    started = time.monotonic()
    again = cli("containerize", built, "--base", base, "--tag", "localhost/mlpack-test/forest:1", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["image_id"] == data["image_id"]
    assert time.monotonic() - started < first


def test_gate_refuses_an_image_that_does_not_reproduce(
    engine: Any, base: str, package: Path, cli: CliRunner
) -> None:
    """Reference outputs altered and re-hashed: intact as a package, but no machine reproduces them."""
    outputs = load_npz(package / "reference/outputs.npz")
    outputs["probabilities"][3] = outputs["probabilities"][3][::-1]
    (package / "reference/outputs.npz").write_bytes(npz_bytes(outputs))
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["reference/outputs.npz"] = sha256_file(package / "reference/outputs.npz")
    manifest["version"] = "2-altered"
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    before = {i.id for i in engine.images.list()}
    result = cli(
        "containerize", package, "--base", base, "--tag", "localhost/mlpack-test/forest:altered", "--json"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not pass mlpack verify (mismatch" in json.loads(result.stdout)["error"]
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get("localhost/mlpack-test/forest:altered")
    tags = [tag for image in engine.images.list() for tag in image.tags]
    assert not any("candidate" in tag for tag in tags)
    assert {i.id for i in engine.images.list()} - before == set()  # the candidate is gone


def test_engine_faults_exit_5(engine: Any, built: Path, tmp_path: Path, cli: CliRunner) -> None:
    unreachable = cli("containerize", built, env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert unreachable.returncode == 5
    line = one_sentence_error(unreachable)
    assert "No container engine answers" in line and "podman system service" in line
    missing = cli("containerize", built, "--base", "localhost/no-such-base:1")
    assert missing.returncode == 5 and "not in the engine's store" in one_sentence_error(missing)


def test_offline_package_cannot_be_containerized(engine: Any, forest: Any, iris: Any, tmp_path: Path,
                                                cli: CliRunner) -> None:  # fmt: skip
    import mlpack

    offline = mlpack.build(forest, sample=iris[0][:5], out=tmp_path, resolve=False)
    result = cli("containerize", offline.path, "--base", "localhost/anything:1")
    assert result.returncode in (2, 5)
    assert "runtime lock" in result.stderr or "not in the engine's store" in result.stderr


def test_daemonless_oci_layout_is_reproducible_valid_and_runs(
    engine: Any, built: Path, tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from container_fixture import base_tarball

    cache = Path(os.environ.get("MLPACK_TEST_IMAGE_CACHE", os.path.expanduser("~/.cache/mlpack-test")))
    rootfs = base_tarball(cache)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "one", "--base", rootfs, "--json")
    assert first.returncode == 0, first.stderr + first.stdout
    time.sleep(1.1)  # another second on the clock, another folder: still the same image
    (tmp_path / "elsewhere").mkdir()
    second = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "two", "--base", rootfs, "--json",
                 cwd=tmp_path / "elsewhere")  # fmt: skip
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["digest"] == two["digest"] and one["layers"]["runtime"] < 200 * 10**6
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "forest-1"
    # skopeo checks every blob digest while copying; the archive then loads and runs in Podman
    copy = subprocess.run(["skopeo", "copy", f"oci:{tmp_path / 'one'}:forest-1",
                           f"docker-archive:{tmp_path / 'image.tar'}"], capture_output=True, text=True)  # fmt: skip
    assert copy.returncode == 0, copy.stderr
    (image,) = engine.images.load((tmp_path / "image.tar").read_bytes())
    assert image.labels["org.mlpack.package.digest"] == one["package_digest"]
    report = json.loads(
        run_in(engine, image.id, "/usr/bin/python3", "-m", "mlpack", "verify", "/models/forest", "--json")
    )
    assert report["verdict"] == "identical" and report["environment"]["runtime"] == []
    # a layout can be the base of another image
    layered = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "three", "--base",
                  f"oci:{tmp_path / 'one'}:forest-1", "--json")  # fmt: skip
    assert layered.returncode == 0, layered.stderr
    missing = cli(
        "containerize", built, "--engine", "oci", "--out", tmp_path / "four", "--base", tmp_path / "no.tar"
    )
    assert missing.returncode == 5 and "is missing" in missing.stderr and not (tmp_path / "four").exists()


def test_push_after_the_gate_reaches_a_real_registry(engine: Any, base: str, built: Path, tmp_path: Path,
                                                      cli: CliRunner) -> None:  # fmt: skip
    from registry_fixture import start_registry

    with start_registry(tmp_path / "registry") as registry:
        release = f"{registry.host}/mlpack-test/forest:1"
        result = cli("containerize", built, "--base", base, "--tag", release, "--push", "--json")
        assert result.returncode == 0, result.stderr + result.stdout
        pushed = json.loads(result.stdout)["pushed"]
        assert pushed.startswith(f"{release}@sha256:")
        # skopeo checks every blob digest as it copies the image back out of the registry
        copy = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{release}",
                               f"oci:{tmp_path / 'pulled'}:forest"], capture_output=True, text=True)  # fmt: skip
        assert copy.returncode == 0, copy.stderr
        inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                                  f"docker://{release}"], capture_output=True, text=True)  # fmt: skip
        assert inspect.stdout.strip() == pushed.rsplit("@", 1)[1]  # the registry holds what was gated


def test_build_faults_name_the_cause(engine: Any, package: Path, tmp_path: Path, cli: CliRunner) -> None:
    import io
    import tarfile

    # a base with no shell and no Python: the install step fails and its log tail is shown
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"void\n"))
    (tmp_path / "empty.tar").write_bytes(buffer.getvalue())
    engine.api.import_image(
        src=str(tmp_path / "empty.tar"), repository="localhost/mlpack-test-empty", tag="latest"
    )
    failed = cli(
        "containerize", package, "--base", "localhost/mlpack-test-empty:latest", "--tag", "localhost/x/y:1"
    )
    assert (
        failed.returncode == 5 and "The image build failed" in failed.stderr and "Traceback" not in failed.stderr
    )
    # a runtime lock pinning a release with no wheel for the image's Python: the requirement is named
    lock = package / "env/requirements.lock"
    lock.write_text("numpy==1.21.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["env/requirements.lock"] = sha256_file(lock)
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    missing = cli("containerize", package, "--base", "localhost/mlpack-test-empty:latest")
    assert missing.returncode == 5
    line = one_sentence_error(missing)
    assert "no wheel for the image's platform" in line and "numpy==1.21.0" in line
