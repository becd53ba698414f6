"""mlpack build: convert, record golden outputs, check conversion parity, lock, profile, write atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import __version__, compare, environment, hardware, reference
from mlpack.convert import Converted, find_converter
from mlpack.convert.canonical import canonicalise
from mlpack.convert.onnx_model import parse_onnx
from mlpack.errors import ConversionError, UsageError
from mlpack.fileio import canonical_json, npz_bytes, sha256_bytes, sha256_file, write_atomic
from mlpack.package import (
    BUILD_LOCK,
    FORMAT,
    HARDWARE,
    INPUTS,
    MANIFEST,
    MODEL,
    OUTPUTS,
    RUNTIME_LOCK,
    Package,
    open_package,
    package_dir_name,
    refuse_existing,
    staging,
)
from mlpack.sample import fit_to_inputs, load_sample

DEFAULT_OPSET = 17  # loads on onnxruntime 1.14 and newer; skl2onnx's own default may not
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
MODEL_SUFFIXES = (".onnx", ".skops", *PICKLE_SUFFIXES)

Progress = Callable[[str], None]


class ParityError(ConversionError):
    """Conversion changed the outputs beyond tolerance; carries the per-output comparisons."""

    def __init__(self, message: str, comparisons: list[compare.OutputComparison]) -> None:
        super().__init__(message)
        self.comparisons = comparisons


def load_model_file(path: Path, trust_pickle: bool = False, trusted_types: tuple[str, ...] = ()) -> Any:
    """Open a model file safely: ONNX stays a path, .skops loads without code execution, pickle needs trust."""
    if not path.is_file():
        raise UsageError(f"The model file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path
    if suffix == ".skops":
        try:
            import skops.io as sio
        except ImportError:
            raise UsageError("Reading .skops files needs skops: run pip install 'mlpack[sklearn]'.") from None
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise UsageError(f"{path} is not a readable .skops file: {exc}") from None
        # skops' own default trust list is the only blanket trust: anything else the user names
        refused = [t for t in untrusted if t not in trusted_types]
        if refused:
            flags = " ".join(f"--trust-type {t}" for t in refused)
            raise UsageError(
                f"{path} holds types that skops does not trust by default ({', '.join(refused)}); "
                f"if you trust the file's origin, pass {flags}."
            )
        return sio.load(path, trusted=untrusted)
    if suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise UsageError(
                f"{path} is a pickle, and unpickling runs arbitrary code: pass --trust-pickle if you trust its "
                "origin, or save the model with skops."
            )
        if suffix == ".joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as f:
            return pickle.load(f)
    raise UsageError(f"{path} has an unknown model format; supported: {', '.join(MODEL_SUFFIXES)}.")


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _git() -> dict[str, Any] | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _native_like(native: dict[str, np.ndarray], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bring native outputs to the ONNX outputs' shapes and dtypes so that values are what is compared."""
    shaped = {}
    for name, value in native.items():
        target = like[name]
        array = np.asarray(value)
        if array.size == target.size and array.shape != target.shape:
            array = array.reshape(target.shape)
        if target.dtype.kind in "US":
            array = array.astype(str)
        elif array.dtype != target.dtype and array.dtype.kind in "biuf":
            array = array.astype(target.dtype)
        shaped[name] = array
    return shaped


def _parity_message(comparisons: list[compare.OutputComparison]) -> str:
    parts = []
    for c in comparisons:
        if c.passed:
            continue
        detail = c.problem or f"{c.outside} of {c.total} elements outside tolerance, max abs {c.max_abs:.3g}"
        parts.append(f"{c.name}: {detail}")
    return (
        "The ONNX conversion does not reproduce the native model (" + "; ".join(parts) + "); "
        "pass --accept-parity to package it anyway, and the manifest will say so."
    )


def build(
    model: Any,
    sample: Any,
    *,
    name: str | None = None,
    version: str = "1",
    out: str | Path = "dist",
    force: bool = False,
    trust_pickle: bool = False,
    trusted_types: tuple[str, ...] = (),
    tolerances: Mapping[str, Any] | float | None = None,
    threads: int = 1,
    opset: int = DEFAULT_OPSET,
    resolve: bool = True,
    index_url: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    accept_parity: bool = False,
    max_rows: int = 1024,
    progress: Progress | None = None,
) -> Package:
    """Package a trained model with golden outputs, locks and a hardware profile; return the package."""
    say = progress or (lambda _step: None)
    source_file: Path | None = None
    if isinstance(model, (str, Path)):
        source_file = Path(model)
        model = load_model_file(source_file, trust_pickle, trusted_types)
    if name is None:
        name = source_file.stem if source_file else type(model).__name__.lower()
    if threads < 1:
        raise UsageError("--threads must be at least 1.")
    target = Path(out) / package_dir_name(name, version)
    refuse_existing(target, force)

    arrays = load_sample(sample)
    converter = find_converter(model)
    say(f"converting with {converter.name}")
    converted: Converted = converter.convert(model, arrays, opset)
    onnx_model = parse_onnx(converted.onnx_bytes, "The converted model")
    model_bytes = canonicalise(onnx_model)

    say("recording golden outputs with onnxruntime")
    settings = reference.SessionSettings(intra_op_num_threads=threads)
    session = reference.open_session(model_bytes, settings)
    sig = reference.signature(session)
    if len(next(iter(arrays.values()))) > max_rows:
        arrays = {k: v[:max_rows] for k, v in arrays.items()}
    feeds, casts = fit_to_inputs(arrays, sig["inputs"])
    row_batches = reference.needs_row_batches(sig["inputs"], len(next(iter(feeds.values()))))
    try:
        outputs = reference.run(session, feeds, row_batches)
    except Exception as exc:
        if isinstance(exc, ConversionError | UsageError):
            raise
        raise UsageError(f"The sample does not fit the model: {str(exc).splitlines()[0][:300]}") from None
    for out_name, value in outputs.items():
        if value.dtype.kind == "f" and value.size and np.isnan(value).all():
            raise UsageError(f"The model gives only NaN for output {out_name!r} on this sample: check the sample.")

    kinds = {spec["name"]: reference.output_kind(spec) for spec in sig["outputs"]}
    tols = compare.resolve_tolerances(kinds, tolerances)
    say("checking conversion parity against the native model")
    native = _native_like(converter.predict(model, feeds, list(outputs)), outputs)
    parity = compare.compare(native, outputs, kinds, tols)
    parity_passed = all(c.passed for c in parity)
    if not parity_passed and not accept_parity:
        raise ParityError(_parity_message(parity), parity)

    import onnx

    parsed = onnx.ModelProto.FromString(model_bytes)
    with staging(target, force) as folder:
        write_atomic(folder / MODEL, model_bytes)
        write_atomic(folder / INPUTS, npz_bytes(feeds))
        write_atomic(folder / OUTPUTS, npz_bytes(outputs))
        say("profiling hardware")
        profile = hardware.profile()
        write_atomic(folder / HARDWARE, canonical_json(profile))
        say("locking the environment" + ("" if resolve else " (offline)"))
        env_summary = environment.write_lock_files(folder / "env", resolve, environment.index_url(index_url))
        files = {
            path.relative_to(folder).as_posix(): sha256_file(path)
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "format": FORMAT,
            "name": name,
            "version": version,
            "created": _created(),
            "mlpack_version": __version__,
            "model": {
                "file": MODEL,
                "sha256": sha256_bytes(model_bytes),
                "source_sha256": sha256_bytes(converted.onnx_bytes),
                "source_file": (
                    {"name": source_file.name, "sha256": sha256_file(source_file)} if source_file else None
                ),
                "ir_version": parsed.ir_version,
                "producer": f"{parsed.producer_name} {parsed.producer_version}".strip(),
                "opset_imports": {o.domain or "ai.onnx": o.version for o in parsed.opset_import},
                "inputs": sig["inputs"],
                "outputs": [{**spec, "kind": kinds[spec["name"]]} for spec in sig["outputs"]],
            },
            "source": {
                "converter": converter.name,
                "framework": converted.framework,
                "framework_version": converted.framework_version,
                "model_class": converted.model_class,
            },
            "parity": {
                "compared": "native model vs onnxruntime" if converted.native_runs else "source ONNX vs canonical",
                "status": "passed" if parity_passed else "accepted",
                "input_cast": {**converted.input_cast, **casts},
                "outputs": [c.to_dict() for c in parity],
            },
            "reference": {
                "inputs": INPUTS,
                "outputs": OUTPUTS,
                "rows": len(next(iter(feeds.values()))),
                "row_batches": row_batches,
            },
            "runtime": {"onnxruntime": profile["onnxruntime"]["version"], "session": settings.to_dict()},
            "tolerances": {n: t.to_dict() for n, t in tols.items()},
            "environment": {
                **env_summary,
                "build_lock_file": BUILD_LOCK,
                "runtime_lock_file": RUNTIME_LOCK if (folder / RUNTIME_LOCK).exists() else None,
            },
            "hardware": {
                "file": HARDWARE,
                "cpu": f"{profile['cpu']['vendor']} {profile['cpu']['model']}",
                "arch": profile["cpu"]["arch"],
                "logical_cores": profile["cpu"]["logical_cores"],
                "numeric_flags": profile["cpu"]["numeric_flags"],
                "gpus": [g["name"] for g in profile["gpus"]],
            },
            "lineage": {"git": _git(), **json.loads(json.dumps(dict(lineage or {}), default=str))},
            "files": files,
        }
        write_atomic(folder / MANIFEST, canonical_json(manifest))
        say("writing the package")
    return open_package(target)
