"""push and pull against a real OCI registry (Distribution) on 127.0.0.1: no mocks, real bytes on disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from registry_fixture import Registry, free_port, start_registry

import mlpack
from mlpack.errors import IntegrityError, RegistryError, UsageError
from mlpack.oci import artifact, images, spec
from mlpack.oci.reference import Reference, parse_reference
from mlpack.package import MANIFEST, open_package
from tests.conftest import CliRunner

pytestmark = [pytest.mark.registry, pytest.mark.xdist_group("registry")]  # one module registry: one worker


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the read-only tests; tests that tamper with storage start their own."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def fresh_reg(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture(scope="module")
def pushed(reg: Registry, built: Path) -> artifact.PushResult:
    return artifact.push(built, f"{reg.host}/forest")


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def everything_under(folder: Path) -> list[str]:
    """Hidden entries included: a failed pull must leave no staging folder behind either."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def put_blob(reg: Registry, repository: str, data: bytes) -> dict[str, object]:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    started = requests.post(f"{reg.url}/v2/{repository}/blobs/uploads/", timeout=10)
    assert started.status_code == 202, started.text
    done = requests.put(
        requests.compat.urljoin(started.url, started.headers["Location"]),
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def put_manifest(reg: Registry, repository: str, tag: str, manifest: dict[str, object]) -> str:
    body = json.dumps(manifest).encode()
    response = requests.put(
        f"{reg.url}/v2/{repository}/manifests/{tag}",
        data=body,
        headers={"Content-Type": spec.IMAGE_MANIFEST},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def crafted(
    reg: Registry,
    built: Path,
    repository: str,
    layers: list[tuple[str, bytes]],
    config_bytes: bytes | None = None,
    **overrides: object,
) -> None:
    """Push a hand-made manifest whose config is the real mlpack.json (or config_bytes), with the layers given."""
    config_blob = (built / MANIFEST).read_bytes() if config_bytes is None else config_bytes
    config = {"mediaType": spec.PACKAGE_CONFIG, **put_blob(reg, repository, config_blob)}
    descriptors = [
        {
            "mediaType": spec.FILE_LAYER,
            **put_blob(reg, repository, data),
            "annotations": {spec.TITLE: title},
        }
        for title, data in layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": spec.IMAGE_MANIFEST,
        "artifactType": spec.ARTIFACT_TYPE,
        "config": config,
        "layers": descriptors,
        **overrides,
    }
    put_manifest(reg, repository, "1", manifest)


# --- round trip ---------------------------------------------------------------------------------------------


def test_round_trip_keeps_every_byte_and_verifies(
    reg: Registry, built: Path, pushed: artifact.PushResult, tmp_path: Path
) -> None:
    local = open_package(built)
    assert pushed.reference == f"{reg.host}/forest:1"  # the tag defaults to the package version
    assert pushed.package_digest == local.digest
    assert set(pushed.uploaded) == {MANIFEST, *local.manifest.to_dict()["files"], "env/provenance.intoto.json"}

    pulled = artifact.pull(f"{reg.host}/forest:1", tmp_path)

    assert pulled.path == tmp_path / "forest-1"
    assert pulled.digest == local.digest
    assert files_of(pulled.path) == files_of(built)
    assert [p.name for p in tmp_path.iterdir()] == ["forest-1"]  # no staging folder left beside it
    assert mlpack.verify(pulled.path).verdict == "identical"


def test_a_signed_package_travels_with_its_signature_and_provenance(
    fresh_reg: Registry, package: Path, tmp_path: Path
) -> None:
    """mlpack.sig and the provenance are unlisted in mlpack.json: they travel as trust layers; pull --key checks
    the signature before anything is renamed into place; a signature layer of another media type is refused."""
    from mlpack import signing

    private, public = signing.keygen(tmp_path / "key")
    signing.sign(package, private)
    pushed = artifact.push(package, f"{fresh_reg.host}/signed:1")
    assert {"mlpack.sig", "env/provenance.intoto.json"} <= set(pushed.uploaded)
    pulled = artifact.pull(f"{fresh_reg.host}/signed:1", tmp_path / "out", key=public, require_signature=True)
    assert files_of(pulled.path) == files_of(package)
    assert mlpack.verify(pulled.path, key=public, require_signature=True).signature["status"] == "verified"
    _, other = signing.keygen(tmp_path / "other")
    with pytest.raises(IntegrityError, match="Key mismatch"):  # checked in staging: nothing is renamed in
        artifact.pull(f"{fresh_reg.host}/signed:1", tmp_path / "foreign", key=other)
    assert everything_under(tmp_path / "foreign") == []
    (package / "mlpack.sig").unlink()
    artifact.push(package, f"{fresh_reg.host}/unsigned:1")
    with pytest.raises(IntegrityError, match="not signed"):
        artifact.pull(f"{fresh_reg.host}/unsigned:1", tmp_path / "unsigned", key=public, require_signature=True)
    assert everything_under(tmp_path / "unsigned") == []

    manifest = json.loads(requests.get(f"http://{fresh_reg.host}/v2/signed/manifests/1", headers={
        "Accept": spec.IMAGE_MANIFEST}, timeout=10).content)  # fmt: skip
    for layer in manifest["layers"]:
        if layer["annotations"][spec.TITLE] == "mlpack.sig":
            layer["mediaType"] = spec.FILE_LAYER
    put_manifest(fresh_reg, "signed", "2", manifest)
    with pytest.raises(IntegrityError, match=r"carries mlpack\.sig as application/vnd\.mlpack\.file\.v1"):
        artifact.pull(f"{fresh_reg.host}/signed:2", tmp_path / "refused")
    assert everything_under(tmp_path / "refused") == []


def test_pull_by_digest(reg: Registry, built: Path, pushed: artifact.PushResult, tmp_path: Path) -> None:
    assert pushed.pinned == f"{reg.host}/forest@{pushed.digest}"
    by_digest = artifact.pull(pushed.pinned, tmp_path / "a")
    both = artifact.pull(f"{reg.host}/forest:ignored@{pushed.digest}", tmp_path / "b")  # the digest wins
    assert by_digest.digest == both.digest == open_package(built).digest
    assert files_of(by_digest.path) == files_of(built)


def test_push_twice_gives_the_same_digest_and_skips_blobs(
    reg: Registry, package: Path, pushed: artifact.PushResult
) -> None:
    """A copy elsewhere on disk pushes to the same manifest digest, and sends no blob the registry holds."""
    again = artifact.push(package, f"{reg.host}/forest:again")
    assert again.digest == pushed.digest
    assert again.package_digest == pushed.package_digest
    assert again.uploaded == ()
    assert set(again.skipped) == set(pushed.uploaded)
    digest_ref = artifact.push(package, f"{reg.host}/forest@{pushed.digest}")
    assert digest_ref.reference == f"{reg.host}/forest@{pushed.digest}"


def test_stored_manifest_layout(reg: Registry, built: Path, pushed: artifact.PushResult) -> None:
    response = requests.get(
        f"{reg.url}/v2/forest/manifests/1", headers={"Accept": spec.IMAGE_MANIFEST}, timeout=10
    )
    assert response.status_code == 200
    body = response.content
    assert (
        f"sha256:{hashlib.sha256(body).hexdigest()}" == pushed.digest == response.headers["Docker-Content-Digest"]
    )
    manifest = json.loads(body)
    assert body == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()  # canonical

    local = open_package(built)
    config_bytes = (built / MANIFEST).read_bytes()
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == spec.IMAGE_MANIFEST
    assert manifest["artifactType"] == "application/vnd.mlpack.package.v1"
    assert manifest["config"] == {
        "mediaType": "application/vnd.mlpack.manifest.v1+json",
        "digest": local.digest,
        "size": len(config_bytes),
    }
    config = requests.get(f"{reg.url}/v2/forest/blobs/{local.digest}", timeout=10)
    assert config.content == config_bytes  # the exact bytes of mlpack.json

    files = local.manifest.to_dict()["files"]
    provenance = "env/provenance.intoto.json"  # about the package, so unlisted: a trust layer after the files
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]] == [
        *sorted(files),
        provenance,
    ]
    for layer in manifest["layers"]:
        title = layer["annotations"]["org.opencontainers.image.title"]
        expected_type = {"model.onnx": "application/vnd.mlpack.model.onnx",
                         provenance: "application/vnd.mlpack.trust.v1+json"}.get(title, "application/vnd.mlpack.file.v1")  # fmt: skip
        assert layer["mediaType"] == expected_type
        digest = files[title] if title in files else hashlib.sha256((built / title).read_bytes()).hexdigest()
        assert layer["digest"] == f"sha256:{digest}"
        assert layer["size"] == (built / title).stat().st_size
    assert manifest["annotations"] == {
        "org.mlpack.package.digest": local.digest,
        "org.mlpack.package.name": "forest",
        "org.mlpack.package.version": "1",
        "org.opencontainers.image.version": "1",
        "org.opencontainers.image.created": local.manifest.to_dict()["created"],
    }


# --- refusals -----------------------------------------------------------------------------------------------


def test_tampered_blob_in_the_registry_is_refused(fresh_reg: Registry, built: Path, tmp_path: Path) -> None:
    pushed = artifact.push(built, f"{fresh_reg.host}/forest")
    model_digest = f"sha256:{open_package(built).manifest.to_dict()['files']['model.onnx']}"
    blob = fresh_reg.blob_file(model_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    dest = tmp_path / "dest"

    for ref in (f"{fresh_reg.host}/forest:1", pushed.pinned):
        with pytest.raises(IntegrityError, match=r"model\.onnx does not match its digest"):
            artifact.pull(ref, dest)
        assert everything_under(dest) == []


def test_tampered_manifest_in_the_registry_is_refused(fresh_reg: Registry, built: Path, tmp_path: Path) -> None:
    pushed = artifact.push(built, f"{fresh_reg.host}/forest")
    blob = fresh_reg.blob_file(pushed.digest)
    blob.write_bytes(
        blob.read_bytes().replace(b'"org.mlpack.package.name":"forest"', b'"org.mlpack.package.name":"forect"')
    )
    dest = tmp_path / "dest"
    for ref in (pushed.pinned, f"{fresh_reg.host}/forest:1"):
        with pytest.raises(IntegrityError, match="corrupt or was tampered with"):
            artifact.pull(ref, dest)
    assert everything_under(dest) == []


@pytest.mark.parametrize(
    "titles",
    [
        ["../evil"],
        ["reference/../../evil"],
        ["ABSOLUTE/evil"],
        ["model.onnx", "model.onnx"],
        ["mlpack.json"],
        ["reference", "reference/inputs.npz"],
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "duplicate", "manifest", "file-and-folder"],
)
def test_path_traversal_titles_are_refused(reg: Registry, built: Path, tmp_path: Path, titles: list[str]) -> None:
    dest = tmp_path / "pkgs" / "dest"
    outside = tmp_path / "outside"
    titles = [t.replace("ABSOLUTE", str(outside)) for t in titles]
    repository = f"evil-{hashlib.sha256(repr(titles).encode()).hexdigest()[:12]}"
    crafted(reg, built, repository, [(title, b"evil bytes\n") for title in titles])

    with pytest.raises(IntegrityError, match="path traversal"):
        artifact.pull(f"{reg.host}/{repository}:1", dest)
    assert everything_under(tmp_path) == []  # nothing at dest, beside it, or outside


def test_layers_must_match_the_package_manifest(reg: Registry, built: Path, tmp_path: Path) -> None:
    """A layer set that differs from mlpack.json's files (here: one extra file) is refused before writing."""
    files = open_package(built).manifest.to_dict()["files"]
    layers = [(title, (built / title).read_bytes()) for title in sorted(files)] + [
        ("extra/payload.sh", b"#!/bin/sh\n")
    ]
    crafted(reg, built, "extra", layers)
    with pytest.raises(IntegrityError, match=r"unlisted layers extra/payload\.sh"):
        artifact.pull(f"{reg.host}/extra:1", tmp_path)
    assert everything_under(tmp_path) == []


def _files_as_list(data: dict[str, Any]) -> None:
    data["files"] = sorted(data["files"])


def _name_as_number(data: dict[str, Any]) -> None:
    data["name"] = 3


def _hash_as_path(data: dict[str, Any]) -> None:
    data["files"]["model.onnx"] = "../../evil"


def _no_version(data: dict[str, Any]) -> None:
    del data["version"]


@pytest.mark.parametrize(
    "spoil",
    [_files_as_list, _name_as_number, _hash_as_path, _no_version],
    ids=["files-list", "name-number", "hash-not-hex", "no-version"],
)
def test_hostile_package_manifest_is_refused(
    reg: Registry, built: Path, tmp_path: Path, spoil: Callable[[dict[str, Any]], None]
) -> None:
    """A config that is valid JSON but no valid mlpack.json is refused by the typed parser, before writing."""
    data = json.loads((built / MANIFEST).read_bytes())
    spoil(data)
    files = open_package(built).manifest.files
    repository = f"hostile-{spoil.__name__.strip('_').replace('_', '-')}"
    layers = [(title, (built / title).read_bytes()) for title in sorted(files)]
    crafted(reg, built, repository, layers, config_bytes=json.dumps(data).encode())

    with pytest.raises(IntegrityError, match="is corrupt") as refused:
        artifact.pull(f"{reg.host}/{repository}:1", tmp_path / "dest")
    assert f"{reg.host}/{repository}:1" in refused.value.message
    assert refused.value.exit_code == 3
    assert everything_under(tmp_path) == []


def test_other_artifacts_are_not_mlpack_packages(reg: Registry, built: Path, tmp_path: Path) -> None:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", **put_blob(reg, "image", b"{}")}
    put_manifest(
        reg, "image", "1", {"schemaVersion": 2, "mediaType": spec.IMAGE_MANIFEST, "config": config, "layers": []}
    )
    with pytest.raises(UsageError, match="not an mlpack package"):
        artifact.pull(f"{reg.host}/image:1", tmp_path)
    assert everything_under(tmp_path) == []


def test_wrong_digest_reference(reg: Registry, package: Path, pushed: artifact.PushResult, tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match=r"HTTP 404 .*MANIFEST_UNKNOWN"):
        artifact.pull(f"{reg.host}/forest@{wrong}", tmp_path / "a")
    with pytest.raises(UsageError, match="not a sha256 digest"):
        artifact.pull(f"{reg.host}/forest@sha256:abc", tmp_path / "b")
    with pytest.raises(IntegrityError, match="artifact digest"):
        artifact.push(package, f"{reg.host}/forest-wrong@{wrong}")
    assert requests.head(f"{reg.url}/v2/forest-wrong/manifests/{wrong}", timeout=10).status_code == 404
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unreachable_registry(package: Path, tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # closed: nothing listens there
    sentence = f"registry not reachable at http://{host}: start it or check the address."
    with pytest.raises(RegistryError) as pushing:
        artifact.push(package, f"{host}/forest")
    with pytest.raises(RegistryError) as pulling:
        artifact.pull(f"{host}/forest:1", tmp_path / "dest")
    assert pushing.value.message == pulling.value.message == sentence
    assert pushing.value.exit_code == 5


def test_tls_against_a_plain_http_registry(reg: Registry, package: Path) -> None:
    with pytest.raises(
        RegistryError, match=r"TLS with the registry at https://.*--insecure for a plain-HTTP registry"
    ):
        artifact.push(package, f"{reg.host}/forest", insecure=False)


def test_existing_destination_is_refused_unless_force(
    reg: Registry, pushed: artifact.PushResult, tmp_path: Path
) -> None:
    first = artifact.pull(pushed.pinned, tmp_path)
    marker = first.path / "reference" / "stale.txt"
    marker.write_text("left from before\n")
    with pytest.raises(UsageError, match="already exists"):
        artifact.pull(pushed.pinned, tmp_path)
    assert marker.exists()

    again = artifact.pull(pushed.pinned, tmp_path, force=True)
    assert again.path == first.path and again.digest == pushed.package_digest
    assert not marker.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["forest-1"]


def test_push_refuses_a_tampered_package(reg: Registry, package: Path) -> None:
    (package / "hardware.json").write_text("{}\n")
    with pytest.raises(IntegrityError, match=r"hardware\.json \(changed\)"):
        artifact.push(package, f"{reg.host}/tampered")
    assert requests.head(f"{reg.url}/v2/tampered/manifests/1", timeout=10).status_code == 404


# --- image layouts ------------------------------------------------------------------------------------------


def oci_layout(folder: Path) -> dict[str, Any]:
    """A small OCI layout with one image; its manifest is indented JSON, so a re-serialisation would show."""

    def add(data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        path = spec.blob_path(folder, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"not really a tar, but the registry only checks digests\n"
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": spec.IMAGE_MANIFEST,
        "config": spec.descriptor(spec.IMAGE_CONFIG, add(config), len(config)),
        "layers": [spec.descriptor(spec.LAYER_TAR, add(layer), len(layer))],
    }
    body = json.dumps(manifest, indent=2).encode()
    entry = spec.descriptor(spec.IMAGE_MANIFEST, add(body), len(body))
    spec.write_index(folder, entry, "forest:1")
    return {"body": body, "entry": entry, "blobs": {manifest["config"]["digest"], manifest["layers"][0]["digest"]}}


def test_push_layout_keeps_the_image_bytes(reg: Registry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    made = oci_layout(layout)

    result = images.push_layout(layout, f"{reg.host}/layout:1")
    assert result.reference == f"{reg.host}/layout:1"
    assert result.digest == made["entry"]["digest"]
    assert set(result.uploaded) == made["blobs"] and result.skipped == ()
    stored = requests.get(f"{reg.url}/v2/layout/manifests/1", headers={"Accept": spec.IMAGE_MANIFEST}, timeout=10)
    assert stored.content == made["body"]  # byte for byte, so the gated digest is the pushed one

    again = images.push_layout(layout, f"{reg.host}/layout:2")
    assert again.digest == result.digest and again.uploaded == () and set(again.skipped) == made["blobs"]
    with pytest.raises(UsageError, match="names no tag"):
        images.push_layout(layout, f"{reg.host}/layout")
    with pytest.raises(UsageError, match="not an OCI layout"):
        images.push_layout(tmp_path / "nowhere", f"{reg.host}/layout:3")
    spec.blob_path(layout, made["entry"]["digest"]).write_bytes(made["body"] + b" ")
    with pytest.raises(IntegrityError, match="does not hash to"):
        images.push_layout(layout, f"{reg.host}/layout:3")
    assert requests.head(f"{reg.url}/v2/layout/manifests/3", timeout=10).status_code == 404


# --- references (pure) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "registry_", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/forest", "127.0.0.1:5000", "forest", None, None),
        ("localhost/team/forest:3", "localhost", "team/forest", "3", None),
        ("[::1]:5000/forest:v1.0-rc_1", "[::1]:5000", "forest", "v1.0-rc_1", None),
        (f"ghcr.io/org/forest@sha256:{'a' * 64}", "ghcr.io", "org/forest", None, f"sha256:{'a' * 64}"),
        (f"reg.example.com:443/a/b:2@sha256:{'b' * 64}", "reg.example.com:443", "a/b", "2", f"sha256:{'b' * 64}"),
    ],
)
def test_parse_reference(ref: str, registry_: str, repository: str, tag: str | None, digest: str | None) -> None:
    parsed = parse_reference(ref)
    assert parsed == Reference(registry_, repository, tag, digest)
    assert str(parsed) == ref


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("forest:1", "not a registry reference"),
        ("team/forest:1", "names no registry host"),
        ("127.0.0.1:5000/Forest:1", "lowercase"),
        ("http://127.0.0.1:5000/forest:1", "is a URL"),
        ("127.0.0.1:5000/forest@md5:abc", "not a sha256 digest"),
        ("127.0.0.1:5000/forest:bad tag", "not a registry reference"),
    ],
)
def test_bad_references(ref: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_reference(ref)


def test_pull_needs_a_tag_or_digest(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no tag or digest"):
        artifact.pull("127.0.0.1:5000/forest", tmp_path)


@pytest.mark.parametrize(
    ("host", "insecure", "scheme"),
    [
        ("127.0.0.1:5000", None, "http"),
        ("localhost:5000", None, "http"),
        ("[::1]:5000", None, "http"),
        ("127.0.0.1:5000", False, "https"),
        ("registry.example.com", None, "https"),
        ("registry.example.com:5000", True, "http"),
        ("10.0.0.7:5000", None, "https"),
    ],
)
def test_plain_http_only_for_loopback_or_when_asked(host: str, insecure: bool | None, scheme: str) -> None:
    assert parse_reference(f"{host}/forest:1").base_url(insecure) == f"{scheme}://{host}"


def test_push_and_pull_through_the_cli(reg: Registry, built: Path, tmp_path: Path, cli: CliRunner) -> None:
    pushed = cli("push", built, f"{reg.host}/cli-forest", "--json")
    assert pushed.returncode == 0, pushed.stderr
    data = json.loads(pushed.stdout)
    assert data["package_digest"] == open_package(built).digest
    pulled = cli("pull", f"{reg.host}/cli-forest@{data['digest']}", tmp_path / "here", "--json")
    assert pulled.returncode == 0, pulled.stderr
    target = Path(json.loads(pulled.stdout)["path"])
    assert json.loads(pulled.stdout)["digest"] == data["package_digest"]
    assert cli("verify", target).returncode == 0
    again = cli("pull", f"{reg.host}/cli-forest:1", tmp_path / "here")
    assert again.returncode == 2 and "already exists" in again.stderr
    closed = cli("push", built, f"127.0.0.1:{free_port()}/x")
    assert closed.returncode == 5 and "not reachable" in closed.stderr and "Traceback" not in closed.stderr


def test_netrc_credentials_never_reach_a_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads ~/.netrc for a session without auth; mlpack's client must not send what it was not given."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / ".netrc").write_text("machine 127.0.0.1 login alice password secret\n")
        (tmp_path / ".netrc").chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
        from mlpack.oci.client import Client

        with Client(parse_reference(f"127.0.0.1:{server.server_address[1]}/team/model:1"), None) as client:
            client.ping()
        assert seen == [None]
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_that_drops_the_upload_is_named_for_it(package: Path) -> None:
    """A registry that dies mid-push is not 'not reachable': it answered, then closed the connection."""
    import http.server
    import threading

    class Dropping(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in {"Content-Length": "0", **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()

        def do_GET(self) -> None:
            self._empty(200)

        def do_HEAD(self) -> None:
            self._empty(404)

        def do_POST(self) -> None:
            self._empty(202, {"Location": "/v2/team/model/blobs/uploads/1"})

        def do_PUT(self) -> None:  # read a little, then vanish without an answer
            self.rfile.read(16)
            self.close_connection = True
            self.connection.shutdown(2)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dropping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RegistryError, match=r"closed the connection during the upload of "):
            artifact.push(package, f"127.0.0.1:{server.server_address[1]}/team/model:1")
    finally:
        server.shutdown()
        server.server_close()
