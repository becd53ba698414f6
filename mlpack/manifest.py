"""mlpack.json, format 1, as typed records: one ``from_dict`` that validates, one ``to_dict`` that writes.

Every section is a frozen dataclass. ``Manifest.from_dict`` refuses a corrupt or hostile manifest with one
sentence (IntegrityError, exit 3; a newer format is RuntimeEnvironmentError, exit 4), never a KeyError deep
inside a command. ``to_dict`` gives back exactly the JSON that mlpack writes, so format 1 bytes stay the
same. ``json_schema()`` derives the published schema (docs/manifest-format-1.schema.json) from these types.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

from mlpack.errors import IntegrityError, RuntimeEnvironmentError

FORMAT = 1
KINDS = ("label", "probabilities", "value")
LABEL_RULES = ("exact-unless-tied", "exact")
OPT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
EXECUTION_MODES = ("ORT_SEQUENTIAL", "ORT_PARALLEL")
Dim = int | str  # a fixed size, or a symbolic name
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*\Z")  # the folder is NAME-VERSION; \Z, not $ (newlines)
MAX_BYTES = 16 << 20  # read whole, so capped: a real manifest is a few KiB
MAX_FILES = 10_000  # a package holds a handful; a hostile list must not cost minutes or a flood of output
MAX_THREADS = 4096  # more than any machine has; verify replays at most the cores it has
JSONDict = dict[str, Any]  # free-form JSON recorded as given (converter details, figures, lineage)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as onnxruntime reports it; ``kind`` (outputs only) picks the tolerance."""

    name: str
    type: str  # onnxruntime's type string, e.g. tensor(float)
    shape: tuple[Dim, ...]
    kind: str | None = None  # label | probabilities | value


@dataclass(frozen=True)
class SourceFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    file: str
    files: tuple[str, ...]  # the graph, and model.onnx.data for models over 2 GB
    sha256: str  # of the canonical file
    source_sha256: str | None  # of the converter's output before canonicalisation
    source_file: SourceFile | None  # the model file the build started from
    ir_version: int
    producer: str
    opset_imports: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Source:
    converter: str
    framework: str
    framework_version: str
    model_class: str
    details: JSONDict = field(default_factory=dict)  # what the converter reported (exporter, opset cap, …)


@dataclass(frozen=True)
class Parity:
    compared: str
    status: str  # passed | accepted
    input_cast: dict[str, str]
    outputs: tuple[JSONDict, ...]  # compare.OutputComparison.to_dict() per output
    # what the check covered beyond the golden rows: "probes" (inputs the sample lacked, such as a missing
    # value per column) and, per label output, how many classes the golden rows show ("classes_seen" of "classes")
    coverage: JSONDict = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceInfo:
    inputs: str
    outputs: str
    rows: int
    row_batches: bool
    runs: int = 1  # > 1: each stored tensor stacks that many separate golden runs along a new leading axis


@dataclass(frozen=True)
class SessionSettings:
    """Everything that selects kernels or reduction order; recorded at build and replayed by verify.

    One intra-op thread by default: thread count changes how tree ensembles sum, and a fixed count is the
    only way two machines can agree bit for bit. ``verify --threads N`` replays with another count.
    """

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    execution_mode: str = "ORT_SEQUENTIAL"
    graph_optimization_level: str = "ORT_ENABLE_ALL"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class RuntimeInfo:
    onnxruntime: str | None
    session: SessionSettings


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    labels: str = "exact-unless-tied"  # how labels compare; meaningless for floats


@dataclass(frozen=True)
class Environment:
    build_lock: JSONDict = field(default_factory=dict)  # packages, with_artifact_hash, unlocked, artifacts, reason
    runtime_lock: JSONDict = field(default_factory=dict)  # status, tool, index, packages, reason
    runtime: dict[str, str | None] = field(default_factory=dict)  # runtime package -> version at build
    python: str = ""
    build_lock_file: str | None = None
    runtime_lock_file: str | None = None


@dataclass(frozen=True)
class HardwareSummary:
    file: str | None = None
    cpu: str = ""
    arch: str = ""
    logical_cores: int = 0
    numeric_flags: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    format: int
    name: str
    version: str
    model: ModelInfo
    reference: ReferenceInfo
    runtime: RuntimeInfo
    tolerances: dict[str, Tolerance]
    files: dict[str, str]  # every other file -> sha256
    created: str = ""
    mlpack_version: str = ""
    source: Source | None = None
    parity: Parity | None = None
    performance: JSONDict = field(default_factory=dict)
    environment: Environment = field(default_factory=Environment)
    hardware: HardwareSummary = field(default_factory=HardwareSummary)
    lineage: JSONDict = field(default_factory=dict)
    machines: tuple[JSONDict, ...] = ()  # evidence from build --machines: the golden replay on each class

    @classmethod
    def from_dict(cls, data: Any, where: str = "mlpack.json") -> Manifest:
        """Validate types and values; refuse in one sentence. A newer format needs a newer mlpack (exit 4)."""
        if not isinstance(data, dict):
            raise IntegrityError(f"The manifest {where} is corrupt: it is not a JSON object.")
        fmt = data.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise RuntimeEnvironmentError(
                f"{where} uses package format {fmt}; this mlpack reads format {FORMAT}: upgrade mlpack."
            )
        manifest = _parse(cls, data, "", where)
        _check_values(manifest, where)
        return typing.cast(Manifest, manifest)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "mlpack.json") -> Manifest:
        """The manifest in a file's bytes: size-capped, parsed as JSON, then validated by ``from_dict``."""
        if len(data) > MAX_BYTES:
            raise IntegrityError(f"The manifest {where} is corrupt: {len(data)} bytes is no manifest.")
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise IntegrityError(f"The manifest {where} is corrupt: {exc.__class__.__name__} ({exc}).") from None
        return cls.from_dict(raw, where)

    def to_dict(self) -> JSONDict:
        return typing.cast(JSONDict, to_json(self))

    @property
    def kinds(self) -> dict[str, str]:
        return {spec.name: spec.kind or "value" for spec in self.model.outputs}


# ---- parsing: one walk over the type hints, so a new field needs no new code


def _fail(where: str, path: str, expected: str, value: Any) -> IntegrityError:
    shown = type(value).__name__ if not isinstance(value, (str, int, float, bool)) else repr(value)[:60]
    return IntegrityError(f"The manifest {where} is corrupt: {path or 'it'} must be {expected}, not {shown}.")


def _optional(hint: Any) -> tuple[bool, Any]:
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return True, (rest[0] if len(rest) == 1 else Union[rest])  # noqa: UP007 - built at run time
    return False, hint


def _parse(hint: Any, value: Any, path: str, where: str) -> Any:
    optional, hint = _optional(hint)
    if hint is Any:
        return value
    if value is None:
        if optional:
            return None
        raise _fail(where, path, _describe(hint), value)
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise _fail(where, path, "an object", value)
        hints = get_type_hints(hint)
        kwargs: dict[str, Any] = {}
        if hint is Source:  # converter details sit beside the fixed fields in the file
            named = {f.name for f in dataclasses.fields(Source)} - {"details"}
            value = {
                **{k: v for k, v in value.items() if k in named},
                "details": {k: v for k, v in value.items() if k not in named},
            }
        for f in dataclasses.fields(hint):
            key = f"{path}.{f.name}" if path else f.name
            if f.name in value:
                kwargs[f.name] = _parse(hints[f.name], value[f.name], key, where)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise IntegrityError(f"The manifest {where} is corrupt: it lacks {key}.")
        return hint(**kwargs)
    if origin in (Union, types.UnionType):  # int | str
        for option in get_args(hint):
            try:
                return _parse(option, value, path, where)
            except IntegrityError:
                continue
        raise _fail(where, path, _describe(hint), value)
    if origin is dict:
        _, item_type = get_args(hint)
        if not isinstance(value, dict):
            raise _fail(where, path, "an object", value)
        return {k: _parse(item_type, v, f"{path}[{k!r}]", where) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(where, path, "a list", value)
        item_type = get_args(hint)[0]
        return tuple(_parse(item_type, v, f"{path}[{i}]", where) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, path, "a number", value)
        return float(value)
    if hint in (int, bool, str):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise _fail(where, path, _describe(hint), value)
        return value
    raise TypeError(f"manifest field {path} has an unsupported type {hint!r}")  # a bug in this module


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):  # Dim: "an integer or a string"
        return " or ".join(_describe(option) for option in get_args(hint))
    return {str: "a string", int: "an integer", bool: "true or false", float: "a number"}.get(hint, "a value")


def _check_values(m: Manifest, where: str) -> None:
    """Rules beyond types: names, kinds and tolerances that later steps rely on."""

    def bad(text: str) -> IntegrityError:
        return IntegrityError(f"The manifest {where} is corrupt: {text}.")

    if m.format < 1:
        raise bad(f"format {m.format} does not exist")
    for label, value in (("name", m.name), ("version", m.version)):
        if not NAME_PATTERN.match(value):
            raise bad(f"the {label} {value!r} may hold only letters, digits, '.', '_' and '-'")
    if len(m.files) > MAX_FILES:
        raise bad(f"it lists {len(m.files)} files; a package holds at most {MAX_FILES}")
    outputs = [spec.name for spec in m.model.outputs]
    if not m.model.inputs or not outputs:
        raise bad("the model lists no inputs or no outputs")
    if len(set(outputs)) != len(outputs) or len({s.name for s in m.model.inputs}) != len(m.model.inputs):
        raise bad("the model names a tensor twice")
    for spec in m.model.outputs:
        if spec.kind not in KINDS:
            raise bad(f"output {spec.name!r} has kind {spec.kind!r}; kinds are {', '.join(KINDS)}")
        if spec.name not in m.tolerances:
            raise bad(f"output {spec.name!r} has no tolerance")
    for name, tol in m.tolerances.items():
        if not (tol.atol >= 0 and tol.rtol >= 0) or tol.atol == float("inf") or tol.rtol == float("inf"):
            raise bad(f"the tolerance of {name!r} must be finite and not negative")
        if tol.labels not in LABEL_RULES:
            raise bad(f"the label rule of {name!r} is {tol.labels!r}; rules are {', '.join(LABEL_RULES)}")
    s = m.runtime.session
    if not all(0 <= n <= MAX_THREADS for n in (s.intra_op_num_threads, s.inter_op_num_threads)):
        raise bad(f"thread counts must be between 0 and {MAX_THREADS}")
    if not s.providers or any(not p.endswith("ExecutionProvider") for p in s.providers):
        raise bad(f"the providers {list(s.providers)} are not onnxruntime execution providers")
    if s.graph_optimization_level not in OPT_LEVELS or s.execution_mode not in EXECUTION_MODES:
        raise bad(f"the session options {s.graph_optimization_level}/{s.execution_mode} are unknown")
    if m.reference.rows < 1 or m.reference.runs < 1:
        raise bad("the reference holds no rows")
    for relative, digest in m.files.items():
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise bad(f"the hash of {relative!r} is not a sha256 hex digest")
    # the files mlpack opens by the manifest's own paths must be among the hashed ones, or a manifest could
    # point verify, load and serve at an unchecked file outside the package
    for key, relative in (
        ("model.file", m.model.file),
        *((f"model.files[{i}]", name) for i, name in enumerate(m.model.files)),
        ("reference.inputs", m.reference.inputs),
        ("reference.outputs", m.reference.outputs),
    ):
        if relative not in m.files:
            raise bad(f"{key} {relative!r} is not among the hashed files")
    if m.model.file not in m.model.files:
        raise bad(f"model.file {m.model.file!r} is not among model.files")


# ---- writing


def to_json(value: Any) -> Any:
    if isinstance(value, Source):
        fixed = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "details"}
        return {**value.details, **fixed}  # details never override the fixed fields
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, TensorSpec) and value.kind is None:
            del data["kind"]  # inputs carry no kind
        if isinstance(value, ReferenceInfo) and value.runs == 1:
            del data["runs"]  # one golden run: written as before runs existed
        if isinstance(value, Parity) and not value.coverage:
            del data["coverage"]  # nothing recorded of what parity covered: written as before the field existed
        if isinstance(value, Manifest) and not value.machines:
            del data["machines"]  # no classes proven at build: written as before the field existed
        return data
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    return value


# ---- the published JSON Schema, derived from the records above


def json_schema() -> JSONDict:
    definitions: dict[str, Any] = {}

    def schema(hint: Any) -> JSONDict:
        optional, inner = _optional(hint)
        if optional:
            return {"anyOf": [schema(inner), {"type": "null"}]}
        origin = get_origin(inner)
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            name = inner.__name__
            if name not in definitions:
                definitions[name] = {}  # placeholder against recursion
                hints = get_type_hints(inner)
                props = {f.name: schema(hints[f.name]) for f in dataclasses.fields(inner) if f.name != "details"}
                required = [
                    f.name
                    for f in dataclasses.fields(inner)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ]
                # dataclasses without a docstring get a generated signature as __doc__, whose text changes
                # between Python versions: such records are described by their name alone
                doc = (inner.__doc__ or "").strip()
                definitions[name] = {
                    "type": "object",
                    "description": doc.splitlines()[0] if doc and not doc.startswith(f"{name}(") else name,
                    "properties": props,
                    "required": required,
                    "additionalProperties": inner is Source or inner is Manifest,
                }
            return {"$ref": f"#/$defs/{name}"}
        if inner is Any:
            return {}
        if origin in (Union, types.UnionType):
            return {"anyOf": [schema(a) for a in get_args(inner)]}
        if origin is dict:
            return {"type": "object", "additionalProperties": schema(get_args(inner)[1])}
        if origin is tuple:
            return {"type": "array", "items": schema(get_args(inner)[0])}
        return {"type": {str: "string", int: "integer", bool: "boolean", float: "number"}[inner]}

    root = schema(Manifest)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mlpack.invalid/schemas/manifest-format-1.json",
        "title": "mlpack package manifest (mlpack.json), format 1",
        **root,
        "$defs": dict(sorted(definitions.items())),
    }


def parity_disagreement(parity: Parity | None) -> str:
    """What an accepted parity failure recorded, in words ("" when parity passed): the outputs where the
    package disagrees with the native model, and by how much."""
    if parity is None or parity.status != "accepted":
        return ""
    parts = []
    for out in parity.outputs:
        if out.get("passed", True):
            continue
        if out.get("problem"):
            parts.append(f"{out.get('name')}: {out['problem']}")
        else:
            parts.append(f"{out.get('name')}: {out.get('outside')} of {out.get('total')} outside tolerance, "
                         f"max abs {float(out.get('max_abs', float('inf'))):.3g}")  # fmt: skip
    return "; ".join(parts) or "outputs outside tolerance"
