"""Every mainstream family through mlpack build, API and CLI, to a package that verifies identical."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
import xgboost as xgb

import mlpack
from tests.conftest import CliRunner, one_sentence_error

PLUGIN = Path(__file__).parent / "plugin"


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, x: Any) -> Any:
        return torch.softmax(self.net(x), dim=-1)


class Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export cannot capture it; tracing would freeze it; scripting keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # annotated: torch.jit.script reads them
        out: torch.Tensor = self.linear(x)
        if x.sum() > 0:
            return out
        return -out


@pytest.fixture(scope="module")
def X(iris: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return iris[0].astype(np.float32)


@pytest.fixture(scope="module")
def mlp() -> Any:
    torch.manual_seed(0)
    return MLP().eval()


@pytest.fixture(scope="module")
def table() -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, 120), "income": rng.normal(5e4, 1e4, 120),
        "city": rng.choice(["paris", "lyon", "nice"], 120), "plan": rng.choice(["basic", "pro"], 120),
    })  # fmt: skip
    labels = np.where(frame.age + rng.normal(0, 5, 120) > 40, "churn", "stay")
    return frame, labels


def assert_identical(path: Path) -> dict[str, Any]:
    report = mlpack.verify(path)
    assert report.verdict == "identical", report.message
    manifest: dict[str, Any] = json.loads((path / "mlpack.json").read_text())
    return manifest


# ---- PyTorch


def test_torch_module_through_the_api(mlp: Any, X: np.ndarray, tmp_path: Path) -> None:
    package = mlpack.build(mlp, sample=X[:20], name="mlp", out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["source"]["framework"] == "torch" and m["source"]["exporter"] == "dynamo"
    assert m["model"]["inputs"][0]["shape"][0] == "batch"  # dynamic batch axis
    assert m["parity"]["status"] == "passed" and m["parity"]["outputs"][0]["max_abs"] < 1e-6
    assert m["tolerances"]["output"] == {"atol": 1e-5, "rtol": 1e-4, "labels": "exact-unless-tied"}
    other_batch = mlpack.build(mlp, sample=X[:3], name="mlp", version="2", out=tmp_path, resolve=False)
    assert other_batch.manifest.to_dict()["reference"]["rows"] == 3


def test_torch_export_program_and_torchscript_through_the_cli(mlp: Any, X: np.ndarray, tmp_path: Path,
                                                              cli: CliRunner) -> None:  # fmt: skip
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(mlp, (torch.from_numpy(X[:4]),), dynamic_shapes=({0: batch},)),
                      tmp_path / "mlp.pt2")  # fmt: skip
    traced = torch.jit.trace(mlp, torch.from_numpy(X[:4]))  # type: ignore[no-untyped-call]  # torch leaves it untyped
    traced.save(str(tmp_path / "mlp.pt"))
    np.save(tmp_path / "sample.npy", X[:10])
    for model in ("mlp.pt2", "mlp.pt"):
        result = cli("build", tmp_path / model, "--sample", tmp_path / "sample.npy", "--out", tmp_path / model[4:],
                     "--no-resolve", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert_identical(Path(data["package"]))
        source = data["manifest"]["source"]
        if model == "mlp.pt2":
            assert source["exporter"] == "dynamo" and source["model_class"].endswith("ExportedProgram")
        else:  # TorchScript: torch.export cannot take it, so the legacy exporter does, and says why
            assert source["exporter"] == "legacy" and source["dynamo_failure"]


def test_torch_dynamo_failure_falls_back_to_legacy(X: np.ndarray, tmp_path: Path) -> None:
    """Tracing Branchy would freeze the sample's branch (refused); scripted, TorchScript keeps the branch,
    the legacy exporter writes it as an ONNX If, and both branches answer as the native module."""
    from mlpack.errors import ConversionError

    torch.manual_seed(0)
    with pytest.raises(ConversionError, match="forward reads a Python value from a tensor"):
        mlpack.build(Branchy().eval(), sample=X[:8], out=tmp_path / "traced", resolve=False)
    scripted = torch.jit.script(Branchy().eval())
    package = mlpack.build(scripted, sample=X[:8], out=tmp_path, resolve=False)
    source = assert_identical(package.path)["source"]
    assert source["exporter"] == "legacy" and source["dynamo_failure"]
    for rows in (X[:5], -X[:5]):  # iris is positive: the sample took the first branch only
        got = next(iter(mlpack.load(package.path).predict(rows.astype(np.float32)).values()))
        with torch.no_grad():
            np.testing.assert_allclose(got, scripted(torch.from_numpy(rows.astype(np.float32))).numpy(), atol=1e-6)


def test_large_models_use_external_data_hashed_like_every_file(
    X: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    monkeypatch.setenv("MLPACK_EXTERNAL_DATA_BYTES", "1000")  # a few KB of weights count as "large" here
    torch.manual_seed(0)
    wide = torch.nn.Sequential(torch.nn.Linear(4, 128), torch.nn.ReLU(), torch.nn.Linear(128, 3)).eval()
    package = mlpack.build(wide, sample=X[:10], out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["model"]["files"] == ["model.onnx", "model.onnx.data"]
    assert "model.onnx.data" in m["files"]
    import onnx

    graph = onnx.load_model(str(package.path / "model.onnx"), load_external_data=False).graph
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer if len(t.dims) == 2)
    data = bytearray((package.path / "model.onnx.data").read_bytes())
    data[0] ^= 1
    (package.path / "model.onnx.data").write_bytes(bytes(data))
    result = cli("verify", package.path)
    assert result.returncode == 3 and "model.onnx.data: changed" in result.stdout


# ---- XGBoost and LightGBM


@pytest.mark.parametrize("kind", ["classifier", "regressor", "booster"])
def test_xgboost(kind: str, iris: tuple[np.ndarray, np.ndarray], X: np.ndarray, tmp_path: Path) -> None:
    y = iris[1]
    fits: dict[str, Callable[[], Any]] = {
        "classifier": lambda: xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y),
        "regressor": lambda: xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X[:, :3], X[:, 3]),
        "booster": lambda: xgb.train(
            {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, xgb.DMatrix(X, label=y), 10
        ),
    }
    model = fits[kind]()
    sample = X[:, :3] if kind == "regressor" else X
    package = mlpack.build(model, sample=sample, out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["source"]["framework"] == "xgboost" and m["source"]["opset"] == 15
    assert "onnxmltools supports at most 15" in m["source"]["opset_capped"]
    assert m["model"]["opset_imports"]["ai.onnx.ml"] >= 1
    assert all(o["passed"] for o in m["parity"]["outputs"])
    names = [o["name"] for o in m["model"]["outputs"]]
    assert names == (["variable"] if kind == "regressor" else ["label", "probabilities"])


def test_xgboost_model_files_through_the_cli(iris: tuple[np.ndarray, np.ndarray], X: np.ndarray, tmp_path: Path,
                                            cli: CliRunner) -> None:  # fmt: skip
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, iris[1])
    np.save(tmp_path / "sample.npy", X[:30])
    for suffix in ("json", "ubj"):
        model.save_model(tmp_path / f"model.{suffix}")
        result = cli("build", tmp_path / f"model.{suffix}", "--sample", tmp_path / "sample.npy", "--out",
                     tmp_path / suffix, "--no-resolve", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        manifest = json.loads(result.stdout)["manifest"]
        assert manifest["source"]["model_class"] == "xgboost.core.Booster"
        assert_identical(Path(json.loads(result.stdout)["package"]))
    (tmp_path / "other.json").write_text('{"not": "a model"}')
    result = cli("build", tmp_path / "other.json", "--sample", tmp_path / "sample.npy", "--out", tmp_path / "x")
    assert result.returncode == 2 and "not an XGBoost model" in one_sentence_error(result)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "booster"])
def test_lightgbm(kind: str, iris: tuple[np.ndarray, np.ndarray], X: np.ndarray, tmp_path: Path) -> None:
    y = iris[1]
    fits: dict[str, Callable[[], Any]] = {
        "classifier": lambda: lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y),
        "regressor": lambda: lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(X[:, :3], X[:, 3]),
        "booster": lambda: lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, label=(y == 1)), 10),
    }
    model = fits[kind]()
    package = mlpack.build(model, sample=X[:, :3] if kind == "regressor" else X, out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["source"]["framework"] == "lightgbm"
    for output in m["model"]["outputs"]:  # LightGBM's converter declares the label as [1]; it is per row
        assert output["shape"][0] != 1


def test_lightgbm_text_file_through_the_cli(iris: tuple[np.ndarray, np.ndarray], X: np.ndarray, tmp_path: Path,
                                           cli: CliRunner) -> None:  # fmt: skip
    lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, iris[1]).booster_.save_model(tmp_path / "model.txt")
    np.save(tmp_path / "sample.npy", X)
    result = cli("build", tmp_path / "model.txt", "--sample", tmp_path / "sample.npy", "--out", tmp_path,
                 "--no-resolve", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_identical(Path(json.loads(result.stdout)["package"]))


def test_tree_ensemble_with_other_thread_count_is_equivalent(X: np.ndarray, tmp_path: Path) -> None:
    model = xgb.XGBRegressor(n_estimators=50, max_depth=4).fit(X[:, :3], X[:, 3])
    package = mlpack.build(model, sample=np.tile(X[:, :3], (2, 1)), out=tmp_path, resolve=False)
    report = mlpack.verify(package.path, threads=2)
    assert report.verdict == "equivalent", report.message
    assert 0 < report.outputs[0].max_abs < 1e-5 and report.outputs[0].passed


# ---- scikit-learn beyond the basics


def test_column_transformer_over_mixed_columns_from_csv_and_npz(table: tuple[Any, np.ndarray], tmp_path: Path,
                                                                cli: CliRunner) -> None:  # fmt: skip
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = table
    columns = ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])  # fmt: skip
    model = make_pipeline(columns, LogisticRegression()).fit(frame, labels)
    sio.dump(model, tmp_path / "churn.skops")
    frame.to_csv(tmp_path / "sample.csv", index=False)
    np.savez(tmp_path / "sample.npz", **{c: frame[c].to_numpy().astype(str if frame[c].dtype.kind == "O" else float)
                                         for c in frame.columns})  # fmt: skip
    for sample in ("sample.csv", "sample.npz"):
        untrusted = ["numpy.dtypes.StrDType", "numpy.dtypes.ObjectDType", "builtins.str", "builtins.object"]
        trust = [arg for t in untrusted for arg in ("--trust-type", t)]
        result = cli("build", tmp_path / "churn.skops", "--sample", tmp_path / sample, "--out", tmp_path / f"out-{sample}",
                     "--no-resolve", "--json", *trust)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        manifest = json.loads(result.stdout)["manifest"]
        inputs = {i["name"]: i["type"] for i in manifest["model"]["inputs"]}
        assert inputs == {"age": "tensor(float)", "income": "tensor(float)", "city": "tensor(string)",
                          "plan": "tensor(string)"}  # fmt: skip
        outputs = {o["name"]: o["type"] for o in manifest["model"]["outputs"]}
        assert outputs["label"] == "tensor(string)"  # string class labels survive
        assert_identical(Path(json.loads(result.stdout)["package"]))


def test_dataframe_sample_through_the_api(table: tuple[Any, np.ndarray], tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, labels = table
    columns = ColumnTransformer([("cat", OneHotEncoder(), ["city", "plan"])], remainder="passthrough")
    model = make_pipeline(columns, RandomForestClassifier(n_estimators=10, random_state=0)).fit(frame, labels)
    package = mlpack.build(model, sample=frame, out=tmp_path, resolve=False)
    assert assert_identical(package.path)["reference"]["rows"] == 120


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_regressor_in_either_precision(
    precision: str, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from sklearn.linear_model import Ridge

    X64 = iris[0]
    model = Ridge().fit(X64[:, :3], X64[:, 3])
    package = mlpack.build(model, sample=X64[:, :3], out=tmp_path, resolve=False, precision=precision)
    m = assert_identical(package.path)
    expected = "tensor(double)" if precision == "float64" else "tensor(float)"
    assert m["model"]["inputs"][0]["type"] == expected and m["model"]["outputs"][0]["type"] == expected
    max_abs = m["parity"]["outputs"][0]["max_abs"]
    assert max_abs < (1e-12 if precision == "float64" else 1e-5)
    assert m["parity"]["input_cast"] == ({} if precision == "float64" else {"X": "float64->float32"})


# ---- a user-supplied ONNX for a native model


def test_supplied_onnx_is_checked_against_the_native_model(
    forest: Any, pipeline: Any, iris: tuple[np.ndarray, np.ndarray], tmp_path: Path, cli: CliRunner
) -> None:
    import joblib
    from skl2onnx import to_onnx

    X32 = iris[0].astype(np.float32)
    joblib.dump(forest, tmp_path / "forest.joblib")
    np.save(tmp_path / "sample.npy", iris[0])
    (tmp_path / "good.onnx").write_bytes(to_onnx(forest, X32[:1], options={"zipmap": False}).SerializeToString())
    (tmp_path / "wrong.onnx").write_bytes(
        to_onnx(pipeline, X32[:1], options={"zipmap": False}).SerializeToString()
    )
    common = ["build", tmp_path / "forest.joblib", "--trust-pickle", "--sample", tmp_path / "sample.npy",
              "--no-resolve", "--json"]  # fmt: skip
    good = cli(*common, "--onnx", tmp_path / "good.onnx", "--out", tmp_path / "good")
    assert good.returncode == 0, good.stderr
    manifest = json.loads(good.stdout)["manifest"]
    assert manifest["parity"]["compared"] == "native model vs supplied ONNX"
    assert manifest["source"]["supplied_onnx"] is True and manifest["source"]["framework"] == "sklearn"
    wrong = cli(*common, "--onnx", tmp_path / "wrong.onnx", "--out", tmp_path / "wrong")
    assert wrong.returncode == 1
    assert "does not reproduce the native model" in json.loads(wrong.stdout)["error"]


# ---- every family: the same bytes from different folders


@pytest.mark.parametrize("family", ["torch", "xgboost", "lightgbm", "sklearn-columns"])
def test_same_model_same_bytes(family: str, mlp: Any, iris: tuple[np.ndarray, np.ndarray], X: np.ndarray,
                               table: tuple[Any, np.ndarray], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if family == "torch":
        model, sample = mlp, X[:10]
    elif family == "xgboost":
        model, sample = xgb.XGBClassifier(n_estimators=5).fit(X, iris[1]), X  # onnxmltools' random graph name
    elif family == "lightgbm":
        model, sample = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, iris[1]), X
    else:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        frame, labels = table
        model = make_pipeline(ColumnTransformer([("c", OneHotEncoder(), ["city"])]), LogisticRegression())
        model, sample = model.fit(frame[["city"]], labels), frame[["city"]]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = mlpack.build(model, sample=sample, name="same", out=tmp_path / "one", resolve=False)
    monkeypatch.chdir(tmp_path)
    second = mlpack.build(model, sample=sample, name="same", out=tmp_path / "two" / "deeper", resolve=False)
    assert (first.path / "model.onnx").read_bytes() == (second.path / "model.onnx").read_bytes()
    if family != "torch":
        return
    # the dynamo exporter records absolute source paths and stack traces in node metadata: none survive
    assert b"stack_trace" not in (first.path / "model.onnx").read_bytes()
    assert str(Path(__file__).parent).encode() not in (first.path / "model.onnx").read_bytes()


# ---- converters from other packages, and missing extras


def test_third_party_converter_from_an_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # pip builds inside the folder it installs from: a copy keeps build/ and *.egg-info out of the checkout
    plugin = shutil.copytree(PLUGIN, tmp_path / "plugin", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(site), str(plugin)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    script = f"""
import json, numpy as np, mlpack
from mlpack_demo_converter import Affine
package = mlpack.build(Affine(2.0, 0.5), sample=np.ones((3, 2), np.float32), out={str(tmp_path)!r}, resolve=False)
print(json.dumps({{"source": package.manifest.to_dict()["source"], "verdict": mlpack.verify(package.path).verdict}}))
"""
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(site)},
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"]["converter"] == "affine" and data["source"]["framework"] == "affine-demo"
    assert data["verdict"] == "identical"


def test_missing_extra_names_the_pip_command(iris: tuple[np.ndarray, np.ndarray], X: np.ndarray,
                                            tmp_path: Path) -> None:  # fmt: skip
    xgb.XGBClassifier(n_estimators=3).fit(X, iris[1]).save_model(tmp_path / "model.json")
    np.save(tmp_path / "sample.npy", X[:5])
    script = f"""
import sys
sys.modules["xgboost"] = None  # as if the extra were not installed
from mlpack.cli import main
sys.argv = ["mlpack", "build", {str(tmp_path / "model.json")!r}, "--sample", {str(tmp_path / "sample.npy")!r},
            "--out", {str(tmp_path)!r}, "--no-resolve"]
main()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert one_sentence_error(result).endswith("run pip install 'mlpack[xgboost]'.")


def test_lightgbm_thresholds_keep_native_decisions(tmp_path: Path) -> None:
    """onnxmltools rounds LightGBM's double thresholds to the nearest float32, which sends an input equal to
    the rounded value down the wrong branch; mlpack rounds them down instead, and parity holds."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    model = lgb.LGBMRegressor(n_estimators=80, learning_rate=0.05, verbose=-1, random_state=0).fit(
        X[:350], y[:350]
    )
    raw = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, 10]))], target_opset=15)
    import onnxruntime as ort

    plain = ort.InferenceSession(raw.SerializeToString()).run(None, {"input": X})[0].ravel()
    assert np.abs(plain - model.predict(X)).max() > 1  # the converter alone takes a wrong branch here

    package = mlpack.build(model, sample=X, out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["source"]["thresholds_rounded_down"] > 0
    assert m["parity"]["status"] == "passed" and m["parity"]["outputs"][0]["max_abs"] < 1e-3


def test_sklearn_tensors_move_to_external_data_too(iris: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """skl2onnx stores weights in typed fields (float_data), which ONNX's external-data writer skips."""
    from sklearn.neural_network import MLPClassifier

    monkeypatch.setenv("MLPACK_EXTERNAL_DATA_BYTES", "1000")
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0).fit(*iris)
    package = mlpack.build(model, sample=iris[0], out=tmp_path, resolve=False)
    m = assert_identical(package.path)
    assert m["model"]["files"] == ["model.onnx", "model.onnx.data"] and "model.onnx.data" in m["files"]
