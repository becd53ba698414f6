"""mlpack build: convert, record golden outputs, check conversion parity, lock, profile, write atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import __version__, compare, environment, hardware, reference
from mlpack.convert import Converted, Converter, ConvertOptions, find_converter
from mlpack.convert.canonical import canonicalise, serialise, write_model
from mlpack.convert.onnx_model import load_onnx
from mlpack.errors import ConversionError, MlpackError, UsageError
from mlpack.fileio import canonical_json, npz_bytes, sha256_bytes, sha256_file, write_atomic
from mlpack.loaders import load_model_file
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
)  # fmt: skip
from mlpack.sample import fit_to_inputs, load_sample

DEFAULT_OPSET = 17  # loads on onnxruntime 1.14 and newer; skl2onnx's own default may not
PRECISIONS = ("float32", "float64")
TIMING_BATCHES = (1, 1024)

Progress = Callable[[str], None]


class ParityError(ConversionError):
    """Conversion changed the outputs beyond tolerance; carries the per-output comparisons."""

    def __init__(self, message: str, comparisons: list[compare.OutputComparison]) -> None:
        super().__init__(message)
        self.comparisons = comparisons


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


def _best_ms(run: Callable[[], Any], budget_s: float = 0.3, at_most: int = 20) -> float:
    """Best of several runs (the least disturbed), within a small time budget."""
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for _ in range(at_most):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    return round(best * 1000, 4)


def _performance(
    session: Any, converter: Converter, model: Any, feeds: dict[str, np.ndarray], outputs: list[str],
    conversion_s: float, row_batches: bool,
) -> dict[str, Any]:  # fmt: skip
    """What users gain: onnxruntime vs the native model at batch 1 and 1024, measured at build time."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return {"omitted": "SOURCE_DATE_EPOCH is set: wall-clock figures would change the reproducible digest"}
    figures: dict[str, Any] = {"conversion_s": round(conversion_s, 4)}
    for batch in TIMING_BATCHES:
        if row_batches and batch > 1:
            continue
        rows = {k: np.ascontiguousarray(v[np.arange(batch) % len(v)]) for k, v in feeds.items()}
        entry = {"onnxruntime_ms": _best_ms(lambda: session.run(outputs, rows))}  # noqa: B023 - runs at once
        if converter.native_runs:
            entry["native_ms"] = _best_ms(lambda: converter.predict(model, rows, outputs))  # noqa: B023
            entry["speedup"] = round(entry["native_ms"] / max(entry["onnxruntime_ms"], 1e-6), 2)
        figures[f"batch_{batch}"] = entry
    return figures


def _convert(
    converter: Converter, model: Any, arrays: dict[str, np.ndarray], options: ConvertOptions, onnx_file: Any
) -> tuple[Converted, float]:
    started = time.perf_counter()
    if onnx_file is not None:
        origin = str(onnx_file) if isinstance(onnx_file, (str, Path)) else "The supplied ONNX model"
        converted = Converted(model=load_onnx(onnx_file, origin), details={"supplied_onnx": True})
    else:
        converted = converter.convert(model, arrays, options)
    return converted, time.perf_counter() - started


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
    precision: str = "float32",
    onnx: Any = None,
    resolve: bool = True,
    index_url: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    accept_parity: bool = False,
    max_rows: int = 1024,
    timings: bool = True,
    progress: Progress | None = None,
) -> Package:
    """Package a trained model with golden outputs, locks and a hardware profile; return the package.

    ``onnx`` takes your own ONNX export of a native model (path, bytes or ModelProto): mlpack then checks its
    parity against the native model instead of converting.
    """
    say = progress or (lambda _step: None)
    source_file: Path | None = None
    if isinstance(model, (str, Path)):
        source_file = Path(model)
        model = load_model_file(source_file, trust_pickle, trusted_types)
    if name is None:
        name = source_file.stem if source_file else type(model).__name__.lower()
    if threads < 1:
        raise UsageError("--threads must be at least 1.")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}.")
    target = Path(out) / package_dir_name(name, version)
    refuse_existing(target, force)

    arrays = load_sample(sample)
    converter = find_converter(model)
    if onnx is not None and not converter.native_runs:
        raise UsageError("--onnx checks your ONNX export against a native model; this model is ONNX already.")
    description = converter.describe(model)
    say("checking the supplied ONNX model" if onnx is not None else f"converting with {converter.name}")
    converted, conversion_s = _convert(converter, model, arrays, ConvertOptions(opset, precision), onnx)
    canonical = canonicalise(converted.model)
    parity_label = "native model vs onnxruntime" if converter.native_runs else "source ONNX vs canonical"

    with staging(target, force) as folder:
        model_files = write_model(canonical, folder)
        say("recording golden outputs with onnxruntime")
        settings = reference.SessionSettings(intra_op_num_threads=threads)
        session = reference.open_session(folder / MODEL, settings)
        sig = reference.signature(session)
        if len(next(iter(arrays.values()))) > max_rows:
            arrays = {k: v[:max_rows] for k, v in arrays.items()}
        feeds, casts = fit_to_inputs(arrays, sig["inputs"])
        row_batches = reference.needs_row_batches(sig["inputs"], len(next(iter(feeds.values()))))
        try:
            outputs = reference.run(session, feeds, row_batches)
        except MlpackError:
            raise
        except Exception as exc:
            raise UsageError(f"The sample does not fit the model: {str(exc).splitlines()[0][:300]}") from None
        for out_name, value in outputs.items():
            if value.dtype.kind == "f" and value.size and np.isnan(value).all():
                raise UsageError(
                    f"The model gives only NaN for output {out_name!r} on this sample: check the sample."
                )

        kinds = {spec["name"]: reference.output_kind(spec) for spec in sig["outputs"]}
        tols = compare.resolve_tolerances(kinds, tolerances, family=description.framework)
        say("checking conversion parity against the native model")
        native = _native_like(converter.predict(model, feeds, list(outputs)), outputs)
        parity = compare.compare(native, outputs, kinds, tols)
        parity_passed = all(c.passed for c in parity)
        if not parity_passed and not accept_parity:
            raise ParityError(_parity_message(parity), parity)
        performance = (
            _performance(session, converter, model, feeds, list(outputs), conversion_s, row_batches)
            if timings
            else {"omitted": "timings=False"}
        )

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
        source_sha = sha256_bytes(serialise(converted.model)) if converted.model.ByteSize() < 2**31 else None
        manifest = {
            "format": FORMAT,
            "name": name,
            "version": version,
            "created": _created(),
            "mlpack_version": __version__,
            "model": {
                "file": MODEL,
                "files": model_files,
                "sha256": files[MODEL],
                "source_sha256": source_sha,
                "source_file": {"name": source_file.name, "sha256": sha256_file(source_file)}
                if source_file
                else None,
                "ir_version": canonical.ir_version,
                "producer": f"{canonical.producer_name} {canonical.producer_version}".strip(),
                "opset_imports": {o.domain or "ai.onnx": o.version for o in canonical.opset_import},
                "inputs": sig["inputs"],
                "outputs": [{**spec, "kind": kinds[spec["name"]]} for spec in sig["outputs"]],
            },
            "source": {
                **converted.details,  # what the converter reports; never overrides the fields below
                "converter": converter.name,
                "framework": description.framework,
                "framework_version": description.framework_version,
                "model_class": description.model_class,
            },
            "parity": {
                "compared": parity_label if onnx is None else "native model vs supplied ONNX",
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
            "performance": performance,
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
