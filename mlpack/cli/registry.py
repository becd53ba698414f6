"""mlpack push and mlpack pull: packages as OCI artifacts in any OCI registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.common import JsonOpt, app, emit, run

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
    as_json: JsonOpt = False,
) -> None:
    """Push a package to an OCI registry as an artifact (one layer per file). Exit 3 if it does not verify, 5 if the registry fails."""

    def action() -> None:
        from mlpack.oci.artifact import push as push_package

        result = push_package(package, ref, insecure=insecure)
        emit(result.to_dict(), as_json, lambda: (
            f"pushed {result.reference}\n  digest   {result.digest}\n  package  {result.package_digest}\n"
            f"  pull by  {result.pinned}\n  sent {len(result.uploaded)} blobs, {len(result.skipped)} already there"))  # fmt: skip

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
    as_json: JsonOpt = False,
) -> None:
    """Pull a package from an OCI registry; nothing is written unless every byte verifies (and, with --key, its
    signature). Exit 2, 3 or 5 on failure."""

    def action() -> None:
        from mlpack.oci.artifact import pull as pull_package

        pkg = pull_package(ref, dest, force=force, insecure=insecure, key=key, require_signature=require_signature)
        data = {"path": str(pkg.path), "name": pkg.name, "version": pkg.version, "digest": pkg.digest}
        emit(data, as_json, lambda: f"pulled {ref} to {pkg.path} ({pkg.digest})")

    run(as_json, action)
