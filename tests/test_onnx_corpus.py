"""ONNX models as they come from elsewhere, made here with onnx.helper: fixed batches, inputs of different
leading sizes, scalars, no batch axis, every tensor dtype, several outputs, and models onnxruntime refuses.
Each builds and verifies identical, with predictions equal to onnxruntime running the original model on the
same tensors, or is refused with the right exit code in one sentence and leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper

import mlpack
from mlpack.errors import MlpackError
from mlpack.fileio import load_npz
from mlpack.verifier import judge_saved

Spec = tuple[str, int, list[Any]]  # name, element type, shape (None or a name for a dynamic axis)


def make(nodes: list[onnx.NodeProto], inputs: list[Spec], outputs: list[Spec], opset: int = 17,
         extra_opsets: dict[str, int] | None = None) -> bytes:  # fmt: skip
    graph = helper.make_graph(
        nodes, "corpus",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset)] + [
        helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()
    ]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def unary(op: str, elem: int, shape: list[Any] | None = None) -> bytes:
    shape = ["N", 3] if shape is None else shape
    return make([helper.make_node(op, ["x"], ["y"])], [("x", elem, shape)], [("y", elem, shape)])


@dataclass
class Case:
    model: bytes
    sample: dict[str, np.ndarray]
    refused: tuple[int, str] | None = None  # exit code and a phrase of the one sentence
    rows: int | None = None  # the golden rows the manifest records
    casts: dict[str, str] = field(default_factory=dict)


rng = np.random.default_rng(0)


def floats(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return rng.normal(size=shape).astype(dtype)


def ints(dtype: Any, *shape: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True).astype(dtype)


DTYPES = {
    "float16": (T.FLOAT16, floats(6, 3, dtype=np.float16)),
    "float64": (T.DOUBLE, floats(6, 3, dtype=np.float64)),
    **{name: (getattr(T, name.upper()), ints(getattr(np, name), 6, 3))
       for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")},
}  # fmt: skip

CASES: dict[str, Case] = {
    "float32 dynamic batch": Case(unary("Relu", T.FLOAT), {"x": floats(7, 3)}, rows=7),
    **{f"{name} dtype": Case(unary("Abs", elem), {"x": data}, rows=6) for name, (elem, data) in DTYPES.items()},
    "bool dtype": Case(unary("Not", T.BOOL), {"x": rng.integers(0, 2, (5, 3)).astype(bool)}, rows=5),
    "string dtype": Case(unary("Identity", T.STRING), {"x": np.array([["a", "bc", "d"], ["é", "", "z"]])}, rows=2),
    "fixed batch 2, two rows": Case(unary("Sigmoid", T.FLOAT, [2, 3]), {"x": floats(2, 3)}, rows=2),
    "fixed batch 4, eight rows": Case(unary("Sigmoid", T.FLOAT, [4, 3]), {"x": floats(8, 3)}, rows=8),
    "fixed batch 1, five rows": Case(unary("Sigmoid", T.FLOAT, [1, 3]), {"x": floats(5, 3)}, rows=5),
    "fixed batch 4, six rows": Case(
        unary("Sigmoid", T.FLOAT, [4, 3]), {"x": floats(6, 3)}, refused=(2, "fixed batch of 4 (shape [4, 3])")
    ),
    "different leading sizes": Case(
        make(
            [helper.make_node("Concat", ["a", "b"], ["y"], axis=0)],
            [("a", T.FLOAT, ["A", 2]), ("b", T.FLOAT, ["B", 2])],
            [("y", T.FLOAT, [None, 2])],
        ),
        {"a": floats(3, 2), "b": floats(5, 2)},
        rows=1,
    ),
    "a scalar beside a batch": Case(
        make(
            [helper.make_node("Mul", ["s", "x"], ["y"])],
            [("s", T.FLOAT, []), ("x", T.FLOAT, ["N", 3])],
            [("y", T.FLOAT, ["N", 3])],
        ),
        {"s": np.array(2.5, np.float32), "x": floats(4, 3)},
        rows=1,
    ),
    "a scalar alone": Case(unary("Neg", T.FLOAT, []), {"x": np.array(1.5, np.float32)}, rows=1),
    "no batch axis": Case(
        make(
            [helper.make_node("MatMul", ["m", "v"], ["y"])],
            [("m", T.FLOAT, [3, 4]), ("v", T.FLOAT, [4])],
            [("y", T.FLOAT, [3])],
        ),
        {"m": floats(3, 4), "v": floats(4)},
        rows=1,
    ),
    "two dynamic axes": Case(
        make(
            [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
            [("x", T.FLOAT, ["N", "S", 4])],
            [("y", T.FLOAT, ["N", "S", 4])],
        ),
        {"x": floats(3, 5, 4)},
        rows=3,
    ),
    "several outputs of several types": Case(
        make(
            [
                helper.make_node("Relu", ["x"], ["r"]),
                helper.make_node("ArgMax", ["x"], ["k"], axis=1, keepdims=0),
                helper.make_node("Greater", ["x", "x0"], ["g"]),
            ],
            [("x", T.FLOAT, ["N", 3]), ("x0", T.FLOAT, ["N", 3])],
            [("r", T.FLOAT, ["N", 3]), ("k", T.INT64, ["N"]), ("g", T.BOOL, ["N", 3])],
        ),
        {"x": floats(6, 3), "x0": floats(6, 3)},
        rows=6,
    ),
    "three inputs": Case(
        make(
            [helper.make_node("Sum", ["a", "b", "c"], ["y"])],
            [(n, T.FLOAT, ["N", 2]) for n in "abc"],
            [("y", T.FLOAT, ["N", 2])],
        ),
        {"c": floats(4, 2), "a": floats(4, 2), "b": floats(4, 2)},
        rows=4,
    ),
    "float64 sample for float32 input": Case(
        unary("Relu", T.FLOAT), {"x": floats(4, 3, dtype=np.float64)}, rows=4, casts={"x": "float64->float32"}
    ),
    "rows beyond the cap": Case(unary("Relu", T.FLOAT), {"x": floats(2000, 3)}, rows=1024),
    "fixed batch 3 beyond the cap": Case(unary("Relu", T.FLOAT, [3, 3]), {"x": floats(2001, 3)}, rows=1023),
    "floats for an integer input": Case(
        unary("Abs", T.INT64), {"x": floats(4, 3) + 0.5}, refused=(2, "Input 'x' expects int64")
    ),
    "a sample naming another input": Case(
        unary("Relu", T.FLOAT), {"z": floats(4, 3)}, refused=(2, "do not match the model's inputs")
    ),
    "wrong inner size": Case(unary("Relu", T.FLOAT), {"x": floats(4, 5)}, refused=(2, "expects shape ['N', 3]")),
    "a custom op onnxruntime does not know": Case(
        make(
            [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
            [("x", T.FLOAT, ["N", 3])],
            [("y", T.FLOAT, ["N", 3])],
            extra_opsets={"com.example": 1},
        ),
        {"x": floats(4, 3)},
        refused=(4, "Frobnicate"),
    ),
    "an opset newer than onnxruntime's": Case(
        make(
            [helper.make_node("Relu", ["x"], ["y"])],
            [("x", T.FLOAT, ["N", 3])],
            [("y", T.FLOAT, ["N", 3])],
            opset=40,
        ),
        {"x": floats(4, 3)},
        refused=(4, "the model's opset 40 of ai.onnx is newer than this onnxruntime supports"),
    ),
    "a locale this machine lacks": Case(
        make(
            [helper.make_node("StringNormalizer", ["x"], ["y"], locale="xx_YY", case_change_action="LOWER")],
            [("x", T.STRING, ["N"])],
            [("y", T.STRING, ["N"])],
        ),
        {"x": np.array(["A", "B"])},
        refused=(4, "needs the locale xx_YY, and this machine lacks it"),
    ),
    "a reshape that fails on the sample": Case(
        make(
            [helper.make_node("Reshape", ["x", "shape"], ["y"])],
            [("x", T.FLOAT, ["N", 3]), ("shape", T.INT64, [2])],
            [("y", T.FLOAT, [])],
        ),
        {"x": floats(4, 3), "shape": np.array([5, 5], np.int64)},
        refused=(2, "The sample does not fit the model"),
    ),
    "a sequence of tensors of different shapes": Case(
        make(
            [
                helper.make_node("Transpose", ["x"], ["t"]),
                helper.make_node("SequenceConstruct", ["x", "t"], ["y"]),
            ],
            [("x", T.FLOAT, ["N", 3])],
            [("y", T.FLOAT, [])],
        ),
        {"x": floats(4, 3)},
        refused=(2, "Output 'y' is a sequence of tensors of different shapes or types"),
    ),
}
# the sequence output's value info is set by hand: make_tensor_value_info cannot declare a sequence
_seq = onnx.load_from_string(CASES["a sequence of tensors of different shapes"].model)
_seq.graph.output[0].CopyFrom(
    helper.make_value_info("y", helper.make_sequence_type_proto(helper.make_tensor_type_proto(T.FLOAT, None)))
)
CASES["a sequence of tensors of different shapes"].model = _seq.SerializeToString()


def original_outputs(model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime on the model as given (not the package's copy), a fixed batch at a time where the model
    fixes one and the feeds hold several."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    fixed = first.shape[0] if first.shape and isinstance(first.shape[0], int) else None
    batch = fixed if fixed and feeds[first.name].shape[0] > fixed else None
    names = [o.name for o in session.get_outputs()]
    if batch is None:
        return dict(zip(names, session.run(names, feeds), strict=True))
    rows = len(next(iter(feeds.values())))
    parts = [session.run(names, {k: v[i : i + batch] for k, v in feeds.items()}) for i in range(0, rows, batch)]
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_model(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    out = tmp_path / "dist"
    if spec.refused is not None:
        code, phrase = spec.refused
        with pytest.raises(MlpackError) as refused:
            mlpack.build(spec.model, sample=spec.sample, name="m", out=out, resolve=False, timings=False)
        assert refused.value.exit_code == code, refused.value.message
        assert phrase in refused.value.message and "\n" not in refused.value.message.strip(), refused.value.message
        assert not out.exists() or list(out.iterdir()) == []
        return
    package = mlpack.build(spec.model, sample=spec.sample, name="m", out=out, resolve=False)
    manifest = package.manifest
    assert manifest.reference.rows == spec.rows
    assert manifest.parity is not None and dict(manifest.parity.input_cast) == spec.casts
    assert mlpack.verify(package.path).verdict == "identical"
    feeds = {k: v.astype(np.float32) if k in spec.casts else v for k, v in spec.sample.items()}
    if spec.rows and spec.rows > 1:  # the golden rows are the first ones, up to the cap
        feeds = {k: v[: spec.rows] for k, v in feeds.items()}
    golden = load_npz(package.path / "reference" / "outputs.npz")
    expected = original_outputs(spec.model, feeds)
    assert set(golden) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(golden[name], expected[name], err_msg=name)
    # mlpack.load().predict takes tensors as the model does: one fixed batch, or the sample as it is
    batch = manifest.model.inputs[0].shape[0] if manifest.reference.row_batches else None
    one = {k: v[:batch] for k, v in feeds.items()} if isinstance(batch, int) else feeds
    got, direct = mlpack.load(package.path).predict(one), original_outputs(spec.model, one)
    for name in direct:
        np.testing.assert_array_equal(got[name], direct[name], err_msg=name)
    timed = {k: v for k, v in manifest.performance.items() if k != "conversion_s"}
    assert timed and all("onnxruntime_ms" in entry or "omitted" in entry for entry in timed.values()), timed


def test_bfloat16_in_and_out(tmp_path: Path) -> None:
    """bfloat16 travels as ml_dtypes' type: from an .npz (where numpy writes it as raw 2-byte void), through
    onnxruntime by OrtValues, into the golden outputs, compared bit for bit, and back out of predict."""
    import ml_dtypes

    model = make(
        [
            helper.make_node("Cast", ["x"], ["f"], to=T.FLOAT),
            helper.make_node("Tanh", ["f"], ["z"]),
            helper.make_node("Cast", ["z"], ["w"], to=T.BFLOAT16),
        ],
        [("x", T.BFLOAT16, ["N", 3])],
        [("z", T.FLOAT, ["N", 3]), ("w", T.BFLOAT16, ["N", 3])],
    )
    x = floats(6, 3).astype(ml_dtypes.bfloat16)
    np.savez(tmp_path / "sample.npz", x=x)
    package = mlpack.build(model, sample=tmp_path / "sample.npz", name="bf", out=tmp_path / "dist", resolve=False)
    assert package.manifest.model.inputs[0].type == "tensor(bfloat16)"
    assert "onnxruntime_ms" in package.manifest.performance["batch_1"]
    golden = load_npz(package.path / "reference" / "outputs.npz")
    z = np.tanh(x.astype(np.float32))  # what the graph computes, by numpy
    assert golden["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(golden["z"], z, rtol=1e-6)
    np.testing.assert_array_equal(
        golden["w"].astype(np.float32), golden["z"].astype(ml_dtypes.bfloat16).astype(np.float32)
    )
    report = mlpack.verify(package.path)
    assert report.verdict == "identical"
    w = next(c for c in report.outputs if c.name == "w")
    assert w.dtype == "bfloat16" and w.identical_elements == x.size and w.max_ulp == 0
    got = mlpack.load(package.path).predict({"x": x})
    assert got["w"].dtype == ml_dtypes.bfloat16 and got["w"].tobytes() == golden["w"].tobytes()
    # float32 samples are cast to bfloat16 (rounded to nearest), and the cast is recorded
    cast = mlpack.build(model, sample={"x": x.astype(np.float32)}, name="bf32", out=tmp_path / "d2", resolve=False)
    assert cast.manifest.parity is not None and dict(cast.manifest.parity.input_cast) == {"x": "float32->bfloat16"}
    # outputs one bfloat16 ulp off are judged as floats: not identical, one ulp
    saved = {k: v.copy() for k, v in golden.items()}
    saved["w"] = (saved["w"].view(np.uint16) + np.uint16(1)).view(ml_dtypes.bfloat16)
    np.savez(tmp_path / "saved.npz", w=saved["w"], z=saved["z"])
    judged = judge_saved(package.path, tmp_path / "saved.npz")
    w = next(c for c in judged.outputs if c.name == "w")
    assert not w.identical and w.max_ulp == 1 and w.identical_elements == 0
