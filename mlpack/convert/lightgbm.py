"""LightGBM: LGBMClassifier, LGBMRegressor and Booster objects, and .txt model files; thresholds rounded
down to float32 so that every float32 input takes the native branch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Trust, require
from mlpack.convert.boosting import BoostedTrees
from mlpack.errors import UsageError
from mlpack.sample import onnx_safe_name
from mlpack.tensors import MISSING_STRING

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


def categorical_columns(model: Any) -> dict[int, list[Any]]:
    """Feature index -> the categories LightGBM recorded for a pandas ``category`` column (its codes are the
    positions in that list); empty for a model trained on numbers only."""
    booster = getattr(model, "booster_", model)
    categories = getattr(booster, "pandas_categorical", None)
    if not categories:
        return {}
    params = booster.params
    indices = params.get("categorical_column", params.get("categorical_feature", []))
    if isinstance(indices, str):
        indices = indices.split(",")
    try:
        positions = sorted(int(i) for i in indices)
    except ValueError:
        positions = []
    if len(positions) != len(categories):
        raise UsageError(
            f"The LightGBM model records {len(categories)} pandas category columns but categorical features "
            f"{list(indices)}: mlpack cannot tell which codes belong to which column."
        )
    return dict(zip(positions, [list(c) for c in categories], strict=True))


def _with_category_inputs(
    onx: onnx.ModelProto, features: list[str], categorical: dict[int, list[Any]]
) -> onnx.ModelProto:
    """One input per column in front of the trees: numbers as they are, each category column through a
    LabelEncoder to LightGBM's code for it (the category's position; missing or unseen: NaN, as LightGBM
    maps them), joined into the matrix the trees take."""
    from onnx import TensorProto, helper

    graph = onx.graph
    (matrix,) = [i.name for i in graph.input]
    numeric = TensorProto.FLOAT  # the trees' matrix is float32
    nodes, inputs, columns = [], [], []
    for index, feature in enumerate(features):
        name = onnx_safe_name(feature)
        if index not in categorical:
            inputs.append(helper.make_tensor_value_info(name, numeric, ["N", 1]))
            columns.append(name)
            continue
        keys = categorical[index]
        code = f"{name}_code"
        codes = [float(i) for i in range(len(keys))]
        if all(isinstance(k, str) for k in keys):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["N", 1]))
            encoded: dict[str, Any] = {"keys_strings": keys}
        else:
            inputs.append(helper.make_tensor_value_info(name, numeric, ["N", 1]))
            encoded = {"keys_floats": [float(k) for k in keys]}
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [name],
                [code],
                domain="ai.onnx.ml",
                values_floats=codes,
                default_float=float("nan"),
                **encoded,
            )
        )
        columns.append(code)
    nodes.append(helper.make_node("Concat", columns, [matrix], axis=1))
    del graph.input[:]
    graph.input.extend(inputs)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    for opset in onx.opset_import:
        if opset.domain == "ai.onnx.ml" and opset.version < 2:
            opset.version = 2  # LabelEncoder's float values; the tree operators are unchanged in 2
    return onx


class LightGBMConverter(BoostedTrees):
    name = "lightgbm"
    extra = "lightgbm"
    description = "LightGBM (LGBMClassifier, LGBMRegressor, Booster; .txt files)"
    suffixes = (".txt",)
    onnxmltools_function = "convert_lightgbm"
    converter_options: ClassVar[dict[str, Any]] = {"zipmap": False}

    def one_input_per_column(self, model: Any) -> bool:
        return bool(categorical_columns(model))

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        params = getattr(getattr(model, "booster_", model), "params", None) or {}
        if str(params.get("zero_as_missing", "false")).lower() in ("true", "1"):
            raise UsageError(
                "This LightGBM model was trained with zero_as_missing=True, which does not convert: onnxmltools' "
                "trees take 0 as a number, so every row with a zero would be answered differently. Train with "
                "the default (NaN as missing) and give missing values as NaN."
            )
        categorical = categorical_columns(model)
        features = _features(model)
        casts: dict[str, str] = {}
        if categorical:
            missing = [name for name in features if name not in sample and onnx_safe_name(name) not in sample]
            if missing:
                raise UsageError(
                    f"This LightGBM model takes the columns {features}, pandas categories among them; the "
                    f"sample lacks {missing}: give it as a DataFrame (or a CSV with a header)."
                )
            for name in features:
                value = sample.get(name, sample.get(onnx_safe_name(name)))
                if value is not None and value.dtype.kind in "fiub" and value.dtype != np.float32:
                    casts[onnx_safe_name(name)] = f"{value.dtype}->float32"
            sample = {"": np.zeros((1, len(features)), dtype=np.float32)}  # the trees' matrix, for its shape
        converted = super().convert(model, sample, options)
        changed = _repair_thresholds(converted.model, _lightgbm_thresholds(model))
        details = {**converted.details, "thresholds_rounded_down": changed}
        if not categorical:
            return Converted(converted.model, converted.input_cast, details)
        onx = _with_category_inputs(converted.model, features, categorical)
        details["pandas_categorical"] = {features[i]: len(c) for i, c in categorical.items()}
        return Converted(onx, casts, details)

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        categorical = categorical_columns(model)
        if not categorical:
            return super().predict(model, feeds, output_names)
        import pandas as pd

        features = _features(model)
        frame = {}
        for index, name in enumerate(features):
            column = feeds[onnx_safe_name(name)].reshape(-1)
            if index in categorical:  # the sample's strings as the categories LightGBM recorded ("" missing)
                values = (
                    [None if v == MISSING_STRING else v for v in column] if column.dtype.kind == "U" else column
                )
                column = pd.Categorical(values, categories=categorical[index])
            frame[name] = column
        return super().predict(model, {"": pd.DataFrame(frame)}, output_names)

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


def _features(model: Any) -> list[str]:
    booster = getattr(model, "booster_", model)
    return [str(name) for name in booster.feature_name()]
