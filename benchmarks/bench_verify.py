"""Wall time of `mlpack verify PKG` against the least a user could do by hand: onnxruntime + numpy.

Both are timed as whole commands (interpreter start and imports included), interleaved, so that a noisy
machine slows both alike. Target: verify takes at most 1.5 times the bare check (median against median).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MLPACK, build_iris, conclude, median, p90

# One run of the golden inputs with the session options mlpack records (1 intra-op thread), compared bitwise.
BARE_CHECK = """
import sys
import numpy as np
import onnxruntime as ort
pkg = sys.argv[1]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(pkg + "/model.onnx", options, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
with np.load(pkg + "/reference/inputs.npz") as inputs, np.load(pkg + "/reference/outputs.npz") as outputs:
    actual = session.run(names, {key: inputs[key] for key in inputs.files})
    same = all(np.array_equal(a, outputs[name]) for a, name in zip(actual, names))
sys.exit(0 if same else 1)
"""


# Both commands run as an installed mlpack would: with bytecode caching on. Where PYTHONDONTWRITEBYTECODE is set
# (as on the development machines), an editable mlpack recompiles every module on every run, which a user's
# installed wheel (compiled at install) never does; numpy and onnxruntime have their .pyc files either way.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TARGET_RATIO = 1.5


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{command[:3]} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15)")
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        pkg = build_iris(Path(tmp))
        commands = {
            "mlpack verify": [str(MLPACK), "verify", str(pkg)],
            "bare onnxruntime+numpy": [sys.executable, "-c", BARE_CHECK, str(pkg)],
        }
        for command in commands.values():  # warm the page cache and the .pyc files before timing
            timed(command)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for i in range(runs):
            order = list(commands) if i % 2 == 0 else list(reversed(commands))  # alternate who goes first
            for label in order:
                times[label].append(timed(commands[label]))

    print(f"package: iris RandomForestClassifier(100 trees); {runs} interleaved runs of each command")
    for label, values in times.items():
        print(f"  {label:<24} median {median(values) * 1000:7.1f} ms   p90 {p90(values) * 1000:7.1f} ms")
    ratio = median(times["mlpack verify"]) / median(times["bare onnxruntime+numpy"])
    print(f"ratio mlpack verify / bare check (medians): {ratio:.2f}x")
    conclude("mlpack verify / bare check", ratio, TARGET_RATIO, "x")


if __name__ == "__main__":
    main()
