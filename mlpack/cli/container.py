"""mlpack containerize: a hermetic serving image, released only if mlpack verify passes inside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.common import JsonOpt, QuietOpt, app, emit, progress_printer, run
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
        str, typer.Option(help="Base image with CPython 3.11 (its digest is recorded).")
    ] = DEFAULT_BASE_IMAGE,
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
            from mlpack.container.oci import write_image

            if not out or push:
                raise UsageError("--engine oci writes an OCI layout: give --out DIR (and push it with skopeo).")
            written = write_image(package, out, base, tag, Path(context) if context else None)
            emit(written.to_dict(), as_json, lambda: (
                f"wrote oci:{written.layout}:{written.tag}\n  image digest {written.digest}\n"
                f"  package {written.package_digest}\n  layers {written.layers}"))  # fmt: skip
            return
        if engine != "docker":
            raise UsageError(f"--engine must be docker or oci, not {engine!r}.")
        try:
            result = build_image(package, tag=tag, base=base, push=push, cache=cache,
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
