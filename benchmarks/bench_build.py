"""In-process time of `mlpack.build` against saving the same model with MLflow, or converting it by hand.

mlpack.build runs with resolve=False: the runtime lock's resolution against the index is excluded (it
talks to the network and is cached); everything else a build does is included.

Baseline, first available wins:
  1. mlflow.sklearn.save_model, when this interpreter can import mlflow, or else when the env var
     MLFLOW_PYTHON names an interpreter that can (with the same scikit-learn). It runs in a worker process that
     loads the pickled model once and times only save_model, one call per request, interleaved with mlpack.
  2. skl2onnx's to_onnx (zipmap off, opset 17) plus one onnxruntime session and run: the bare conversion.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
from _common import conclude, iris_forest, median, p90

# mlpack does more than either baseline (parity check, golden outputs, environment lock, hardware profile,
# hashes); it should still cost no more than MLflow's save_model, and at most 3x the bare conversion.
TARGETS = {"mlflow": 1.0, "skl2onnx": 3.0}
REPLY = "@@ "  # marks the worker's answers apart from anything a library prints on stdout

WORKER = f"""
import inspect, pickle, sys, time
import mlflow, mlflow.sklearn, sklearn
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)
options = {{}}
if "skops_trusted_types" in inspect.signature(mlflow.sklearn.save_model).parameters:
    options["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]  # MLflow 3 saves with skops by default
print("{REPLY}" + mlflow.__version__ + " " + sklearn.__version__, flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    mlflow.sklearn.save_model(model, line.strip(), **options)
    print("{REPLY}" + repr(time.perf_counter() - started), flush=True)
"""


class MlflowWorker:
    """A process with mlflow imported and the model loaded; save(path) returns save_model's own seconds."""

    def __init__(self, python: str, model_file: Path, log: IO[str]) -> None:
        self.process = subprocess.Popen(
            [python, "-c", WORKER, str(model_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            text=True,
        )  # fmt: skip
        self.log = log
        mlflow_version, self.sklearn_version = self._reply().split()
        self.label = f"mlflow {mlflow_version} save_model ({python})"

    def _reply(self) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return line.removeprefix(REPLY).strip()
        self.log.seek(0)
        raise RuntimeError(f"the mlflow worker stopped:\n{self.log.read()[-3000:]}")

    def save(self, path: Path) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        return float(self._reply())

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def mlflow_python() -> str | None:
    """This interpreter if it has mlflow, else $MLFLOW_PYTHON if set."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:
        return sys.executable
    return os.environ.get("MLFLOW_PYTHON") or None


def bare_conversion(model: Any, x: np.ndarray) -> None:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    onx = to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})


def clock(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed repetitions of each (default 7)")
    runs = parser.parse_args().runs

    import sklearn

    import mlpack

    model, x_test = iris_forest()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp, open(Path(tmp, "worker.log"), "w+") as log:
        root = Path(tmp)

        def build() -> object:
            return mlpack.build(model, sample=x_test, name="iris", out=root, resolve=False, force=True)

        worker: MlflowWorker | None = None
        python = mlflow_python()
        if python:
            (root / "model.pkl").write_bytes(pickle.dumps(model))
            try:
                worker = MlflowWorker(python, root / "model.pkl", log)
            except (OSError, RuntimeError) as exc:
                print(f"mlflow is unavailable ({exc}); falling back to the skl2onnx baseline")
        if worker:
            kind, label = "mlflow", worker.label
            if worker.sklearn_version != sklearn.__version__:
                print(f"warning: scikit-learn {worker.sklearn_version} in the worker, {sklearn.__version__} here")
            saves = iter(range(runs + 1))

            def baseline() -> float:
                return worker.save(root / f"mlflow-{next(saves)}")
        else:
            kind, label = "skl2onnx", "skl2onnx to_onnx + onnxruntime session and run"

            def baseline() -> float:
                return clock(lambda: bare_conversion(model, x_test))

        print(f"baseline: {label}")
        clock(build)  # warm-up: first imports and caches are not what is being compared
        baseline()
        times: dict[str, list[float]] = {"mlpack.build": [], kind: []}
        for _ in range(runs):
            times["mlpack.build"].append(clock(build))
            times[kind].append(baseline())
        if worker:
            worker.close()

    print(f"model: iris RandomForestClassifier(100 trees), {len(x_test)} sample rows; {runs} interleaved runs")
    print("mlpack.build(resolve=False): runtime-lock resolution against the index is excluded")
    for name, values in times.items():
        print(f"  {name:<14} median {median(values) * 1000:7.1f} ms   p90 {p90(values) * 1000:7.1f} ms")
    ratio = median(times["mlpack.build"]) / median(times[kind])
    print(f"ratio mlpack.build / {kind} (medians): {ratio:.2f}x")
    conclude(f"mlpack.build / {kind}", ratio, TARGETS[kind], "x")


if __name__ == "__main__":
    main()
