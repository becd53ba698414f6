"""The data plane, free of any transport: which models are served, whether each may answer yet, what they
declare, and inference on decoded V2 requests. Errors are ``RequestError`` carrying the status to answer with.

A model becomes ready only after its package verified at start-up (integrity and a golden replay), and is
then loaded without a second integrity check, so every file is hashed once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import __version__
from mlpack.errors import MlpackError, RequestError, UsageError
from mlpack.manifest import Manifest, TensorSpec
from mlpack.package import MANIFEST
from mlpack.runtime import Model, load
from mlpack.serving.codec import (
    InferResponse,
    bad_request,
    binary_size,
    element_count,
    encode_output,
    parameters,
    parse_input,
)
from mlpack.tensors import v2_datatype


@dataclass
class Entry:
    """One served package and whether it may answer yet."""

    path: Path
    name: str
    version: str
    manifest: Manifest
    model: Model | None = None
    state: str = "loading"  # loading | verifying | ready | failed
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def log(message: str) -> None:
    sys.stderr.write(f"mlpack serve: {message}\n")
    sys.stderr.flush()


def find_packages(path: Path) -> list[Path]:
    """One package, or every package directly inside a folder."""
    if (path / MANIFEST).is_file():
        return [path]
    if path.is_dir():
        found = sorted(child for child in path.iterdir() if (child / MANIFEST).is_file())
        if found:
            return found
    if not path.exists():
        raise UsageError(f"{path} does not exist.")
    raise UsageError(f"{path} is neither an mlpack package nor a folder of packages.")


def entries_for(paths: list[Path]) -> dict[str, Entry]:
    from mlpack.package import open_package

    models: dict[str, Entry] = {}
    for path in paths:
        package = open_package(path)
        for spec in (*package.manifest.model.inputs, *package.manifest.model.outputs):
            if not spec.type.startswith("tensor("):
                raise UsageError(
                    f"{package.name} cannot be served over the V2 protocol, which carries tensors only: "
                    f"{spec.name!r} is a {spec.type} (for a ZipMap, convert with skl2onnx's zipmap=False)."
                )
        if package.name in models:
            raise UsageError(f"Two packages are named {package.name!r} ({models[package.name].path} and {path}).")
        models[package.name] = Entry(
            path=path, name=package.name, version=package.version, manifest=package.manifest
        )
    return models


def prepare(entry: Entry, verify_on_start: bool) -> None:
    """Verify the package (integrity and golden replay), then load it, before declaring it ready; with the
    user's opt-out, load with the integrity check alone. Either way every file is hashed once."""
    try:
        if not verify_on_start:
            entry.model = load(entry.path)
            entry.state = "ready"
            log(f"{entry.name} {entry.version}: ready WITHOUT start-up verification (--no-verify-on-start)")
            return
        entry.state = "verifying"
        from mlpack.verifier import verify

        report = verify(entry.path)
        if not report.passed:
            entry.state, entry.reason = "failed", f"start-up verification said {report.verdict}: {report.message}"
            log(f"{entry.name} {entry.version}: NOT READY, {entry.reason}")
            return
        entry.model = load(entry.path, check=False)  # verify has just checked every file
        entry.state = "ready"
        log(f"{entry.name} {entry.version}: verified {report.verdict}; ready")
    except MlpackError as exc:
        entry.state, entry.reason = "failed", exc.message
        log(f"{entry.name} {entry.version}: NOT READY, {exc.message}")
    except Exception as exc:  # never "verifying" for ever: whatever went wrong is the reason it is not ready
        entry.state, entry.reason = "failed", f"unexpected failure: {type(exc).__name__}: {exc}"
        log(f"{entry.name} {entry.version}: NOT READY, {entry.reason}")


# ---- health and metadata


def server_metadata() -> dict[str, Any]:
    return {"name": "mlpack", "version": __version__, "extensions": ["binary_tensor_data"]}


def server_ready(models: dict[str, Entry]) -> dict[str, Any]:
    """``ready`` is True only when every model is; otherwise each model that is not says why."""
    not_ready = {e.name: e.reason or e.state for e in models.values() if not e.ready}
    if not_ready:
        return {"ready": False, "models": not_ready}
    return {"ready": True}


def model_ready(entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, "ready": entry.ready, **({"reason": entry.reason} if entry.reason else {})}


def model_metadata(entry: Entry) -> dict[str, Any]:
    """From the manifest read at start-up, so metadata answers even before the model has loaded."""
    manifest = entry.manifest

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": v2_datatype(s.type, s.name),
                 "shape": [d if isinstance(d, int) else -1 for d in s.shape]} for s in specs]  # fmt: skip

    return {
        "name": entry.name, "versions": [entry.version], "platform": "onnxruntime_onnx",
        "inputs": tensors(manifest.model.inputs), "outputs": tensors(manifest.model.outputs),
    }  # fmt: skip


def get_model(models: dict[str, Entry], name: str, version: str | None = None) -> Entry:
    """The served entry for NAME (and VERSION, when the client named one), or 404."""
    entry = models.get(name)
    if entry is None:
        raise RequestError(HTTPStatus.NOT_FOUND, f"Unknown model {name!r}; served: {sorted(models)}.")
    if version is not None and version != entry.version:
        raise RequestError(
            HTTPStatus.NOT_FOUND, f"Model {entry.name!r} has no version {version!r}; it serves {entry.version!r}."
        )
    return entry


def ready_model(entry: Entry) -> Model:
    """The loaded model, or 503 saying why it may not answer yet."""
    if not entry.ready or entry.model is None:
        raise RequestError(
            HTTPStatus.SERVICE_UNAVAILABLE, f"Model {entry.name!r} is not ready: {entry.reason or entry.state}."
        )
    return entry.model


# ---- inference


def infer(
    entry: Entry, request: dict[str, Any], binary: bytes | memoryview, max_elements: int | None = None
) -> InferResponse:
    """Run a decoded V2 request (``codec.split_request``): its JSON head and the binary data after it.
    ``max_elements`` caps the elements of all inputs together (413 beyond it)."""
    model = ready_model(entry)
    feeds = _feeds(model, request["inputs"], binary, max_elements)
    requested = _requested_outputs(model, request.get("outputs"))
    binary_all = _flag((request.get("parameters") or {}).get("binary_data_output", False), "binary_data_output")
    wants = [
        _flag(
            parameters(out, f"output {out['name']!r}").get("binary_data", binary_all),
            f"{out['name']!r} binary_data",
        )
        for out in requested
    ]
    results = _predict(model, feeds, [out["name"] for out in requested])
    known = {spec.name: spec for spec in model.outputs}
    outputs, blobs = [], []
    for out, wants_binary in zip(requested, wants, strict=True):
        name = out["name"]
        tensor, blob = encode_output(name, v2_datatype(known[name].type, name), results[name], wants_binary)
        outputs.append(tensor)
        if blob is not None:
            blobs.append(blob)
    head: dict[str, Any] = {"model_name": entry.name, "model_version": entry.version, "outputs": outputs}
    if "id" in request:
        head["id"] = request["id"]
    return InferResponse(head, tuple(blobs))


def _flag(value: Any, what: str) -> bool:
    """A boolean parameter, as JSON's true or false: the string "false" is no false."""
    if not isinstance(value, bool):
        raise bad_request(f"The parameter {what} must be true or false, not {value!r}.")
    return value


def _feeds(
    model: Model, inputs: list[Any], binary: bytes | memoryview, max_elements: int | None
) -> dict[str, np.ndarray]:
    """Every input decoded against the signature; binary inputs take their bytes from the tail in order.
    All shapes are checked, and their elements counted against the cap, before any input is decoded. Each
    input's JSON data is dropped once decoded: as Python objects it weighs some 30 bytes an element."""
    specs = {spec.name: spec for spec in model.inputs}
    sizes, total, seen = [], 0, set()
    for tensor in inputs:
        name = tensor.get("name") if isinstance(tensor, dict) else tensor
        # a list or dict as name is unhashable: test its type before looking it up
        if not isinstance(name, str) or name not in specs:
            raise bad_request(f"Unknown input {name!r}; the model takes {sorted(specs)}.")
        if name in seen:
            raise bad_request(f"Input {name!r} is given twice; give each input once.")
        seen.add(name)
        total += element_count(name, tensor.get("shape"))
        sizes.append(binary_size(name, parameters(tensor, f"input {name!r}")))
    if max_elements is not None and total > max_elements:
        raise RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"The request declares {total} input elements; the limit is {max_elements}.",
        )
    feeds, offset = {}, 0
    for tensor, size in zip(inputs, sizes, strict=True):
        data = None
        if size is not None:
            if offset + size > len(binary):
                raise bad_request(f"Input {tensor['name']!r} has binary_data_size {size}, past the binary data.")
            data, offset = binary[offset : offset + size], offset + size
        feeds[tensor["name"]] = parse_input(specs[tensor["name"]], tensor, data)
        tensor.pop("data", None)
    if missing := sorted(set(specs) - set(feeds)):
        raise bad_request(f"Missing input {missing[0]!r}; the model takes {sorted(specs)}.")
    if offset != len(binary):
        raise bad_request(f"The request has {len(binary) - offset} bytes of binary data that no input claims.")
    return feeds


def _requested_outputs(model: Model, requested: Any) -> list[dict[str, Any]]:
    """The outputs the client asked for, every output when it named none."""
    wanted = requested or [{"name": spec.name} for spec in model.outputs]
    known = {spec.name for spec in model.outputs}
    for out in wanted:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str) or out["name"] not in known:
            raise bad_request(
                f"Unknown output {out.get('name') if isinstance(out, dict) else out!r}; the model gives {sorted(known)}."
            )
    return list(wanted)


def _predict(model: Model, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    try:
        return model.predict(feeds, names)
    except MlpackError as exc:
        raise bad_request(exc.message) from None
    except Exception as exc:  # onnxruntime's own errors on odd inputs
        raise bad_request(f"onnxruntime could not run the request: {str(exc).splitlines()[0][:300]}") from None
