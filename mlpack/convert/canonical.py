"""Canonical ONNX bytes: the same model gives the same bytes whatever folder or run produced it."""

from __future__ import annotations

from typing import Any

GRAPH_NAME = "mlpack"


def _strip_graph(graph: Any) -> None:
    graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]  # the dynamo exporter writes absolute source paths here
        for attribute in node.attribute:
            attribute.doc_string = ""
            if attribute.HasField("g"):
                _strip_graph(attribute.g)
            for subgraph in attribute.graphs:
                _strip_graph(subgraph)
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.doc_string = ""
    if hasattr(graph, "metadata_props"):
        del graph.metadata_props[:]


def canonicalise(model: Any) -> bytes:
    """Fixed graph name, no doc strings or metadata, one entry per opset domain, deterministic protobuf."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never change the caller's object
    model.graph.name = GRAPH_NAME  # onnxmltools writes a random UUID here
    model.doc_string = ""
    del model.metadata_props[:]
    _strip_graph(model.graph)
    for function in model.functions:
        function.doc_string = ""
        del function.metadata_props[:]
    opsets: dict[str, int] = {}
    for opset in model.opset_import:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    del model.opset_import[:]
    for domain in sorted(opsets):
        model.opset_import.add(domain=domain, version=opsets[domain])
    return bytes(model.SerializeToString(deterministic=True))
