"""V2 (Open Inference Protocol) tensors on the wire, in and out.

A request body is a JSON head, optionally followed by the binary tensor extension's raw bytes (what
tritonclient sends by default); a response is encoded the same two ways. Datatypes and shape checks come
from the one type table in ``mlpack.tensors``; nothing here knows about HTTP or about served models.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from mlpack.errors import RequestError
from mlpack.manifest import TensorSpec
from mlpack.tensors import BY_V2, shape_fits, v2_datatype


def bad_request(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


def decode_bytes_tensor(blob: bytes) -> list[bytes]:
    """A BYTES tensor in the binary extension: each element is a little-endian uint32 length, then its bytes."""
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise bad_request("A BYTES tensor's binary data is truncated.")
        (length,) = struct.unpack_from("<I", blob, offset)
        items.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items


def encode_bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for value in values.ravel():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def split_request(body: bytes, json_length: int | None) -> tuple[dict[str, Any], bytes]:
    """The request's JSON head and the binary tensor data after it; ``json_length`` is the
    Inference-Header-Content-Length the client sent, None when the whole body is JSON."""
    split = json_length if json_length is not None else len(body)
    if not 0 <= split <= len(body):
        raise bad_request("Inference-Header-Content-Length exceeds the body.")
    try:
        request = json.loads(body[:split])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request is not valid JSON: {exc}.") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise bad_request("The request needs an 'inputs' list.")
    return request, body[split:]


def parse_input(spec: TensorSpec, tensor: dict[str, Any], binary: bytes | None) -> np.ndarray:
    """One request input as an array the model takes, from its JSON ``data`` or, when given, its binary data.
    Datatype and shape must match the signature exactly: the server never casts."""
    name = tensor["name"]
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    expected = v2_datatype(spec.type, spec.name)
    if datatype != expected:
        raise bad_request(f"Input {name!r} must have datatype {expected}, not {datatype}.")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad_request(f"Input {name!r} needs a shape: a list of non-negative integers.")
    if not shape_fits(spec.shape, shape):
        raise bad_request(f"Input {name!r} must have shape {list(spec.shape)}, not {shape}.")
    count = int(np.prod(shape)) if shape else 1
    dtype = np.dtype(object if datatype == "BYTES" else BY_V2[datatype].numpy)
    if binary is not None:
        flat = _from_binary(name, datatype, shape, count, dtype, binary)
    else:
        if "data" not in tensor:
            raise bad_request(f"Input {name!r} has no data.")
        try:
            flat = np.asarray(tensor["data"], dtype=dtype).ravel()
        except (TypeError, ValueError, OverflowError):
            raise bad_request(f"Input {name!r} holds values that are not {datatype}.") from None
    if flat.size != count:
        raise bad_request(f"Input {name!r} has {flat.size} elements; shape {shape} needs {count}.")
    if datatype == "BYTES":
        return flat.astype(str).reshape(shape)
    return flat.reshape(shape)


def _from_binary(
    name: str, datatype: str, shape: list[int], count: int, dtype: np.dtype[Any], binary: bytes
) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([item.decode() for item in decode_bytes_tensor(binary)], dtype=object)
    if len(binary) != count * dtype.itemsize:
        raise bad_request(
            f"Input {name!r} has {len(binary)} bytes; shape {shape} of {datatype} needs {count * dtype.itemsize}."
        )
    return np.frombuffer(binary, dtype=dtype)


def json_data(value: np.ndarray) -> list[Any]:
    if value.dtype.kind in "USO":
        return [str(v) for v in value.ravel()]
    return list(value.ravel().tolist())


def encode_output(
    name: str, datatype: str, value: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """One response output: its JSON entry, and its raw bytes when the client asked for binary data."""
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(value.shape)}
    if not binary:
        tensor["data"] = json_data(value)
        return tensor, None
    blob = encode_bytes_tensor(value) if value.dtype.kind in "USO" else np.ascontiguousarray(value).tobytes()
    tensor["parameters"] = {"binary_data_size": len(blob)}
    return tensor, blob


@dataclass(frozen=True)
class InferResponse:
    """A V2 inference response: the JSON head, and the binary outputs that follow it, in output order."""

    head: dict[str, Any]
    blobs: tuple[bytes, ...] = ()

    def encode(self) -> tuple[bytes, int | None]:
        """The body, and the JSON head's length when binary outputs follow it (the client needs it to split)."""
        head = json.dumps(self.head, separators=(",", ":")).encode()
        if not self.blobs:
            return head, None
        return head + b"".join(self.blobs), len(head)
