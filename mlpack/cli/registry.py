"""mlpack push, pull, attach, login and logout: packages as OCI artifacts in any OCI registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.common import CaCertOpt, InsecureOpt, JsonOpt, QuietOpt, app, emit, run, transfers

AttestationOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--attestation",
        metavar="FILE",
        help="Attach this verify attestation (mlpack verify --attest) as a referrer; repeatable.",
        show_default=False,
    ),
]


@app.command()
def push(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="Package folder (NAME-VERSION).", show_default=False)
    ],
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="host[:port]/repository[:tag] or …@sha256:<hex>; the tag defaults to the package version.",
            show_default=False,
        ),
    ],
    insecure: InsecureOpt = None,
    ca_cert: CaCertOpt = None,
    attestation: AttestationOpt = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="mlpack: mlpack's own artifact; modelpack: a CNCF ModelPack artifact (format onnx, raw layers) "
            "that ModelPack tools (KitOps, modctl, Docker Model Runner) pull too. mlpack pull reads both.",
        ),
    ] = "mlpack",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a package to an OCI registry as an artifact (one layer per file). Exit 3 if it does not verify, 5 if
    the registry fails or refuses the login.

    Its signature, BOM, provenance and the attestations given are attached as OCI 1.1 referrers of the
    artifact (the referrers API, or the sha256-<hex> tag where the registry lacks it): `mlpack inspect REF`
    lists them.

    Logs in with the credentials `mlpack login` or `docker login` stored (Docker's config.json, its credential
    helpers), or MLPACK_REGISTRY with MLPACK_REGISTRY_USERNAME and MLPACK_REGISTRY_PASSWORD."""

    def action() -> None:
        from mlpack.oci.artifact import push as push_package

        with transfers(quiet, as_json) as progress:
            result = push_package(package, ref, insecure=insecure, ca_cert=ca_cert, attestations=attestation or [],
                                  format=format, progress=progress)  # fmt: skip
        attached = (
            f"\n  attached {', '.join(result.referrers)} ({result.referrers_via})" if result.referrers else ""
        )
        emit(result.to_dict(), as_json, lambda: (
            f"pushed {result.reference}\n  digest   {result.digest}\n  package  {result.package_digest}\n"
            f"  pull by  {result.pinned}\n  sent {len(result.uploaded)} blobs, {len(result.skipped)} already there"
            f"{attached}"))  # fmt: skip

    run(as_json, action)


@app.command()
def pull(
    ref: Annotated[
        str,
        typer.Argument(metavar="REF", help="host[:port]/repository:tag or …@sha256:<hex>.", show_default=False),
    ],
    dest: Annotated[str, typer.Argument(metavar="DIR", help="Folder to put NAME-VERSION in.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace DIR/NAME-VERSION if it exists.")] = False,
    insecure: InsecureOpt = None,
    key: Annotated[
        Path | None,
        typer.Option(
            metavar="PUBLIC.pem",
            help="Check the package's signature with this EC public key before "
            "anything is renamed into place; one that fails is exit 3.",
        ),
    ] = None,
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="Refuse an unsigned package (exit 3); needs --key.")
    ] = False,
    ca_cert: CaCertOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Pull a package from an OCI registry; nothing is written unless every byte verifies (and, with --key, its
    signature). Exit 2, 3 or 5 on failure.

    Logs in with the credentials `mlpack login` or `docker login` stored (Docker's config.json, its credential
    helpers), or MLPACK_REGISTRY with MLPACK_REGISTRY_USERNAME and MLPACK_REGISTRY_PASSWORD."""

    def action() -> None:
        from mlpack.oci.artifact import pull as pull_package

        with transfers(quiet, as_json) as progress:
            pkg = pull_package(ref, dest, force=force, insecure=insecure, key=key,
                               require_signature=require_signature, ca_cert=ca_cert, progress=progress)  # fmt: skip
        data = {"path": str(pkg.path), "name": pkg.name, "version": pkg.version, "digest": pkg.digest}
        emit(data, as_json, lambda: f"pulled {ref} to {pkg.path} ({pkg.digest})")

    run(as_json, action)


@app.command()
def attach(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="A pushed package: host[:port]/repository:tag or …@sha256:<hex>.",
            show_default=False,
        ),
    ],
    signature: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="mlpack.sig from `mlpack sign` of the same package.", show_default=False
        ),
    ] = None,
    attestation: AttestationOpt = None,
    insecure: InsecureOpt = None,
    ca_cert: CaCertOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach a signature or verify attestations to a package already pushed, as OCI 1.1 referrers: the
    artifact and its digest stay as they were. `pull --key` takes the signature from there when the artifact
    has none; `mlpack inspect REF` lists them. An attestation about another package is refused (exit 2).

    Example: mlpack verify pkg --attest proof.json --attest-key key.pem && mlpack attach reg/churn:3 --attestation proof.json"""

    def action() -> None:
        from mlpack.oci.artifact import attach as attach_to

        done = attach_to(ref, signature=signature, attestations=attestation or [], insecure=insecure,
                         ca_cert=ca_cert)  # fmt: skip
        emit(done, as_json, lambda: f"attached to {done['reference']} ({done['digest']}): "
             + ", ".join(f"{a['kind']} {a['title']}" for a in done["attached"]) + f" ({done['referrers_via']})")  # fmt: skip

    run(as_json, action)


RegistryArg = Annotated[
    str, typer.Argument(metavar="REGISTRY", help="host[:port] of the registry, e.g. ghcr.io.", show_default=False)
]


@app.command()
def login(
    registry: RegistryArg,
    username: Annotated[str, typer.Option("--username", "-u", help="User name.", show_default=False)],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (or token) from standard input.")
    ] = False,
    insecure: InsecureOpt = None,
    ca_cert: CaCertOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log in to a registry and keep the login where `docker login` would (Docker's config.json, or its
    credential helper when the config names one), so push, pull and docker all use it.

    The login is checked first: the registry's challenge is met with it (Basic, or a bearer token from its
    token service). Without --password-stdin the password is asked for on the terminal. Exit 5 if refused.

    Example: echo "$TOKEN" | mlpack login ghcr.io -u me --password-stdin"""

    def action() -> None:
        import sys

        from mlpack.errors import UsageError
        from mlpack.oci.auth import Credentials, store_credentials
        from mlpack.oci.client import check_login

        if password_stdin:
            password = sys.stdin.read().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = typer.prompt("Password", hide_input=True)
        else:
            raise UsageError("No terminal to ask for the password on: pipe it in with --password-stdin.")
        if not password:
            raise UsageError("The password is empty: give it on standard input with --password-stdin.")
        checked = check_login(registry, Credentials(username, password, "mlpack login"), insecure=insecure,
                              ca_cert=ca_cert)  # fmt: skip
        where = store_credentials(registry, Credentials(username, password, "mlpack login"))
        data = {"registry": registry, "username": username, "stored": where, "checked": checked}
        note = "" if checked else " (the registry asks for no login, so it could not be checked)"
        emit(data, as_json, lambda: f"Login succeeded for {username} at {registry}{note}; kept in {where}")

    run(as_json, action)


@app.command()
def logout(registry: RegistryArg, as_json: JsonOpt = False) -> None:
    """Forget the login for a registry (in Docker's config.json or its credential helper)."""

    def action() -> None:
        from mlpack.oci.auth import erase_credentials

        where = erase_credentials(registry)
        data = {"registry": registry, "removed_from": where}
        emit(data, as_json, lambda: f"Removed the login for {registry} from {where}" if where else
             f"No login for {registry} was kept")  # fmt: skip

    run(as_json, action)
