"""What a person at a terminal sees, run in a real pseudo-terminal: verdicts in colour and the same words as
when piped; byte progress for uploads and downloads on stderr, only on a terminal, never with --quiet or
--json."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from registry_fixture import Registry

from tests.conftest import CliRunner

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMING = re.compile(r"\(\d+\.\d+ s\)")  # the one thing that differs from run to run


def in_terminal(*args: str | Path) -> tuple[int, str]:
    """Run mlpack with stdin, stdout and stderr on a pseudo-terminal; everything it drew, and its exit code."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "mlpack", *map(str, args)], stdin=follower, stdout=follower,
                               stderr=follower, env=env, close_fds=True)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def plain(text: str) -> list[str]:
    return [
        TIMING.sub("", line).rstrip() for line in ANSI.sub("", text).replace("\r", "").splitlines() if line.strip()
    ]


def test_verdicts_are_coloured_on_a_terminal_and_the_words_are_the_same(built: Path, cli: CliRunner) -> None:
    code, drawn = in_terminal("verify", built)
    assert code == 0
    assert "\x1b[1;32midentical" in drawn  # bold green
    piped = cli("verify", built)
    assert "\x1b[" not in piped.stdout
    assert plain(drawn) == plain(piped.stdout)


@pytest.mark.registry
@pytest.mark.xdist_group("registry")
def test_push_and_pull_show_bytes_and_rate_on_a_terminal_only(
    built: Path, reg: Registry, tmp_path: Path, cli: CliRunner
) -> None:
    code, drawn = in_terminal("push", built, f"{reg.host}/forest")
    assert code == 0, drawn
    text = ANSI.sub("", drawn)
    # a bar per blob with its bytes (the rate column reads "?" on loopback: done before a rate can be measured)
    done = re.compile(r"model\.onnx\s.*?(\d+\.\d+)/\1 [kMG]?B")
    assert done.search(text), text
    code, drawn = in_terminal("pull", f"{reg.host}/forest:1", tmp_path / "pulled")
    assert code == 0 and done.search(ANSI.sub("", drawn)), drawn
    code, quiet = in_terminal("pull", f"{reg.host}/forest:1", tmp_path / "quiet", "--quiet")
    assert code == 0 and not done.search(ANSI.sub("", quiet)) and "pulled" in quiet
    piped = cli("push", built, f"{reg.host}/forest", "--json")
    assert piped.returncode == 0 and piped.stderr == ""  # no progress when nobody watches
    json.loads(piped.stdout)  # --json stays one object on stdout


def test_long_work_shows_steps_under_a_spinner_on_a_terminal(built: Path, cli: CliRunner) -> None:
    code, drawn = in_terminal("verify", built, "--machine", "native", "--machine", "x86-64-v2")
    assert code == 0, drawn
    text = ANSI.sub("", drawn).replace("\r", "\n")
    assert re.search(r"✓ (native|x86-64-v2): identical|✓ (native|x86-64-v2): equivalent", text), text
    assert "machine" in text and "x86-64-v2" in text  # the matrix after the spinner stopped
    piped = cli("verify", built, "--machine", "native")
    assert "✓" not in piped.stderr and "mlpack: native: identical" in piped.stderr  # plain lines when piped
    for silent in ("--json", "--quiet"):
        quiet = cli("verify", built, "--machine", "native", silent)
        assert quiet.returncode == 0 and quiet.stderr == ""


def test_pip_lines_stream_to_whoever_watches_and_failures_read_the_same(tmp_path: Path) -> None:
    """A wheelhouse download streams pip's lines (Collecting, Downloading) to the spinner's sink while a person
    watches; unwatched, pip runs quietly as before. A missing wheel is the same one sentence either way."""
    from mlpack import progress
    from mlpack.container.wheels import run_pip
    from mlpack.errors import EngineError

    seen: list[str] = []
    token = progress.DETAIL.set(seen.append)
    try:
        run_pip(["--version"], "Asking pip its version")
        assert seen and seen[0].startswith("pip ")
        missing = ["download", "--quiet", "--no-index", "--find-links", str(tmp_path), "no-such-package==1.0",
                   "-d", str(tmp_path / "out")]  # fmt: skip
        with pytest.raises(EngineError, match=r"no wheel for the image's platform") as watched:
            run_pip(missing, "Downloading the runtime wheels")
        assert any("no-such-package" in line for line in seen)  # pip's own lines reached the sink
    finally:
        progress.DETAIL.reset(token)
    before = len(seen)
    with pytest.raises(EngineError) as unwatched:
        run_pip(missing, "Downloading the runtime wheels")
    assert len(seen) == before and str(unwatched.value) == str(watched.value)
