"""mlpack containerize against a real engine (Podman via the Docker SDK): hermetic build, release gate, tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from container_fixture import (
    assert_same_contract,
    base_image,
    blob,
    empty_base,
    fresh_tmp,
    leftovers,
    podman_service,
)

from mlpack.container.contract import SYSTEM_PYTHON, VENV_PYTHON, Contract
from mlpack.fileio import canonical_json, load_npz, npz_bytes, sha256_file
from tests.conftest import CliRunner, one_sentence_error

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one Podman service: one worker

ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]
ROOT = Path(__file__).resolve().parents[1]


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


def test_rendered_dockerfile_and_oci_config_keep_one_contract(built: Path) -> None:
    """No engine needed: both engines take user, port, entrypoint and healthcheck from the one contract."""
    from mlpack.container import dockerfile, labels
    from mlpack.container.oci import image_config
    from mlpack.package import open_intact

    package = open_intact(built, "")
    text = dockerfile(package, "localhost/anything:1", "mlpack-0.1.0-py3-none-any.whl")
    base_config = {"config": {"Env": ["PATH=/usr/bin"], "Cmd": ["bash"]}, "rootfs": {"diff_ids": []}}
    config = image_config(base_config, Contract("forest", SYSTEM_PYTHON), labels(package), [b"", b""])
    assert_same_contract(text, config["config"])
    assert config["config"]["Cmd"] is None  # the base's Cmd would be appended to the entrypoint
    for key, value in labels(package).items():
        assert f"LABEL {key}={json.dumps(value)}" in text and config["config"]["Labels"][key] == value


def test_release_image_passes_the_gate_and_serves(engine: Any, base: str, built: Path, tmp_path: Path,
                                                  cli: CliRunner) -> None:  # fmt: skip
    tmp, env = fresh_tmp(tmp_path)
    started = time.monotonic()
    result = cli(
        "containerize", built, "--base", base, "--tag", "localhost/mlpack-test/forest:1", "--json", env=env
    )
    first = time.monotonic() - started
    assert result.returncode == 0, result.stderr + result.stdout
    assert leftovers(tmp) == []  # the ~46 MB build context went with the run
    data = json.loads(result.stdout)
    assert data["verdict"] == "identical" and data["tag"] == "localhost/mlpack-test/forest:1"
    assert data["base_digest"]
    image = engine.images.get(data["image_id"])  # by id: other runs may tag their own build meanwhile
    labels = image.labels
    digest = json.loads((built / "mlpack.json").read_text())
    assert labels["org.mlpack.package.digest"] == data["package_digest"]
    assert labels["org.opencontainers.image.version"] == "1" and labels["org.opencontainers.image.created"]
    config = image.attrs["Config"]
    promised = Contract("forest", VENV_PYTHON).image_config({})
    assert config["User"] == promised["User"] and config["Entrypoint"] == promised["Entrypoint"]
    assert list(config["ExposedPorts"]) == list(promised["ExposedPorts"])
    healthcheck = config.get("Healthcheck") or podman_healthcheck(image.id)
    assert healthcheck == promised["Healthcheck"] and digest
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
    # nothing changed: the rebuild reuses every cached layer and gives the same image; --context keeps its folder
    started = time.monotonic()
    again = cli("containerize", built, "--base", base, "--tag", "localhost/mlpack-test/forest:1", "--json",
                "--context", tmp_path / "context", env=env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["image_id"] == data["image_id"]
    assert time.monotonic() - started < first
    assert (tmp_path / "context" / "Dockerfile").is_file() and any((tmp_path / "context" / "wheels").iterdir())
    assert leftovers(tmp) == []


def test_gate_refuses_an_image_that_does_not_reproduce(
    engine: Any, base: str, package: Path, tmp_path: Path, cli: CliRunner
) -> None:
    """Reference outputs altered and re-hashed: intact as a package, but no machine reproduces them."""
    outputs = load_npz(package / "reference/outputs.npz")
    outputs["probabilities"][3] = outputs["probabilities"][3][::-1]
    (package / "reference/outputs.npz").write_bytes(npz_bytes(outputs))
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["reference/outputs.npz"] = sha256_file(package / "reference/outputs.npz")
    manifest["version"] = "2-altered"
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    digest = f"sha256:{sha256_file(package / 'mlpack.json')}"
    tmp, env = fresh_tmp(tmp_path)
    result = cli(
        "containerize", package, "--base", base, "--tag", "localhost/mlpack-test/forest:altered", "--json", env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert leftovers(tmp) == []
    assert "does not pass mlpack verify (mismatch" in json.loads(result.stdout)["error"]
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get("localhost/mlpack-test/forest:altered")
    # the candidate is gone (looked for by its package digest: other runs may share this engine)
    assert not [i for i in engine.images.list() if (i.labels or {}).get("org.mlpack.package.digest") == digest]


def test_engine_faults_exit_5(engine: Any, built: Path, tmp_path: Path, cli: CliRunner) -> None:
    unreachable = cli("containerize", built, env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert unreachable.returncode == 5
    line = one_sentence_error(unreachable)
    assert "No container engine answers" in line and "podman system service" in line
    missing = cli("containerize", built, "--base", "localhost/no-such-base:1")
    assert missing.returncode == 5 and "not in the engine's store" in one_sentence_error(missing)


def test_engine_refusals_are_engine_errors(engine: Any, base: str, built: Path, tmp_path: Path,
                                           cli: CliRunner) -> None:  # fmt: skip
    """The engine refusing a step after the build (tag, gate container) exits 5 in one sentence."""
    from mlpack.container.engine import gate
    from mlpack.errors import EngineError

    # a tag the engine refuses, found only after the build and the gate passed: nothing is tagged
    refused = cli("containerize", built, "--base", base, "--tag", "localhost/mlpack-test/refused:-bad")
    assert refused.returncode == 5, refused.stderr + refused.stdout
    line = one_sentence_error(refused)
    assert "The engine failed to tag the image as localhost/mlpack-test/refused:-bad" in line
    assert not [tag for image in engine.images.list() for tag in image.tags if "mlpack-test/refused" in tag]
    # the gate's container cannot be created: its image is gone
    image = engine.images.get(empty_base(engine, tmp_path, "localhost/mlpack-test-gone"))
    engine.images.remove(image.id, force=True)
    with pytest.raises(EngineError, match="failed to run the release gate's container") as raised:
        gate(engine, image, "forest")
    assert raised.value.exit_code == 5 and "\n" not in raised.value.message


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
    tmp, env = fresh_tmp(tmp_path)
    first = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "one", "--base", rootfs, "--json",
                env=env)  # fmt: skip
    assert first.returncode == 0, first.stderr + first.stdout
    assert leftovers(tmp) == []
    time.sleep(1.1)  # another second on the clock, another folder: still the same image
    (tmp_path / "elsewhere").mkdir()
    second = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "two", "--base", rootfs, "--json",
                 cwd=tmp_path / "elsewhere")  # fmt: skip
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["digest"] == two["digest"] and one["layers"]["runtime"] < 200 * 10**6
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "forest-1"
    # the same promises as the Dockerfile the docker engine builds from
    from mlpack.container import dockerfile
    from mlpack.package import open_intact

    manifest = json.loads(blob(tmp_path / "one", index["manifests"][0]["digest"]))
    config = json.loads(blob(tmp_path / "one", manifest["config"]["digest"]))
    assert_same_contract(dockerfile(open_intact(built, ""), rootfs.name, "mlpack.whl"), config["config"])
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
        "containerize",
        built,
        "--engine",
        "oci",
        "--out",
        tmp_path / "four",
        "--base",
        tmp_path / "no.tar",
        env=env,
    )
    assert missing.returncode == 5 and "is missing" in missing.stderr and not (tmp_path / "four").exists()
    assert leftovers(tmp) == []


@pytest.mark.registry
def test_push_after_the_gate_reaches_a_real_registry(engine: Any, base: str, built: Path, tmp_path: Path,
                                                      cli: CliRunner) -> None:  # fmt: skip
    from registry_fixture import image_referrers, package_trust_kinds, start_registry

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
        assert image_referrers(registry.url, "mlpack-test/forest", pushed) == package_trust_kinds(built)


def test_build_faults_name_the_cause(engine: Any, package: Path, tmp_path: Path, cli: CliRunner) -> None:
    # a base with no shell and no Python: the install step fails and its log tail is shown
    empty = empty_base(engine, tmp_path)
    tmp, env = fresh_tmp(tmp_path)
    failed = cli("containerize", package, "--base", empty, "--tag", "localhost/x/y:1", env=env)
    assert (
        failed.returncode == 5 and "The image build failed" in failed.stderr and "Traceback" not in failed.stderr
    )
    assert leftovers(tmp) == []  # a failed run removes its build context too
    # a runtime lock pinning a release with no wheel for the image's Python: the requirement is named
    lock = package / "env/requirements.lock"
    lock.write_text("numpy==1.21.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["files"]["env/requirements.lock"] = sha256_file(lock)
    (package / "mlpack.json").write_bytes(canonical_json(manifest))
    missing = cli("containerize", package, "--base", empty, env=env)
    assert missing.returncode == 5 and leftovers(tmp) == []
    line = one_sentence_error(missing)
    assert "no wheel for the image's platform" in line and "numpy==1.21.0" in line


def test_containerize_from_an_installed_mlpack(built: Path, tmp_path: Path, cli: CliRunner) -> None:
    """From a wheel install, with no source tree: mlpack's wheel is rebuilt from the installed files that
    RECORD lists, the same bytes every time, and it installs and serves as the original does."""
    import zipfile

    from container_fixture import base_tarball

    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp_path / "dist", ROOT], check=True, timeout=600)
    (original,) = (tmp_path / "dist").glob("mlpack-*.whl")
    installed = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", installed, original], check=True, timeout=600)
    script = (
        "import json, sys, mlpack; from pathlib import Path; from mlpack.container import wheels\n"
        "print(json.dumps({'module': mlpack.__file__, 'source': str(wheels.source_root()),"
        " 'wheel': wheels.mlpack_wheel(Path(sys.argv[1]))}))"
    )

    def rebuild(run: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / run).mkdir()
        env = {**os.environ, "PYTHONPATH": str(installed), "MLPACK_CACHE_DIR": str(tmp_path / f"cache-{run}")}
        return subprocess.run([sys.executable, "-c", script, tmp_path / run], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    first, second = rebuild("one"), rebuild("two")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert Path(answer["module"]).is_relative_to(installed) and answer["source"] == "None"
    wheel = tmp_path / "one" / answer["wheel"]
    assert wheel.read_bytes() == (tmp_path / "two" / json.loads(second.stdout)["wheel"]).read_bytes()
    with zipfile.ZipFile(original) as built_wheel, zipfile.ZipFile(wheel) as rebuilt:
        assert sorted(built_wheel.namelist()) == sorted(rebuilt.namelist())
        assert (
            "mlpack/container/wheels.py" in rebuilt.namelist()
            and "mlpack/templates/Dockerfile.j2" in rebuilt.namelist()
        )
        assert all(
            built_wheel.read(name) == rebuilt.read(name)
            for name in rebuilt.namelist()
            if not name.endswith("/RECORD")
        )
        assert rebuilt.namelist()[-1].endswith(".dist-info/RECORD")
    again = tmp_path / "again"
    subprocess.run([*pip, "install", "--no-deps", "--target", again, wheel], check=True, timeout=600)
    assert (again / "mlpack" / "templates" / "Dockerfile.j2").is_file()
    # the daemonless engine from that installation, in a fresh TMPDIR that it leaves as it found it
    tmp, env = fresh_tmp(tmp_path)
    cache = Path(os.environ.get("MLPACK_TEST_IMAGE_CACHE", os.path.expanduser("~/.cache/mlpack-test")))
    written = cli("containerize", built, "--engine", "oci", "--out", tmp_path / "layout", "--base",
                  base_tarball(cache), "--json", cwd=tmp_path, env={**env, "PYTHONPATH": str(installed)})  # fmt: skip
    assert written.returncode == 0, written.stderr + written.stdout
    assert json.loads(written.stdout)["digest"].startswith("sha256:") and leftovers(tmp) == []
    # an installed file that no longer matches RECORD is refused, not shipped
    (installed / "mlpack" / "clock.py").write_text("# changed after installation\n")
    tampered = rebuild("three")
    assert tampered.returncode != 0 and "differs from its RECORD" in tampered.stderr
