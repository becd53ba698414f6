"""verify's likely causes (verifier.likely_causes), fed by the real, pure hardware.diff and environment.diff."""

from __future__ import annotations

import copy
from typing import Any

from mlpack import environment, hardware
from mlpack.environment import Distribution
from mlpack.verifier import likely_causes

NO_DIFFERENCE = (
    "no difference in the runtime, environment or hardware was found: suspect the model's own "
    "nondeterminism, or reference outputs altered before the manifest was written"
)


def built_profile() -> dict[str, Any]:
    """A hardware.json as `mlpack build` records it."""
    return {
        "format": 1,
        "blas": ["openblas 0.3.27 Haswell pthreads"],
        "cpu": {
            "arch": "x86_64",
            "flags_count": 92,
            "logical_cores": 8,
            "model": "Intel Xeon Gold 6230",
            "numeric_flags": ["avx", "avx2", "avx512f", "fma", "sse4_2"],
            "physical_cores": 4,
            "vendor": "GenuineIntel",
        },
        "gpus": [],
        "memory_bytes": 34359738368,
        "numpy": {"baseline": ["X86_V2"], "dispatch": ["X86_V3", "X86_V4"], "version": "2.1.0"},
        "onnxruntime": {"device": "CPU", "providers": ["CPUExecutionProvider"], "version": "1.20.1"},
        "os": {"distribution": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0", "system": "Linux"},
        "python": {"implementation": "CPython", "version": "3.11.7"},
    }


def dist(name: str, version: str) -> Distribution:
    return Distribution(name=name, version=version, record_sha256=None, direct_url=None)


PINS = {"numpy": "2.1.0", "onnxruntime": "1.20.1", "packaging": "24.2"}


def installed(**versions: str) -> dict[str, Distribution]:
    return {name: dist(name, versions.get(name, pin)) for name, pin in PINS.items()}


def causes(
    here: dict[str, Any] | None = None,
    env_here: dict[str, Distribution] | None = None,
    recorded: int = 1,
    threads: int = 1,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> list[str]:
    env_diff = environment.diff(PINS, {}, installed() if env_here is None else env_here)
    hw_diff = hardware.diff(built_profile(), built_profile() if here is None else here)
    return likely_causes(env_diff, hw_diff, recorded, threads, providers)


def test_no_difference_falls_back_to_one_sentence() -> None:
    assert causes() == [NO_DIFFERENCE]
    assert likely_causes({}, [], 1, 1) == [NO_DIFFERENCE]


def test_context_that_cannot_move_numbers_is_no_cause() -> None:
    here = built_profile()
    here["memory_bytes"] = 8 << 30
    here["os"]["kernel"] = "6.8.0"
    here["python"]["version"] = "3.11.9"
    here["cpu"]["flags_count"] = 120
    assert causes(here) == [NO_DIFFERENCE]


def test_a_thread_count_replay_is_named_first() -> None:
    here = built_profile()
    here["cpu"]["model"] = "AMD EPYC 7B13"
    found = causes(here, recorded=1, threads=4)
    assert found[0] == (
        "replayed with 4 intra-op threads instead of the recorded 1: "
        "tree ensembles and reductions sum in another order"
    )
    assert any("another CPU model" in cause for cause in found[1:])


def test_runtime_lock_version_changes_are_named_with_why() -> None:
    found = causes(env_here=installed(onnxruntime="1.21.0", numpy="2.2.1"))
    assert found == [
        "numpy 2.2.1 here vs 2.1.0 at build: it prepares the inputs and outputs",
        "onnxruntime 1.21.0 here vs 1.20.1 at build: its kernels and graph optimisations change between releases",
    ]


def test_other_runtime_packages_and_missing_ones() -> None:
    here = installed(packaging="25.0")
    del here["numpy"]
    found = causes(env_here=here)
    assert "numpy missing here vs 2.1.0 at build: it prepares the inputs and outputs" in found
    assert "packaging 25.0 here vs 24.2 at build: it is part of the runtime lock" in found


def test_the_onnxruntime_version_from_the_hardware_profile_when_the_lock_does_not_say() -> None:
    here = built_profile()
    here["onnxruntime"]["version"] = "1.22.0"
    found = causes(here)
    assert found == [
        "onnxruntime 1.22.0 here vs 1.20.1 at build: its kernels and graph optimisations change between releases"
    ]


def test_the_onnxruntime_version_is_named_once_when_both_say_it() -> None:
    here = built_profile()
    here["onnxruntime"]["version"] = "1.22.0"
    found = causes(here, env_here=installed(onnxruntime="1.22.0"))
    assert len([cause for cause in found if cause.startswith("onnxruntime ")]) == 1


def test_vector_extension_differences_name_both_sides() -> None:
    here = built_profile()
    here["cpu"]["numeric_flags"] = ["avx", "avx2", "avx512_vnni", "fma", "sse4_2"]
    found = causes(here)
    assert found == [
        "the CPU's vector extensions differ (only at build: avx512f; only here: avx512_vnni): "
        "onnxruntime and BLAS pick other kernels"
    ]
    here["cpu"]["numeric_flags"] = ["avx", "avx2", "fma", "sse4_2"]
    assert "(only at build: avx512f; only here: none)" in causes(here)[0]


def test_cpu_arch_providers_blas_gpus_and_numpy_dispatch() -> None:
    here = built_profile()
    here["cpu"]["vendor"] = "AuthenticAMD"
    here["cpu"]["arch"] = "aarch64"
    here["onnxruntime"]["providers"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    here["blas"] = ["openblas 0.3.28 Zen pthreads"]
    here["numpy"]["dispatch"] = ["X86_V3"]
    here["gpus"] = [{"name": "NVIDIA H200"}]
    found = causes(here)
    assert found[0] == "another CPU vendor (GenuineIntel at build, AuthenticAMD here)"
    assert "another architecture (x86_64 at build, aarch64 here)" in found
    assert any(cause.startswith("other onnxruntime execution providers") for cause in found)
    assert any(cause.startswith("another BLAS build") for cause in found)
    assert any(cause.startswith("numpy dispatches to other SIMD code") for cause in found)
    # the session runs on the CPU: a GPU moves none of its numbers; a session on CUDA it does
    assert not any(cause.startswith("another GPU") for cause in found)
    on_gpu = causes(here, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert any(cause.startswith("another GPU") for cause in on_gpu)
    assert NO_DIFFERENCE not in found


def test_the_cpu_comes_before_runtime_packages_that_compute_nothing() -> None:
    """As seen on a real Xeon with AVX-512 verifying a package built on an AVX2 EPYC: the runtime lock's
    packaging and threadpoolctl differed too, and were listed first; the kernels the CPU picks lead now."""
    here = built_profile()
    here["cpu"]["numeric_flags"] = ["avx", "avx2", "avx512f", "avx512_fp16", "fma", "sse4_2"]
    found = causes(here, env_here=installed(packaging="24.1"))
    assert found[0].startswith("the CPU's vector extensions differ (only at build: none; only here: avx512_fp16)")
    assert found[-1] == "packaging 24.1 here vs 24.2 at build: it is part of the runtime lock"
    assert causes(here, env_here=installed(onnxruntime="1.21.0", packaging="24.1"))[0].startswith(
        "onnxruntime 1.21.0"
    )


def test_logical_cores_count_only_when_the_thread_count_is_the_same() -> None:
    here = built_profile()
    here["cpu"]["logical_cores"] = 2
    assert causes(here) == ["2 logical cores here vs 8 at build"]
    found = causes(here, recorded=1, threads=2)
    assert len(found) == 1 and found[0].startswith("replayed with 2 intra-op threads")


def test_causes_are_ordered_likeliest_first() -> None:
    here = built_profile()
    here["cpu"]["numeric_flags"] = ["avx", "sse4_2"]
    here["cpu"]["model"] = "Other"
    found = causes(here, env_here=installed(onnxruntime="1.21.0"), recorded=2, threads=1)
    assert [cause.split(" ")[0] for cause in found] == ["replayed", "onnxruntime", "the", "another"]
    assert found[2].startswith("the CPU's vector extensions differ")
    assert found[3].startswith("another CPU model")


def test_likely_causes_does_not_change_its_inputs() -> None:
    env_diff = environment.diff(PINS, {}, installed(numpy="2.2.0"))
    hw_diff = hardware.diff(built_profile(), {**built_profile(), "gpus": ["x"]})
    before = copy.deepcopy((env_diff, hw_diff))
    likely_causes(env_diff, hw_diff, 1, 3)
    assert (env_diff, hw_diff) == before
