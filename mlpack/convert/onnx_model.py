"""ONNX models as they are: parse, check, canonicalise. Parity is the original bytes vs the canonical ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlpack.convert import Converted
from mlpack.errors import UsageError


def parse_onnx(data: bytes, origin: str) -> Any:
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise UsageError(f"{origin} is not an ONNX model: it does not parse ({exc}).") from None
    if not model.graph.node and not model.graph.output:
        raise UsageError(f"{origin} is not an ONNX model: it holds no graph.")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"{origin} fails the ONNX checker: {first}") from None
    return model


class OnnxConverter:
    name = "onnx"
    description = "ONNX models (.onnx files, bytes or onnx.ModelProto)"

    def accepts(self, model: Any) -> bool:
        if isinstance(model, (str, Path)):
            return str(model).endswith(".onnx")
        return isinstance(model, bytes) or type(model).__name__ == "ModelProto"

    def _bytes(self, model: Any) -> bytes:
        if isinstance(model, (str, Path)):
            return Path(model).read_bytes()
        if isinstance(model, bytes):
            return model
        return bytes(model.SerializeToString())

    def convert(self, model: Any, sample: dict[str, np.ndarray], opset: int) -> Converted:
        import onnx

        parse_onnx(self._bytes(model), str(model) if isinstance(model, (str, Path)) else "The model")
        return Converted(
            onnx_bytes=self._bytes(model),
            framework="onnx",
            framework_version=onnx.__version__,
            model_class="onnx.ModelProto",
            input_cast={},
            native_runs=False,
        )

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        session = ort.InferenceSession(self._bytes(model), providers=["CPUExecutionProvider"])
        return dict(zip(output_names, session.run(output_names, feeds), strict=True))
