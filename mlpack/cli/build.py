"""mlpack build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpack.cli.common import JsonOpt, QuietOpt, app, emit, progress_printer, run


def parse_lineage(items: list[str]) -> dict[str, str]:
    from mlpack.errors import UsageError

    lineage = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--lineage takes KEY=VALUE, got {item!r}.")
        lineage[key] = value
    return lineage


# Long only because typer declares each option in the signature; the body is one call into the library.
@app.command()
def build(
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="[MODEL]",
            help="Model file: .onnx, .skops, .pt2/.pt (PyTorch), .json/.ubj (XGBoost), .txt (LightGBM), or "
            ".joblib/.pkl with --trust-pickle. Default: [tool.mlpack] model.",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        str | None,
        typer.Option(
            help="Golden inputs: .npy, .npz keyed by input name, .csv, or an ONNX test-data folder (input_K.pb, or "
            "test_data_set_* folders of them). Default: [tool.mlpack] sample."
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
    expected: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="ONNX models: outputs you trust for the sample (.npz keyed by output name, or a folder of "
            "output_K.pb): the golden run must reproduce them, and parity records it.",
        ),
    ] = None,
    dynamic: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME:AXIS[=DIM]: make axis AXIS of PyTorch input NAME dynamic beyond the batch (repeatable); axes "
            "sharing DIM (default axisAXIS) share a size, e.g. input_ids:1 and attention_mask:1."
        ),
    ] = None,
    no_timings: Annotated[
        bool, typer.Option("--no-timings", help="Skip measuring onnxruntime vs native speed at build.")
    ] = False,
    machines: Annotated[
        list[str] | None,
        typer.Option(
            metavar="CLASS[,CLASS]",
            help="Replay the golden inputs on these machine classes (x86-64-v2, x86-64-avx, x86-64-v3, aarch64, "
            "or all; emulated with QEMU) and record each outcome in the manifest; the build fails where the "
            "outputs do not hold.",
        ),
    ] = None,
    accept_machines: Annotated[
        bool,
        typer.Option(help="Package even if the outputs do not hold on a --machines class; the manifest says so."),
    ] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            metavar="PRIVATE.pem",
            help="Sign the package (mlpack.sig, OpenSSF model signing) with this EC private key as the build's "
            "last step. Default: [tool.mlpack] sign-key.",
        ),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert a model to ONNX, record golden outputs, lock the environment, and write a hashed package.

    Settings come from the defaults, then [tool.mlpack] in the nearest pyproject.toml, then these flags.
    Exit codes: 0 built, 1 the conversion does not reproduce the native model (or the outputs do not hold
    on a --machines class), 2 bad input, 4 a --machines class cannot be emulated here.
    """

    def action() -> None:
        from mlpack.builder import build as build_package
        from mlpack.options import parse_dynamic
        from mlpack.report import render_build

        tolerances: Any = None
        if atol is not None or rtol is not None:
            spec = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
            tolerances = {"probabilities": spec, "value": spec}
        package = build_package(
            model, sample, name=name, version=version, out=out, force=force,
            trust_pickle=True if trust_pickle else None, trusted_types=tuple(trust_type or ()),
            tolerances=tolerances, threads=threads, opset=opset, precision=precision, onnx=onnx,
            timings=not no_timings, resolve=not no_resolve, index_url=index_url,
            lineage=parse_lineage(lineage) if lineage else None, accept_parity=accept_parity,
            dynamic_shapes=parse_dynamic(dynamic) if dynamic else None, expected=expected,
            progress=progress_printer(quiet, as_json), machines=machines, accept_machines=accept_machines,
            sign_key=sign_key,
        )  # fmt: skip
        emit(
            {"package": str(package.path), "digest": package.digest, "manifest": package.manifest.to_dict()},
            as_json,
            lambda: render_build(package),
        )

    run(as_json, action)
