"""The command line's shared contract (mlpack/cli): --debug anywhere, one error line, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpack.cli import _take_debug
from mlpack.cli.common import state


def mlpack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlpack", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("mlpack: error:")]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    np.save(tmp_path / "s.npy", np.zeros((2, 4), np.float32))
    return tmp_path / "s.npy"


def test_build_fails_in_one_line_without_debug(tmp_path: Path, sample: Path) -> None:
    result = mlpack("build", "missing.onnx", "--sample", sample.name, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "missing.onnx" in lines[0]


def test_debug_after_the_subcommand_is_accepted_and_prints_a_traceback(tmp_path: Path, sample: Path) -> None:
    result = mlpack("build", "missing.onnx", "--sample", sample.name, "--debug", cwd=tmp_path)
    assert "No such option" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "UsageError" in result.stderr
    assert len(error_lines(result)) == 1  # the sentence still comes, after the traceback
    assert result.stderr.rstrip().splitlines()[-1].startswith("mlpack: error:")


def test_debug_between_options_of_a_failing_build(tmp_path: Path, sample: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"unused")
    result = mlpack("build", "m.onnx", "--debug", "--sample", sample.name, "--threads", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" in result.stderr and "--threads must be a whole number" in result.stderr


def test_debug_before_the_subcommand(tmp_path: Path) -> None:
    result = mlpack("--debug", "verify", "missing-dir", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert error_lines(result) == ["mlpack: error: missing-dir does not exist."]


def test_verify_of_a_missing_folder_without_debug(tmp_path: Path) -> None:
    result = mlpack("verify", "missing-dir", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert error_lines(result) == ["mlpack: error: missing-dir does not exist."]


def test_version(tmp_path: Path) -> None:
    from mlpack import __version__

    result = mlpack("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == f"mlpack {__version__}\n"


# ---- _take_debug, the argv filter main() applies


@pytest.fixture
def debug_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(state, "debug", False)


@pytest.mark.usefixtures("debug_state")
def test_take_debug_removes_the_flag_anywhere_and_sets_debug() -> None:
    assert _take_debug(["build", "m.onnx", "--debug", "--sample", "s.npy"]) == [
        "build",
        "m.onnx",
        "--sample",
        "s.npy",
    ]
    assert state["debug"] is True


@pytest.mark.usefixtures("debug_state")
def test_take_debug_removes_every_copy() -> None:
    assert _take_debug(["--debug", "verify", "p", "--debug"]) == ["verify", "p"]
    assert state["debug"] is True


@pytest.mark.usefixtures("debug_state")
def test_take_debug_leaves_arguments_after_a_bare_double_dash() -> None:
    argv = ["serve", "p", "--", "--debug"]
    assert _take_debug(argv) == argv
    assert state["debug"] is False
    assert _take_debug(["serve", "--debug", "p", "--", "--debug"]) == ["serve", "p", "--", "--debug"]
    assert state["debug"] is True


@pytest.mark.usefixtures("debug_state")
def test_take_debug_without_the_flag_changes_nothing() -> None:
    argv = ["build", "m.onnx", "--sample", "s.npy", "--debugger"]
    assert _take_debug(argv) == argv
    assert state["debug"] is False


def test_every_command_is_mapped_to_the_module_that_defines_it() -> None:
    """main() loads only the module a command line names, so the map must match what the modules define."""
    import subprocess
    import sys

    from mlpack.cli import COMMANDS, load_commands

    app = load_commands()
    defined = {
        command.name or command.callback.__name__ for command in app.registered_commands if command.callback
    }
    defined |= {group.name for group in app.registered_groups if group.name}
    assert defined == set(COMMANDS)
    for name, module in COMMANDS.items():  # each command runs with only its own module loaded
        probe = (
            "import sys; from mlpack.cli import main; "
            f"sys.argv = ['mlpack', {name!r}, '--help']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('mlpack.cli.') and m != 'mlpack.cli.common')\n"
            "print(code, loaded)"
        )
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip().splitlines()[-1] == f"0 ['mlpack.cli.{module}']", result.stderr


def test_an_error_raised_after_an_interrupt_is_reported_as_the_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy turns an interrupt during its import into ImportError("import numpy failed"): once SIGTERM or
    Ctrl-C has arrived, whatever error follows is the interrupt, never a false diagnosis."""
    import typer

    from mlpack.cli.common import run

    def action() -> None:
        raise ImportError("import numpy failed")

    monkeypatch.setitem(state, "interrupted", True)
    with pytest.raises(typer.Exit) as stopped:
        run(False, action)
    assert stopped.value.exit_code == 130


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3])
def test_sigterm_at_any_moment_of_verify_is_an_interrupt(built: Path, delay: float, tmp_path: Path) -> None:
    """Whenever it lands (in Python's start, mlpack's, onnxruntime's or numpy's import, or the replay), SIGTERM
    ends verify as interrupted (130) or before mlpack's handler exists (-15), or verify has finished (0)."""
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "mlpack", "verify", str(built)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(delay)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 130, -signal.SIGTERM), stderr
    assert "not installed" not in stderr and "unexpected" not in stderr and "Traceback" not in stderr, stderr
    if process.returncode == 130:
        assert "interrupted" in stderr, stderr
