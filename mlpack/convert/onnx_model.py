"""ONNX models as they are: parse, check, canonicalise. Parity is the source graph vs the canonical one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Description, Trust
from mlpack.errors import UsageError

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx


def load_onnx(source: Any, origin: str) -> onnx.ModelProto:
    """An onnx.ModelProto from a path, bytes or a ModelProto, checked; one clear sentence when it is not ONNX."""
    import onnx

    model: onnx.ModelProto
    if type(source).__name__ == "ModelProto":
        model = source
    else:
        try:
            if isinstance(source, (str, Path)):
                model = onnx.load_model(str(source))  # loads external data that sits beside it
            else:
                model = onnx.ModelProto.FromString(source)
        except Exception as exc:  # protobuf's DecodeError and others
            raise UsageError(f"{origin} is not an ONNX model: it does not parse ({exc}).") from None
    if not model.graph.node and not model.graph.output:
        raise UsageError(f"{origin} is not an ONNX model: it holds no graph.")
    try:
        onnx.checker.check_model(model if model.ByteSize() < 2**31 else str(source))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"{origin} fails the ONNX checker: {first}") from None
    return model


class OnnxConverter:
    name = "onnx"
    description = "ONNX models (.onnx files, bytes or onnx.ModelProto)"
    native_runs = False
    suffixes = (".onnx",)
    # no tolerances of its own: ONNX from elsewhere keeps the generic defaults (compare.DEFAULT_TOLERANCES)

    def load(self, path: Path, trust: Trust) -> Any:
        return path  # parsed (with external data beside it) when converted

    def accepts(self, model: Any) -> bool:
        if isinstance(model, (str, Path)):
            return str(model).endswith(".onnx")
        return isinstance(model, bytes) or type(model).__name__ == "ModelProto"

    def describe(self, model: Any) -> Description:
        import onnx

        return Description("onnx", onnx.__version__, "onnx.ModelProto")

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        origin = str(model) if isinstance(model, (str, Path)) else "The model"
        return Converted(model=load_onnx(model, origin))

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        source: Any = str(model) if isinstance(model, (str, Path)) else model
        if type(source).__name__ == "ModelProto":
            source = source.SerializeToString()
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        from mlpack import reference

        batches = reference.needs_row_batches(reference.signature(session)[0], feeds)  # as the golden run
        results = reference.run(session, feeds, batches)
        return {name: results[name] for name in output_names}
