"""mlpack build: convert, record golden outputs, check conversion parity, lock, profile, write atomically.

The steps, in order: settings (options.merge) → load the model (its family's loader) → convert and
canonicalise → in a staging folder: golden run with onnxruntime → parity against the native model →
timings → reference files, hardware profile, locks → manifest hashing every file → one rename into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpack import __version__, bom, clock, compare, hardware, locks, options, parity, reference, timing
from mlpack.bom import BOM
from mlpack.convert import (
    Converted,
    Converter,
    ConvertOptions,
    Trust,
    default_tolerances,
    find_converter,
    write_log,
)
from mlpack.convert import load_model_file as load_family_file
from mlpack.convert.canonical import canonicalise, serialise, write_model
from mlpack.convert.onnx_model import load_onnx
from mlpack.errors import MachineError, MlpackError, RuntimeEnvironmentError, UsageError
from mlpack.fileio import canonical_json, npz_bytes, sha256_bytes, sha256_file, write_atomic
from mlpack.manifest import (
    FORMAT,
    Environment,
    HardwareSummary,
    Manifest,
    ModelInfo,
    Parity,
    ReferenceInfo,
    RuntimeInfo,
    SessionSettings,
    Source,
    SourceFile,
    TensorSpec,
)  # fmt: skip
from mlpack.package import (
    BUILD_LOCK,
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
from mlpack.sample import Runs, by_feature_names, fit_to_inputs, load_expected, load_sample, require_rows

if TYPE_CHECKING:
    import onnx

Progress = Callable[[str], None]
log = logging.getLogger("mlpack.build")
SLOW_STEP_S = 2.0  # a step that took longer is named with its time when the next one starts


class Steps:
    """A build's progress: each step as it starts, to ``progress`` (the CLI prints it to stderr) or else to
    the "mlpack.build" logger at INFO (an API user turns it on with logging.basicConfig(level=logging.INFO));
    a slow step's time is told as the next one starts, so the step that took a minute is named."""

    def __init__(self, progress: Progress | None) -> None:
        self.tell: Progress = progress or log.info
        self.step: str | None = None
        self.started = 0.0

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        if self.step is not None and now - self.started >= SLOW_STEP_S and not step.startswith("note:"):
            step = f"{step} ({self.step} took {now - self.started:.1f} s)"
        if not step.startswith("note:"):
            self.step, self.started = step.split(" (")[0], now
        self.tell(step)


@dataclass(frozen=True)
class Golden:
    """The golden run: what went in, what onnxruntime gave, and how."""

    settings: SessionSettings
    session: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    feeds: dict[str, np.ndarray]
    results: dict[str, np.ndarray]
    casts: dict[str, str]
    row_batches: bool
    runs: int  # > 1: separate golden runs, each tensor stacked along a new leading axis
    native_feeds: dict[str, np.ndarray]  # what parity gives the native model: the feeds, or their unnarrowed rows

    @property
    def first(self) -> dict[str, np.ndarray]:
        """The inputs of the first run (of the only one, usually): what rows and timings are measured on."""
        return {k: v[0] for k, v in self.feeds.items()} if self.runs > 1 else self.feeds


def build(
    model: Any = None,
    sample: Any = None,
    *,
    name: str | None = None,
    version: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    trust_pickle: bool | None = None,
    trusted_types: tuple[str, ...] = (),
    tolerances: Mapping[str, Any] | float | None = None,
    threads: int | None = None,
    opset: int | None = None,
    precision: str | None = None,
    onnx: str | Path | bytes | onnx.ModelProto | None = None,
    resolve: bool = True,
    index_url: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    accept_parity: bool = False,
    max_rows: int | None = None,
    expected: Any = None,
    dynamic_shapes: Mapping[str, Any] | None = None,
    timings: bool = True,
    project: bool = True,
    progress: Progress | None = None,
    machines: Sequence[str] | str | None = None,
    accept_machines: bool = False,
    sign_key: str | Path | None = None,
) -> Package:
    """Package a trained model with golden outputs, locks and a hardware profile; return the package.

    Settings left as None come from ``[tool.mlpack]`` in the nearest pyproject.toml (``project=False``
    ignores it), then from the defaults in ``mlpack.options``. ``onnx`` takes your own ONNX export of a
    native model (path, bytes or ModelProto): mlpack then checks its parity instead of converting.
    ``machines`` replays the golden inputs on those machine classes (emulated) and records the outcome in
    the manifest; a class where they do not hold fails the build unless ``accept_machines``. ``sign_key`` (an
    EC private key) signs the package (``mlpack.sig``) as the last step, before it is published.
    """
    opts = options.merge(
        dict(model=model, sample=sample, name=name, version=version, out=out, trust_pickle=trust_pickle,
             tolerances=tolerances, threads=threads, opset=opset, precision=precision, index_url=index_url,
             lineage=lineage, max_rows=max_rows, dynamic=dynamic_shapes,
             machines=None if machines is None else options.machine_names(machines), sign_key=sign_key),
        project=project,
    )  # fmt: skip
    say = Steps(progress)
    if opts.sign_key is not None:  # a key that cannot sign is refused before any work
        from mlpack import signing

        signing.check_private_key(opts.sign_key)
    proving = _machines_to_prove(opts.machines)
    source_file = Path(opts.model) if isinstance(opts.model, (str, Path)) else None
    native = load_family_file(source_file, Trust(opts.trust_pickle, trusted_types)) if source_file else opts.model
    package_name = opts.name or (source_file.stem if source_file else type(native).__name__.lower())
    target = Path(opts.out) / package_dir_name(package_name, opts.version)
    refuse_existing(target, force, "another --out or version")

    arrays = load_sample(opts.sample)
    converter = find_converter(native)
    if converter.native_runs:  # the families mlpack converts take rows; ONNX takes tensors as given
        require_rows(arrays)
    features = getattr(native, "feature_names_in_", None)
    if features is not None and converter.native_runs and onnx is None:  # tabular columns bound by name
        per_column = getattr(converter, "one_input_per_column", None)  # a ColumnTransformer, pandas categories
        arrays = by_feature_names(arrays, [str(f) for f in features], bool(per_column and per_column(native)))
    if any(key.startswith("#") for key in arrays) and converter.name not in ("torch", "onnx"):
        raise UsageError(
            "A tuple sample gives inputs by position, for PyTorch and ONNX models; give this one a dict."
        )
    if onnx is not None and not converter.native_runs:
        raise UsageError("--onnx checks your ONNX export against a native model; this model is ONNX already.")
    say("checking the supplied ONNX model" if onnx is not None else f"converting with {converter.name}")
    if expected is not None and converter.native_runs:
        raise UsageError("--expected is for ONNX models: for this model the native model is the reference.")
    if opts.dynamic and (converter.name != "torch" or onnx is not None):
        raise UsageError("Dynamic axes (--dynamic, dynamic_shapes=) apply to PyTorch models that mlpack exports.")
    convert_options = ConvertOptions(opts.opset, opts.precision, opts.dynamic)
    with _warnings_summarised(say):
        converted, conversion_s = _convert(converter, native, arrays, convert_options, onnx)
    if "note" in converted.details:  # also in the manifest's source details
        say(f"note: {converted.details['note']}")
    job = Job(opts, package_name, source_file, native, converter, converted, canonicalise(converted.model),
              conversion_s, onnx is not None, resolve, timings, accept_parity, say, expected, proving,
              accept_machines)  # fmt: skip
    with staging(target, force, "another --out or version") as folder, _warnings_summarised(say):
        _fill(folder, job, arrays)
        _write_provenance(folder, opts, resolve)  # about the finished manifest: part of writing the package
        if opts.sign_key is not None:
            from mlpack import signing

            say("signing the package")
            signing.sign(folder, opts.sign_key)
    return open_package(target)


@dataclass(frozen=True)
class Job:
    """What a build has settled before it writes anything."""

    opts: options.BuildOptions
    name: str
    source_file: Path | None
    native: Any
    converter: Converter
    converted: Converted
    canonical: onnx.ModelProto
    conversion_s: float
    supplied_onnx: bool
    resolve: bool
    timings: bool
    accept_parity: bool
    say: Progress
    expected: Any = None  # outputs the user trusts (ONNX models): the parity reference instead of the source
    machines: tuple[str, ...] = ()  # classes to replay on before the package is published
    accept_machines: bool = False


def _fill(folder: Path, job: Job, arrays: dict[str, np.ndarray]) -> None:
    """Write every package file into the staging folder, the manifest last."""
    say, converter = job.say, job.converter
    model_files = write_model(job.canonical, folder)
    say("recording golden outputs with onnxruntime")
    # tabular models answer the sample as given (float64 rows): the package must too, from its narrowed copy
    golden = _golden_run(folder / MODEL, arrays, job.opts, wide=getattr(converter, "takes_wide_floats", False))
    kinds = {spec.name: reference.output_kind(spec) for spec in golden.outputs}
    tols = compare.resolve_tolerances(kinds, job.opts.tolerances, default_tolerances(converter))
    probed: list[str] = []
    if job.expected is not None:
        say("checking the golden outputs against the expected outputs")
        expected = load_expected(job.expected, list(golden.results))
        comparisons, passed = parity.check_expected(expected, golden.results, kinds, tols, job.accept_parity)
    else:
        say("checking conversion parity against the native model")
        comparisons, passed = parity.check(
            converter, job.native, golden.native_feeds, golden.results, kinds, tols, job.accept_parity, golden.runs
        )
        if converter.native_runs and golden.runs == 1:
            types = {name: value.dtype for name, value in golden.feeds.items()}
            probed = parity.check_probes(
                converter, job.native, golden.session, golden.native_feeds, kinds, tols, types, job.accept_parity
            )
    coverage: dict[str, Any] = {"labels": parity.label_coverage(golden.results, kinds)} if golden.runs == 1 else {}
    if probed:
        coverage["probes"] = probed
    refuses_nan = (
        job.expected is None
        and converter.native_runs
        and parity.refuses_nan(converter, job.native, golden.native_feeds, list(golden.results))
    )
    figures = (
        timing.performance(golden.session, converter, job.native, golden.inputs, golden.first,
                           list(golden.results), job.conversion_s)
        if job.timings
        else {"omitted": "timings=False"}
    )  # fmt: skip
    write_atomic(folder / INPUTS, npz_bytes(golden.feeds))
    write_atomic(folder / OUTPUTS, npz_bytes(golden.results))
    say("profiling hardware")
    profile = hardware.profile()
    write_atomic(folder / HARDWARE, canonical_json(profile))
    say("locking the environment" + ("" if job.resolve else " (offline)"))
    env_summary = locks.write_lock_files(folder / "env", job.resolve, options.index_url(job.opts.index_url))
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    description = converter.describe(job.native)
    manifest = Manifest(
        format=FORMAT, name=job.name, version=job.opts.version, created=clock.created(),
        mlpack_version=__version__,
        model=_model_info(job, model_files, files, golden, kinds),
        source=Source(converter.name, description.framework, description.framework_version,
                      description.model_class, {**job.converted.details, **_feature_names(job.native),
                                                **({"refuses_nan": refuses_nan} if refuses_nan else {})}),
        parity=Parity(
            compared=("expected outputs vs onnxruntime" if job.expected is not None
                      else "native model vs supplied ONNX" if job.supplied_onnx
                      else "native model vs onnxruntime" if converter.native_runs
                      else "source ONNX vs canonical"),
            status="passed" if passed else "accepted",
            input_cast={**job.converted.input_cast, **golden.casts},
            outputs=tuple(c.to_dict() for c in comparisons),
            coverage=coverage,
        ),
        reference=ReferenceInfo(INPUTS, OUTPUTS, reference.shared_rows(golden.inputs, golden.first) or 1,
                                golden.row_batches, golden.runs),
        runtime=RuntimeInfo(profile["onnxruntime"]["version"], golden.settings),
        tolerances=tols,
        performance=figures,
        environment=Environment(**env_summary, build_lock_file=BUILD_LOCK,
                                runtime_lock_file=RUNTIME_LOCK if (folder / RUNTIME_LOCK).exists() else None),
        hardware=_hardware_summary(profile),
        lineage={"git": _git(), **json.loads(json.dumps(dict(job.opts.lineage), default=str))},
        files=files,
    )  # fmt: skip
    write_atomic(folder / MANIFEST, canonical_json(manifest.to_dict()))
    if job.machines:  # the package is whole in the staging folder: replay it as each class would
        say(f"replaying the golden inputs on {', '.join(job.machines)} (emulated)")
        manifest = replace(manifest, machines=_prove(folder, job))
    say("writing the package")
    write_atomic(folder / BOM, canonical_json(bom.bom(manifest, folder)))
    manifest = replace(manifest, files={**manifest.files, BOM: sha256_file(folder / BOM)})
    write_atomic(folder / MANIFEST, canonical_json(manifest.to_dict()))


def _write_provenance(folder: Path, opts: options.BuildOptions, resolve: bool) -> None:
    """env/provenance.intoto.json about the finished manifest's digest (DSSE-signed with the build's key)."""
    from mlpack import provenance

    staged = open_package(folder)

    def given(value: Any) -> Any:  # a path as given, an object by its type
        return (
            str(value) if isinstance(value, (str, Path)) else f"<{type(value).__module__}.{type(value).__name__}>"
        )

    parameters = {
        "model": given(opts.model), "sample": given(opts.sample), "name": staged.name, "version": staged.version,
        "threads": opts.threads, "opset": opts.opset, "precision": opts.precision, "max_rows": opts.max_rows,
        "tolerances": json.loads(json.dumps(opts.tolerances, default=str)), "machines": list(opts.machines),
        "resolve": resolve, "index_url": options.index_url(opts.index_url),
    }  # fmt: skip
    document = provenance.statement(staged.manifest, folder, staged.digest, parameters)
    signed = provenance.envelope(document, opts.sign_key) if opts.sign_key is not None else document
    write_atomic(folder / provenance.PROVENANCE, canonical_json(signed))


def _machines_to_prove(names: Sequence[str]) -> tuple[str, ...]:
    """The classes a build replays on: the build machine itself is the golden run, so "native" adds nothing;
    "all" is every class this machine can emulate. A class named that cannot run here is refused now, before
    any work (exit 4), rather than recorded as unproven."""
    if not names:
        return ()
    from mlpack import machines

    chosen, _ = machines.resolve(list(names))
    for name in chosen:
        reason = machines.unavailable(name)
        if reason:
            raise RuntimeEnvironmentError(f"The build cannot prove {name}: {reason}")
    return tuple(name for name in chosen if name != "native")


def _prove(folder: Path, job: Job) -> tuple[dict[str, Any], ...]:
    """Replay the staged package on each class; its evidence for the manifest, or MachineError (exit 1) where
    the golden outputs do not hold, unless the build accepts that."""
    from mlpack import machines

    matrix = machines.verify_matrix(folder, job.machines)
    evidence = tuple(machines.evidence(result, job.accept_machines) for result in matrix.results)
    broken = [result for result in matrix.results if result.verdict in ("error", "tampered")]
    if broken:  # could not replay at all: nothing to accept
        first = broken[0]
        raise RuntimeEnvironmentError(f"The build could not replay on {first.machine}: {first.message}")
    failed = [result for result in matrix.results if not result.passed]
    if failed and not job.accept_machines:
        raise MachineError(machines.failure_message(failed), list(evidence))
    return evidence


@contextlib.contextmanager
def _warnings_summarised(say: Progress) -> Iterator[None]:
    """Warnings that converters and native models raise (skl2onnx, torch, scikit-learn's feature-name notes)
    are collected, not streamed: one line says how many of which kinds, and a log file holds them all."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            if caught:
                kinds = Counter(
                    f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:160]}" for w in caught
                )
                text = "\n".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught)
                log = write_log("warnings", text + "\n")
                (common, times), *_ = kinds.most_common(1)
                say(
                    f"note: {len(caught)} warning(s) of {len(kinds)} kind(s) from the converter and the native model, "
                    f"most often ({times}x) {common}" + (f"; all of them in {log}" if log else "")
                )


def _convert(
    converter: Converter,
    model: Any,
    arrays: dict[str, np.ndarray],
    options: ConvertOptions,
    onnx_file: str | Path | bytes | onnx.ModelProto | None,
) -> tuple[Converted, float]:
    started = time.perf_counter()
    if onnx_file is not None:
        origin = str(onnx_file) if isinstance(onnx_file, (str, Path)) else "The supplied ONNX model"
        converted = Converted(model=load_onnx(onnx_file, origin), details={"supplied_onnx": True})
    else:
        converted = converter.convert(model, arrays, options)
    return converted, time.perf_counter() - started


def _golden_run(
    model_file: Path, arrays: dict[str, np.ndarray], opts: options.BuildOptions, wide: bool = False
) -> Golden:
    """Fit the sample to the model's inputs and run it with the session options that verify will replay.
    ``wide``: the native model takes the sample's floats as given, so parity gets them unnarrowed."""
    settings = SessionSettings(intra_op_num_threads=opts.threads)
    session = reference.open_session(model_file, settings)
    inputs, outputs = reference.signature(session)
    feeds, casts = fit_to_inputs(arrays, inputs)
    native_feeds = dict(fit_to_inputs(arrays, inputs, keep_wide=True)[0]) if wide else feeds
    runs = feeds.runs if isinstance(feeds, Runs) else 1
    first = feeds.split()[0] if isinstance(feeds, Runs) else feeds
    rows = reference.shared_rows(inputs, first)
    if runs == 1 and rows is not None and rows > opts.max_rows:  # golden rows are capped; whole fixed batches
        batch = reference.fixed_batch(inputs) or 1
        keep = max(batch, opts.max_rows - opts.max_rows % batch)
        feeds = first = {name: value[:keep] for name, value in feeds.items()}
        native_feeds = {name: value[:keep] for name, value in native_feeds.items()}
    row_batches = reference.needs_row_batches(inputs, first)
    try:
        results = reference.run(session, feeds, row_batches, runs)
    except MlpackError:
        raise
    except Exception as exc:
        raise UsageError(f"The sample does not fit the model: {str(exc).splitlines()[0][:300]}") from None
    for out_name, value in results.items():
        if value.dtype.kind == "f" and value.size and np.isnan(value).all():
            raise UsageError(f"The model gives only NaN for output {out_name!r} on this sample: check the sample.")
    return Golden(settings, session, inputs, outputs, dict(feeds), results, casts, row_batches, runs, native_feeds)


def _model_info(
    job: Job, model_files: list[str], files: dict[str, str], golden: Golden, kinds: dict[str, str]
) -> ModelInfo:
    canonical, converted, source_file = job.canonical, job.converted, job.source_file
    return ModelInfo(
        file=MODEL,
        files=tuple(model_files),
        sha256=files[MODEL],
        source_sha256=sha256_bytes(serialise(converted.model)) if converted.model.ByteSize() < 2**31 else None,
        source_file=SourceFile(source_file.name, sha256_file(source_file)) if source_file else None,
        ir_version=canonical.ir_version,
        producer=f"{canonical.producer_name} {canonical.producer_version}".strip(),
        opset_imports={o.domain or "ai.onnx": o.version for o in canonical.opset_import},
        inputs=tuple(golden.inputs),
        outputs=tuple(TensorSpec(s.name, s.type, s.shape, kinds[s.name]) for s in golden.outputs),
    )


def _feature_names(native: Any) -> dict[str, Any]:
    """The column names a tabular model was fitted with, so that predict can bind a DataFrame by name."""
    features = getattr(native, "feature_names_in_", None)
    return {"feature_names": [str(f) for f in features]} if features is not None else {}


def _hardware_summary(profile: dict[str, Any]) -> HardwareSummary:
    cpu = profile["cpu"]
    return HardwareSummary(
        file=HARDWARE,
        cpu=f"{cpu['vendor']} {cpu['model']}",
        arch=cpu["arch"],
        logical_cores=cpu["logical_cores"],
        numeric_flags=tuple(cpu["numeric_flags"]),
        gpus=tuple(g["name"] for g in profile["gpus"]),
    )


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
