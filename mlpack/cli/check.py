"""mlpack verify, compare, inspect, lock and hardware: what a package holds and whether it holds here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpack.cli.common import CaCertOpt, InsecureOpt, JsonOpt, QuietOpt, app, emit, run

AtolOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--atol",
        metavar="[NAME=]VALUE",
        help="Absolute tolerance for this run: NAME is an output or an output kind (probabilities, value, "
        "label); a bare VALUE is for every float output (repeatable). The report lists every override.",
    ),
]
RtolOpt = Annotated[
    list[str] | None,
    typer.Option("--rtol", metavar="[NAME=]VALUE", help="Relative tolerance for this run, as --atol."),
]


def parse_tolerances(values: list[str] | None, flag: str) -> dict[str, float]:
    """--atol/--rtol [NAME=]VALUE values as {name or "": value}."""
    from mlpack.errors import UsageError

    parsed: dict[str, float] = {}
    for value in values or []:
        name, _, number = value.rpartition("=")
        try:
            parsed[name] = float(number)
        except ValueError:
            raise UsageError(
                f"{flag} takes [NAME=]VALUE with a number, such as probabilities=1e-3, not {value!r}."
            ) from None
    return parsed


def _outcome(output: dict[str, Any]) -> str:
    """One output's comparison as a test outcome: identical, equivalent (within tolerance) or mismatch."""
    return "identical" if output.get("identical") else "equivalent" if output.get("passed") else "mismatch"


KeyOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="PUBLIC.pem",
        help="Check the package's signature (mlpack.sig) with this EC public key first; one that fails is "
        "tampered (exit 3). Default: [tool.mlpack] verify-key.",
    ),
]
ChainOpt = Annotated[
    list[Path] | None,
    typer.Option(metavar="CERT.pem", help="Check a certificate-signed package against this chain (repeatable)."),
]
RequireSignatureOpt = Annotated[
    bool, typer.Option("--require-signature", help="An unsigned package fails as tampered (exit 3).")
]
DigestOpt = Annotated[
    str | None, typer.Option(help="Expected package digest (sha256:…); any other manifest counts as tampered.")
]


@app.command()
def verify(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="Package folder (NAME-VERSION).", show_default=False)
    ],
    strict: Annotated[bool, typer.Option(help="Demand bit-identical outputs; 'equivalent' then exits 1.")] = False,
    threads: Annotated[
        int | None, typer.Option(help="Replay with this many intra-op threads instead of the recorded count.")
    ] = None,
    digest: DigestOpt = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Also compare every installed distribution with the build lock when nothing needs explaining "
            "(by default only when the runtime environment or the outputs differ).",
        ),
    ] = False,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    save_outputs: Annotated[
        Path | None,
        typer.Option(metavar="FILE.npz", help="Write the outputs this machine gave, for mlpack compare later."),
    ] = None,
    machine: Annotated[
        list[str] | None,
        typer.Option(
            "--machine",
            metavar="CLASS",
            help="Replay on another machine class by CPU emulation (QEMU user mode): x86-64-v2, x86-64-avx, "
            "x86-64-v3, x86-64-v4, native, or all (repeatable). Prints a machine x output matrix; the worst "
            "verdict decides the exit code.",
        ),
    ] = None,
    key: KeyOpt = None,
    certificate_chain: ChainOpt = None,
    require_signature: RequireSignatureOpt = False,
    identity: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="Check a keyless (Sigstore) signature: the signer's identity (an e-mail, a CI workflow URI); "
            "with --issuer. Needs Sigstore's trust root (network).",
            show_default=False,
        ),
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The OIDC issuer that vouched for --identity, e.g. https://token.actions.githubusercontent.com.",
            show_default=False,
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE.html",
            help="Also write the report as one self-contained HTML page (plots of every output's errors, the "
            "machine matrix, the differences); opens offline.",
            show_default=False,
        ),
    ] = None,
    attest: Annotated[
        Path | None,
        typer.Option(
            metavar="OUT.json",
            help="Write an in-toto test-result statement about the package digest: each output (per machine "
            "class with --machine) passed, warned (equivalent) or failed, and the machine it ran on.",
        ),
    ] = None,
    attest_key: Annotated[
        Path | None,
        typer.Option(metavar="PRIVATE.pem", help="Sign the --attest statement (DSSE) with this EC private key."),
    ] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Check the signature and integrity, diff environment and hardware, replay golden inputs, and judge the
    outputs.

    Exit codes: 0 identical or equivalent, 1 mismatch (or not identical with --strict), 2 bad input,
    3 tampered (files, or a signature that fails), 4 this environment cannot run the model.
    """

    def action() -> int:
        from mlpack.errors import UsageError
        from mlpack.options import from_file

        public = key or (None if identity or issuer else from_file().get("verify_key"))
        if machine:  # first: the classes' processes start before the rest of mlpack loads here
            if identity or issuer:
                raise UsageError("--identity/--issuer are checked by a plain verify; with --machine give --key.")
            return across(machine, public)

        import tempfile

        from mlpack.report import render_verify
        from mlpack.signing import identity_from
        from mlpack.verifier import verify as verify_package

        signer = identity_from(identity, issuer)

        with tempfile.TemporaryDirectory(prefix="mlpack-verify-") as scratch:
            # the page plots what this run gave: kept where asked, else for the page only
            kept = save_outputs or (Path(scratch) / "outputs.npz" if html is not None else None)
            report = verify_package(
                package, strict=strict, threads=threads, expect_digest=digest, full=full,
                atol=parse_tolerances(atol, "--atol"), rtol=parse_tolerances(rtol, "--rtol"), save_outputs=kept,
                key=public, certificate_chain=certificate_chain or (), require_signature=require_signature,
                identity=signer,
            )  # fmt: skip
            if html is not None:
                _html(report.to_dict(), kept if kept is not None and kept.is_file() else None)
        if attest is not None:
            outcomes = [(c.name, _outcome(c.to_dict())) for c in report.outputs] or [("package", report.verdict)]
            _attest(report.name, report.version, report.digest, outcomes, report.passed)
        emit(report.to_dict(), as_json, lambda: render_verify(report))
        return report.exit_code

    def _html(data: dict[str, Any], outputs: Path | None, matrix: dict[str, Any] | None = None) -> None:
        assert html is not None  # called only when --html was given
        from mlpack import htmlreport
        from mlpack.fileio import load_npz

        htmlreport.write(html, data, package, load_npz(outputs) if outputs else None, matrix)

    def _attest(name: str, version: str, digest: str, outcomes: list[tuple[str, str]], passed: bool) -> None:
        assert attest is not None  # called only when --attest was given
        import platform
        from importlib.metadata import version as installed

        from mlpack import hardware, provenance

        machine = {"architecture": platform.machine(), "level": hardware.level(),
                   "onnxruntime": installed("onnxruntime"), "mlpack": installed("mlpack")}  # fmt: skip
        document = provenance.test_result(name, version, digest, outcomes, passed, machine)
        provenance.write_attestation(attest, document, attest_key)

    def across(names: list[str], public: Path | None) -> int:
        from mlpack.cli.common import progress_printer
        from mlpack.errors import UsageError
        from mlpack.machines import verify_matrix

        if digest or full or atol or rtol or save_outputs:
            raise UsageError(
                "--machine takes --strict, --threads, --json, the signature options and --attest; verify without it "
                "for the rest."
            )
        matrix = verify_matrix(
            package, names, strict=strict, threads=threads, progress=progress_printer(quiet, as_json),
            key=public, certificate_chain=certificate_chain or (), require_signature=require_signature,
        )  # fmt: skip
        if attest is not None:
            from mlpack.package import open_package

            opened = open_package(package)
            outcomes = [(f"{r.machine}/{o['name']}", _outcome(o)) for r in matrix.results for o in r.outputs]
            outcomes += [(r.machine, r.verdict) for r in matrix.results if not r.outputs]  # fmt: skip
            _attest(opened.name, opened.version, opened.digest, outcomes, matrix.passed)
        if html is not None:
            _html({}, None, matrix.to_dict())
        from mlpack.report import render_matrix

        emit(matrix.to_dict(), as_json, lambda: render_matrix(matrix))
        return matrix.exit_code

    code = run(as_json, action)
    raise typer.Exit(code)


@app.command()
def compare(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="Package folder (NAME-VERSION).", show_default=False)
    ],
    outputs: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUTS.npz",
            help="Outputs keyed by name (verify --save-outputs writes them).",
            show_default=False,
        ),
    ],
    strict: Annotated[bool, typer.Option(help="Demand bit-identical outputs; 'equivalent' then exits 1.")] = False,
    atol: AtolOpt = None,
    rtol: RtolOpt = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE.html",
            help="Also write the report as one self-contained HTML page.",
            show_default=False,
        ),
    ] = None,
    digest: DigestOpt = None,
    key: KeyOpt = None,
    certificate_chain: ChainOpt = None,
    require_signature: RequireSignatureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Judge saved outputs against the package's golden outputs without running the model.

    The package's signature (with --key or a certificate chain) and integrity are checked first, as verify
    checks them. Exit codes as verify: 0 identical or equivalent, 1 mismatch, 2 bad input, 3 tampered.
    """

    def action() -> int:
        from mlpack.options import from_file
        from mlpack.report import render_verify
        from mlpack.verifier import judge_saved

        report = judge_saved(package, outputs, strict=strict, atol=parse_tolerances(atol, "--atol"),
                             rtol=parse_tolerances(rtol, "--rtol"), expect_digest=digest,
                             key=key or from_file().get("verify_key"), certificate_chain=certificate_chain or (),
                             require_signature=require_signature)  # fmt: skip
        if html is not None:
            from mlpack import htmlreport
            from mlpack.sample import load_expected

            replayed = load_expected(outputs, [o.name for o in report.outputs]) if report.outputs else None
            htmlreport.write(html, report.to_dict(), package, replayed)
        emit(report.to_dict(), as_json, lambda: render_verify(report))
        return report.exit_code

    code = run(as_json, action)
    raise typer.Exit(code)


@app.command()
def report(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="The package the report is about.", show_default=False)
    ],
    verify_json: Annotated[
        Path,
        typer.Option(
            metavar="FILE.json",
            help="A saved `mlpack verify --json` (or `--machine … --json`) report.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option(metavar="FILE.html", help="Where to write the page.", show_default=False)],
    outputs: Annotated[
        Path | None,
        typer.Option(
            metavar="OUTPUTS.npz",
            help="What that run gave (verify --save-outputs), for the element plots.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Render a saved verify report as one self-contained HTML page: the verdict first, per output an error
    histogram, golden against replayed values, the ULP distribution and the worst elements (with --outputs),
    label confusion, the machine matrix, and what differs from the build. Opens offline; prints; reads on a phone.

    Example: mlpack verify pkg --json --save-outputs out.npz > r.json; mlpack report pkg --verify-json r.json --outputs out.npz --out r.html"""

    def action() -> None:
        import json

        from mlpack import htmlreport
        from mlpack.errors import UsageError
        from mlpack.fileio import load_npz

        try:
            data = json.loads(verify_json.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--verify-json {verify_json} is no saved verify report ({exc}).") from None
        if not isinstance(data, dict) or "verdict" not in data:
            raise UsageError(f"--verify-json {verify_json} is no saved verify report (it has no verdict).")
        matrix = data if "machines" in data else None
        written = htmlreport.write(out, data, package, load_npz(outputs) if outputs else None, matrix)
        emit({"html": str(written), "verdict": data["verdict"]}, as_json, lambda: f"wrote {written}")

    run(as_json, action)


@app.command()
def diff(
    a: Annotated[
        str,
        typer.Argument(
            metavar="A", help="Package folder, or a pushed package (host/repo:tag).", show_default=False
        ),
    ],
    b: Annotated[str, typer.Argument(metavar="B", help="The package to compare A with.", show_default=False)],
    insecure: InsecureOpt = None,
    ca_cert: CaCertOpt = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE.html",
            help="Also write the diff as one self-contained HTML page.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two packages (two versions of a model, or a rebuild): manifest fields, the model
    graph (opsets, signatures, op counts, which weights changed), the runtime and build locks package by
    package, the hardware they were built on, and each model on the other's golden inputs (verify's figures).

    A registry reference is pulled (and verified) into a temporary folder first. Exit 0 when no difference
    moves numbers, 1 when one does; 2 bad input, 3 a package that does not verify."""

    def action() -> int:
        import tempfile

        from mlpack.diff import diff as diff_packages
        from mlpack.diff import render

        with tempfile.TemporaryDirectory(prefix="mlpack-diff-") as scratch:
            paths = []
            for i, given in enumerate((a, b)):
                if _is_reference(given):
                    from mlpack.oci.artifact import pull

                    pulled = pull(
                        _plain_reference(given), Path(scratch) / str(i), insecure=insecure, ca_cert=ca_cert
                    )
                    given = str(pulled.path)
                paths.append(given)
            result = diff_packages(paths[0], paths[1])
        if html is not None:
            from mlpack.fileio import write_atomic
            from mlpack.htmlreport import render_diff

            write_atomic(html, render_diff(result.to_dict()).encode())
        emit(result.to_dict(), as_json, lambda: render(result))
        return result.exit_code

    code = run(as_json, action)
    raise typer.Exit(code)


def _is_reference(text: str) -> bool:
    """A registry reference rather than a folder: no such path here, and it parses as host/repository:tag
    (``oci://`` in front taken too, as KServe writes image references)."""
    from mlpack.errors import UsageError
    from mlpack.oci.reference import parse_reference

    if Path(text).exists():
        return False
    try:
        ref = parse_reference(_plain_reference(text))
    except UsageError:
        return False
    return ref.tag is not None or ref.digest is not None


def _plain_reference(text: str) -> str:
    return text.removeprefix("oci://")


@app.command()
def inspect(
    package: Annotated[
        str,
        typer.Argument(
            metavar="PACKAGE|REF",
            help="Package folder, or a pushed package: host[:port]/repository:tag or …@sha256:<hex>.",
            show_default=False,
        ),
    ],
    insecure: InsecureOpt = None,
    ca_cert: CaCertOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what a package holds: manifest summary, digest and files. Runs nothing, checks nothing.

    Given a registry reference, reads the pushed package's manifest (nothing is downloaded but mlpack.json) and
    lists what refers to it: signature, BOM, provenance, verify attestations, other tools' artifacts."""

    def action() -> None:
        from mlpack.inspector import inspect as inspect_package
        from mlpack.report import render_inspect

        if _is_reference(package):
            from mlpack.oci.artifact import inspect_remote
            from mlpack.report import render_remote

            remote = inspect_remote(_plain_reference(package), insecure=insecure, ca_cert=ca_cert)
            emit(remote, as_json, lambda: render_remote(remote))
            return
        info = inspect_package(package)
        emit(info.to_dict(), as_json, lambda: render_inspect(info))

    run(as_json, action)


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
        from mlpack import locks, options
        from mlpack.report import render_lock

        folder = Path(out)
        summary = locks.write_lock_files(folder, not no_resolve, options.index_url(index_url))
        emit(summary, as_json, lambda: render_lock(folder, summary))

    run(as_json, action)


@app.command()
def hardware(as_json: JsonOpt = False) -> None:
    """Profile this machine: CPU and vector ISA, cores, memory, OS, BLAS, onnxruntime, GPUs."""

    def action() -> None:
        from mlpack.hardware import profile
        from mlpack.report import render_hardware

        data = profile()
        emit(data, as_json, lambda: render_hardware(data))

    run(as_json, action)
