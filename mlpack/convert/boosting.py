"""What XGBoost and LightGBM share: gradient-boosted trees, sklearn-API estimators or native Boosters,
converted through onnxmltools. Each family's own module (xgboost.py, lightgbm.py) completes it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mlpack.convert import (
    Converted,
    ConvertOptions,
    Description,
    class_name,
    conversion_failed,
    require,
    top_module,
)
from mlpack.errors import UsageError
from mlpack.manifest import Tolerance

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx

ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools refuses anything newer for these converters
# About 15-100x the worst parity and thread replay measured here: classifiers 1.2e-7 abs on probabilities,
# regressors 1.1e-4 abs (5e-7 rel) on values; the same figures as scikit-learn's trees.
TOLERANCES = {"probabilities": Tolerance(atol=1e-5, rtol=1e-4), "value": Tolerance(atol=1e-5, rtol=1e-5)}


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


def _batch_dims(model: onnx.ModelProto) -> None:
    """LightGBM's converter declares the label output as shape [1]; it is one label per row."""
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 1 and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "N"


class BoostedTrees(ABC):
    name = ""
    extra = ""
    native_runs = True
    takes_wide_floats = True  # parity feeds the native model the sample's own float64 values
    suffixes: tuple[str, ...] = ()
    onnxmltools_function = ""  # the onnxmltools entry point for this framework
    converter_options: ClassVar[dict[str, Any]] = {}
    tolerances: ClassVar[dict[str, Tolerance]] = TOLERANCES

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
            raise conversion_failed(f"onnxmltools could not convert {type(model).__name__}", exc) from None
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
