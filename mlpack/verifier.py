"""mlpack verify: integrity, then environment and hardware differences, then a replay of the golden inputs.

Gathering happens here; judging is pure (compare.compare, likely_causes). Nothing is unpickled and no
training framework is imported: only onnxruntime and numpy run the model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlpack import compare, environment, hardware, reference
from mlpack.errors import IntegrityError, MlpackError, UsageError
from mlpack.fileio import load_npz, npz_bytes, write_atomic
from mlpack.manifest import SessionSettings, Tolerance, parity_disagreement, to_json
from mlpack.package import (
    BUILD_LOCK,
    HARDWARE,
    RUNTIME_LOCK,
    Package,
    Problem,
    check_integrity,
    describe_problems,
    open_package,
)  # fmt: skip

EXIT_CODES = {"identical": 0, "equivalent": 0, "mismatch": 1, "tampered": 3, "error": 4}


@dataclass(frozen=True)
class Report:
    package: str
    name: str
    version: str
    digest: str
    verdict: str  # identical | equivalent | mismatch | tampered | error
    passed: bool
    message: str
    integrity: list[Problem] = field(default_factory=list)
    environment: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hardware: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[compare.OutputComparison] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)
    strict: bool = False
    build_env_compared: bool = False  # the build lock is compared when something needs explaining, or on request
    tolerance_overrides: dict[str, dict[str, float]] = field(default_factory=dict)  # this run's, by output
    tolerances: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each output was judged with
    judged: str = "replay"  # replay: the golden inputs ran here; saved: outputs from a file were judged
    seconds: float = 0.0
    proven: dict[str, Any] = field(default_factory=dict)  # this machine's class against build --machines evidence
    parity: dict[str, Any] = field(default_factory=dict)  # the build's parity: status, and any disagreement
    signature: dict[str, str] = field(default_factory=dict)  # status (verified/unsigned/unchecked), detail

    @property
    def exit_code(self) -> int:
        code = EXIT_CODES[self.verdict]
        return 1 if code == 0 and not self.passed else code  # a judged pass that fails a demand (--strict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "verdict": self.verdict,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "message": self.message,
            "strict": self.strict,
            "seconds": round(self.seconds, 4),
            "session": self.session,
            "integrity": [vars(p) for p in self.integrity],
            "environment": self.environment,
            "build_environment_compared": self.build_env_compared,
            "hardware": self.hardware,
            "outputs": [c.to_dict() for c in self.outputs],
            "causes": self.causes,
            "tolerance_overrides": self.tolerance_overrides,
            "tolerances": self.tolerances,
            "judged": self.judged,
            "proven": self.proven,
            "parity": self.parity,
            "signature": self.signature,
        }


_RUNTIME_WHY = {
    "onnxruntime": "its kernels and graph optimisations change between releases",
    "numpy": "it prepares the inputs and outputs",
    "ml_dtypes": "it reads and writes bfloat16 tensors",
}
# what a difference in each hardware field that moves numbers means (likely_causes' words, and the report's)
HARDWARE_WHY = {
    "cpu.level": "another micro-architecture level, so other SIMD kernels",
    "cpu.vendor": "another CPU vendor",
    "cpu.model": "another CPU model",
    "cpu.arch": "another architecture",
    "onnxruntime.providers": "other onnxruntime execution providers",
    "gpus": "another GPU",
    "blas": "another BLAS build",
    "numpy.dispatch": "numpy dispatches to other SIMD code",
    "cpu.numeric_flags": "other vector extensions: onnxruntime and BLAS pick other kernels",
    "cpu.logical_cores": "other core counts: threads split reductions otherwise",
    "onnxruntime.version": _RUNTIME_WHY["onnxruntime"],
}


def why(section: str, name: str) -> str:
    """Why a difference in a runtime package or a hardware field can move numbers, in a few words. Pure."""
    if section == "runtime":
        return _RUNTIME_WHY.get(name, "it is part of the runtime lock")
    found = next((text for key, text in HARDWARE_WHY.items() if name == key or name.startswith(key + ".")), "")
    return found or "context: it does not select kernels"


def likely_causes(
    env_diff: dict[str, list[dict[str, Any]]],
    hw_diff: list[dict[str, Any]],
    recorded_threads: int,
    threads: int,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> list[str]:
    """The differences that can move numbers, likeliest first: the thread count, the runtime packages that
    compute (onnxruntime, numpy), the CPU's kernels, then the runtime lock's other packages. A GPU is a cause
    only for a session with a provider other than the CPU's. Pure."""
    causes = []
    if threads != recorded_threads:
        causes.append(
            f"replayed with {threads} intra-op threads instead of the recorded {recorded_threads}: "
            "tree ensembles and reductions sum in another order"
        )
    others: list[str] = []
    for change in env_diff.get("runtime", []):
        why = _RUNTIME_WHY.get(change["name"], "it is part of the runtime lock")
        here = change["here"] or "missing"
        text = f"{change['name']} {here} here vs {change['locked']} at build: {why}"
        (causes if change["name"] in _RUNTIME_WHY else others).append(text)
    by_field = {change["field"]: change for change in hw_diff if change["moves_numbers"]}
    if "onnxruntime.version" in by_field and not any(
        c["name"] == "onnxruntime" for c in env_diff.get("runtime", [])
    ):
        c = by_field["onnxruntime.version"]
        causes.append(f"onnxruntime {c['here']} here vs {c['built']} at build: {_RUNTIME_WHY['onnxruntime']}")
    if "cpu.numeric_flags" in by_field:
        c = by_field["cpu.numeric_flags"]
        causes.append(
            f"the CPU's vector extensions differ (only at build: {', '.join(c['only_built']) or 'none'}; "
            f"only here: {', '.join(c['only_here']) or 'none'}): onnxruntime and BLAS pick other kernels"
        )
    on_gpu = any(p != "CPUExecutionProvider" for p in providers)
    for name in ("cpu.level", "cpu.vendor", "cpu.model", "cpu.arch", "onnxruntime.providers", "gpus", "blas",
                 "numpy.dispatch"):  # fmt: skip
        text = HARDWARE_WHY[name]
        if name in by_field and (name != "gpus" or on_gpu):
            c = by_field[name]
            causes.append(f"{text} ({c['built']} at build, {c['here']} here)")
    causes += others
    if "cpu.logical_cores" in by_field and threads == recorded_threads:
        c = by_field["cpu.logical_cores"]
        causes.append(f"{c['here']} logical cores here vs {c['built']} at build")
    return causes or [NO_DIFFERENCE]


NO_DIFFERENCE = (
    "no difference in the runtime, environment or hardware was found: suspect the model's own "
    "nondeterminism, or reference outputs altered before the manifest was written"
)


def _summary(verdict: str, passed: bool, outputs: list[compare.OutputComparison], strict: bool) -> str:
    if verdict == "identical":
        return "Every output is bit-identical to the golden outputs."
    if verdict == "equivalent":
        floats = [c for c in outputs if c.kind != "label" and c.max_abs == c.max_abs]
        worst = max(floats, key=lambda c: c.max_abs, default=None)
        largest = (
            f"largest abs difference {worst.max_abs:.3g} in {worst.name}" if worst else "no float output moved"
        )
        excused = [f"{c.tied_rows} tied rows of {c.name} excused" for c in outputs if c.tied_rows]
        text = f"All outputs are within tolerance but not bit-identical ({'; '.join([largest, *excused])})."
        return text + (" --strict demands bit identity." if strict else "")
    bad = [c for c in outputs if not c.passed]
    parts = [c.problem or f"{c.name}: {c.outside} of {c.total} outside tolerance" for c in bad]
    return "Outputs differ beyond tolerance: " + "; ".join(parts) + "."


def _runtime_pins(package: Package) -> dict[str, str]:
    runtime_lock = package.path / RUNTIME_LOCK
    if runtime_lock.is_file():
        return environment.parse_requirements_lock(
            runtime_lock.read_text(errors="replace")
        )  # a hostile lock: no crash
    return {k: v for k, v in package.manifest.environment.runtime.items() if v}


def _environment_diff(package: Package, with_build_lock: bool) -> dict[str, list[dict[str, Any]]]:
    """This environment against the runtime lock, and against the build lock when asked.

    Installed files are fingerprinted for the packages that run the model (the runtime lock); the rest of
    the build lock is compared by version, all an informational difference needs. Comparing the build lock
    means reading every installed distribution and parsing pylock.toml (~15 ms a run), so verify does it
    only where it can explain something: the runtime environment differs, the outputs are not identical,
    or the user asks (--full).
    """
    pins = _runtime_pins(package)
    build_file = package.path / BUILD_LOCK
    if not with_build_lock or not build_file.is_file():
        return environment.diff(pins, {}, environment.installed(fingerprint=set(pins), only=set(pins)))
    build_lock = environment.read_build_lock(build_file)
    return environment.diff(pins, build_lock, environment.installed(fingerprint=set(pins)))


def _hardware_diff(package: Package, seen: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    built_file = package.path / HARDWARE
    built_profile = json.loads(built_file.read_text()) if built_file.is_file() else {}
    return hardware.diff(built_profile, seen or hardware.profile(blas=False)) if built_profile else []


# golden inputs in, outputs out, and the hardware profile they ran on (None: this machine)
Replay = Callable[[Package, SessionSettings], tuple[dict[str, np.ndarray], dict[str, Any] | None]]


def override_tolerances(
    tolerances: Mapping[str, Tolerance],
    kinds: Mapping[str, str],
    atol: Mapping[str, float],
    rtol: Mapping[str, float],
) -> tuple[dict[str, Tolerance], dict[str, dict[str, float]]]:
    """The recorded tolerances with this run's atol/rtol, each keyed by an output name, an output kind, or ""
    for every float output (a name beats a kind beats ""); and the changes made, by output. Pure."""
    for key in {*atol, *rtol} - {"", *kinds, *kinds.values()}:
        raise UsageError(
            f"--atol/--rtol names {key!r}, which is neither an output ({', '.join(kinds)}) nor an output kind "
            f"({', '.join(sorted(set(kinds.values())))})."
        )
    for value in (*atol.values(), *rtol.values()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise UsageError(f"A tolerance must be a finite number of at least 0, not {value!r}.")
    resolved, changed = dict(tolerances), {}
    for name, kind in kinds.items():
        if name not in resolved:
            continue
        given: dict[str, float] = {}
        for key in ("", kind, name):  # later keys are more specific
            given.update(
                {which: float(values[key]) for which, values in (("atol", atol), ("rtol", rtol)) if key in values}
            )
        if kind == "label" and "" in {*atol, *rtol} and not ({kind, name} & {*atol, *rtol}):
            given = {}  # a bare --atol/--rtol is for float outputs; labels stay exact unless named
        if given:
            old = resolved[name]
            resolved[name] = Tolerance(given.get("atol", old.atol), given.get("rtol", old.rtol), old.labels)
            changed[name] = given
    return resolved, changed


def verify(
    path: str | Path,
    *,
    strict: bool = False,
    threads: int | None = None,
    expect_digest: str | None = None,
    full: bool = False,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    save_outputs: str | Path | None = None,
    replay: Replay = reference.replay_golden,
    key: str | Path | None = None,
    certificate_chain: Sequence[str | Path] = (),
    require_signature: bool = False,
    identity: Any = None,
) -> Report:
    """Verify a package on this machine and return the report (raises only when it is not a package).

    ``replay`` runs the golden inputs and says on what hardware where that is not this machine's
    (``machines.verify_on`` runs them in an emulated machine class, and judges here).

    ``atol``/``rtol`` override the recorded tolerances for this run, keyed by output name or kind ("" for
    every float output); the report lists the overrides. ``save_outputs`` writes what this machine gave for
    the golden inputs to an .npz, which ``judge_saved`` (``mlpack compare``) can judge later.

    The signature (``mlpack.sig``) is checked first, with ``key`` (a public key), ``certificate_chain``, or
    ``identity`` (a ``signing.Identity``, for a keyless Sigstore signature): one that fails, or none when
    ``require_signature``, makes the package tampered."""
    started = time.perf_counter()
    package, report, problems = _opened(path, strict, expect_digest=expect_digest)

    def finish(**fields: Any) -> Report:
        return replace(report, seconds=time.perf_counter() - started, **fields)

    report, trusted = _trusted(package, report, problems, key, certificate_chain, require_signature, identity)
    if not trusted:
        return finish()

    manifest = package.manifest
    tolerances, overrides = override_tolerances(manifest.tolerances, manifest.kinds, atol or {}, rtol or {})
    report = replace(report, tolerance_overrides=overrides, tolerances=_applied(tolerances, manifest.kinds))
    env_diff = _environment_diff(package, full)
    settings = manifest.runtime.session
    recorded_threads = settings.intra_op_num_threads
    settings = reference.replay_settings(settings, threads)
    outputs: list[compare.OutputComparison] = []
    seen: dict[str, Any] | None = None  # the hardware the replay ran on, where it is not this machine's
    try:
        expected = load_npz(package.path / manifest.reference.outputs)
        actual, seen = replay(package, settings)
    except IntegrityError as exc:  # golden data that lies about its size: as bad as a changed file
        message, verdict = exc.message, "tampered"
    except MlpackError as exc:
        message, verdict = exc.message, "error"
    except Exception as exc:  # onnxruntime's own failures: the golden inputs no longer run here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        message, verdict = f"onnxruntime could not run the golden inputs: {first}", "error"
    else:
        if save_outputs is not None:
            write_atomic(Path(save_outputs), npz_bytes(actual))
        outputs = compare.compare(expected, actual, manifest.kinds, tolerances)
        verdict = compare.verdict(outputs)
        message = ""
    hw_diff = _hardware_diff(package, seen)
    causes = likely_causes(env_diff, hw_diff, recorded_threads, settings.intra_op_num_threads, settings.providers)
    report = replace(report, hardware=hw_diff, session=to_json(settings))
    if not full and (verdict != "identical" or env_diff["runtime"]):
        full, env_diff = True, _environment_diff(package, True)  # now there is something to explain
    passed = _passes(verdict, strict)
    proven = _proven(
        manifest.machines, verdict, outputs, (seen or {}).get("cpu", {}).get("level") or hardware.level()
    )
    if proven and not proven["matches"]:
        causes = [
            *causes,
            f"this machine ({proven['machine']}) does not give what the build's emulated replay of "
            "its class gave: the emulation missed something of this machine (its CPU model or library builds)",
        ]
    parity, passed, note = _parity(manifest, verdict, passed, strict)
    return finish(
        proven=proven, parity=parity,
        verdict=verdict, passed=passed, outputs=outputs,
        causes=[] if verdict == "identical" or (verdict == "error" and causes == [NO_DIFFERENCE]) else causes,
        environment=env_diff, build_env_compared=full,
        message=(message or _summary(verdict, passed, outputs, strict)) + _overridden(overrides) + note,
    )  # fmt: skip


def _parity(manifest: Any, verdict: str, passed: bool, strict: bool) -> tuple[dict[str, Any], bool, str]:
    """The build's parity as part of the verdict: a package whose build accepted a disagreement with the
    native model says so in every report, and fails --strict. Returns the report's parity, the pass, and the
    sentence to add to the message."""
    disagreement = parity_disagreement(manifest.parity)
    parity = {"status": manifest.parity.status if manifest.parity else None, "disagreement": disagreement}
    if not disagreement or verdict in ("tampered", "error"):
        return parity, passed, ""
    return (
        parity,
        passed and not strict,
        (
            f" Parity was accepted at build: this package disagrees with the native model ({disagreement})"
            + (", which --strict does not accept." if strict else ".")
        ),
    )


def _proven(recorded: Any, verdict: str, outputs: list[compare.OutputComparison], here: str) -> dict[str, Any]:
    if not recorded or verdict in ("error", "tampered"):
        return {}
    from mlpack.machines import against_evidence

    return against_evidence(recorded, here, verdict, [c.to_dict() for c in outputs])


def _opened(
    path: str | Path, strict: bool, *, expect_digest: str | None = None, judged: str = "replay"
) -> tuple[Package, Report, list[Problem]]:
    """The package, a report that says "error" until judged, and its integrity problems (a digest other than
    the expected one among them)."""
    package = open_package(path)
    report = Report(
        package=str(package.path), name=package.name, version=package.version, digest=package.digest,
        verdict="error", passed=False, message="", strict=strict, judged=judged,
    )  # fmt: skip
    problems = check_integrity(package)
    if expect_digest and expect_digest.removeprefix("sha256:") != package.digest.removeprefix("sha256:"):
        mismatch = f"manifest digest {package.digest} ≠ expected {expect_digest}"
        problems.insert(0, Problem("mlpack.json", "changed", mismatch))
    return package, report, problems


def _applied(tolerances: Mapping[str, Tolerance], kinds: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each output's tolerance as judged, and whether it is looser than mlpack's default for its kind by more
    than tenfold: the manifest sets them, and an unsigned manifest can be edited, so the report shows them."""
    applied: dict[str, dict[str, Any]] = {}
    for name, tol in tolerances.items():
        kind = kinds.get(name, "value")
        if kind == "label":
            applied[name] = {"labels": tol.labels}
            continue
        default = compare.DEFAULT_TOLERANCES.get(kind, compare.DEFAULT_TOLERANCES["value"])
        loose = tol.atol > 10 * default.atol or tol.rtol > 10 * default.rtol
        applied[name] = {"atol": tol.atol, "rtol": tol.rtol, "looser_than_default": loose}
    return applied


def _trusted(
    package: Package, report: Report, problems: list[Problem], key: str | Path | None,
    certificate_chain: Sequence[str | Path], require_signature: bool, identity: Any = None,
) -> tuple[Report, bool]:  # fmt: skip
    """The signature, then the files: the report with the signature's status, and whether the package may be
    judged; a failed signature or a file problem makes the report tampered."""
    from mlpack import signing

    try:
        status = signing.check_trust(package, key, certificate_chain, require_signature, identity)
    except IntegrityError as exc:
        failed = {"status": "failed", "detail": exc.message}
        return replace(
            report, verdict="tampered", message=exc.message, signature=failed, integrity=problems
        ), False
    report = replace(report, signature=status)
    return (replace(report, **_tampered(problems)), False) if problems else (report, True)


def _tampered(problems: list[Problem]) -> dict[str, Any]:
    message = f"The package's files do not match its manifest: {describe_problems(problems)}."
    return {"verdict": "tampered", "integrity": problems, "message": message}


def _passes(verdict: str, strict: bool) -> bool:
    return verdict == "identical" or (verdict == "equivalent" and not strict)


def _overridden(overrides: Mapping[str, Mapping[str, float]]) -> str:
    if not overrides:
        return ""
    parts = [f"{name} " + ", ".join(f"{k} {v:g}" for k, v in given.items()) for name, given in overrides.items()]
    return f" Tolerances overridden for this run: {'; '.join(parts)}."


def judge_saved(
    path: str | Path,
    outputs_file: str | Path,
    *,
    strict: bool = False,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    expect_digest: str | None = None,
    key: str | Path | None = None,
    certificate_chain: Sequence[str | Path] = (),
    require_signature: bool = False,
) -> Report:
    """Judge outputs saved earlier (``verify --save-outputs``, an .npz keyed by output name, or a folder of
    output_K.pb files) against the package's golden outputs, without running the model: the signature and
    integrity first, as verify checks them, then the same comparison as verify."""
    from mlpack.sample import load_expected

    started = time.perf_counter()
    package, report, problems = _opened(path, strict, expect_digest=expect_digest, judged="saved")
    report, trusted = _trusted(package, report, problems, key, certificate_chain, require_signature)
    if not trusted:
        return replace(report, seconds=time.perf_counter() - started)
    manifest = package.manifest
    tolerances, overrides = override_tolerances(manifest.tolerances, manifest.kinds, atol or {}, rtol or {})
    actual = load_expected(outputs_file, list(manifest.kinds))
    expected = load_npz(package.path / manifest.reference.outputs)
    outputs = compare.compare(expected, actual, manifest.kinds, tolerances)
    verdict = compare.verdict(outputs)
    parity, passed, note = _parity(manifest, verdict, _passes(verdict, strict), strict)
    return replace(
        report, verdict=verdict, passed=passed, outputs=outputs, tolerance_overrides=overrides, parity=parity,
        tolerances=_applied(tolerances, manifest.kinds),
        message=_summary(verdict, passed, outputs, strict) + _overridden(overrides) + note,
        seconds=time.perf_counter() - started,
    )  # fmt: skip
