"""Open model files safely: nothing that runs code loads without the user's explicit consent."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from mlpack.convert import require
from mlpack.errors import UsageError

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
MODEL_SUFFIXES = (".onnx", ".skops", ".pt2", ".pt", ".json", ".ubj", ".txt", *PICKLE_SUFFIXES)


def _skops(path: Path, trusted_types: tuple[str, ...]) -> Any:
    sio = require("skops.io", "sklearn")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise UsageError(f"{path} is not a readable .skops file: {exc}") from None
    # skops' own default trust list is the only blanket trust: anything else the user names
    refused = [t for t in untrusted if t not in trusted_types]
    if refused:
        flags = " ".join(f"--trust-type {t}" for t in refused)
        raise UsageError(
            f"{path} holds types that skops does not trust by default ({', '.join(refused)}); "
            f"if you trust the file's origin, pass {flags}."
        )
    return sio.load(path, trusted=untrusted)


def _pickle(path: Path, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise UsageError(
            f"{path} is a pickle, and unpickling runs arbitrary code: pass --trust-pickle if you trust its "
            "origin, or save the model with skops."
        )
    if path.suffix.lower() == ".joblib":
        return require("joblib", "sklearn").load(path)
    with open(path, "rb") as f:
        return pickle.load(f)


def _xgboost_or_json(path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            with open(path) as f:
                head = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{path} is not a JSON model file.") from None
        if not isinstance(head, dict) or "learner" not in head:
            raise UsageError(f"{path} is JSON but not an XGBoost model (no 'learner').")
    xgb = require("xgboost", "xgboost")
    try:
        return xgb.Booster(model_file=str(path))
    except Exception as exc:
        raise UsageError(f"{path} is not a readable XGBoost model: {str(exc).splitlines()[0][:200]}") from None


def _lightgbm(path: Path) -> Any:
    with open(path, errors="replace") as f:
        head = f.read(64)
    if not head.startswith("tree\n"):
        raise UsageError(f"{path} is not a LightGBM model file (it should start with 'tree').")
    lgb = require("lightgbm", "lightgbm")
    try:
        return lgb.Booster(model_file=str(path))
    except Exception as exc:
        raise UsageError(f"{path} is not a readable LightGBM model: {str(exc).splitlines()[0][:200]}") from None


def _torch(path: Path) -> Any:
    torch = require("torch", "torch")
    try:
        if path.suffix.lower() == ".pt2":
            return torch.export.load(str(path))  # a serialised torch.export program: no Python code runs
        return torch.jit.load(str(path), map_location="cpu")  # TorchScript runs in its own interpreter
    except Exception as exc:
        kind = "torch.export program" if path.suffix.lower() == ".pt2" else "TorchScript archive"
        raise UsageError(f"{path} is not a readable {kind}: {str(exc).strip().splitlines()[0][:200]}") from None


def load_model_file(path: Path, trust_pickle: bool = False, trusted_types: tuple[str, ...] = ()) -> Any:
    """A model object (or, for ONNX, the path itself) from a file, by its suffix."""
    if not path.is_file():
        raise UsageError(f"The model file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path
    if suffix == ".skops":
        return _skops(path, trusted_types)
    if suffix in PICKLE_SUFFIXES:
        return _pickle(path, trust_pickle)
    if suffix in (".json", ".ubj"):
        return _xgboost_or_json(path)
    if suffix == ".txt":
        return _lightgbm(path)
    if suffix in (".pt", ".pt2"):
        return _torch(path)
    raise UsageError(f"{path} has an unknown model format; supported: {', '.join(MODEL_SUFFIXES)}.")
