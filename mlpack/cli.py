"""The mlpack command line: a thin layer over the library. Only this module prints or exits."""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(
    help="Package a trained model so that it gives the same answers on the next machine, and prove it.\n\n"
    "  mlpack build model.skops --sample sample.npy --name churn --version 3\n\n"
    "  mlpack verify dist/churn-3            # exit 0 identical/equivalent, 1 mismatch, 3 tampered",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state = {"debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def _emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text() + "\n")


def _fail(exc: BaseException, as_json: bool) -> NoReturn:
    from mlpack.errors import MlpackError

    if isinstance(exc, MlpackError):
        code, message = exc.exit_code, exc.message
    else:
        code, message = (
            2,
            f"unexpected failure: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)",
        )
    if _state["debug"]:
        traceback.print_exception(exc)
    if as_json:
        payload: dict[str, Any] = {"error": message, "exit_code": code}
        comparisons = getattr(exc, "comparisons", None)
        if comparisons:
            payload["parity"] = [c.to_dict() for c in comparisons]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stderr.write(f"mlpack: error: {message}\n")
    raise typer.Exit(code)


def _run(as_json: bool, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("mlpack: interrupted; nothing was written.\n")
        raise typer.Exit(130) from None
    except Exception as exc:
        _fail(exc, as_json)


def _version(value: bool) -> None:
    if value:
        from mlpack import __version__

        typer.echo(f"mlpack {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _parse_lineage(items: list[str]) -> dict[str, str]:
    from mlpack.errors import UsageError

    lineage = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--lineage takes KEY=VALUE, got {item!r}.")
        lineage[key] = value
    return lineage


@app.command()
def build(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Model file: .onnx, .skops, .pt2/.pt (PyTorch), .json/.ubj (XGBoost), .txt (LightGBM), or "
            ".joblib/.pkl with --trust-pickle. Default: [tool.mlpack] model.",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        str | None,
        typer.Option(
            help="Golden inputs: .npy, .npz keyed by input name, or .csv. Default: [tool.mlpack] sample."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Package name. Default: the model file's stem.")] = None,
    version: Annotated[str | None, typer.Option(help="Package version. [default: 1]", show_default=False)] = None,
    out: Annotated[
        str | None, typer.Option(help="Folder that receives NAME-VERSION/. [default: dist]", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a package that already exists at the target.")] = False,
    trust_pickle: Annotated[
        bool,
        typer.Option(help="Allow .pkl/.joblib models. Unpickling runs arbitrary code: only for files you trust."),
    ] = False,
    trust_type: Annotated[
        list[str] | None, typer.Option(help="Trust a non-scikit-learn type inside a .skops file (repeatable).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="onnxruntime intra-op threads recorded for replay. [default: 1]", show_default=False),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset for conversion. [default: 17]", show_default=False)
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="float32 (widest support) or float64 (keep doubles). [default: float32]")
    ] = None,
    onnx: Annotated[
        str | None, typer.Option(help="Your own ONNX export of MODEL: checked for parity instead of converting.")
    ] = None,
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance for every float output.")] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance for every float output.")] = None,
    accept_parity: Annotated[
        bool,
        typer.Option(
            help="Package even if the ONNX outputs differ from the native model's; the manifest records it."
        ),
    ] = False,
    no_resolve: Annotated[
        bool,
        typer.Option(
            "--no-resolve",
            help="Do not contact the index: no artifact hashes, no runtime lock (the manifest says so).",
        ),
    ] = False,
    index_url: Annotated[
        str | None, typer.Option(help="Index for the locks. [default: PyPI]", show_default=False)
    ] = None,
    lineage: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE recorded in the manifest's lineage (repeatable).")
    ] = None,
    no_timings: Annotated[
        bool, typer.Option("--no-timings", help="Skip measuring onnxruntime vs native speed at build.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a model to ONNX, record golden outputs, lock the environment, and write a hashed package."""

    def action() -> Any:
        from mlpack import config
        from mlpack.builder import build as build_package
        from mlpack.errors import UsageError
        from mlpack.report import render_build

        settings = config.load()
        chosen_model = model or settings.get("model")
        chosen_sample = sample or settings.get("sample")
        if not chosen_model or not chosen_sample:
            raise UsageError(
                "Give a MODEL and --sample, or set model and sample under [tool.mlpack] in pyproject.toml."
            )
        tolerances: Any = settings.get("tolerances")
        if atol is not None or rtol is not None:
            spec = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
            tolerances = {"probabilities": spec, "value": spec}

        def progress(step: str) -> None:
            if not (quiet or as_json):
                sys.stderr.write(f"mlpack: {step}…\n")

        package = build_package(
            chosen_model,
            chosen_sample,
            name=name or settings.get("name"),
            version=version or settings.get("version") or "1",
            out=out or settings.get("out") or "dist",
            force=force,
            trust_pickle=trust_pickle or bool(settings.get("trust_pickle")),
            trusted_types=tuple(trust_type or ()),
            tolerances=tolerances,
            threads=threads or settings.get("threads") or 1,
            opset=opset or settings.get("opset") or 17,
            precision=precision or settings.get("precision") or "float32",
            onnx=onnx,
            timings=not no_timings,
            resolve=not no_resolve,
            index_url=index_url or settings.get("index_url"),
            lineage={**settings.get("lineage", {}), **_parse_lineage(lineage or [])},
            accept_parity=accept_parity,
            max_rows=settings.get("max_rows") or 1024,
            progress=progress,
        )
        _emit(
            {"package": str(package.path), "digest": package.digest, "manifest": package.manifest},
            as_json,
            lambda: render_build(package),
        )

    _run(as_json, action)


@app.command()
def verify(
    package: Annotated[str, typer.Argument(help="Package folder (NAME-VERSION).", show_default=False)],
    strict: Annotated[bool, typer.Option(help="Demand bit-identical outputs; 'equivalent' then exits 1.")] = False,
    threads: Annotated[
        int | None, typer.Option(help="Replay with this many intra-op threads instead of the recorded count.")
    ] = None,
    digest: Annotated[
        str | None, typer.Option(help="Expected package digest (sha256:…); any other manifest counts as tampered.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check integrity, diff environment and hardware, replay golden inputs, and judge the outputs.

    Exit codes: 0 identical or equivalent, 1 mismatch (or not identical with --strict), 2 bad input,
    3 tampered, 4 this environment cannot run the model.
    """

    def action() -> int:
        from mlpack.report import render_verify
        from mlpack.verifier import verify as verify_package

        report = verify_package(package, strict=strict, threads=threads, expect_digest=digest)
        _emit(report.to_dict(), as_json, lambda: render_verify(report))
        return report.exit_code

    code = _run(as_json, action)
    raise typer.Exit(code)


@app.command()
def inspect(
    package: Annotated[str, typer.Argument(help="Package folder.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Show what a package holds: manifest summary, digest and files. Runs nothing, checks nothing."""

    def action() -> None:
        from mlpack.inspector import inspect as inspect_package
        from mlpack.report import render_inspect

        info = inspect_package(package)
        _emit(info, as_json, lambda: render_inspect(info))

    _run(as_json, action)


@app.command()
def lock(
    out: Annotated[str, typer.Option(help="Folder for pylock.toml and requirements.lock.")] = ".",
    no_resolve: Annotated[bool, typer.Option("--no-resolve", help="Do not contact the index.")] = False,
    index_url: Annotated[
        str | None, typer.Option(help="Index to resolve against. [default: PyPI]", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Lock this environment: pylock.toml (everything installed, hashed) and requirements.lock (runtime, hashed)."""

    def action() -> None:
        from mlpack import environment

        folder = Path(out)
        summary = environment.write_lock_files(folder, not no_resolve, environment.index_url(index_url))
        runtime = summary["runtime_lock"]

        def text() -> str:
            build_lock = summary["build_lock"]
            lines = [
                f"wrote {folder / 'pylock.toml'}: {build_lock['packages']} packages, "
                f"{build_lock['with_artifact_hash']} with artifact hashes"
            ]
            if runtime["status"] == "complete":
                lines.append(
                    f"wrote {folder / 'requirements.lock'}: {runtime['packages']} packages ({runtime['tool']})"
                )
            else:
                lines.append(f"no requirements.lock: {runtime['reason']}")
            return "\n".join(lines)

        _emit(summary, as_json, text)

    _run(as_json, action)


@app.command()
def hardware(as_json: JsonOpt = False) -> None:
    """Profile this machine: CPU and vector ISA, cores, memory, OS, BLAS, onnxruntime, GPUs."""

    def action() -> None:
        from mlpack.hardware import profile
        from mlpack.report import render_hardware

        data = profile()
        _emit(data, as_json, lambda: render_hardware(data))

    _run(as_json, action)


@app.command()
def serve(
    package: Annotated[
        str, typer.Argument(help="A package, or a folder of packages to serve together.", show_default=False)
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8080,
    workers: Annotated[int, typer.Option(help="Processes sharing the port, each with its own sessions.")] = 1,
    verify_on_start: Annotated[
        bool,
        typer.Option(
            "--verify-on-start/--no-verify-on-start",
            help="Become ready only after the package verifies here (integrity and golden replay).",
        ),
    ] = True,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 64 * 2**20,
    access_log: Annotated[bool, typer.Option(help="Log every request on stderr.")] = False,
) -> None:
    """Serve packages over the Open Inference Protocol (KServe V2 REST) until Ctrl-C or SIGTERM.

    Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V][/ready];
    POST /v2/models/NAME[/versions/V]/infer, with JSON tensors or the binary tensor extension.
    """

    def action() -> None:
        from mlpack.serve import serve as run_server

        def announce(bound_host: str, bound_port: int) -> None:
            sys.stderr.write(f"mlpack serve: listening on http://{bound_host}:{bound_port}\n")
            sys.stderr.flush()

        run_server(package, host=host, port=port, workers=workers, verify_on_start=verify_on_start,
                   max_body=max_body_bytes, access_log=access_log, on_listen=announce)  # fmt: skip

    _run(False, action)


export_app = typer.Typer(
    help="Export a package for a serving system: a Triton model repository or a KServe InferenceService.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@export_app.command("triton")
def export_triton(
    package: Annotated[str, typer.Argument(help="Package folder.", show_default=False)],
    outdir: Annotated[
        str,
        typer.Argument(
            help="Model repository folder; receives NAME/config.pbtxt and NAME/1/.", show_default=False
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
        _emit({"model_repository": str(Path(outdir)), "model": str(folder)}, as_json, lambda: f"wrote {folder}")

    _run(as_json, action)


@export_app.command("kserve")
def export_kserve(
    package: Annotated[str, typer.Argument(help="Package folder.", show_default=False)],
    image: Annotated[
        str | None, typer.Option(help="Model image (modelcar): storageUri becomes oci://IMAGE.")
    ] = None,
    storage_uri: Annotated[
        str | None, typer.Option(help="Where the model lives (s3://, gs://, pvc://, https://…).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="InferenceService name. [default: from the package name]", show_default=False),
    ] = None,
    out: Annotated[str | None, typer.Option(help="Write the YAML here instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a KServe InferenceService (V2 protocol, ONNX) for the package; give --image or --storage-uri."""

    def action() -> None:
        from mlpack.export import kserve_manifest, to_yaml
        from mlpack.fileio import write_atomic

        manifest = kserve_manifest(package, image=image, storage_uri=storage_uri, name=name)
        text = json.dumps(manifest, indent=2) + "\n" if as_json else to_yaml(manifest)
        if out:
            write_atomic(Path(out), text.encode())
            sys.stderr.write(f"mlpack: wrote {out}\n")
        else:
            sys.stdout.write(text)

    _run(as_json, action)


InsecureOpt = Annotated[
    bool | None,
    typer.Option(
        "--insecure/--secure",
        show_default=False,
        help="Plain HTTP (--insecure) or HTTPS (--secure). [default: plain HTTP only for 127.0.0.1, localhost, [::1]]",
    ),
]


@app.command()
def push(
    package: Annotated[str, typer.Argument(help="Package folder (NAME-VERSION).", show_default=False)],
    ref: Annotated[
        str,
        typer.Argument(
            help="host[:port]/repository[:tag] or …@sha256:<hex>; the tag defaults to the package version.",
            show_default=False,
        ),
    ],
    insecure: InsecureOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Push a package to an OCI registry as an artifact (one layer per file). Exit 3 if it does not verify, 5 if the registry fails."""

    def action() -> None:
        from mlpack.registry import push as push_package

        result = push_package(package, ref, insecure=insecure)
        _emit(result.to_dict(), as_json, lambda: (
            f"pushed {result.reference}\n  digest   {result.digest}\n  package  {result.package_digest}\n"
            f"  pull by  {result.pinned}\n  sent {len(result.uploaded)} blobs, {len(result.skipped)} already there"))  # fmt: skip

    _run(as_json, action)


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="host[:port]/repository:tag or …@sha256:<hex>.", show_default=False)],
    dest: Annotated[str, typer.Argument(metavar="DIR", help="Folder to put NAME-VERSION in.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace DIR/NAME-VERSION if it exists.")] = False,
    insecure: InsecureOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull a package from an OCI registry; nothing is written unless every byte verifies. Exit 2, 3 or 5 on failure."""

    def action() -> None:
        from mlpack.registry import pull as pull_package

        pkg = pull_package(ref, dest, force=force, insecure=insecure)
        data = {"path": str(pkg.path), "name": pkg.name, "version": pkg.version, "digest": pkg.digest}
        _emit(data, as_json, lambda: f"pulled {ref} to {pkg.path} ({pkg.digest})")

    _run(as_json, action)


@app.command()
def containerize(
    package: Annotated[str, typer.Argument(help="Package folder (NAME-VERSION).", show_default=False)],
    tag: Annotated[
        str | None, typer.Option(help="Release tag. [default: mlpack/NAME:VERSION]", show_default=False)
    ] = None,
    base: Annotated[
        str, typer.Option(help="Base image with CPython 3.11 (its digest is recorded).")
    ] = "python:3.11-slim-bookworm",
    push: Annotated[bool, typer.Option("--push", help="Push the release tag after the gate passes.")] = False,
    context: Annotated[str | None, typer.Option(help="Keep the rendered build context in this folder.")] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="docker: build through DOCKER_HOST (Docker or Podman) and gate; "
            "oci: write an OCI layout with no daemon (--out)."
        ),
    ] = "docker",
    out: Annotated[str | None, typer.Option(help="With --engine oci: the OCI layout folder to write.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the engine's cached layers.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a hermetic serving image, run mlpack verify inside it with no network, and tag it only if it passes.

    The engine is whatever DOCKER_HOST names: Docker, or Podman's API service. Exit 1 when the image does not
    reproduce the golden outputs (the candidate is removed), 5 when the engine or a build step fails.
    """

    def action() -> None:
        from mlpack.container.engine import GateFailed
        from mlpack.container.engine import containerize as build_image
        from mlpack.errors import UsageError

        def progress(step: str) -> None:
            if not (quiet or as_json):
                sys.stderr.write(f"mlpack: {step}…\n")

        if engine == "oci":
            from mlpack.container.oci import write_image

            if not out or push:
                raise UsageError("--engine oci writes an OCI layout: give --out DIR (and push it with skopeo).")
            written = write_image(package, out, base, tag)
            _emit(written.to_dict(), as_json, lambda: (
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
        _emit(result.to_dict(), as_json, lambda: (
            f"released {result.tag} ({result.image_id[:19]})\n  verified inside: {result.verdict}\n"
            f"  base {result.base} ({result.base_digest})\n  package {result.package_digest}"
            + (f"\n  pushed {result.pushed}" if result.pushed else "")))  # fmt: skip

    _run(as_json, action)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the build's cleanup, so no half-written package remains


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app()
