"""What every command shares: the typer app, output as text or JSON, progress lines, and the one place that
turns exceptions into exit codes. Only the CLI prints or exits; the library returns data or raises."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(
    help="Package a trained model so that it gives the same answers on the next machine, and prove it.\n\n"
    "\b\n"  # click keeps this paragraph's lines as written
    "  mlpack build model.skops --sample sample.npy --name churn --version 3\n"
    "  mlpack verify dist/churn-3     # 0 identical/equivalent, 1 mismatch, 3 tampered\n"
    "  mlpack containerize dist/churn-3 --tag registry.example/churn:3\n\n"
    "Exit codes: 0 success, 1 outputs differ, 2 bad input, 3 integrity, 4 environment cannot run the model, "
    "5 engine, registry or index failure. Add --debug anywhere for tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
state = {"debug": False, "interrupted": False}  # interrupted: SIGTERM or Ctrl-C arrived

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)}  # all but \t and \n


def printable(text: str) -> str:
    """Text for a terminal with control characters escaped: a package's names and paths are someone else's
    data, and an escape sequence in them could clear the screen or fake a verdict line."""
    return text.translate(_CONTROL)


VERDICT_STYLES = {"identical": "bold green", "equivalent": "bold yellow", "mismatch": "bold red",
                  "tampered": "bold magenta", "error": "bold red"}  # fmt: skip


def emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    """One JSON object, or the text: on a terminal with the verdicts in colour (rich; NO_COLOR turns it off),
    else plain. The same words either way."""
    close_steps()
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")  # JSON escapes them itself
        return
    out = printable(text())
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        sys.stdout.write(out + "\n")
        return
    from rich.console import Console
    from rich.text import Text

    styled = Text(out)
    for word, style in VERDICT_STYLES.items():
        styled.highlight_regex(rf"\b{word}\b", style)
    Console(highlight=False, soft_wrap=True, emoji=False, markup=False).print(styled)


@contextlib.contextmanager
def transfers(quiet: bool, as_json: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """Byte progress for uploads and downloads (title, bytes done, bytes in all), drawn by rich on stderr, only
    on a terminal and neither with --quiet nor --json; None otherwise, and the library draws nothing."""
    if quiet or as_json or not sys.stderr.isatty():
        yield None
        return
    close_steps()
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(title: str, done: int, total: int) -> None:
            if title not in tasks:
                tasks[title] = bar.add_task(title, total=total)
            bar.update(tasks[title], completed=done)

        yield update


class Steps:
    """Progress of long work, called with each step. On a terminal (stderr) each step shows under a rich spinner
    with the latest ``detail`` line beside it (an engine's build log), and finished steps stay printed; elsewhere
    each step is one line on stderr and details are not shown. Nothing with --quiet or --json."""

    def __init__(self, quiet: bool, as_json: bool) -> None:
        self.silent = quiet or as_json
        self.status: Any = None
        self.step = ""
        if not self.silent and sys.stderr.isatty():
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
            self.status = self.console.status("", spinner="dots")
            self.status.start()
            _OPEN.append(self)
            from mlpack import progress

            self._watching = progress.DETAIL.set(self.detail)  # pip's lines and engines' logs come here

    def __call__(self, step: str) -> None:
        if self.silent:
            return
        if self.status is None:
            sys.stderr.write(f"mlpack: {step}…\n")
            sys.stderr.flush()
            return
        if self.step:
            self.console.print(f"[green]✓[/] {self.step}", markup=True, highlight=False)
        self.step = step
        self.status.update(step)

    def detail(self, line: str) -> None:
        if self.status is not None:
            self.status.update(f"{self.step}  [dim]{escape(line[-100:])}[/]")

    def close(self) -> None:
        """Stop the spinner (before the result, an error, or a byte progress is drawn); later steps print as
        lines."""
        if self.status is not None:
            from mlpack import progress

            progress.DETAIL.reset(self._watching)
            self.status.stop()
            if self.step:
                self.console.print(f"[green]✓[/] {self.step}", markup=True, highlight=False)
            self.status = None
            self.step = ""
        if self in _OPEN:
            _OPEN.remove(self)


_OPEN: list[Steps] = []


def close_steps() -> None:
    """Stop every spinner still drawing: one live display at a time, and none under a result or an error."""
    for steps in list(_OPEN):
        steps.close()


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def progress_printer(quiet: bool, as_json: bool) -> Steps:
    return Steps(quiet, as_json)


def fail(exc: BaseException, as_json: bool) -> NoReturn:
    """Exit with the error's code and one sentence; a traceback only with --debug."""
    from mlpack.errors import MlpackError

    if isinstance(exc, MlpackError):
        code, message, details = exc.exit_code, exc.message, exc.details()
    else:
        code, details = 2, {}
        message = f"unexpected failure: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)"
    if state["debug"]:
        traceback.print_exception(exc)
    if as_json:
        sys.stdout.write(
            json.dumps({"error": message, "exit_code": code, **details}, indent=2, default=str) + "\n"
        )
    else:
        sys.stderr.write(f"mlpack: error: {printable(message)}\n")
    raise typer.Exit(code)


def run(as_json: bool, action: Callable[[], Any]) -> Any:
    try:
        result = action()
        close_steps()
        return result
    except typer.Exit:
        close_steps()
        raise
    except KeyboardInterrupt:
        close_steps()
        interrupted()
    except Exception as exc:
        close_steps()
        if state["interrupted"]:  # a library that caught the interrupt and raised its own error (numpy's import
            interrupted()  # does: "import numpy failed") must not turn Ctrl-C into a false diagnosis
        fail(exc, as_json)


INTERRUPTED = "interrupted; nothing was written."


def interrupted() -> NoReturn:
    sys.stderr.write(f"mlpack: {INTERRUPTED}\n")
    raise typer.Exit(130) from None


InsecureOpt = Annotated[
    bool | None,
    typer.Option(
        "--insecure/--secure",
        show_default=False,
        help="Plain HTTP (--insecure) or HTTPS (--secure). [default: plain HTTP only for 127.0.0.1, localhost, [::1]]",
    ),
]
CaCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        metavar="FILE",
        help="Trust this CA (PEM) for the registry's TLS certificate, beside the system's; implies HTTPS.",
        show_default=False,
    ),
]
