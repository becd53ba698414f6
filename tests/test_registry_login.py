"""Registry logins against a real registry (Distribution) that wants one: Basic auth from an htpasswd file, the
bearer-token flow with a token service (tests/token_service.py), TLS with a private CA, Docker's config and a
real credential helper binary, the environment variables for CI. Everything on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_fixture import Registry, start_registry
from token_service import TokenService, credential_helper, tls_files

from mlpack.errors import RegistryError, UsageError
from mlpack.oci import artifact, auth
from mlpack.oci.client import Client
from mlpack.oci.reference import parse_reference
from mlpack.package import open_package
from tests.conftest import CliRunner, one_sentence_error

pytestmark = [pytest.mark.registry, pytest.mark.xdist_group("registry")]

USERS = {"alice": ("wonderland", {"pull", "push"}), "reader": ("only-reads", {"pull"})}


def htpasswd(folder: Path) -> str:
    """The ``auth:`` section for Basic auth with alice's login (bcrypt, from apache2-utils' htpasswd)."""
    folder.mkdir(parents=True, exist_ok=True)
    line = subprocess.run(["htpasswd", "-Bbn", "alice", "wonderland"], capture_output=True, text=True, check=True)
    (folder / "htpasswd").write_text(line.stdout)
    return f"  htpasswd:\n    realm: mlpack-test\n    path: {folder / 'htpasswd'}\n"


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own Docker config folder (never the user's), for in-process calls and the CLI alike."""
    folder = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    for name in (auth.ENV_REGISTRY, auth.ENV_USERNAME, auth.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry", auth=htpasswd(tmp_path / "auth")) as running:
        yield running


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[TokenService]:
    with TokenService(tmp_path / "token", USERS, refresh_tokens={"refresh-for-alice": "alice"}) as service:
        yield service


@pytest.fixture
def token_registry(tmp_path: Path, tokens: TokenService) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry", auth=tokens.registry_auth()) as running:
        yield running


def login(registry: str, user: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``mlpack login`` as a user types it, the password piped in."""
    return subprocess.run(
        [sys.executable, "-m", "mlpack", "login", registry, "-u", user, "--password-stdin", *extra],
        input=password + "\n", capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip


def test_basic_auth_login_push_pull_logout(
    basic_registry: Registry, docker_config: Path, built: Path, tmp_path: Path, cli: CliRunner
) -> None:
    host = basic_registry.host
    refused = cli("push", built, f"{host}/forest")
    assert refused.returncode == 5
    assert f"mlpack login {host}" in one_sentence_error(refused) and "HTTP 401" in refused.stderr

    wrong = login(host, "alice", "not-the-password")
    assert wrong.returncode == 5 and "was refused" in one_sentence_error(wrong)
    assert not (docker_config / "config.json").exists()  # a refused login is never kept

    right = login(host, "alice", "wonderland", "--json")
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout) == {"registry": host, "username": "alice", "checked": True,
                                        "stored": str(docker_config / "config.json")}  # fmt: skip
    stored = docker_config / "config.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert base64.b64decode(json.loads(stored.read_text())["auths"][host]["auth"]) == b"alice:wonderland"

    pushed = cli("push", built, f"{host}/forest", "--json")
    assert pushed.returncode == 0, pushed.stderr
    pulled = cli("pull", f"{host}/forest:1", tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert open_package(tmp_path / "pulled" / "forest-1").digest == open_package(built).digest

    out = cli("logout", host)
    assert out.returncode == 0 and "Removed the login" in out.stdout
    assert host not in json.loads(stored.read_text())["auths"]
    again = cli("pull", f"{host}/forest:1", tmp_path / "again")
    assert again.returncode == 5 and not (tmp_path / "again").exists()


def test_ci_logs_in_from_the_environment_for_the_registry_named(
    basic_registry: Registry, docker_config: Path, built: Path, cli: CliRunner
) -> None:
    host = basic_registry.host
    env = {auth.ENV_REGISTRY: host, auth.ENV_USERNAME: "alice", auth.ENV_PASSWORD: "wonderland"}
    done = cli("push", built, f"{host}/forest", env=env)
    assert done.returncode == 0, done.stderr
    assert not (docker_config / "config.json").exists()
    # credentials without the registry they are for are never sent anywhere
    loose = cli("push", built, f"{host}/forest", env={auth.ENV_USERNAME: "alice", auth.ENV_PASSWORD: "x"})
    assert loose.returncode == 2 and auth.ENV_REGISTRY in one_sentence_error(loose)


def test_the_bearer_token_flow(token_registry: Registry, tokens: TokenService, docker_config: Path,
                               built: Path, tmp_path: Path, cli: CliRunner) -> None:  # fmt: skip
    host = token_registry.host
    anonymous = cli("pull", f"{host}/team/forest:1", tmp_path / "nothing")
    assert anonymous.returncode == 5 and f"mlpack login {host}" in one_sentence_error(anonymous)

    assert login(host, "alice", "wrong").returncode == 5
    done = login(host, "alice", "wonderland")
    assert done.returncode == 0, done.stderr
    tokens.requests.clear()
    pushed = cli("push", built, f"{host}/team/forest", "--json")
    assert pushed.returncode == 0, pushed.stderr
    # one token for the whole push (about a dozen requests), asked for with the login and the push scope
    assert tokens.requests == [{"user": "alice", "scopes": ["repository:team/forest:pull,push"], "how": "basic",
                                "service": "mlpack-test-registry"}]  # fmt: skip

    assert login(host, "reader", "only-reads").returncode == 0
    pulled = cli("pull", f"{host}/team/forest:1", tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert open_package(tmp_path / "pulled" / "forest-1").digest == open_package(built).digest
    # the registry answers a push without the right with 401: one sentence naming the login and the right
    denied = cli("push", built, f"{host}/team/other")
    assert denied.returncode == 5
    assert "may not push to team/other" in one_sentence_error(denied)


def test_tokens_are_cached_per_scope_and_renewed_on_expiry(
    token_registry: Registry, tokens: TokenService, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(auth.ENV_REGISTRY, token_registry.host)
    monkeypatch.setenv(auth.ENV_USERNAME, "alice")
    monkeypatch.setenv(auth.ENV_PASSWORD, "wonderland")
    tokens.lifetime_s = 2
    digest = "sha256:" + "0" * 64
    with Client(parse_reference(f"{token_registry.host}/cached:1"), None) as client:
        client.ping()
        assert not client.blob_exists(digest)
        assert len(tokens.requests) == 1  # the ping's token serves the next request
        with Client(parse_reference(f"{token_registry.host}/cached:1"), None) as second:
            second.ping()  # same realm, service, scope and user: the cached token, no new request
        assert len(tokens.requests) == 1
        with Client(parse_reference(f"{token_registry.host}/cached:1"), None, push=True) as pushing:
            pushing.ping()  # another scope, another token
        assert [r["scopes"] for r in tokens.requests] == [
            ["repository:cached:pull"],
            ["repository:cached:pull,push"],
        ]
        time.sleep(2.1)
        assert not client.blob_exists(digest)  # expired: renewed before the request left
        assert len(tokens.requests) == 3 and tokens.requests[-1]["scopes"] == ["repository:cached:pull"]


def test_an_identity_token_is_exchanged_as_an_oauth2_refresh_token(
    token_registry: Registry, tokens: TokenService, docker_config: Path, built: Path
) -> None:
    docker_config.mkdir()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {f"https://{token_registry.host}": {"identitytoken": "refresh-for-alice"}}})
    )
    result = artifact.push(built, f"{token_registry.host}/forest")
    assert result.digest.startswith("sha256:")
    assert {r["how"] for r in tokens.requests} == {"refresh_token"}


def test_a_credential_helper_keeps_the_login(
    basic_registry: Registry, docker_config: Path, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = credential_helper(tmp_path / "bin", "mlpacktest")
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "mlpacktest"}))
    host = basic_registry.host
    done = login(host, "alice", "wonderland")
    assert done.returncode == 0 and "docker-credential-mlpacktest" in done.stdout, done.stderr
    kept = json.loads((helper.parent / "mlpacktest.json").read_text())
    assert kept == {host: {"Username": "alice", "Secret": "wonderland"}}
    assert "auths" not in json.loads(
        (docker_config / "config.json").read_text()
    )  # the secret is not on disk twice
    artifact.push(built, f"{host}/forest")  # the login comes back through the helper's "get"
    # a config naming a helper that is not installed: one sentence naming it
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {host: "absent"}}))
    with pytest.raises(RegistryError, match="docker-credential-absent, which is not on PATH"):
        artifact.push(built, f"{host}/forest")


def test_tls_with_a_private_ca(tmp_path: Path, docker_config: Path, built: Path, cli: CliRunner) -> None:
    cert, key, ca = tls_files(tmp_path / "tls")
    with start_registry(tmp_path / "registry", auth=htpasswd(tmp_path / "auth"), tls=(cert, key, ca)) as reg:
        host = reg.host
        untrusted = login(host, "alice", "wonderland", "--secure")
        assert untrusted.returncode == 5 and "--ca-cert" in one_sentence_error(untrusted)
        assert login(host, "alice", "wonderland", "--ca-cert", str(ca)).returncode == 0
        pushed = cli("push", built, f"{host}/forest", "--ca-cert", ca)
        assert pushed.returncode == 0, pushed.stderr
        pulled = artifact.pull(f"{host}/forest:1", tmp_path / "pulled", ca_cert=ca)
        assert pulled.digest == open_package(built).digest


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
         "bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                    "scope": "repository:a/b:pull,push"}),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ('bearer realm=https://x/t, service=s', "bearer", {"realm": "https://x/t", "service": "s"}),
        ('Negotiate abc, Basic realm="r"', "basic", {"realm": "r"}),
        ('Bearer realm="a \\"quoted\\" realm"', "bearer", {"realm": 'a "quoted" realm'}),
    ],
)  # fmt: skip
def test_challenges_are_parsed_as_registries_send_them(header: str, scheme: str, params: dict[str, str]) -> None:
    assert auth.parse_challenge(header) == auth.Challenge(scheme, params)


def test_credentials_travel_only_over_https_or_to_loopback() -> None:
    assert auth.may_send_credentials("https://registry.example/v2/")
    assert auth.may_send_credentials("http://127.0.0.1:5000/v2/")
    assert auth.may_send_credentials("http://127.8.9.10:5000/token")
    assert auth.may_send_credentials("http://[::1]:5000/v2/")
    assert auth.may_send_credentials("http://localhost:5000/v2/")
    assert not auth.may_send_credentials("http://10.0.0.5:5000/v2/")
    assert not auth.may_send_credentials("http://registry.example/v2/")
    assert not auth.may_send_credentials("http://127.0.0.1.attacker.example/v2/")
    secret = auth.Credentials("alice", "wonderland", "test")
    assert "wonderland" not in repr(secret) and "wonderland" not in str(secret)


def test_token_answers() -> None:
    assert auth.read_token({"token": "t", "expires_in": 300}) == ("t", 300.0)
    assert auth.read_token({"access_token": "a"}) == ("a", 60.0)  # the spec's default lifetime
    assert auth.read_token({"token": "t", "expires_in": -5}) == ("t", 60.0)
    bad: object
    for bad in ({}, {"token": ""}, [], "token"):
        with pytest.raises(ValueError):
            auth.read_token(bad)


def test_a_broken_docker_config_is_one_sentence(docker_config: Path) -> None:
    docker_config.mkdir()
    (docker_config / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot be read"):
        auth.find_credentials("127.0.0.1:5000")
    (docker_config / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": "bm8tY29sb24="}}}))
    with pytest.raises(UsageError, match="unreadable login"):
        auth.find_credentials("127.0.0.1:5000")
    (docker_config / "config.json").write_text(json.dumps({"auths": {"https://127.0.0.1:5000/v1/": {
        "auth": base64.b64encode(b"bob:pw:with:colons").decode()}}}))  # fmt: skip
    found = auth.find_credentials("127.0.0.1:5000")
    assert found is not None and (found.username, found.password) == ("bob", "pw:with:colons")
    assert auth.find_credentials("127.0.0.1:5001") is None
