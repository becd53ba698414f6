"""The mlpack command line: a thin layer over the library, one module per command group.

build.py: build · check.py: verify, inspect, lock, hardware · serving.py: serve, export ·
registry.py: push, pull · container.py: containerize · common.py: the app, output and exit codes.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Annotated, Any, NoReturn

import typer

from mlpack.cli.common import INTERRUPTED, app, state

__all__ = ["COMMANDS", "app", "load_commands", "main"]

# command -> the module that defines it. main() loads only the module a command line names: typer builds a
# click command from every registered function's signature on each run (~25 ms for all of them), which was a
# tenth of `mlpack verify`. `mlpack --help`, `--version` and unknown commands load them all.
COMMANDS = {
    "build": "build",
    "verify": "check",
    "compare": "check",
    "inspect": "check",
    "lock": "check",
    "hardware": "check",
    "report": "check",
    "diff": "check",
    "containerize": "container",
    "push": "registry",
    "pull": "registry",
    "attach": "registry",
    "login": "registry",
    "logout": "registry",
    "serve": "serving",
    "export": "serving",
    "sign": "trust",
    "keygen": "trust",
}


def load_commands(names: set[str] | None = None) -> typer.Typer:
    """Register the commands named (every command when None) on the app, and return it."""
    modules = {COMMANDS[n] for n in names} if names else set(COMMANDS.values())
    for module in sorted(modules):
        importlib.import_module(f"mlpack.cli.{module}")
    return app


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
    state["interrupted"] = True
    raise KeyboardInterrupt  # unwinds through the build's cleanup, so no half-written package remains


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        sys.argv[1:] = _take_debug(sys.argv[1:])
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
        load_commands({command} if command in COMMANDS else None)
        app()
    except KeyboardInterrupt:  # before or after a command's own handling: while loading, or in click
        _exit_interrupted()
    except SystemExit as exit_:  # click turns an interrupt it sees into "Aborted!" and exit 1
        if state["interrupted"]:
            if exit_.code not in (0, 130):
                _exit_interrupted()
            _hard_exit(exit_.code if isinstance(exit_.code, int) else 1)
        raise


def _exit_interrupted() -> NoReturn:
    sys.stderr.write(f"mlpack: {INTERRUPTED}\n")
    _hard_exit(130)


def _hard_exit(code: int) -> NoReturn:
    """Exit with ``code`` itself. CPython 3.11 remembers a KeyboardInterrupt that passed through code run by
    an extension's embedded PyRun_* call (an import being interrupted) even when it was caught, and then ends
    the process by SIGINT instead of the exit code: seen as -2 after "interrupted" was printed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
