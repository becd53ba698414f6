"""``python -m mlpack.replay``: the one part of a verify that runs on another machine class.

It imports what a replay needs, then reads one request from stdin, a JSON line ``{"package": PKG, "out":
OUT.npz, "settings": {...}}``, replays the package's golden inputs with those session settings, writes the
outputs to OUT.npz and prints ``{"onnxruntime": version, "hardware": the profile seen here}`` (or ``{"error":
sentence}``). Stdin closed without a request: it exits having read nothing.

Importing first and waiting lets the caller start it before the package's integrity is checked: under
emulation the interpreter, numpy and onnxruntime take seconds to load, and they load meanwhile, yet no file of
the package is read until the caller, having checked it, asks. It imports only the package reader, numpy and
onnxruntime: another architecture's interpreter carries only the runtime's wheels and this mlpack, and under
emulation every module imported costs ten times its native time (importlib.metadata, concurrent.futures and
ml_dtypes were a sixth of an x86 replay).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlpack.errors import MlpackError


def main() -> int:
    import onnxruntime

    from mlpack.fileio import npz_bytes
    from mlpack.manifest import SessionSettings
    from mlpack.package import open_package
    from mlpack.reference import replay_golden

    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the caller no longer wants a replay (the package failed its checks)
    try:
        request = json.loads(line)
        given = request["settings"]
        settings = SessionSettings(**{**given, "providers": tuple(given["providers"])})
        outputs, _ = replay_golden(open_package(request["package"]), settings)
        Path(request["out"]).write_bytes(npz_bytes(outputs))
    except MlpackError as exc:
        print(json.dumps({"error": exc.message, "onnxruntime": onnxruntime.__version__}))
        return exc.exit_code
    from mlpack.hardware import profile

    print(json.dumps({"onnxruntime": onnxruntime.__version__, "hardware": profile(blas=False)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
