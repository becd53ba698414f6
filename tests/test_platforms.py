"""containerize --engine oci --platform: one image per platform under an image index, each gated by running
mlpack verify from its own unpacked files (arm64 under qemu-aarch64), and nothing written unless every run
passes. No engine: the gate's verdicts come from the JSON result, and the pushed index is checked by skopeo
copying each platform's image back out of a real registry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from container_fixture import arm64_base_tarball, base_tarball, blob, fresh_tmp, leftovers

import mlpack
from tests.conftest import CliRunner, one_sentence_error

pytestmark = pytest.mark.registry  # the multi-platform push goes to a real registry on loopback
ELF_MACHINE = {b"\xb7\x00": "aarch64", b"\x3e\x00": "x86_64"}  # e_machine, little-endian


@pytest.fixture(scope="module")
def bases() -> dict[str, Path]:
    cache = Path(os.environ.get("MLPACK_TEST_IMAGE_CACHE", os.path.expanduser("~/.cache/mlpack-test")))
    return {"linux/amd64": base_tarball(cache), "linux/arm64": arm64_base_tarball(cache)}


def base_args(bases: dict[str, Path]) -> list[str]:
    return [arg for platform, tar in bases.items() for arg in ("--base", f"{platform}={tar}")]


def test_a_multi_platform_layout_is_gated_in_each_image_and_reproducible(
    built: Path, bases: dict[str, Path], tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_fixture import start_registry

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    tmp, env = fresh_tmp(tmp_path)
    with start_registry(tmp_path / "registry") as registry:
        release = f"{registry.host}/mlpack-test/forest:multi"
        args = ["containerize", built, "--engine", "oci", "--platform", "linux/amd64,linux/arm64",
                *base_args(bases), "--tag", release]  # fmt: skip
        first = cli(*args, "--out", tmp_path / "one", "--machines", "x86-64-v2", "--push", "--json", env=env)
        assert first.returncode == 0, first.stderr + first.stdout
        result = json.loads(first.stdout)
        assert result["pushed"] == f"{release}@{result['digest']}"  # the index, bytes unchanged
        from registry_fixture import image_referrers, package_trust_kinds

        # the package's BOM, provenance (and signature) are attached to the image index as referrers
        assert image_referrers(registry.url, "mlpack-test/forest", result["pushed"]) == package_trust_kinds(built)
        import subprocess

        for arch in ("amd64", "arm64"):  # skopeo resolves each platform from the pushed index, checking blobs
            copy = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--override-arch", arch,
                                   f"docker://{release}", f"dir:{tmp_path / ('pulled-' + arch)}"],
                                  capture_output=True, text=True)  # fmt: skip
            assert copy.returncode == 0, copy.stderr
    gate = {(g["platform"], g["machine"]): g for g in result["gate"]}
    assert set(gate) == {("linux/amd64", "native"), ("linux/arm64", "aarch64"), ("linux/amd64", "x86-64-v2")}
    assert all(g["passed"] and g["verdict"] in ("identical", "equivalent") for g in gate.values()), gate
    assert leftovers(tmp) == []
    # one index naming the image index; an image per platform, of its architecture, with its own wheels
    layout = tmp_path / "one"
    (top,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert top["digest"] == result["digest"] and top["annotations"]["org.opencontainers.image.ref.name"] == release
    index = json.loads(blob(layout, top["digest"]))
    arches = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert arches == {"amd64": result["platforms"]["linux/amd64"], "arm64": result["platforms"]["linux/arm64"]}
    for arch, digest in arches.items():
        manifest = json.loads(blob(layout, digest))
        assert json.loads(blob(layout, manifest["config"]["digest"]))["architecture"] == arch
        runtime = _runtime_machines(layout, manifest)
        assert runtime == {"aarch64" if arch == "arm64" else "x86_64"}, (arch, runtime)
    again = cli(*args, "--out", tmp_path / "two", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["digest"] == result["digest"]


def _runtime_machines(layout: Path, manifest: dict[str, Any]) -> set[str]:
    """The ELF machines of the compiled modules in the image's runtime layer (the one before the package)."""
    import gzip
    import io
    import tarfile

    data = gzip.decompress(blob(layout, manifest["layers"][-2]["digest"]))
    found = set()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".so") and "/numpy/" in member.name:
                head = tar.extractfile(member).read(20)  # type: ignore[union-attr]
                found.add(ELF_MACHINE.get(head[18:20], head[18:20].hex()))
    return found


def test_the_gate_refuses_when_one_platform_cannot_hold_the_outputs(
    tmp_path: Path, bases: dict[str, Path], cli: CliRunner
) -> None:
    """A torch MLP with a softmax head and zero tolerance: Neoverse-N1's NEON kernels give other last bits
    (2 ulp measured), so the arm64 image fails its gate (the amd64 one, gated first, passed) and nothing is
    written."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10),
                          nn.Softmax(dim=1)).eval()  # fmt: skip
    sample = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    package = mlpack.build(model, sample=sample, name="mlp", out=tmp_path / "dist", timings=False,
                           tolerances={"value": {"atol": 0.0, "rtol": 0.0}}, accept_parity=True).path  # fmt: skip
    tmp, env = fresh_tmp(tmp_path)
    refused = cli("containerize", package, "--engine", "oci", "--platform", "linux/amd64,linux/arm64",
                  *base_args(bases), "--out", tmp_path / "image", env=env)  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "The linux/arm64 image does not pass mlpack verify as aarch64 (mismatch)" in one_sentence_error(refused)
    assert not (tmp_path / "image").exists() and not list(tmp_path.glob(".image.partial-*"))
    assert leftovers(tmp) == []


def test_platform_requests_are_checked_in_one_sentence(
    built: Path, bases: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    unknown = cli("containerize", built, "--engine", "oci", "--platform", "linux/s390x", "--out", tmp_path / "a")
    assert unknown.returncode == 2 and "Unknown platform 'linux/s390x'" in one_sentence_error(unknown)
    no_base = cli("containerize", built, "--engine", "oci", "--platform", "linux/amd64,linux/arm64",
                  "--base", f"linux/amd64={bases['linux/amd64']}", "--out", tmp_path / "b")  # fmt: skip
    assert no_base.returncode == 2 and "No base for linux/arm64" in one_sentence_error(no_base)
    docker = cli("containerize", built, "--platform", "linux/arm64")
    assert docker.returncode == 2 and "are for --engine oci" in one_sentence_error(docker)
    arm_only = cli("containerize", built, "--engine", "oci", "--platform", "linux/arm64", "--machines",
                   "x86-64-v2", *base_args(bases), "--out", tmp_path / "c")  # fmt: skip
    assert arm_only.returncode == 2 and "needs a linux/amd64 image" in one_sentence_error(arm_only)
    assert not any((tmp_path / name).exists() for name in "abc")
