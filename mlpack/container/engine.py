"""Build through the Docker SDK against whatever DOCKER_HOST names (Docker, or Podman's API service), then
run mlpack verify inside the candidate image with no network, and tag it for release only if it passes."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

from mlpack.container import Context, build_context, intact, verify_report
from mlpack.container.contract import DIGEST_LABEL, VENV_PYTHON, Contract
from mlpack.errors import EngineError, GateFailed, UsageError
from mlpack.options import DEFAULT_BASE_IMAGE

ULIMITS = [{"Name": "nofile", "Soft": 1024, "Hard": 1024}, {"Name": "nproc", "Soft": 1024, "Hard": 1024}]
START_HINT = (
    "start Docker, or Podman's API service (podman system service --time=0 unix:///run/podman/podman.sock) "
    "and set DOCKER_HOST=unix:///run/podman/podman.sock"
)


@dataclass(frozen=True)
class ImageResult:
    image_id: str
    tag: str
    base: str
    base_digest: str | None
    package_digest: str
    verdict: str
    seconds: dict[str, float] = field(default_factory=dict)
    pushed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def client() -> Any:
    try:
        import docker
    except ImportError:
        raise UsageError("The docker engine needs the docker package: pip install docker.") from None
    try:
        engine = docker.from_env(timeout=600)
        engine.ping()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST", "the default Docker socket")
        raise EngineError(
            f"No container engine answers at {where} ({type(exc).__name__}): {START_HINT}."
        ) from None
    return engine


@contextmanager
def engine_step(what: str) -> Iterator[None]:
    """An engine API failure during ``what`` becomes one EngineError sentence (exit 5): the engine refused
    or broke, which is not a bug in mlpack and not the caller's input."""
    import docker
    import requests

    try:
        yield
    except docker.errors.APIError as exc:
        explanation = " ".join(str(exc.explanation or exc).split()).rstrip(".")
        raise EngineError(f"The engine failed to {what}: {explanation}.") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        detail = " ".join(str(exc).split()).rstrip(".")
        raise EngineError(f"The engine failed to {what} ({type(exc).__name__}: {detail}).") from None


def _base_digest(engine: Any, base: str) -> str | None:
    import docker

    with engine_step(f"inspect the base image {base}"):
        try:
            image = engine.images.get(base)
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"The base image {base} is not in the engine's store: pull or import it first (for example "
                "`podman import base.tar NAME` from an mmdebstrap rootfs)."
            ) from None
    digests = image.attrs.get("RepoDigests") or []
    return str(digests[0]) if digests else str(image.id)


def _build(engine: Any, context: Context, candidate: str, cache: bool = True) -> Any:
    """Build the candidate, streaming the engine's log lines to whoever watches (``progress.detail``: a spinner
    shows the latest); a failed step raises EngineError with the log's tail, which says why."""
    from mlpack import progress

    lines: list[str] = []
    with engine_step("build the image"):
        stream = engine.api.build(
            path=str(context.folder), tag=candidate, rm=True, forcerm=True, network_mode="none", pull=False,
            nocache=not cache, decode=True,
        )  # fmt: skip
        for step in stream:
            text = str(step.get("stream") or step.get("status") or "").rstrip()
            if "error" in step or "errorDetail" in step:
                message = str(step.get("error") or (step.get("errorDetail") or {}).get("message") or "").strip()
                tail = "\n".join(line for line in lines if line)[-2000:]
                raise EngineError(f"The image build failed: {message}\n{tail}")
            if text:
                lines.append(text)
                progress.detail(text.splitlines()[-1])
        image = engine.images.get(candidate)
    return image


def gate(engine: Any, image: Any, name: str) -> dict[str, Any]:
    """Run `mlpack verify` on the package inside the image with no network; return its JSON report."""
    with engine_step("run the release gate's container"):
        container = engine.containers.create(
            image.id, entrypoint=Contract(name, VENV_PYTHON).gate, network_mode="none", ulimits=ULIMITS
        )
        try:
            container.start()
            status = container.wait(timeout=600)
            output = container.logs(stdout=True, stderr=False).decode(errors="replace")
        finally:
            container.remove(force=True)
    report = verify_report(output)
    report.setdefault("exit_code", status.get("StatusCode"))
    return report


def _candidate(release: str, package_digest: str) -> str:
    """The name the image has until the gate passes: unique to this run, so two runs of one package against
    one engine never remove each other's candidate."""
    return f"{release.rsplit(':', 1)[0]}:candidate-{package_digest.removeprefix('sha256:')[:12]}-{token_hex(4)}"


def _discard(engine: Any, candidate: str) -> None:
    """Untag the candidate after another failure. Best effort: that failure is the one worth reporting, and
    removing by name (not by id) never takes an identical, already released image with it."""
    with suppress(Exception):
        engine.images.remove(candidate)


def _release(engine: Any, image: Any, candidate: str, release: str) -> None:
    repository, _, version = release.rpartition(":")
    with engine_step(f"tag the image as {release}"):
        image.tag(repository, version)
    with engine_step(f"remove the candidate tag {candidate}"):
        engine.images.remove(candidate)  # the candidate name only; the image keeps the release tag


def containerize(
    package: str | Path,
    *,
    tag: str | None = None,
    base: str = DEFAULT_BASE_IMAGE,
    push: bool = False,
    context_dir: Path | None = None,
    cache: bool = True,
    progress: Any = None,
) -> ImageResult:
    """Build, gate and tag; the build context lives only for the build unless ``context_dir`` keeps it."""
    say = progress or (lambda _step: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    checked = intact(package)
    engine = client()
    base_digest = _base_digest(engine, base)
    say("rendering the build context (wheelhouse of the runtime lock)")
    with build_context(checked, base, context_dir) as context:
        seconds["context"] = round(time.perf_counter() - started, 2)
        release = tag or f"mlpack/{context.package.name}:{context.package.version}"
        candidate = _candidate(release, context.package.digest)
        say(f"building {candidate}")
        image = _build(engine, context, candidate, cache)
    seconds["build"] = round(time.perf_counter() - started - seconds["context"], 2)
    say("verifying the package inside the image (no network)")
    try:
        report = gate(engine, image, context.package.name)
    except BaseException:
        _discard(engine, candidate)
        raise
    seconds["gate"] = round(time.perf_counter() - started - seconds["context"] - seconds["build"], 2)
    if report.get("exit_code") != 0 or not report.get("passed"):
        with engine_step(f"remove the failed candidate {candidate}"):
            engine.images.remove(candidate)
        verdict = report.get("verdict", "error")
        raise GateFailed(
            f"The image does not pass mlpack verify ({verdict}: {report.get('message', 'no report')}); "
            "it was removed and not tagged.",
            report,
        )
    try:
        _release(engine, image, candidate, release)
    except BaseException:
        _discard(engine, candidate)
        raise
    pushed = None
    if push:
        say(f"pushing {release}")
        pushed = _push(engine, release, context.package.path)
    with engine_step(f"inspect the released image {release}"):
        labels = engine.images.get(release).labels or {}
    if labels.get(DIGEST_LABEL) != context.package.digest:
        raise EngineError(f"The image's {DIGEST_LABEL} label does not match the package digest.")
    return ImageResult(
        image_id=str(image.id), tag=release, base=base, base_digest=base_digest, package_digest=context.package.digest,
        verdict=str(report.get("verdict")), seconds=seconds, pushed=pushed,
    )  # fmt: skip


def _push(engine: Any, release: str, package: Path) -> str:
    """Push the release image with mlpack's own registry client: the engine saves it, the layers travel as
    they are, and no engine-side registry configuration (TLS, insecure lists) is needed. The package's
    signature, BOM and provenance are attached to the image as referrers."""
    from mlpack.container.oci import layout_from_archive
    from mlpack.oci.images import push_layout

    with tempfile.TemporaryDirectory(prefix="mlpack-push-") as tmp:
        archive = Path(tmp) / "image.tar"
        with engine_step(f"save {release} for pushing"), open(archive, "wb") as out:
            for chunk in engine.images.get(release).save(named=True):
                out.write(chunk)
        layout = layout_from_archive(archive, Path(tmp) / "layout", release)
        result = push_layout(layout, release, package=package)
    return f"{result.reference}@{result.digest}"
