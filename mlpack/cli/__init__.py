"""The mlpack command line: a thin layer over the library, one module per command group.

build.py: build · check.py: verify, inspect, lock, hardware · serving.py: serve, export ·
registry.py: push, pull · container.py: containerize · common.py: the app, output and exit codes.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import typer

from mlpack.cli import build, check, container, registry, serving  # noqa: F401  (each registers its commands)
from mlpack.cli.common import app, state

__all__ = ["app", "main"]


def _version(value: bool) -> None:
    if value:
        from mlpack import __version__

        typer.echo(f"mlpack {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (also after a command).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state["debug"] = state["debug"] or debug


def _take_debug(argv: list[str]) -> list[str]:
    """--debug is accepted anywhere on the line, as the error messages suggest (before a bare --)."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" in argv[:end]:
        state["debug"] = True
        return [a for i, a in enumerate(argv) if not (i < end and a == "--debug")]
    return argv


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the build's cleanup, so no half-written package remains


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    sys.argv[1:] = _take_debug(sys.argv[1:])
    app()
