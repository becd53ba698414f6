"""XGBoost: XGBClassifier, XGBRegressor and Booster objects, and .json/.ubj model files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.convert import Trust, require
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

        return model.predict(xgb.DMatrix(array))
