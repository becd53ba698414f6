"""Exports for serving systems: a Triton model repository, a KServe InferenceService (with, for an image
mlpack built, the ClusterServingRuntime that serves it), and Kubernetes Jobs that verify a release per node pool.

Both start from an intact package (integrity first) and carry its digest, so that whatever serves the model
can be traced back to the package that was verified. The Triton config replays the recorded onnxruntime
session options, since threads and graph optimisations change outputs (docs/design.md "Measured facts").
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

from mlpack import __version__
from mlpack.errors import IntegrityError, UsageError
from mlpack.fileio import sha256_file, write_atomic
from mlpack.manifest import TensorSpec
from mlpack.package import MODEL, Package, open_intact, staging
from mlpack.tensors import BY_ONNX

TRITON_PLATFORM = "onnxruntime_onnx"
TRITON_CONFIG = "config.pbtxt"
TRITON_VERSION_DIR = "1"  # Triton wants a numeric version folder; the package version goes into parameters
# Large enough for the golden inputs (mlpack build keeps at most 1024 rows by default) to go in one request.
MAX_BATCH_SIZE = 1024

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
KSERVE_RUNTIME_API_VERSION = "serving.kserve.io/v1alpha1"
KSERVE_PREFIX = "mlpack/"  # annotation and label keys; a bare DNS label claims no one's domain
MODELCAR_ROOT = "/models"  # what a KServe modelcar image must hold; KServe links it to /mnt/models
# KServe names the predictor service "<name>-predictor" and Kubernetes caps names at 63 characters.
SERVICE_NAME_MAX = 63 - len("-predictor")
SERVICE_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # KServe's IsvcNameFmt (RFC 1035 label)
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")

# Triton's onnxruntime backend reads optimization.graph.level as -1 basic, 1 extended, 2 none; absent is all.
_GRAPH_LEVELS = {"ORT_ENABLE_BASIC": -1, "ORT_ENABLE_EXTENDED": 1, "ORT_DISABLE_ALL": 2}
_EXECUTION_MODES = {"ORT_SEQUENTIAL": "0", "ORT_PARALLEL": "1"}
_INSTANCE_KINDS = {"CPUExecutionProvider": "KIND_CPU", "CUDAExecutionProvider": "KIND_GPU"}


def _open_intact(path: str | Path) -> Package:
    """Exports copy or point at the package's files, so a changed file must stop them before anything is written."""
    return open_intact(path, "export an intact copy of the package.")


# ---- Triton


class _Enum(str):
    """A protobuf enum value: written bare, not quoted."""


_Value: TypeAlias = str | int | Sequence[int] | Sequence[tuple[str, "_Value"]]  # a message: a list of fields
_Message: TypeAlias = list[tuple[str, _Value]]


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal: C escapes for quotes, backslashes and control characters."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _pbtxt_field(key: str, value: _Value) -> str:
    """One scalar or list field, or a short message, on one line."""
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return f"{key} {{ {' '.join(_pbtxt_field(k, v) for k, v in value)} }}"
    if isinstance(value, list):
        return f"{key}: [ {', '.join(str(v) for v in value)}{' ' if value else ''}]"
    if isinstance(value, str) and not isinstance(value, _Enum):
        return f"{key}: {_pbtxt_string(value)}"
    return f"{key}: {value}"


def _pbtxt(message: _Message, indent: int = 0) -> list[str]:
    """Text format for the few shapes a model config needs; fields repeat to express repeated messages.

    Messages of one or two fields (parameters, reshape, instance groups) stay on one line; tensors get a block.
    """
    pad = "  " * indent
    lines = []
    for key, value in message:
        if isinstance(value, list) and len(value) > 2 and isinstance(value[0], tuple):
            lines += [f"{pad}{key} {{", *_pbtxt(list(value), indent + 1), f"{pad}}}"]
        else:
            lines.append(pad + _pbtxt_field(key, value))
    return lines


def _batchable(specs: list[TensorSpec]) -> bool:
    """Triton's rule (and its onnxruntime backend's): every tensor's first dimension is variable."""
    return all(spec.shape and isinstance(spec.shape[0], str) for spec in specs)


def _tensor(spec: TensorSpec, batched: bool) -> _Message:
    row = BY_ONNX.get(spec.type)
    if row is None:
        raise UsageError(f"Triton cannot serve {spec.name!r} of type {spec.type}: only tensors are supported.")
    shape = spec.shape[1:] if batched else spec.shape
    dims = [-1 if isinstance(d, str) else int(d) for d in shape]
    fields: _Message = [("name", spec.name), ("data_type", _Enum(row.triton))]
    if dims:
        fields.append(("dims", dims))
    elif batched:  # a [batch] tensor: Triton needs non-empty dims, so clients see [batch, 1]
        fields += [("dims", [1]), ("reshape", [("shape", [])])]
    else:
        raise UsageError(f"Triton cannot describe the scalar tensor {spec.name!r} without a batch dimension.")
    return fields


def triton_config(package: Package, max_batch_size: int | None = None) -> str:
    """The config.pbtxt text for a package: its signature, the recorded session options, and its digest.

    With a variable first dimension on every tensor, ``max_batch_size`` defaults to ``MAX_BATCH_SIZE`` (or the
    reference row count, if larger) and ``dims`` leave the batch out; otherwise it is 0 and ``dims`` are the
    full shapes. No ``dynamic_batching`` block: merging requests changes the batch a row is computed in, and
    some models answer differently batched (docs/design.md), so a row's answer would depend on other traffic.
    """
    manifest = package.manifest
    specs = [*manifest.model.inputs, *manifest.model.outputs]
    if max_batch_size is None:
        rows = manifest.reference.rows
        max_batch_size = max(MAX_BATCH_SIZE, rows) if _batchable(specs) else 0
    elif max_batch_size < 0:
        raise UsageError(f"The max batch size must be 0 or more, not {max_batch_size}.")
    elif max_batch_size > 0 and not _batchable(specs):
        raise UsageError(
            "This model has a fixed first dimension, so Triton cannot batch it: use a max batch size of 0."
        )
    batched = max_batch_size > 0
    config: _Message = [
        ("name", package.name),
        ("platform", TRITON_PLATFORM),
        ("max_batch_size", max_batch_size),
    ]
    if manifest.model.file != MODEL:  # the onnxruntime backend looks for model.onnx by default
        config.append(("default_model_filename", manifest.model.file))
    config += [("input", _tensor(spec, batched)) for spec in manifest.model.inputs]
    config += [("output", _tensor(spec, batched)) for spec in manifest.model.outputs]

    session = manifest.runtime.session
    providers = session.providers or ("CPUExecutionProvider",)
    if providers[0] in _INSTANCE_KINDS:  # run on the device the golden outputs came from
        config.append(("instance_group", [("kind", _Enum(_INSTANCE_KINDS[providers[0]]))]))
    level = _GRAPH_LEVELS.get(session.graph_optimization_level)
    if level is not None:
        config.append(("optimization", [("graph", [("level", level)])]))
    parameters = {
        "mlpack.digest": package.digest,
        "mlpack.name": package.name,
        "mlpack.version": package.version,
        "mlpack.exported_by": f"mlpack {__version__}",
    }
    parameters["intra_op_thread_count"] = str(session.intra_op_num_threads)
    parameters["inter_op_thread_count"] = str(session.inter_op_num_threads)
    if session.execution_mode in _EXECUTION_MODES:
        parameters["execution_mode"] = _EXECUTION_MODES[session.execution_mode]
    for key in sorted(parameters):
        config.append(("parameters", [("key", key), ("value", [("string_value", parameters[key])])]))
    header = f"# Triton model configuration written by mlpack {__version__} for {package.name}-{package.version}"
    return "\n".join([header, f"# package digest {package.digest}", *_pbtxt(config)]) + "\n"


def export_triton(
    package: str | Path, outdir: str | Path, *, force: bool = False, max_batch_size: int | None = None
) -> Path:
    """Write the Triton model repository entry ``OUTDIR/<name>/{config.pbtxt,1/model.onnx}``; return its path.

    The folder is built beside the target and renamed into place, so a failed export leaves nothing behind.
    The model bytes are the package's own, checked against the manifest after copying. ``max_batch_size``
    overrides the default that ``triton_config`` explains.
    """
    intact = _open_intact(package)
    parent = Path(outdir)
    target = parent / intact.name
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is a file, not a folder: choose another output folder.")
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file, not a model folder: remove it or choose another output folder.")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: choose another output folder, or pass --force to replace it.")
    config = triton_config(intact, max_batch_size)
    files = intact.manifest.model.files or (intact.manifest.model.file,)
    hashes = intact.manifest.files
    with staging(target, force, "another output folder") as partial:
        version = partial / TRITON_VERSION_DIR
        version.mkdir()
        for name in files:
            shutil.copyfile(intact.path / name, version / name)
            if name in hashes and sha256_file(version / name) != hashes[name]:
                raise IntegrityError(f"{intact.path / name} changed while it was exported: export it again.")
        write_atomic(partial / TRITON_CONFIG, config.encode())
    return target


# ---- KServe


def service_name(text: str) -> str:
    """A valid InferenceService name from any text: lowercase, '-' for the rest, starting with a letter."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"model-{slug}"
    return slug[:SERVICE_NAME_MAX].rstrip("-")


def _checked_name(name: str | None, package: Package) -> str:
    if name is None:
        return service_name(package.name)
    if len(name) > SERVICE_NAME_MAX or not SERVICE_NAME_RE.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid InferenceService name: use lowercase letters, digits and '-', starting "
            f"with a letter, at most {SERVICE_NAME_MAX} characters (e.g. {service_name(name)!r})."
        )
    return name


def _storage_uri(image: str | None, storage_uri: str | None) -> str:
    if (image is None) == (storage_uri is None):
        raise UsageError(
            f"Give exactly one of --image (a modelcar image with the model under {MODELCAR_ROOT}) or --storage-uri."
        )
    if image is not None:
        reference = image.removeprefix("oci://")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*", reference):
            raise UsageError(f"{image!r} is not an image reference such as registry.example.com/churn:3.")
        return f"oci://{reference}"
    assert storage_uri is not None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", storage_uri):
        raise UsageError(f"{storage_uri!r} is not a storage URI such as s3://bucket/models or gs://bucket/models.")
    return storage_uri


def kserve_manifest(
    package: str | Path, *, image: str | None = None, storage_uri: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """A KServe InferenceService (V2 protocol, ONNX format) for the package, as data ready for ``to_yaml``.

    ``storage_uri`` points at a copy of the ``export_triton`` output folder (the one holding ``<name>/``), served
    by the cluster's ONNX V2 runtime (Triton in a default install). ``image`` is an image ``mlpack containerize``
    built: KServe pulls it as a modelcar (its /models at /mnt/models), and the predictor names the runtime that
    ``serving_runtime`` describes, which runs that same image (``kserve_documents`` gives both). Tag images
    (not ``latest``) so that KServe can cache them. The digest and versions go into annotations, and
    the name and version into labels where Kubernetes' label syntax allows.
    """
    uri = _storage_uri(image, storage_uri)
    intact = _open_intact(package)
    metadata: dict[str, Any] = {"name": _checked_name(name, intact)}
    labels = {
        f"{KSERVE_PREFIX}name": intact.name[:63],
        f"{KSERVE_PREFIX}version": intact.version[:63],
    }
    labels = {key: value for key, value in labels.items() if LABEL_VALUE_RE.fullmatch(value)}
    if labels:
        metadata["labels"] = labels
    metadata["annotations"] = {
        f"{KSERVE_PREFIX}digest": intact.digest,
        f"{KSERVE_PREFIX}name": intact.name,
        f"{KSERVE_PREFIX}version": intact.version,
        f"{KSERVE_PREFIX}exported-by": f"mlpack {__version__}",
    }
    model = {"modelFormat": {"name": "onnx"}, "protocolVersion": "v2", "storageUri": uri}
    if image is not None:  # an image mlpack built serves itself: the runtime below, not Triton's
        model["runtime"] = runtime_name(metadata["name"])
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"model": model}},
    }


def runtime_name(service: str) -> str:
    return f"mlpack-{service}"[:63].rstrip("-")


def serving_runtime(package: str | Path, *, image: str, name: str | None = None) -> dict[str, Any]:
    """The ClusterServingRuntime for an image ``mlpack containerize`` built: the image itself serves its package
    (its entrypoint: ``mlpack serve`` on port 8080, the Open Inference Protocol, ready on /v2/health/ready once
    every file verified), as a non-root user; the InferenceService pulls the same image as its modelcar."""
    from mlpack.container.contract import PORT, READY_PATH, USER

    reference = _storage_uri(image, None).removeprefix("oci://")
    intact = _open_intact(package)
    service = _checked_name(name, intact)
    uid = int(USER.split(":")[0])
    probe = {"httpGet": {"path": READY_PATH, "port": PORT}, "periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": "kserve-container", "image": reference,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 6},
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }  # fmt: skip
    return {
        "apiVersion": KSERVE_RUNTIME_API_VERSION,
        "kind": "ClusterServingRuntime",
        "metadata": {"name": runtime_name(service), "annotations": {
            f"{KSERVE_PREFIX}digest": intact.digest, f"{KSERVE_PREFIX}image": reference,
            f"{KSERVE_PREFIX}exported-by": f"mlpack {__version__}"}},
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "multiModel": False,
            "containers": [container],
        },
    }  # fmt: skip


def kserve_documents(
    package: str | Path, *, image: str | None = None, storage_uri: str | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    """What ``kubectl apply`` needs: for an image, its ClusterServingRuntime and then the InferenceService."""
    service = kserve_manifest(package, image=image, storage_uri=storage_uri, name=name)
    if image is None:
        return [service]
    return [serving_runtime(package, image=image, name=service["metadata"]["name"]), service]


def verify_jobs(
    package: str | Path, *, image: str, node_pools: Sequence[str], python: str | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One Kubernetes Job per machine class: ``mlpack verify`` of the package inside its release image, on the
    node pool a node selector chooses (``CLASS=LABEL=VALUE[,LABEL=VALUE]``), with no network needed, so a fleet
    proves a release on the machines it will run on. The Job fails (and says why in its log) unless the package
    verifies there; ``--attest`` output goes to the log as JSON."""
    from mlpack.container.contract import USER, VENV_PYTHON, models_dir

    reference = _storage_uri(image, None).removeprefix("oci://")
    intact = _open_intact(package)
    service = _checked_name(name, intact)
    jobs = []
    for pool in node_pools:
        machine, _, selector_text = pool.partition("=")
        selector = dict(part.partition("=")[::2] for part in selector_text.split(",") if part)
        if (
            not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", machine)
            or not selector
            or not all(
                k and v and re.fullmatch(r"[A-Za-z0-9._/-]+", k) and LABEL_VALUE_RE.fullmatch(v)
                for k, v in selector.items()
            )
        ):
            raise UsageError(
                f"--node-pool {pool!r} is not CLASS=LABEL=VALUE[,LABEL=VALUE], such as "
                "x86-64-v3=node.kubernetes.io/instance-type=m6i.large."
            )
        uid = int(USER.split(":")[0])
        command = [python or VENV_PYTHON, "-m", "mlpack", "verify", models_dir(intact.name), "--json"]
        jobs.append({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"verify-{service}-{machine}"[:63].rstrip("-"),
                         "labels": {f"{KSERVE_PREFIX}machine": machine},
                         "annotations": {f"{KSERVE_PREFIX}digest": intact.digest, f"{KSERVE_PREFIX}image": reference}},
            "spec": {
                "backoffLimit": 0,  # a verify that fails must not be retried into a pass
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": {f"{KSERVE_PREFIX}machine": machine}}, "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": selector,
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "verify", "image": reference, "command": command,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                    }],
                }},
            },
        })  # fmt: skip
    if not jobs:
        raise UsageError("Give at least one --node-pool CLASS=LABEL=VALUE: one Job runs per machine class.")
    return jobs


def to_yaml_documents(documents: Sequence[Any]) -> str:
    """Several documents in one YAML stream, as ``kubectl apply -f`` reads them."""
    return "---\n".join(to_yaml(document) for document in documents)


# ---- YAML

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@+-]*")
# Words YAML 1.1 (PyYAML, older kubectl) reads as booleans or null; letters-first plain text is safe otherwise.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _printable(char: str) -> bool:
    """YAML's c-printable, less the characters some parsers take as line breaks or a byte-order mark."""
    code = ord(char)
    if code in (0x85, 0x2028, 0x2029, 0xFEFF):
        return False
    return 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


def _quote(text: str) -> str:
    """Double-quoted, with only the escapes JSON shares with YAML, so the literal reads the same in both."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _printable(char):
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:  # YAML 1.1 reads 1e-05 as a string; 1.0e-05 is a float everywhere
            text = f"{mantissa}.0" + (f"e{exponent}" if exponent else "")
        return text
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and not value.endswith(":") and value.lower() not in _RESERVED
        return value if plain else _quote(value)
    raise TypeError(f"to_yaml cannot write {type(value).__name__} values")


def _block(data: Any) -> list[str]:
    if isinstance(data, dict):
        if not data:
            return ["{}"]
        lines = []
        for key, value in data.items():
            if not isinstance(key, str):
                raise TypeError(f"to_yaml writes only string keys, not {type(key).__name__}")
            if isinstance(value, (dict, list, tuple)) and value:
                lines += [f"{_scalar(key)}:", *("  " + line for line in _block(value))]
            else:
                lines.append(f"{_scalar(key)}: {_block(value)[0]}")
        return lines
    if isinstance(data, (list, tuple)):
        if not data:
            return ["[]"]
        lines = []
        for item in data:
            first, *rest = _block(item)
            lines += [f"- {first}", *("  " + line for line in rest)]
        return lines
    return [_scalar(data)]


def to_yaml(data: Any) -> str:
    """Block-style YAML for dicts, lists and scalars, in the order given: the same data gives the same text.

    Strings are plain only when no YAML reader (1.1 or 1.2) could take them for anything else; the rest are
    double-quoted with JSON-compatible escapes.
    """
    return "\n".join(_block(data)) + "\n"
