"""A model type mlpack knows nothing about, and the converter plug-in that teaches it."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpack.convert import Converted, ConvertOptions, Description


class Affine:
    """y = x * scale + shift, elementwise: the smallest model with a native predict."""

    def __init__(self, scale: float, shift: float) -> None:
        self.scale, self.shift = np.float32(scale), np.float32(shift)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.shift).astype(np.float32)


class AffineConverter:
    name = "affine"
    description = "demo Affine models (mlpack-demo-converter)"
    native_runs = True

    def accepts(self, model: Any) -> bool:
        return isinstance(model, Affine)

    def describe(self, model: Any) -> Description:
        return Description("affine-demo", "1.0", "mlpack_demo_converter.Affine")

    def convert(self, model: Any, sample: dict[str, np.ndarray], options: ConvertOptions) -> Converted:
        from onnx import TensorProto, helper

        width = next(iter(sample.values())).shape[1]
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "scale"], ["scaled"]), helper.make_node("Add", ["scaled", "shift"], ["y"])],
            "affine",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
            [helper.make_tensor("scale", TensorProto.FLOAT, [], [float(model.scale)]),
             helper.make_tensor("shift", TensorProto.FLOAT, [], [float(model.shift)])],
        )  # fmt: skip
        onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", options.opset)])
        return Converted(model=onx, details={"tool": "mlpack-demo-converter"})

    def predict(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        return {output_names[0]: model.predict(next(iter(feeds.values())))}
