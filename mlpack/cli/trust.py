"""mlpack sign and mlpack keygen: OpenSSF model signing of packages, offline, with EC keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.common import JsonOpt, app, emit, run


@app.command()
def sign(
    package: Annotated[
        str, typer.Argument(metavar="PACKAGE", help="Package folder (NAME-VERSION).", show_default=False)
    ],
    key: Annotated[
        Path | None,
        typer.Option(
            metavar="PRIVATE.pem",
            help="EC private key (P-256/384/521, PEM): mlpack keygen makes one.",
            show_default=False,
        ),
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option(metavar="CERT.pem", help="Sign with this certificate for KEY (certificate-based signing)."),
    ] = None,
    chain: Annotated[
        list[Path] | None,
        typer.Option("--chain", metavar="CERT.pem", help="Further certificates up to the root (repeatable)."),
    ] = None,
    sigstore: Annotated[
        bool,
        typer.Option(
            "--sigstore", help="Sign keyless with Sigstore instead of --key (needs its public services)."
        ),
    ] = False,
    identity_token: Annotated[
        str | None,
        typer.Option(
            metavar="JWT",
            help="OIDC identity token for --sigstore. Default: the CI's ambient one.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign an intact package: writes PACKAGE/mlpack.sig, an OpenSSF Model Signing bundle over every file.

    mlpack verify PACKAGE --key PUBLIC.pem then checks it first, and so does the model_signing CLI
    (model_signing verify key PACKAGE --signature PACKAGE/mlpack.sig --public_key PUBLIC.pem).
    Keyless: mlpack sign PACKAGE --sigstore (Fulcio certifies your OIDC identity, Rekor logs the signature);
    check with mlpack verify PACKAGE --identity ID --issuer URL. Both need Sigstore's services (exit 5 without).
    Exit codes: 0 signed, 2 bad input (a key of another type, say), 3 the package does not match its manifest.
    """

    def action() -> None:
        from mlpack import signing

        written = signing.sign(package, key, certificate=certificate, chain=chain or (), sigstore=sigstore,
                               identity_token=identity_token)  # fmt: skip
        emit({"signature": str(written)}, as_json, lambda: f"signed {package} → {written}")

    run(as_json, action)


@app.command()
def keygen(
    out: Annotated[str, typer.Argument(metavar="OUT", help="Private key file; the public key goes to OUT.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing pair.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an EC P-256 key pair for mlpack sign (OUT, mode 0600) and mlpack verify --key (OUT.pub)."""

    def action() -> None:
        from mlpack import signing

        private, public = signing.keygen(out, force=force)
        emit({"private": str(private), "public": str(public)}, as_json,
             lambda: f"private key {private} (keep it secret)\npublic key  {public}")  # fmt: skip

    run(as_json, action)
