"""The V2 reply encoder: written a slice at a time, it must give exactly the JSON that one json.dumps of the
whole reply would, for every kind of output and for slices that split arrays anywhere."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from mlpack.serving import codec
from mlpack.serving.codec import InferResponse, encode_output

OUTPUTS: dict[str, np.ndarray] = {
    "probabilities": np.array([[0.1, 0.9], [0.25, 0.75], [1.0, 0.0]], dtype=np.float32),
    "label": np.array([1, 1, 0], dtype=np.int64),
    "text": np.array(["a", 'quote " and \\ back', "ü"], dtype=object),
    "log": np.array([np.nan, -np.inf, 0.5, np.inf, 2.0], dtype=np.float64),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "flag": np.array([True, False]),
}


def whole(outputs: dict[str, np.ndarray], head: dict[str, Any]) -> bytes:
    """The reply as one json.dumps, with the same non-finite strings."""
    tensors = [
        {"name": name, "datatype": "X", "shape": list(value.shape), "data": codec.json_data(value)}
        for name, value in outputs.items()
    ]
    return json.dumps({**head, "outputs": tensors}, separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 65536])
def test_sliced_json_reply_equals_one_dumps(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(codec, "JSON_CHUNK", chunk)
    head = {"model_name": "m", "model_version": "1", "id": "req-1"}
    tensors = [encode_output(name, "X", value, binary=False)[0] for name, value in OUTPUTS.items()]
    pieces, head_length = InferResponse({**head, "outputs": tensors}).encode()
    assert head_length is None
    body = b"".join(pieces)
    assert body == whole(OUTPUTS, head)
    decoded = json.loads(body, parse_constant=pytest.fail)  # never a bare NaN or Infinity
    assert decoded["outputs"][3]["data"] == ["NaN", "-Infinity", 0.5, "Infinity", 2.0]


def test_binary_outputs_follow_the_head_and_say_where_it_ends() -> None:
    json_tensor, _ = encode_output("label", "INT64", OUTPUTS["label"], binary=False)
    binary_tensor, blob = encode_output("probabilities", "FP32", OUTPUTS["probabilities"], binary=True)
    assert blob is not None
    pieces, head_length = InferResponse(
        {"model_name": "m", "outputs": [binary_tensor, json_tensor]}, (blob,)
    ).encode()
    body = b"".join(pieces)
    assert head_length is not None and body[head_length:] == OUTPUTS["probabilities"].tobytes()
    head = json.loads(body[:head_length])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 24} and "data" not in head["outputs"][0]
    assert head["outputs"][1]["data"] == [1, 1, 0]
