"""XGBoost: XGBClassifier, XGBRegressor, XGBRanker and Booster objects, and .json/.ubj model files.

A ranker (a ``rank:*`` objective) predicts one score per row: the trees' sum, untransformed. onnxmltools
knows no ranker, and reads a ranking Booster as a binary classifier (every row label 0): such a model is
converted as the regressor it is over rows, from a copy of its Booster whose objective says so, and parity
checks the scores against the ranker's own predict."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Trust, require
from mlpack.convert.boosting import BoostedTrees
from mlpack.errors import UsageError


class XGBoostConverter(BoostedTrees):
    name = "xgboost"
    extra = "xgboost"
    description = "XGBoost (XGBClassifier, XGBRegressor, Booster; .json/.ubj files)"
    suffixes = (".json", ".ubj")
    onnxmltools_function = "convert_xgboost"

    def load(self, path: Path, trust: Trust) -> Any:
        """A saved Booster; JSON files are checked to be XGBoost models first (no code runs on load)."""
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

    @staticmethod
    def booster_predict(model: Any, array: np.ndarray) -> Any:
        import xgboost as xgb

        return model.predict(xgb.DMatrix(array, feature_names=model.feature_names))  # the names it was fitted with

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        objective = ranking_objective(model)
        if objective is None:
            with _positional_features(model):
                return super().convert(model, sample, options)
        booster = (model if type(model).__name__ == "Booster" else model.get_booster()).copy()
        booster.set_param({"objective": "reg:squarederror"})  # the same sum of trees, read as a regressor
        with _positional_features(booster):
            converted = super().convert(booster, sample, options)
        details = {**converted.details, "objective": objective, "converted_as": "ranking scores, one per row"}
        return replace(converted, details=details)


@contextlib.contextmanager
def _positional_features(model: Any) -> Iterator[None]:
    """onnxmltools reads features only as f0, f1, ...: a model fitted on a DataFrame (features named after its
    columns) converts with its names set aside for the conversion, then given back."""
    booster = model if type(model).__name__ == "Booster" else model.get_booster()
    names = booster.feature_names
    booster.feature_names = None
    try:
        yield
    finally:
        booster.feature_names = names


def ranking_objective(model: Any) -> str | None:
    """The model's objective when it ranks (``rank:ndcg``, ``rank:pairwise``, ...), else None."""
    booster = model if type(model).__name__ == "Booster" else getattr(model, "get_booster", lambda: None)()
    if booster is None:
        return None
    try:
        name = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (KeyError, TypeError, ValueError):
        return None
    return str(name) if str(name).startswith("rank:") else None
