"""Canonical ONNX: the same model gives the same bytes whatever folder or run produced it.

Models whose protobuf would pass 2 GB keep their tensors in ``model.onnx.data`` beside the graph (ONNX
external data); both files are hashed like every other package file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # onnx is imported where it is used: importing mlpack.convert stays cheap
    import onnx

GRAPH_NAME = "mlpack"
EXTERNAL_DATA = "model.onnx.data"
PROTOBUF_LIMIT = 2**31 - 2**26  # 2 GiB less headroom for the graph itself


def external_data_threshold() -> int:
    """Bytes above which tensors go to external data (MLPACK_EXTERNAL_DATA_BYTES lowers it, e.g. in tests)."""
    return int(os.environ.get("MLPACK_EXTERNAL_DATA_BYTES") or PROTOBUF_LIMIT)


def _strip_graph(graph: onnx.GraphProto) -> None:
    graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]  # the dynamo exporter writes absolute source paths and stack traces here
        for attribute in node.attribute:
            attribute.doc_string = ""
            if attribute.HasField("g"):
                _strip_graph(attribute.g)
            for subgraph in attribute.graphs:
                _strip_graph(subgraph)
    # annotated: mypy would join the two message types to their common base, which has no doc_string
    values: list[onnx.ValueInfoProto | onnx.TensorProto] = [
        *graph.input,
        *graph.output,
        *graph.value_info,
        *graph.initializer,
    ]
    for value in values:
        value.doc_string = ""
        if hasattr(value, "metadata_props"):
            del value.metadata_props[:]
    if hasattr(graph, "metadata_props"):
        del graph.metadata_props[:]


def canonicalise(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with a fixed graph name, no doc strings or metadata, and one sorted entry per opset domain."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # never change the caller's object
    copy.graph.name = GRAPH_NAME  # onnxmltools writes a random UUID here
    copy.doc_string = ""
    del copy.metadata_props[:]
    _strip_graph(copy.graph)
    for function in copy.functions:
        function.doc_string = ""
        if hasattr(function, "metadata_props"):
            del function.metadata_props[:]
    opsets: dict[str, int] = {}
    for opset in copy.opset_import:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    del copy.opset_import[:]
    for domain in sorted(opsets):
        copy.opset_import.add(domain=domain, version=opsets[domain])
    return copy


def serialise(model: onnx.ModelProto) -> bytes:
    return bytes(model.SerializeToString(deterministic=True))


def write_model(model: onnx.ModelProto, folder: Path, filename: str = "model.onnx") -> list[str]:
    """Write the canonical model; return the file names written (the graph, and external data if any)."""
    import onnx

    from mlpack.fileio import write_atomic

    if model.ByteSize() <= external_data_threshold():
        write_atomic(folder / filename, serialise(model))
        return [filename]
    large = onnx.ModelProto()
    large.CopyFrom(model)  # save_model moves the tensors out of the message it is given
    for tensor in large.graph.initializer:  # only raw_data moves out; skl2onnx writes float_data and friends
        if not tensor.HasField("raw_data") and tensor.data_type != onnx.TensorProto.STRING:
            tensor.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor), tensor.name))
    # tensors under 1 KiB stay inline: shape inference must read small constants such as Reshape's shape
    onnx.save_model(large, str(folder / filename), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=EXTERNAL_DATA, size_threshold=1024)  # fmt: skip
    # the tensors are now in EXTERNAL_DATA, in initializer order; rewrite the graph file deterministically
    graph_only = onnx.load_model(str(folder / filename), load_external_data=False)
    write_atomic(folder / filename, serialise(graph_only))
    if not (folder / EXTERNAL_DATA).exists():  # every tensor was small: nothing moved out
        return [filename]
    (folder / EXTERNAL_DATA).chmod(0o644)
    return [filename, EXTERNAL_DATA]
