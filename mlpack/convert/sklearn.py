"""scikit-learn estimators and pipelines through skl2onnx."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpack.convert import Converted
from mlpack.errors import ConversionError, UsageError

EXTRA_HINT = "pip install 'mlpack[sklearn]'"


def _require() -> None:
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"Converting scikit-learn models needs {exc.name}: run {EXTRA_HINT}.") from None


class SklearnConverter:
    name = "sklearn"
    description = "scikit-learn estimators and pipelines (objects, .skops, or trusted .joblib/.pkl)"

    def accepts(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "sklearn" and hasattr(model, "fit")

    def convert(self, model: Any, sample: dict[str, np.ndarray], opset: int) -> Converted:
        _require()
        import sklearn
        from skl2onnx import to_onnx

        if len(sample) != 1:
            raise UsageError("A scikit-learn model takes one input array; the sample has several.")
        (array,) = sample.values()
        expected = getattr(model, "n_features_in_", None)
        if expected is not None and (array.ndim != 2 or array.shape[1] != expected):
            raise UsageError(
                f"The sample has shape {array.shape} but the model expects rows of {expected} features."
            )
        cast: dict[str, str] = {}
        if array.dtype == np.float64:
            # skl2onnx converts in float32 unless told otherwise; the parity check sees the narrowed values
            array = array.astype(np.float32)
            cast["X"] = "float64->float32"
        elif array.dtype.kind in "iub":
            array = array.astype(np.float32)
            cast["X"] = f"{array.dtype}->float32"
        try:
            onx = to_onnx(model, array[:1], target_opset=opset, options={"zipmap": False})
        except Exception as exc:
            raise ConversionError(f"skl2onnx could not convert {type(model).__name__}: {exc}") from None
        return Converted(
            onnx_bytes=bytes(onx.SerializeToString()),
            framework="sklearn",
            framework_version=sklearn.__version__,
            model_class=f"{type(model).__module__}.{type(model).__qualname__}",
            input_cast=cast,
            native_runs=True,
        )

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        (array,) = feeds.values()
        try:
            if hasattr(model, "predict_proba") and len(output_names) == 2:
                results = [model.predict(array), model.predict_proba(array)]
            elif hasattr(model, "predict"):
                results = [model.predict(array)]
            else:
                results = [model.transform(array)]
        except ValueError as exc:
            raise UsageError(f"The sample does not fit the model: {exc}") from None
        return {name: np.asarray(result) for name, result in zip(output_names, results, strict=False)}
