"""Other machine classes, reached from this box by user-mode CPU emulation (QEMU): the one table of classes,
and verify replayed under each of them.

QEMU's user mode executes the instruction semantics of the CPU model it is given and reports that model's
CPUID, on which onnxruntime (MLAS), OpenBLAS and numpy pick their kernels: the numbers are those a real machine
of the class gives. Measured here (QEMU 7.2, onnxruntime 1.32): a 256x256 MatMul+Tanh differs in 4,901 of
16,384 values under Nehalem against an AVX2/FMA host, and Haswell gives the host's bits exactly.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpack.errors import RuntimeEnvironmentError, UsageError
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


def _command(machine: MachineClass) -> tuple[list[str], str]:
    """The command prefix that runs this interpreter as a machine of the class, and how it is described."""
    if platform.machine() != machine.arch:
        raise RuntimeEnvironmentError(
            f"{machine.name} needs an {machine.arch} host to emulate; this is {platform.machine()}."
        )
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


def verify_on(path: str | Path, name: str, *, strict: bool = False, threads: int | None = None) -> MachineResult:
    """Verify the package as a machine of class ``name`` would: this interpreter under the emulator, running
    ``mlpack verify --json``. A class that cannot run here is an "error" row saying why."""
    started = time.perf_counter()
    if name == "native":
        from mlpack.verifier import verify

        report = verify(path, strict=strict, threads=threads)
        return MachineResult("native", "native", report.verdict, report.passed, report.exit_code, report.message,
                             [c.to_dict() for c in report.outputs], report.causes,
                             time.perf_counter() - started)  # fmt: skip
    machine = CLASSES[name]
    try:
        prefix, how = _command(machine)
    except RuntimeEnvironmentError as exc:
        return MachineResult(name, "-", "error", False, exc.exit_code, exc.message)
    argv = [*prefix, sys.executable, "-m", "mlpack", "verify", str(path), "--json",
            *(["--strict"] if strict else []), *(["--threads", str(threads)] if threads else [])]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return MachineResult(name, how, "error", False, 4, f"verify under {how} did not finish in 15 minutes.")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:  # died before it could answer (an illegal instruction, say)
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
        return MachineResult(name, how, "error", False, 4, f"verify under {how} failed: {last}",
                             seconds=time.perf_counter() - started)  # fmt: skip
    if "verdict" not in report:  # refused before judging: {"error": sentence, "exit_code": n}
        return MachineResult(name, how, "error", False, int(report.get("exit_code", 4)), str(report.get("error")))
    verdict = report["verdict"]
    causes = list(report.get("causes", []))
    if verdict not in ("identical", "tampered"):
        # under emulation /proc/cpuinfo still shows the host: the class itself is the difference that matters
        causes = [machine.kernels, *(c for c in causes if not c.startswith("no difference"))]
    return MachineResult(name, how, verdict, bool(report["passed"]), int(report["exit_code"]), str(report["message"]),
                         list(report.get("outputs", [])), causes, time.perf_counter() - started)  # fmt: skip


def verify_matrix(
    path: str | Path, machines: Sequence[str], *, strict: bool = False, threads: int | None = None,
    progress: Any = None,
) -> Matrix:  # fmt: skip
    """Verify on each machine class asked for; the worst verdict is the matrix's."""
    from mlpack.package import open_package

    package = open_package(path)  # a path that is no package is refused once, not per machine
    chosen, left_out = resolve(machines)
    results = []
    for name in chosen:
        if progress:
            progress(f"verifying on {name}")
        results.append(verify_on(package.path, name, strict=strict, threads=threads))
    return Matrix(str(package.path), results, strict, left_out)
