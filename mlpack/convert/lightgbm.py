"""LightGBM: LGBMClassifier, LGBMRegressor and Booster objects, and .txt model files; thresholds rounded
down to float32 so that every float32 input takes the native branch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Trust, require
from mlpack.convert.boosting import BoostedTrees
from mlpack.errors import UsageError

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx


def _round_down(threshold: float) -> np.float32:
    """The largest float32 <= threshold: for float32 inputs x, x <= it exactly when x <= threshold."""
    nearest = np.float32(threshold)
    return np.nextafter(nearest, np.float32(-np.inf)) if float(nearest) > threshold else nearest


def _lightgbm_thresholds(model: Any) -> dict[tuple[int, int, float], float]:
    """(tree, feature, float32 threshold) -> LightGBM's double threshold, for every '<=' split."""
    booster = getattr(model, "booster_", model)
    found: dict[tuple[int, int, float], float] = {}

    def walk(tree: int, node: dict[str, Any]) -> None:
        if "split_feature" not in node:
            return
        if node.get("decision_type") == "<=":
            key = (tree, int(node["split_feature"]), float(np.float32(node["threshold"])))
            found[key] = min(found.get(key, np.inf), float(node["threshold"]))
        walk(tree, node["left_child"])
        walk(tree, node["right_child"])

    for index, info in enumerate(booster.dump_model()["tree_info"]):
        walk(index, info["tree_structure"])
    return found


def _repair_thresholds(onx: onnx.ModelProto, thresholds: dict[tuple[int, int, float], float]) -> int:
    """onnxmltools rounds LightGBM's double thresholds to the nearest float32; where that lands on a float32
    input value above the true threshold, the ONNX tree takes the other branch (seen here: 1.27 off on a
    regressor). Rounding down restores the native decision for every float32 input. Returns nodes changed."""
    from onnx import helper

    changed = 0
    for node in onx.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        trees, features = attrs["nodes_treeids"].ints, attrs["nodes_featureids"].ints
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        values = list(attrs["nodes_values"].floats)
        for i, mode in enumerate(modes):
            exact = thresholds.get((trees[i], features[i], float(np.float32(values[i]))))
            if mode == "BRANCH_LEQ" and exact is not None and float(_round_down(exact)) != values[i]:
                values[i] = float(_round_down(exact))
                changed += 1
        attrs["nodes_values"].CopyFrom(helper.make_attribute("nodes_values", values))
    return changed


class LightGBMConverter(BoostedTrees):
    name = "lightgbm"
    extra = "lightgbm"
    description = "LightGBM (LGBMClassifier, LGBMRegressor, Booster; .txt files)"
    suffixes = (".txt",)
    onnxmltools_function = "convert_lightgbm"
    converter_options: ClassVar[dict[str, Any]] = {"zipmap": False}

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        converted = super().convert(model, sample, options)
        changed = _repair_thresholds(converted.model, _lightgbm_thresholds(model))
        details = {**converted.details, "thresholds_rounded_down": changed}
        return Converted(converted.model, converted.input_cast, details)

    def load(self, path: Path, trust: Trust) -> Any:
        with open(path, errors="replace") as f:
            head = f.read(64)
        if not head.startswith("tree\n"):
            raise UsageError(f"{path} is not a LightGBM model file (it should start with 'tree').")
        lgb = require("lightgbm", "lightgbm")
        try:
            return lgb.Booster(model_file=str(path))
        except Exception as exc:
            raise UsageError(
                f"{path} is not a readable LightGBM model: {str(exc).splitlines()[0][:200]}"
            ) from None

    @staticmethod
    def booster_predict(model: Any, array: np.ndarray) -> Any:
        return model.predict(array)
