"""``python -m mlpack.replay PKG OUT.npz SETTINGS``: the one part of a verify that runs on another machine class.

It replays the package's golden inputs with the session settings given (JSON), writes the outputs to OUT.npz
and prints ``{"onnxruntime": version, "hardware": the profile seen here}`` (or ``{"error": sentence}``). It
imports only the package reader, numpy and onnxruntime: another architecture's interpreter carries only the
runtime's wheels and this mlpack, and under emulation every module imported costs ten times its native time
(importlib.metadata, concurrent.futures and ml_dtypes were a sixth of an x86 replay).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlpack.errors import MlpackError


def main(argv: list[str]) -> int:
    from mlpack.fileio import npz_bytes
    from mlpack.manifest import SessionSettings
    from mlpack.package import open_package
    from mlpack.reference import replay_golden

    if len(argv) != 3:
        print(json.dumps({"error": "usage: python -m mlpack.replay PKG OUT.npz SETTINGS"}))
        return 2
    import onnxruntime

    try:
        given = json.loads(argv[2])
        settings = SessionSettings(**{**given, "providers": tuple(given["providers"])})
        outputs, _ = replay_golden(open_package(argv[0]), settings)
        Path(argv[1]).write_bytes(npz_bytes(outputs))
    except MlpackError as exc:
        print(json.dumps({"error": exc.message, "onnxruntime": onnxruntime.__version__}))
        return exc.exit_code
    from mlpack.hardware import profile

    print(json.dumps({"onnxruntime": onnxruntime.__version__, "hardware": profile(blas=False)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
