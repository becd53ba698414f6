"""A profile of the machine: what can change a model's numbers (CPU, ISA, BLAS, runtime, GPU) and context.

/proc/cpuinfo is read directly: py-cpuinfo takes over a second and verify must stay fast.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path
from typing import Any

# ISA extensions that select different kernels in onnxruntime, numpy and BLAS.
NUMERIC_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
    "asimd",
    "asimddp",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)


def _cpuinfo() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    physical, core = "", ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
        if key and key not in first:
            first[key] = value
    flags = (first.get("flags") or first.get("Features") or "").split()
    return {
        "arch": platform.machine(),
        "vendor": first.get("vendor_id") or first.get("CPU implementer") or "unknown",
        "model": first.get("model name") or first.get("CPU part") or platform.processor() or "unknown",
        "logical_cores": os.cpu_count() or 1,
        "physical_cores": len(cores) or os.cpu_count() or 1,
        "numeric_flags": sorted(flag for flag in flags if flag in NUMERIC_FLAGS),
        "flags_count": len(flags),
    }


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os() -> dict[str, str]:
    pretty = ""
    os_release = Path("/etc/os-release")
    if os_release.exists():
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    libc, libc_version = platform.libc_ver()
    return {
        "system": platform.system(),
        "distribution": pretty,
        "kernel": platform.release(),
        "libc": f"{libc} {libc_version}".strip(),
    }


def _python() -> dict[str, str]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
    }


def _numpy() -> dict[str, Any]:
    import numpy as np
    from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]

    return {
        "version": np.__version__,
        "baseline": list(umath.__cpu_baseline__),
        "dispatch": sorted(set(umath.__cpu_dispatch__) & cpu_features()),
    }


def cpu_features() -> set[str]:
    """The CPU features numpy's dispatch sees (from CPUID or HWCAP): what an emulated CPU reports."""
    from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]

    return {name for name, present in umath.__cpu_features__.items() if present}


def level() -> str:
    """The micro-architecture level as the numeric libraries see it (numpy's CPU features, from CPUID or
    HWCAP), not /proc/cpuinfo, which shows the host's flags under emulation and in some VMs: x86-64-v4
    (AVX-512), x86-64-v3 (AVX2, FMA), x86-64-avx (AVX only), x86-64-v2 (SSE4.2), or aarch64 with SVE noted."""
    features = cpu_features()
    arch = platform.machine().lower()
    if arch in ("x86_64", "amd64"):
        for name, needs in (
            ("x86-64-v4", {"AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"}),
            ("x86-64-v3", {"AVX2", "FMA3"}),
            ("x86-64-avx", {"AVX"}),
            ("x86-64-v2", {"SSE42", "POPCNT"}),
        ):
            if needs <= features:
                return name
        return "x86-64"
    if arch in ("aarch64", "arm64"):
        return "aarch64+sve" if "SVE" in features else "aarch64"
    return arch


def _blas() -> list[str]:
    """numpy's own BLAS only: what else is loaded depends on the process (scipy, sklearn's OpenMP)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl then finds)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "threading_layer")
    return sorted(
        " ".join(str(info[k]) for k in keys if info.get(k))
        for info in threadpool_info()
        if "numpy" in Path(info.get("filepath", "")).parent.name
    )


def _onnxruntime() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"version": None, "providers": [], "device": None}
    return {
        "version": ort.__version__,
        "providers": list(ort.get_available_providers()),
        "device": ort.get_device(),
    }


def _gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs through NVML's C API (no extra package); an empty list where there is none."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return []
    if nvml.nvmlInit_v2() != 0:
        return []
    try:
        buffer = ctypes.create_string_buffer(96)
        driver = buffer.value.decode() if nvml.nvmlSystemGetDriverVersion(buffer, 96) == 0 else ""
        cuda = ctypes.c_int()
        cuda_version = ""
        if nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda)) == 0:
            cuda_version = f"{cuda.value // 1000}.{cuda.value % 1000 // 10}"
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return []
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            name = ctypes.create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, name, 96)
            major, minor = ctypes.c_int(), ctypes.c_int()
            nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor))
            memory = (ctypes.c_ulonglong * 3)()  # nvmlMemory_t: total, free, used
            nvml.nvmlDeviceGetMemoryInfo(handle, memory)
            gpus.append(
                {
                    "name": name.value.decode(),
                    "compute_capability": f"{major.value}.{minor.value}",
                    "memory_bytes": int(memory[0]),
                    "driver": driver,
                    "cuda": cuda_version,
                }
            )
        return gpus
    finally:
        nvml.nvmlShutdown()


def profile(blas: bool = True) -> dict[str, Any]:
    """The hardware and low-level software that decide which numeric kernels run.

    ``blas=False`` leaves numpy's BLAS out: probing it (threadpoolctl) is a third of the profile's cost, and
    it matters where numpy computes (a native model at build), never where onnxruntime does (its own MLAS
    kernels run every replay), so verify and serve do without it.
    """
    found = {
        "format": 1,
        "cpu": {**_cpuinfo(), "level": level()},
        "memory_bytes": _memory_bytes(),
        "os": _os(),
        "python": _python(),
        "numpy": _numpy(),
        "blas": _blas() if blas else None,
        "onnxruntime": _onnxruntime(),
        "gpus": _gpus(),
    }
    return {key: value for key, value in found.items() if value is not None}


# Fields whose difference can move a model's numbers; the rest is context.
NUMERIC_FIELDS = (
    "cpu.arch",
    "cpu.level",
    "cpu.vendor",
    "cpu.model",
    "cpu.numeric_flags",
    "cpu.logical_cores",
    "blas",
    "numpy.dispatch",
    "onnxruntime.version",
    "onnxruntime.providers",
    "gpus",
)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``cpu.level``). Pure."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


def diff(built: dict[str, Any], here: dict[str, Any]) -> list[dict[str, Any]]:
    """Field-by-field differences; each says whether it can move numbers. Pure. A section the profile here
    left out (BLAS at verify) is not compared."""
    a, b = flatten({k: v for k, v in built.items() if k in here}), flatten(here)
    changes = []
    for field in sorted(
        set(a) | {f for f in b if f in a or f.split(".")[0] not in built}
    ):  # what the build recorded
        if field in ("format", "cpu.flags_count") or a.get(field) == b.get(field):
            continue
        change: dict[str, Any] = {
            "field": field,
            "built": a.get(field),
            "here": b.get(field),
            "moves_numbers": field.startswith(NUMERIC_FIELDS),
        }
        if isinstance(a.get(field), list) and isinstance(b.get(field), list):
            change["only_built"] = sorted(set(map(str, a[field])) - set(map(str, b[field])))
            change["only_here"] = sorted(set(map(str, b[field])) - set(map(str, a[field])))
        changes.append(change)
    return changes
