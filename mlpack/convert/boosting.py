"""XGBoost and LightGBM, scikit-learn API estimators and native boosters, through onnxmltools."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Description, class_name, require, top_module
from mlpack.errors import ConversionError, UsageError

ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools refuses anything newer for these converters


def _matrix(sample: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, str]]:
    if set(sample) != {""} and len(sample) != 1:
        raise UsageError("A gradient-boosted model takes one input matrix; the sample has several inputs.")
    (array,) = sample.values()
    if array.ndim != 2:
        raise UsageError(f"A gradient-boosted model takes a 2-D sample; this one has shape {array.shape}.")
    if array.dtype == np.float32:
        return array, {}
    if array.dtype.kind not in "fiub":
        raise UsageError(f"A gradient-boosted model takes numbers; the sample holds {array.dtype}.")
    return array.astype(np.float32), {"input": f"{array.dtype}->float32"}  # onnxmltools converts in float32


def _classifier_outputs(probabilities: np.ndarray) -> list[np.ndarray]:
    """Label and per-class probabilities from a booster's raw probability output (binary gives one column)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim == 1:
        probabilities = np.stack([1 - probabilities, probabilities], axis=1)
    return [probabilities.argmax(axis=1).astype(np.int64), probabilities]


def _batch_dims(model: Any) -> None:
    """LightGBM's converter declares the label output as shape [1]; it is one label per row."""
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 1 and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "N"


class _Booster(ABC):
    name = ""
    extra = ""
    onnxmltools_function = ""  # the onnxmltools entry point for this framework
    converter_options: ClassVar[dict[str, Any]] = {}

    @staticmethod
    @abstractmethod
    def booster_predict(model: Any, array: np.ndarray) -> Any:
        """A native Booster's raw prediction: probabilities for classifiers, values for regressors."""

    def accepts(self, model: Any) -> bool:
        return top_module(model) == self.name

    def describe(self, model: Any) -> Description:
        module = require(self.name, self.extra)
        return Description(self.name, module.__version__, class_name(model))

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        require(self.name, self.extra)
        require("onnxmltools", self.extra)
        from onnxmltools.convert.common.data_types import FloatTensorType

        array, casts = _matrix(sample)
        opset = min(options.opset, ONNXMLTOOLS_MAX_OPSET)
        convert = getattr(require("onnxmltools", self.extra), self.onnxmltools_function)
        initial_types = [("input", FloatTensorType([None, array.shape[1]]))]
        try:
            onx = convert(model, initial_types=initial_types, target_opset=opset, **self.converter_options)
        except Exception as exc:
            raise ConversionError(f"onnxmltools could not convert {type(model).__name__}: {exc}") from None
        _batch_dims(onx)
        details: dict[str, Any] = {"tool": "onnxmltools", "opset": opset}
        if opset != options.opset:
            details["opset_capped"] = f"asked for {options.opset}; onnxmltools supports at most {opset}"
        return Converted(model=onx, input_cast=casts, details=details)

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        (array,) = feeds.values()
        results: list[Any]
        if type(model).__name__ == "Booster":  # the native API; the scikit-learn wrappers answer below
            raw = np.asarray(self.booster_predict(model, array))
            results = _classifier_outputs(raw) if len(output_names) == 2 else [raw]
        elif len(output_names) == 2:
            results = [model.predict(array), model.predict_proba(array)]
        else:
            results = [model.predict(array)]
        return {name: np.asarray(result) for name, result in zip(output_names, results, strict=True)}


class XGBoostConverter(_Booster):
    name = "xgboost"
    extra = "xgboost"
    description = "XGBoost (XGBClassifier, XGBRegressor, Booster; .json/.ubj files)"
    native_runs = True

    onnxmltools_function = "convert_xgboost"

    @staticmethod
    def booster_predict(model: Any, array: np.ndarray) -> Any:
        import xgboost as xgb

        return model.predict(xgb.DMatrix(array))


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


def _repair_thresholds(onx: Any, thresholds: dict[tuple[int, int, float], float]) -> int:
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


class LightGBMConverter(_Booster):
    name = "lightgbm"
    extra = "lightgbm"
    description = "LightGBM (LGBMClassifier, LGBMRegressor, Booster; .txt files)"
    native_runs = True
    onnxmltools_function = "convert_lightgbm"
    converter_options: ClassVar[dict[str, Any]] = {"zipmap": False}

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        converted = super().convert(model, sample, options)
        changed = _repair_thresholds(converted.model, _lightgbm_thresholds(model))
        details = {**converted.details, "thresholds_rounded_down": changed}
        return Converted(converted.model, converted.input_cast, details)

    @staticmethod
    def booster_predict(model: Any, array: np.ndarray) -> Any:
        return model.predict(array)
