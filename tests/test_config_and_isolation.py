"""[tool.mlpack] settings; verify never imports a training framework and never unpickles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import CliRunner, one_sentence_error


def test_bare_build_in_a_configured_project(
    pipeline: object, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    import skops.io as sio

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    sio.dump(pipeline, project / "models" / "clf.skops")
    np.save(project / "models" / "val.npy", iris[0][:12])
    (project / "pyproject.toml").write_text(
        '[project]\nname = "churn"\n\n[tool.mlpack]\nmodel = "models/clf.skops"\nsample = "models/val.npy"\n'
        'name = "churn"\nversion = "3"\nout = "dist"\nthreads = 2\n'
        '[tool.mlpack.tolerances.probabilities]\natol = 0.001\n[tool.mlpack.lineage]\ndataset = "v7"\n'
    )
    (project / "src").mkdir()
    result = cli("build", "--no-resolve", cwd=project / "src")  # found from a subfolder, like git does
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "dist" / "churn-3" / "mlpack.json").read_text())
    assert manifest["runtime"]["session"]["intra_op_num_threads"] == 2
    assert manifest["tolerances"]["probabilities"]["atol"] == 0.001
    assert manifest["lineage"]["dataset"] == "v7"
    # explicit options beat the file
    result = cli("build", "--no-resolve", "--version", "4", "--lineage", "dataset=v8", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads((project / "dist" / "churn-4" / "mlpack.json").read_text())["lineage"]["dataset"] == "v8"


def test_unknown_config_key(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.mlpack]\nmodle = "x.onnx"\n')
    result = cli("build", cwd=tmp_path)
    assert result.returncode == 2 and "unknown key 'modle'" in one_sentence_error(result)


def test_verify_never_imports_training_frameworks_nor_unpickles(package: Path) -> None:
    probe = f"""
import pickle, sys
def refuse(*args, **kwargs):
    raise AssertionError("verify unpickled something")
pickle.load = pickle.loads = refuse
pickle.Unpickler = refuse
from mlpack.cli import main
sys.argv = ["mlpack", "verify", {str(package)!r}, "--json"]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               {{"sklearn", "skl2onnx", "skops", "torch", "xgboost", "lightgbm", "onnx", "scipy", "joblib"}})
print("HEAVY", heavy, code, file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in result.stderr, result.stderr
    assert json.loads(result.stdout)["verdict"] == "identical"


def test_cli_startup_is_lean() -> None:
    probe = "import sys; import mlpack.cli; print(sorted(m for m in sys.modules if m in ('numpy', 'onnxruntime', 'onnx')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_version_flag(cli: CliRunner) -> None:
    import mlpack

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"mlpack {mlpack.__version__}"
