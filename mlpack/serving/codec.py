"""V2 (Open Inference Protocol) tensors on the wire, in and out.

A request body is a JSON head, optionally followed by the binary tensor extension's raw bytes (what
tritonclient sends by default); a response is encoded the same two ways. Datatypes and shape checks come
from the one type table in ``mlpack.tensors``; nothing here knows about HTTP or about served models.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from mlpack.errors import RequestError
from mlpack.manifest import TensorSpec
from mlpack.tensors import BY_V2, as_text, shape_fits, v2_datatype


def bad_request(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


def decode_bytes_tensor(blob: bytes | memoryview) -> list[bytes]:
    """A BYTES tensor in the binary extension: each element is a little-endian uint32 length, then its bytes."""
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise bad_request("A BYTES tensor's binary data is truncated.")
        (length,) = struct.unpack_from("<I", blob, offset)
        # a length running past the data would otherwise be cut short silently and served as if it were whole
        if offset + 4 + length > len(blob):
            raise bad_request("A BYTES element's length prefix runs past the tensor's binary data.")
        items.append(bytes(blob[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return items


def encode_bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for value in values.ravel():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def header_int(name: str, value: str) -> int:
    """A header holding a byte count: plain decimal digits only, so that '-1', '+5' or ' 5 ' never pass."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise bad_request(f"{name} must be a non-negative decimal integer, not {value[:40]!r}.")
    return int(value)


def split_request(body: bytes, json_length: int | None) -> tuple[dict[str, Any], bytes | memoryview]:
    """The request's JSON head and the binary tensor data after it, a view into ``body`` rather than a copy;
    ``json_length`` is the Inference-Header-Content-Length the client sent, None when the whole body is JSON."""
    split = json_length if json_length is not None else len(body)
    if not 0 <= split <= len(body):
        raise bad_request("Inference-Header-Content-Length exceeds the body.")
    try:
        request = json.loads(body if split == len(body) else body[:split])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request is not valid JSON: {exc}.") from None
    except RecursionError:  # deeply nested arrays exhaust the parser's stack, not the body limit
        raise bad_request("The request's JSON is nested too deeply.") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise bad_request("The request needs an 'inputs' list.")
    if not isinstance(request.get("parameters", {}), dict):
        raise bad_request("The request's 'parameters' must be an object.")
    if not isinstance(request.get("id", ""), str):  # echoed back: a NaN or nested id would spoil the reply
        raise bad_request("The request's 'id' must be a string.")
    if not isinstance(request.get("outputs") or [], list):
        raise bad_request("The request's 'outputs' must be a list.")
    return request, (memoryview(body)[split:] if split < len(body) else b"")


def parameters(tensor: dict[str, Any], what: str) -> dict[str, Any]:
    """A tensor's ``parameters`` object (empty when absent); anything but an object is a 400."""
    params = tensor.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise bad_request(f"The 'parameters' of {what} must be an object.")
    return params


def declared_shape(name: str, shape: Any) -> list[int]:
    """A declared shape, validated before anything is allocated for it: a list of non-negative integers
    (booleans are not integers here)."""
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**63 for d in shape):
        raise bad_request(f"Input {name!r} needs a shape: a list of non-negative integers.")
    if math.prod(shape) >= 2**63:  # no array can have it: numpy would overflow int64 computing its size
        raise bad_request(f"Input {name!r} has a shape whose element count does not fit in 64 bits.")
    return shape


def element_count(name: str, shape: Any) -> int:
    """Elements in a declared shape, computed exactly: in int64, 2**62 * 4 would wrap round to 0."""
    return math.prod(declared_shape(name, shape))


def binary_size(name: str, params: dict[str, Any]) -> int | None:
    """The input's ``binary_data_size`` parameter, when it has one."""
    size = params.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise bad_request(f"Input {name!r} has a binary_data_size that is not a non-negative integer.")
    return size


def parse_input(spec: TensorSpec, tensor: dict[str, Any], binary: bytes | memoryview | None) -> np.ndarray:
    """One request input as an array the model takes, from its JSON ``data`` or, when given, its binary data.
    Datatype and shape must match the signature exactly: the server never casts."""
    name = tensor["name"]
    datatype = tensor.get("datatype")
    expected = v2_datatype(spec.type, spec.name)
    if datatype != expected:
        raise bad_request(f"Input {name!r} must have datatype {expected}, not {datatype}.")
    shape = declared_shape(name, tensor.get("shape"))
    count = math.prod(shape)
    if not shape_fits(spec.shape, shape):
        raise bad_request(f"Input {name!r} must have shape {list(spec.shape)}, not {shape}.")
    dtype = np.dtype(object if datatype == "BYTES" else BY_V2[datatype].numpy)
    if binary is not None:
        flat = _from_binary(name, datatype, shape, count, dtype, binary)
    else:
        if "data" not in tensor:
            raise bad_request(f"Input {name!r} has no data.")
        flat = _from_json(name, datatype, dtype, tensor["data"])
    if flat.size != count:
        raise bad_request(f"Input {name!r} has {flat.size} elements; shape {shape} needs {count}.")
    if datatype == "BYTES":
        return as_text(flat).reshape(shape)
    return flat.reshape(shape)


FROM_JSON = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}  # as json_data writes them


def _from_json(name: str, datatype: str, dtype: np.dtype[Any], data: Any) -> np.ndarray:
    """JSON data as the datatype says, or 400: JSON's own type must be that datatype's (a number with a
    fraction is no INT64, 0.5 or "false" no BOOL, a number no BYTES); null is a missing string for BYTES and
    nothing else. Floats take the strings "NaN", "Infinity" and "-Infinity", which replies use. The leaves are
    typed a nesting level at a time (a C loop per level), then converted by numpy in one call."""
    flat = data if isinstance(data, list) else [data]
    kinds = set(map(type, flat))
    while kinds == {list}:
        flat = list(itertools.chain.from_iterable(flat))
        kinds = set(map(type, flat))
    if list in kinds and len(kinds) > 1:
        raise bad_request(f"Input {name!r} holds nested lists of different depths.")
    if datatype == "BYTES":
        allowed: set[type] = {str, type(None)}
    elif datatype == "BOOL":
        allowed = {bool}
    elif dtype.kind in "iu":
        allowed = {int}
    else:
        allowed = {int, float}
        if str in kinds and all(v in FROM_JSON for v in flat if type(v) is str):
            flat = [FROM_JSON[v] if type(v) is str else v for v in flat]
            kinds = set(map(type, flat))
    if not kinds <= allowed:
        found = ", ".join(sorted({"null" if k is type(None) else k.__name__ for k in kinds - allowed}))
        raise bad_request(f"Input {name!r} holds values that are not {datatype} ({found}).")
    if datatype == "BYTES":
        values = np.empty(len(flat), dtype=object)
        values[:] = flat
        return values
    out_of_range = bad_request(f"Input {name!r} holds values out of {datatype}'s range.")
    try:
        with np.errstate(over="raise"):
            array = np.asarray(flat, dtype=dtype)
    except (TypeError, ValueError, OverflowError, FloatingPointError):
        raise out_of_range from None
    overflowed = (  # 1e300 as FP32 would be inf
        array.dtype.kind == "f"
        and not np.isfinite(array).all()
        and np.count_nonzero(~np.isfinite(array)) != sum(1 for v in flat if not math.isfinite(v))
    )
    if overflowed:
        raise out_of_range
    return array


def _from_binary(
    name: str, datatype: str, shape: list[int], count: int, dtype: np.dtype[Any], binary: bytes | memoryview
) -> np.ndarray:
    if datatype == "BYTES":
        try:
            return np.array([item.decode() for item in decode_bytes_tensor(binary)], dtype=object)
        except UnicodeDecodeError:  # the model takes str; bytes that are not UTF-8 have no str to give it
            raise bad_request(f"Input {name!r} has a BYTES element that is not UTF-8.") from None
    if len(binary) != count * dtype.itemsize:
        raise bad_request(
            f"Input {name!r} has {len(binary)} bytes; shape {shape} of {datatype} needs {count * dtype.itemsize}."
        )
    return np.frombuffer(binary, dtype=dtype)


NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_data(value: np.ndarray) -> list[Any]:
    """Output values for a JSON reply. JSON has no NaN or infinity, so, as KServe's own servers do, a float
    that is not finite is written as one of the strings "NaN", "Infinity" or "-Infinity"; a client that wants
    the IEEE bits asks for binary output instead."""
    if value.dtype.kind in "USO":
        return [str(v) for v in value.ravel()]
    data = list(value.ravel().tolist())
    if value.dtype.kind in "fc" and not np.isfinite(value).all():
        return [NON_FINITE[repr(v)] if isinstance(v, float) and not math.isfinite(v) else v for v in data]
    return data


JSON_CHUNK = 65536  # elements turned into Python objects at a time when a reply's data is written as JSON


def json_data_chunks(value: np.ndarray) -> Iterator[bytes]:
    """``json_data`` as the bytes of a JSON array, a slice at a time: a large output never exists as millions
    of Python floats at once, nor as one string beside its bytes (16 Mi floats: 1.1 GiB at peak before)."""
    flat = value.ravel()
    yield b"["
    for start in range(0, flat.size, JSON_CHUNK):
        text = json.dumps(json_data(flat[start : start + JSON_CHUNK]), separators=(",", ":"), allow_nan=False)
        yield (text[1:-1] if start == 0 else "," + text[1:-1]).encode()
    yield b"]"


def encode_output(
    name: str, datatype: str, value: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """One response output: its JSON entry, and its raw bytes when the client asked for binary data. The entry
    of a JSON output holds the array itself under "data", written out by ``InferResponse.encode``."""
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(value.shape)}
    if not binary:
        tensor["data"] = value
        return tensor, None
    blob = encode_bytes_tensor(value) if value.dtype.kind in "USO" else np.ascontiguousarray(value).tobytes()
    tensor["parameters"] = {"binary_data_size": len(blob)}
    return tensor, blob


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()  # never bare NaN


@dataclass(frozen=True)
class InferResponse:
    """A V2 inference response: the JSON head, and the binary outputs that follow it, in output order."""

    head: dict[str, Any]
    blobs: tuple[bytes, ...] = ()

    def encode(self) -> tuple[list[bytes], int | None]:
        """The body as pieces to send in turn, and the JSON head's length when binary outputs follow it
        (the client needs it to split)."""
        rest = {key: value for key, value in self.head.items() if key != "outputs"}
        pieces = [_dumps(rest)[:-1] + b',"outputs":[']  # the head always has model_name: rest is not empty
        for i, tensor in enumerate(self.head["outputs"]):
            pieces.append(b"," if i else b"")
            if "data" not in tensor:
                pieces.append(_dumps(tensor))
                continue
            pieces.append(_dumps({k: v for k, v in tensor.items() if k != "data"})[:-1] + b',"data":')
            pieces.extend(json_data_chunks(tensor["data"]))
            pieces.append(b"}")
        pieces.append(b"]}")
        if not self.blobs:
            return pieces, None
        return pieces + list(self.blobs), sum(map(len, pieces))
