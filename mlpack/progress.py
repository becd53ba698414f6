"""Where long work says what it is doing line by line (pip's "Downloading …" while a wheelhouse fills, an
engine's build log): a sink the command line sets while a person watches (cli.common.Steps on a terminal), and
None otherwise, when nothing is streamed and the work runs exactly as before."""

from __future__ import annotations

import contextvars
from collections.abc import Callable

DETAIL: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "mlpack_detail", default=None
)


def detail(line: str) -> None:
    """Pass one line of detail to whoever watches, if anyone does."""
    sink = DETAIL.get()
    if sink is not None and line.strip():
        sink(line.strip())
