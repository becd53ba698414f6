"""Other machine classes, reached from this box by user-mode CPU emulation (QEMU): the one table of classes,
and verify replayed under each of them.

QEMU's user mode executes the instruction semantics of the CPU model it is given and reports that model's
CPUID, on which onnxruntime (MLAS), OpenBLAS and numpy pick their kernels: the numbers are those a real machine
of the class gives. Measured here (QEMU 7.2, onnxruntime 1.32): a 256x256 MatMul+Tanh differs in 4,901 of
16,384 values under Nehalem against an AVX2/FMA host, and Haswell gives the host's bits exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpack.errors import IntegrityError, MlpackError, RuntimeEnvironmentError, UsageError
from mlpack.hardware import cpu_features

EMULATOR_PACKAGE = "qemu-user"  # Debian's package for qemu-x86_64 and qemu-aarch64


@dataclass(frozen=True)
class MachineClass:
    name: str
    arch: str  # the machine architecture it needs: x86_64 classes run under qemu-x86_64
    qemu_cpu: str | None  # QEMU's CPU model; None: QEMU cannot emulate it (runs natively where the host is one)
    summary: str  # what it is, in the words users know
    kernels: str  # how its kernels differ, for the cause line when the numbers move
    native_feature: str | None = None  # numpy's CPU feature that lets this host run the class itself


CLASSES: dict[str, MachineClass] = {
    c.name: c
    for c in (
        MachineClass(
            "x86-64-v2", "x86_64", "Nehalem", "SSE4.2 without AVX: older Xeons, many cloud 'compatible' CPU types",
            "x86-64-v2 has no AVX, AVX2 or FMA: onnxruntime's MLAS and OpenBLAS run SSE kernels",
        ),
        MachineClass(
            "x86-64-avx", "x86_64", "SandyBridge", "AVX without AVX2 or FMA: Sandy Bridge and Ivy Bridge",
            "x86-64-avx has AVX but no AVX2 or FMA: MLAS and OpenBLAS run AVX kernels without fused multiply-add",
        ),
        MachineClass(
            "x86-64-v3", "x86_64", "Haswell-v4", "AVX2 and FMA: most current x86 servers",
            "x86-64-v3 has AVX2 and FMA but no AVX-512: MLAS and OpenBLAS run AVX2 kernels",
        ),
        MachineClass(
            "x86-64-v4", "x86_64", None, "AVX-512: Skylake-SP and later Xeons, Zen 4",
            "x86-64-v4 has AVX-512: MLAS and OpenBLAS run AVX-512 kernels", native_feature="AVX512F",
        ),
        MachineClass(
            "aarch64", "aarch64", "neoverse-n1", "Arm Neoverse-N1: AWS Graviton2, Ampere Altra",
            "aarch64 (Neoverse-N1) runs Arm builds of onnxruntime and numpy: MLAS and OpenBLAS run NEON kernels, "
            "which order and fuse floating-point operations unlike x86's",
        ),
    )
}  # fmt: skip
ORDER = ("identical", "equivalent", "mismatch", "error", "tampered")  # worst last


@dataclass(frozen=True)
class MachineResult:
    machine: str
    how: str  # "native", "qemu-x86_64 -cpu Nehalem", ...
    verdict: str
    passed: bool
    exit_code: int
    message: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    runtime: str = ""  # for another architecture: which interpreter and wheels ran
    onnxruntime: str = ""  # the onnxruntime version that ran
    proven: dict[str, Any] = field(default_factory=dict)  # against what build --machines recorded for the class


@dataclass(frozen=True)
class Matrix:
    package: str
    results: list[MachineResult]
    strict: bool = False
    left_out: dict[str, str] = field(default_factory=dict)  # classes "all" could not run here, and why

    @property
    def worst(self) -> MachineResult:
        return max(self.results, key=lambda r: (ORDER.index(r.verdict), not r.passed))

    @property
    def verdict(self) -> str:
        return self.worst.verdict

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        return self.worst.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package, "verdict": self.verdict, "passed": self.passed, "exit_code": self.exit_code,
            "strict": self.strict, "machines": [vars(r) for r in self.results], "left_out": self.left_out,
        }  # fmt: skip


def resolve(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The classes asked for, in order, and the classes "all" leaves out with the reason. "all" is native and
    every class this machine can run or emulate, so that it can gate a release; a class named on its own
    always runs, and fails (exit 4) where it cannot. An unknown name is refused listing the valid ones."""
    valid = ["native", *CLASSES]
    chosen: list[str] = []
    left_out: dict[str, str] = {}
    for name in names:
        if name not in (*valid, "all"):
            raise UsageError(f"Unknown machine class {name!r}; choose from {', '.join([*valid, 'all'])}.")
        for one in valid if name == "all" else [name]:
            reason = unavailable(one) if name == "all" else None
            if reason:
                left_out.setdefault(one, reason)
            elif one not in chosen:
                chosen.append(one)
    return chosen, {k: v for k, v in left_out.items() if k not in chosen}


def unavailable(name: str) -> str | None:
    """Why this machine cannot run or emulate the class, or None when it can."""
    if name == "native":
        return None
    try:
        _command(CLASSES[name])
    except RuntimeEnvironmentError as exc:
        return exc.message
    return None


@dataclass(frozen=True)
class Runner:
    """How to start a Python of the class: the command line up to the interpreter, and its environment."""

    argv: list[str]
    env: dict[str, str]
    how: str
    runtime: str = ""


def _command(machine: MachineClass) -> tuple[list[str], str]:
    """The command prefix that runs this interpreter as a machine of the class, and how it is described.
    Another architecture's class is checked for its tools only here; ``_runner`` prepares its interpreter."""
    if platform.machine() != machine.arch:
        if machine.qemu_cpu is None or platform.machine() != "x86_64":
            raise RuntimeEnvironmentError(
                f"{machine.name} needs an {machine.arch} host to emulate; this is {platform.machine()}."
            )
        from mlpack import foreign

        foreign.check_tools(machine.arch)
        return [], f"qemu-{machine.arch} -cpu {machine.qemu_cpu}"
    if machine.qemu_cpu is None:
        if machine.native_feature and machine.native_feature in cpu_features():
            return [], "native (this CPU is of the class)"
        raise RuntimeEnvironmentError(
            f"QEMU cannot emulate {machine.name} ({machine.summary}), and this CPU lacks it: run mlpack verify on "
            "such a machine."
        )
    emulator = shutil.which(f"qemu-{machine.arch}")
    if emulator is None:
        raise RuntimeEnvironmentError(
            f"{machine.name} is emulated with qemu-{machine.arch}, which is not installed: apt-get install "
            f"{EMULATOR_PACKAGE}."
        )
    return [emulator, "-cpu", machine.qemu_cpu], f"qemu-{machine.arch} -cpu {machine.qemu_cpu}"


def _runner(machine: MachineClass, package: Path) -> Runner:
    """This interpreter under the emulator; for another architecture, that architecture's CPython from a
    Debian sysroot with the package's runtime wheels for it (prepared once, cached), and this mlpack."""
    prefix, how = _command(machine)
    if platform.machine() == machine.arch:
        return Runner([*prefix, sys.executable], {}, how)
    from mlpack import foreign

    root = foreign.sysroot(machine.arch)
    lock = _checked_lock(package)
    from importlib.metadata import version

    fallback = [f"{name}=={version(name)}" for name in ("onnxruntime", "numpy", "ml_dtypes")]
    site = foreign.site(machine.arch, lock, fallback)
    wheels = (
        "the runtime lock's wheels" if lock is not None else "this machine's onnxruntime, numpy, ml_dtypes pins"
    )
    argv = [shutil.which(f"qemu-{machine.arch}") or f"qemu-{machine.arch}", "-cpu", str(machine.qemu_cpu),
            "-L", str(root), str(foreign.interpreter(root))]  # fmt: skip
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(foreign.mlpack_path())]), "PYTHONNOUSERSITE": "1"}
    suite = foreign.DEBIAN_SUITES[foreign.python_version()]
    return Runner(argv, env, how, f"Debian {suite}'s CPython for {machine.arch} with {wheels}")


def _checked_lock(package: Path) -> str | None:
    """The package's runtime lock, which the class's runtime is installed from and then runs: only when the
    manifest lists it, and only with the hash the manifest gives it (it is read before verify checks the
    other files). IntegrityError when it differs."""
    from mlpack.package import RUNTIME_LOCK, open_package, read_listed

    data = read_listed(open_package(package), RUNTIME_LOCK, "no runtime is installed from it")
    if data is None:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise UsageError(
            f"{package}'s {RUNTIME_LOCK} is not UTF-8 text; no runtime is installed from it."
        ) from None
    for line in text.splitlines():  # pip obeys options in the file: --find-links, --index-url, -e, -r ...
        words = line.split("#", 1)[0].replace("\\", " ").split()
        if words and (any(w.startswith("-") and not w.startswith("--hash=") for w in words)
                      or not (words[0].startswith("--hash=") or "==" in words[0])):  # fmt: skip
            raise UsageError(
                f"{package}'s {RUNTIME_LOCK} holds {line.strip()[:80]!r}: mlpack installs another architecture's "
                "runtime only from exact pins with hashes."
            )
    return text


def start(path: str | Path, name: str, live: list[_Replayer] | None = None) -> _Replayer | MachineResult:
    """The emulated class's replay process, started: it loads its interpreter, numpy and onnxruntime (seconds
    under emulation) and reads nothing of the package until its replay asks, after the package is checked. Or,
    where the class cannot run here, its row saying why."""
    started = time.perf_counter()
    try:
        replayer = _Replayer(_runner(CLASSES[name], Path(path)), started)
    except IntegrityError as exc:  # the runtime lock to install from was changed: nothing installed or run
        return MachineResult(name, "-", "tampered", False, exc.exit_code, exc.message,
                             seconds=time.perf_counter() - started)  # fmt: skip
    except MlpackError as exc:  # no emulator, no sysroot, no wheel for the class: a row saying why
        return MachineResult(name, "-", "error", False, 4, exc.message, seconds=time.perf_counter() - started)
    except OSError as exc:  # the cache cannot be written, a tool vanished: still a row, so the others report
        message = f"preparing {name} failed: {exc.strerror or exc} ({exc.filename or 'no file'})"
        return MachineResult(name, "-", "error", False, 4, message, seconds=time.perf_counter() - started)
    if live is not None:
        live.append(replayer)
    return replayer


def verify_on(
    path: str | Path, name: str, *, strict: bool = False, threads: int | None = None,
    started: _Replayer | MachineResult | None = None, live: list[_Replayer] | None = None,
) -> MachineResult:  # fmt: skip
    """Verify the package as a machine of class ``name`` would: integrity, diffs and judging here, the replay in
    the class's process (``start``; ``started`` when the caller started it already). A class that cannot run
    here is an "error" row saying why."""
    if name == "native":
        from importlib.metadata import version

        from mlpack.verifier import verify

        began = time.perf_counter()
        report = verify(path, strict=strict, threads=threads)
        return MachineResult("native", "native", report.verdict, report.passed, report.exit_code, report.message,
                             [c.to_dict() for c in report.outputs], report.causes,
                             time.perf_counter() - began, onnxruntime=version("onnxruntime"))  # fmt: skip
    replayer = start(path, name, live) if started is None else started
    if isinstance(replayer, MachineResult):
        return replayer
    from mlpack.verifier import verify

    reported: dict[str, Any] = {}  # what the class's own process says of itself (its onnxruntime)
    with replayer:

        def replay(package: Any, settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return replayer.replay(package, settings, reported)

        # only the replay runs emulated (with the hardware profile the class sees); integrity, diffs, judging here
        report = verify(path, strict=strict, threads=threads, replay=replay)
    causes = list(report.causes)
    if report.verdict not in ("identical", "tampered", "error"):
        # under emulation /proc/cpuinfo still shows the host: the class itself is the difference that matters
        causes = [CLASSES[name].kernels, *(c for c in causes if not c.startswith("no difference"))]
    runner = replayer.runner
    return MachineResult(name, runner.how, report.verdict, report.passed, report.exit_code, report.message,
                         [c.to_dict() for c in report.outputs], causes, time.perf_counter() - replayer.started,
                         runner.runtime, reported.get("onnxruntime", ""), dict(report.proven or {}))  # fmt: skip


class _Replayer:
    """``python -m mlpack.replay`` in the class's interpreter: started when made, stopped on leaving a with
    block. It loads, then waits for one request on stdin; ``replay`` sends it. The outputs come back as an
    .npz, with the hardware profile the libraries saw there (numpy's CPU features show the emulated CPU).
    Whatever stops it is a RuntimeEnvironmentError naming the class's emulator."""

    def __init__(self, runner: Runner, started: float) -> None:
        import tempfile

        self.runner, self.started = runner, started
        self.scratch = tempfile.TemporaryDirectory(prefix="mlpack-replay-")
        try:
            self.process = subprocess.Popen([*runner.argv, "-m", "mlpack.replay"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            env=_bytecode(runner))  # fmt: skip
        except BaseException:
            self.scratch.cleanup()
            raise

    def __enter__(self) -> _Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:  # never asked (the package failed its checks), or interrupted
            self.process.kill()
        with contextlib.suppress(ValueError, OSError):  # stopped twice: from its matrix and its with block
            self.process.communicate()
        self.scratch.cleanup()

    def replay(
        self, package: Any, settings: Any, reported: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from mlpack.fileio import load_npz
        from mlpack.manifest import to_json

        out = Path(self.scratch.name) / "outputs.npz"
        request = {"package": str(package.path), "out": str(out), "settings": to_json(settings)}
        how = self.runner.how
        try:
            stdout, stderr = self.process.communicate(json.dumps(request) + "\n", timeout=900)
        except subprocess.TimeoutExpired:
            raise RuntimeEnvironmentError(f"the replay under {how} did not finish in 15 minutes.") from None
        try:
            answer = json.loads(stdout)
        except json.JSONDecodeError:  # died before it could answer (an illegal instruction, say)
            last = (stderr.strip().splitlines() or [f"exit status {self.process.returncode}"])[-1][:300]
            raise RuntimeEnvironmentError(f"the replay under {how} failed: {last}") from None
        reported.update(answer)
        if "error" in answer:
            raise RuntimeEnvironmentError(f"under {how}: {answer['error']}")
        return load_npz(out), dict(answer.get("hardware") or {})


def _bytecode(runner: Runner) -> dict[str, str]:
    """The environment that keeps the class's compiled modules in mlpack's cache (Python checks each against
    its source), and not in the source tree. Without it, a tree that holds no bytecode (an editable install
    under PYTHONDONTWRITEBYTECODE, Debian's arm64 standard library) is compiled anew under emulation on every
    replay, a tenth of its time. The first time, this interpreter, when it is the class's, compiles natively
    what the replay imports: a second here, five under emulation."""
    import hashlib

    from mlpack.options import cache_dir

    interpreter = runner.argv[-1]  # one folder per interpreter: Debian's arm64 one has this one's paths
    prefix = cache_dir("machines") / f"bytecode-{hashlib.sha256(interpreter.encode()).hexdigest()[:12]}"
    # PYTHONSAFEPATH: the working folder (which may be the package, or anything) is not on sys.path: the
    # process imports while the package is still unchecked
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONSAFEPATH": "1", **runner.env}
    fresh = not prefix.is_dir()
    try:
        prefix.mkdir(parents=True, exist_ok=True)
    except OSError:
        return env  # an unusable cache: the interpreter's own bytecode, as without mlpack
    if not os.access(prefix, os.W_OK):
        return env
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if fresh and interpreter == sys.executable:
        subprocess.run([sys.executable, "-m", "mlpack.replay"], stdin=subprocess.DEVNULL, capture_output=True,
                       env=env, timeout=600, check=False)  # fmt: skip
    return env


def verify_matrix(
    path: str | Path, machines: Sequence[str], *, strict: bool = False, threads: int | None = None,
    progress: Any = None, key: str | Path | None = None, certificate_chain: Sequence[str | Path] = (),
    require_signature: bool = False,
) -> Matrix:  # fmt: skip
    """Verify on each machine class asked for; the worst verdict is the matrix's. The signature (and, under a
    key, the provenance) is checked once, first, as verify checks it: IntegrityError when it fails."""
    chosen, left_out = resolve(machines)
    # each class is its own process (an emulator, mostly single-threaded): as many at once as there are cores.
    # The first ones start before anything else is imported or checked here, since they load for seconds; they
    # read nothing of the package until their replay asks, after these checks and verify's own. Only classes
    # of this architecture: another's runtime is installed from the package's lock, after the signature check.
    workers = max(1, min(len(chosen), os.cpu_count() or 1))
    live: list[_Replayer] = []  # every replay process of this matrix, stopped if the matrix is interrupted
    early: dict[str, _Replayer | MachineResult] = {}
    try:
        for name in chosen[:workers]:
            if name != "native" and CLASSES[name].arch == platform.machine():
                early[name] = start(path, name, live)
        from concurrent.futures import ThreadPoolExecutor, as_completed  # after the start: logging, threads

        from mlpack.package import open_package
        from mlpack.signing import check_trust

        package = open_package(path)  # a path that is no package is refused once, not per machine
        check_trust(package, key, certificate_chain, require_signature)
    except BaseException:
        for replayer in live:
            replayer.stop()
        raise
    if progress:
        progress(f"verifying on {', '.join(chosen)}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(verify_on, package.path, name, strict=strict, threads=threads, started=early.get(name),
                        live=live): name
            for name in chosen
        }  # fmt: skip
        done: dict[str, MachineResult] = {}
        try:
            for future in as_completed(futures):
                result = future.result()
                done[futures[future]] = result
                if progress:
                    progress(
                        f"{result.machine}: {result.verdict} ({result.seconds:.1f} s); {len(done)} of {len(chosen)}"
                    )
        except BaseException:  # interrupted: no class starts, the running ones stop
            pool.shutdown(wait=False, cancel_futures=True)
            for replayer in live:
                replayer.stop()
            raise
        results = [done[name] for name in chosen]
    return Matrix(str(package.path), results, strict, left_out)


EVIDENCE_FIGURES = ("name", "identical", "passed", "max_abs", "max_rel", "max_ulp", "identical_elements", "total")


def evidence(result: MachineResult, accepted: bool = False) -> dict[str, Any]:
    """What a build records of one class's replay: enough to say later whether a real machine of the class
    gives what the emulated one gave."""
    return {
        "machine": result.machine, "emulator": result.how, "runtime": result.runtime,
        "onnxruntime": result.onnxruntime, "verdict": result.verdict, "passed": result.passed,
        "accepted": accepted and not result.passed,
        "outputs": [{key: out.get(key) for key in EVIDENCE_FIGURES} for out in result.outputs],
    }  # fmt: skip


def against_evidence(
    recorded: Sequence[Mapping[str, Any]], here: str, verdict: str, outputs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """This machine's outcome against what the build proved for its class (``build --machines``), or {} when
    the build recorded nothing for it. The same bits give the same figures, so the figures are compared. Pure."""
    entry = next((e for e in recorded if e.get("machine") == here), None)
    if entry is None:
        return {}
    figures = ("name", "identical", "identical_elements", "max_ulp")
    same = verdict == entry.get("verdict") and [[o.get(k) for k in figures] for o in outputs] == [
        [o.get(k) for k in figures] for o in entry.get("outputs", [])
    ]
    built = f"{entry.get('verdict')} under {entry.get('emulator')} at build"
    return {
        "machine": here, "at_build": entry.get("verdict"), "here": verdict, "matches": same,
        "emulator": entry.get("emulator"),
        "message": f"{here}: {built}; here {verdict}, "
        + ("the same figures: this machine gives what was proven" if same else "other figures than were proven"),
    }  # fmt: skip


def failure_message(failed: Sequence[MachineResult]) -> str:
    parts = []
    for result in failed:
        outside = [f"{o['name']}: {o.get('outside', '?')} of {o['total']} outside tolerance, max abs "
                   f"{float(o['max_abs']):.3g}" for o in result.outputs if not o.get("passed")]  # fmt: skip
        parts.append(f"{result.machine} ({'; '.join(outside) or result.message})")
    return (
        f"The golden outputs do not hold on {', '.join(parts)}: loosen the tolerances if the difference is "
        "acceptable, or pass --accept-machines to package it anyway, and the manifest will say so."
    )
