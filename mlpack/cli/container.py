"""mlpack containerize: a hermetic serving image, released only if mlpack verify passes inside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlpack.cli.common import JsonOpt, QuietOpt, app, emit, progress_printer, run, transfers
from mlpack.options import DEFAULT_BASE_IMAGE


# Long only because typer declares each option in the signature; the body picks an engine and calls it.
@app.command()
def containerize(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="Package folder (NAME-VERSION).", show_default=False)
    ],
    tag: Annotated[
        str | None, typer.Option(help="Release tag. [default: mlpack/NAME:VERSION]", show_default=False)
    ] = None,
    base: Annotated[
        list[str] | None,
        typer.Option(
            help="Base image with CPython 3.11 (its digest is recorded); with --engine oci, PLATFORM=BASE gives one "
            f"platform its own (repeatable). [default: {DEFAULT_BASE_IMAGE}]",
            show_default=False,
        ),
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            help="--engine oci: linux/amd64 and/or linux/arm64 (repeatable or comma-separated): one image per "
            "platform under an image index, each gated inside (arm64 by QEMU). [default: this machine's]",
            show_default=False,
        ),
    ] = None,
    machines: Annotated[
        list[str] | None,
        typer.Option(
            metavar="CLASS[,CLASS]",
            help="--engine oci: also gate the linux/amd64 image as these x86 machine classes (x86-64-v2, "
            "x86-64-avx, x86-64-v3), emulated.",
        ),
    ] = None,
    push: Annotated[bool, typer.Option("--push", help="Push the release tag after the gate passes.")] = False,
    context: Annotated[
        str | None,
        typer.Option(
            help="Keep the rendered build context in this folder (else it is removed when the run ends)."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="docker: build through DOCKER_HOST (Docker or Podman) and gate; "
            "oci: write an OCI layout with no daemon (--out)."
        ),
    ] = "docker",
    out: Annotated[str | None, typer.Option(help="With --engine oci: the OCI layout folder to write.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the engine's cached layers.")] = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a hermetic serving image, run mlpack verify inside it with no network, and tag it only if it passes.

    The engine is whatever DOCKER_HOST names: Docker, or Podman's API service. Exit 1 when the image does not
    reproduce the golden outputs (the candidate is removed), 5 when the engine or a build step fails.
    """

    def action() -> None:
        from mlpack.container.engine import containerize as build_image
        from mlpack.errors import GateFailed, UsageError

        progress = progress_printer(quiet, as_json)

        if engine == "oci":
            from mlpack.container.oci import bases_from, platforms_from, write_image
            from mlpack.options import machine_names

            if not out:
                raise UsageError("--engine oci writes an OCI layout: give --out DIR.")
            if push and not tag:
                raise UsageError("--push with --engine oci needs --tag REGISTRY/REPOSITORY:TAG to push to.")
            platforms = platforms_from(platform)
            written = write_image(package, out, bases_from(base or [DEFAULT_BASE_IMAGE], platforms), tag,
                                  Path(context) if context else None, platforms,
                                  list(machine_names(machines or [])), progress)  # fmt: skip
            if push and tag:  # only a layout that passed its gate exists to be pushed
                from dataclasses import replace

                from mlpack.oci.images import push_layout

                progress(f"pushing {tag}")
                with transfers(quiet, as_json) as on_bytes:
                    pushed = push_layout(written.layout, tag, package=package, progress=on_bytes)
                written = replace(written, pushed=f"{pushed.reference}@{pushed.digest}")
            emit(written.to_dict(), as_json, lambda: render_oci(written))
            return
        if engine != "docker":
            raise UsageError(f"--engine must be docker or oci, not {engine!r}.")
        if platform or machines or (base and (len(base) > 1 or "=" in base[0].split(":")[0])):
            raise UsageError(
                "--platform, --machines and per-platform --base are for --engine oci; the docker engine builds "
                "and gates one image for this machine's platform."
            )
        try:
            result = build_image(package, tag=tag, base=base[0] if base else DEFAULT_BASE_IMAGE, push=push, cache=cache,
                                 context_dir=Path(context) if context else None, progress=progress)  # fmt: skip
        except GateFailed as exc:
            if not as_json:
                sys.stderr.write(json.dumps(exc.report.get("outputs", []), indent=1)[:4000] + "\n")
            raise
        emit(result.to_dict(), as_json, lambda: (
            f"released {result.tag} ({result.image_id[:19]})\n  verified inside: {result.verdict}\n"
            f"  base {result.base} ({result.base_digest})\n  package {result.package_digest}"
            + (f"\n  pushed {result.pushed}" if result.pushed else "")))  # fmt: skip

    run(as_json, action)


def render_oci(written: Any) -> str:
    lines = [f"wrote oci:{written.layout}:{written.tag}", f"  image digest {written.digest}"]
    if len(written.platforms) > 1:
        lines += [f"  {platform:<12} {digest}" for platform, digest in written.platforms.items()]
    lines += [
        f"  package {written.package_digest}",
        f"  layers {written.layers}",
        "  release gate (mlpack verify inside)",
    ]
    lines += [f"    {g['platform']:<12} {g['machine']:<11} {g['verdict']}" for g in written.gate]
    if written.pushed:
        lines.append(f"  pushed {written.pushed}")
    return "\n".join(lines)
