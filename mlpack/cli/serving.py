"""mlpack serve and mlpack export: the package behind a V2 endpoint, or handed to Triton or KServe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlpack.cli.common import JsonOpt, app, emit, run
from mlpack.options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_PORT,
)


@app.command()
def serve(
    package: Annotated[
        str,
        typer.Argument(
            metavar="PACKAGE", help="A package, or a folder of packages to serve together.", show_default=False
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(help="Processes sharing the port, each with its own sessions.")] = 1,
    verify_on_start: Annotated[
        bool,
        typer.Option(
            "--verify-on-start/--no-verify-on-start",
            help="Become ready only after the package verifies here (integrity and golden replay).",
        ),
    ] = True,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = DEFAULT_MAX_BODY,
    max_elements: Annotated[
        int, typer.Option(help="Requests declaring more input elements, summed over inputs, get 413.")
    ] = DEFAULT_MAX_ELEMENTS,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds a connection may idle or stall mid-request before it is closed.")
    ] = DEFAULT_IDLE_TIMEOUT,
    max_connections: Annotated[
        int,
        typer.Option(
            help="Connections each worker keeps open; at the cap a newcomer closes the one that has waited "
            "longest for its client (idle, or trickling a request in)."
        ),
    ] = DEFAULT_MAX_CONNECTIONS,
    access_log: Annotated[bool, typer.Option(help="Log every request on stderr.")] = False,
) -> None:
    """Serve packages over the Open Inference Protocol (KServe V2 REST) until Ctrl-C or SIGTERM.

    Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready];
    POST /v2/models/NAME[/versions/V]/infer, with JSON tensors or the binary tensor extension.
    """

    def action() -> None:
        from mlpack.serving import serve as run_server

        def announce(bound_host: str, bound_port: int) -> None:
            sys.stderr.write(f"mlpack serve: listening on http://{bound_host}:{bound_port}\n")
            sys.stderr.flush()

        run_server(package, host=host, port=port, workers=workers, verify_on_start=verify_on_start,
                   max_body=max_body_bytes, max_elements=max_elements, idle_timeout=idle_timeout,
                   max_connections=max_connections,
                   access_log=access_log, on_listen=announce)  # fmt: skip

    run(False, action)


export_app = typer.Typer(
    help="Export a package for a serving system: a Triton model repository or a KServe InferenceService.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@export_app.command("triton")
def export_triton(
    package: Annotated[str, typer.Argument(metavar="PACKAGE", help="Package folder.", show_default=False)],
    outdir: Annotated[
        str,
        typer.Argument(
            metavar="OUTDIR",
            help="Model repository folder; receives NAME/config.pbtxt and NAME/1/.",
            show_default=False,
        ),
    ],
    force: Annotated[bool, typer.Option(help="Replace OUTDIR/NAME if it exists.")] = False,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Override max_batch_size (default: 1024 or the golden rows, when the batch axis is dynamic).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a Triton model repository (onnxruntime platform, typed inputs and outputs, recorded session options)."""

    def action() -> None:
        from mlpack.export import export_triton as run_export

        folder = run_export(package, outdir, force=force, max_batch_size=max_batch_size)
        emit({"model_repository": str(Path(outdir)), "model": str(folder)}, as_json, lambda: f"wrote {folder}")

    run(as_json, action)


@export_app.command("kserve")
def export_kserve(
    package: Annotated[str, typer.Argument(metavar="PACKAGE", help="Package folder.", show_default=False)],
    image: Annotated[
        str | None,
        typer.Option(help="The image mlpack containerize built: a modelcar, served by its own runtime."),
    ] = None,
    storage_uri: Annotated[
        str | None,
        typer.Option(help="Where a Triton repository of the model lives (s3://, gs://, pvc://, https://…)."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="InferenceService name. [default: from the package name]", show_default=False),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Write the YAML here instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print what KServe needs to serve the package (V2 protocol, ONNX); give --image or --storage-uri.

    With --image: a ClusterServingRuntime that runs that image (mlpack serve, ready on /v2/health/ready), then
    an InferenceService that pulls it as a modelcar and names that runtime: `kubectl apply -f` of the output
    serves the package. With --storage-uri: the InferenceService alone, for the cluster's Triton runtime
    (mlpack export triton writes the repository). --json prints a Kubernetes List."""

    def action() -> None:
        from mlpack.export import kserve_documents

        _write(kserve_documents(package, image=image, storage_uri=storage_uri, name=name), out, as_json)

    run(as_json, action)


def _write(documents: list[dict[str, Any]], out: str | None, as_json: bool) -> None:
    """YAML documents (or, with --json, one Kubernetes List) to stdout or to OUT."""
    from mlpack.export import to_yaml_documents
    from mlpack.fileio import write_atomic

    listing = {"apiVersion": "v1", "kind": "List", "items": documents}
    text = json.dumps(listing, indent=2) + "\n" if as_json else to_yaml_documents(documents)
    if out:
        write_atomic(Path(out), text.encode())
        sys.stderr.write(f"mlpack: wrote {out}\n")
    else:
        sys.stdout.write(text)


@export_app.command("verify-job")
def export_verify_job(
    package: Annotated[str, typer.Argument(metavar="PACKAGE", help="Package folder.", show_default=False)],
    image: Annotated[str, typer.Option(help="The release image mlpack containerize built and pushed.")],
    node_pool: Annotated[
        list[str],
        typer.Option(
            "--node-pool",
            metavar="CLASS=LABEL=VALUE[,LABEL=VALUE]",
            help="A machine class and the node selector of its pool, e.g. aarch64=kubernetes.io/arch=arm64 "
            "(repeatable: one Job each).",
        ),
    ],
    python: Annotated[
        str | None,
        typer.Option(
            help="The image's interpreter. [default: /opt/mlpack/bin/python, the docker engine's; "
            "/usr/bin/python3 for --engine oci images]",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name stem. [default: from the package name]")] = None,
    out: Annotated[str | None, typer.Option(help="Write the YAML here instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print Kubernetes Jobs that run `mlpack verify` on the package inside its release image, one per node pool,
    so a fleet proves a release on the machines it will run on. A Job succeeds only if the package verifies
    there (identical or equivalent); its log holds the JSON report. backoffLimit 0: a failure is never retried."""

    def action() -> None:
        from mlpack.export import verify_jobs

        _write(verify_jobs(package, image=image, node_pools=node_pool, python=python, name=name), out, as_json)

    run(as_json, action)
