"""A CPython of another architecture, run on this one by QEMU user mode: a Debian sysroot holding only the
interpreter and the C libraries wheels link against, and the package's runtime wheels for that architecture.

No root, no binfmt_misc and no chroot: ``qemu-aarch64 -L SYSROOT SYSROOT/usr/bin/python3.11`` finds the
interpreter's loader and libraries under SYSROOT, because QEMU resolves an absolute path under -L first. The
sysroot is unpacked by ``mmdebstrap --variant=extract`` (no maintainer scripts, so nothing runs under
emulation: about 5 s), the wheels come from the package's hashed runtime lock (``pip install --target
--platform``), and mlpack itself, pure Python, is this mlpack. Both are cached by what made them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlpack.errors import RuntimeEnvironmentError

# CPython minor version → the Debian release that ships it: the wheels are for this interpreter's ABI
DEBIAN_SUITES = {(3, 11): "bookworm", (3, 13): "trixie"}
DEBIAN_ARCH = {"aarch64": "arm64"}
SYSROOT_PACKAGES = ("python3.{minor}-minimal", "libpython3.{minor}-stdlib", "libstdc++6", "libgcc-s1")
# What onnxruntime's cpuinfo reads at import. Under QEMU 7.2 user mode /proc/cpuinfo is the host's (x86 lines
# an Arm parser cannot read, and onnxruntime crashes on import); the sysroot's copy, found first under -L,
# describes one core of the emulated class instead. numpy and MLAS take their features from HWCAP, which
# QEMU sets from -cpu.
NEOVERSE_N1_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


def describe_cpu(root: Path, arch: str) -> None:
    """/proc/cpuinfo and the CPU lists of /sys for one emulated core, under ``root`` (found first under -L)."""
    if arch != "aarch64":
        return
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(NEOVERSE_N1_CPUINFO)
    cpus = root / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0\n")


def python_version() -> tuple[int, int]:
    return sys.version_info[0], sys.version_info[1]


def check_tools(arch: str) -> None:
    """One sentence naming the apt packages when this machine cannot prepare a CPython for ``arch``."""
    if DEBIAN_ARCH.get(arch) is None:
        raise RuntimeEnvironmentError(f"mlpack has no recipe for a CPython on {arch}.")
    if python_version() not in DEBIAN_SUITES:
        raise RuntimeEnvironmentError(
            f"An {arch} CPython {'.'.join(map(str, python_version()))} has no Debian release to come from; run "
            f"mlpack under Python {' or '.join(f'{a}.{b}' for a, b in DEBIAN_SUITES)}."
        )
    if shutil.which(f"qemu-{arch}") is None:
        raise RuntimeEnvironmentError(
            f"{arch} is emulated with qemu-{arch}, which is not installed: apt-get install qemu-user."
        )
    if not sysroot_path(arch).is_dir() and shutil.which("mmdebstrap") is None:
        raise RuntimeEnvironmentError(
            f"An {arch} CPython is unpacked from Debian with mmdebstrap, which is not installed: apt-get install "
            "mmdebstrap."
        )


def sysroot_path(arch: str) -> Path:
    from mlpack.options import cache_dir

    return cache_dir("machines") / f"debian-{DEBIAN_SUITES.get(python_version(), 'none')}-{DEBIAN_ARCH[arch]}"


def interpreter(root: Path) -> Path:
    major, minor = python_version()
    return root / "usr" / "bin" / f"python{major}.{minor}"


def sysroot(arch: str) -> Path:
    """The cached Debian sysroot with this Python's minor version for ``arch``; unpacked once."""
    from mlpack.container.wheels import cached

    check_tools(arch)
    minor = python_version()[1]
    packages = ",".join(p.format(minor=minor) for p in SYSROOT_PACKAGES)

    def unpack(folder: Path) -> None:
        target = folder / "root"
        argv = ["mmdebstrap", "--quiet", "--variant=extract", f"--arch={DEBIAN_ARCH[arch]}", f"--include={packages}",
                DEBIAN_SUITES[python_version()], str(target)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0 or not interpreter(target).is_file():
            tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
            raise RuntimeEnvironmentError(f"Unpacking an {arch} CPython with mmdebstrap failed: {tail}")
        describe_cpu(target, arch)
        for moved in target.iterdir():
            moved.rename(folder / moved.name)
        target.rmdir()

    return cached(sysroot_path(arch), unpack)


def site(arch: str, lock: str | None, fallback: list[str]) -> Path:
    """The runtime wheels for ``arch``, installed into a folder for PYTHONPATH: the package's hashed runtime
    lock (its text) when it has one, else ``fallback`` (exact pins of this machine's versions), with their
    dependencies."""
    from mlpack.container.wheels import cached, manylinux, run_pip

    requirements = lock if lock is not None else "\n".join(fallback) + "\n"
    major, minor = python_version()
    key = hashlib.sha256(f"{arch} cp{major}{minor}\n{requirements}".encode()).hexdigest()[:16]
    platforms = [arg for tag in manylinux(arch) for arg in ("--platform", tag)]

    def install(folder: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="mlpack-foreign-") as tmp:
            listed = Path(tmp) / "requirements.txt"
            listed.write_text(requirements)
            run_pip(["install", "--quiet", "--disable-pip-version-check", "--no-compile", "--only-binary=:all:",
                     *platforms, "--python-version", f"{major}.{minor}", "--implementation", "cp",
                     *(["--require-hashes"] if lock is not None else []), "--target", str(folder), "-r", str(listed)],
                    f"Installing the runtime wheels for {arch}", f"{arch} and CPython {major}.{minor}")  # fmt: skip

    return cached(sysroot_path(arch).parent / f"site-{arch}-{key}", install)


def mlpack_path() -> Path:
    """A folder holding only this mlpack (a link to it), so that PYTHONPATH brings in mlpack and nothing else
    of this machine's site-packages."""
    from mlpack.options import cache_dir

    here = Path(__file__).resolve().parent
    folder = cache_dir("machines") / f"mlpack-{hashlib.sha256(str(here).encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "mlpack"
    if not link.is_symlink() or link.resolve() != here:
        staged = folder / f".mlpack-{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(here, target_is_directory=True)
        staged.replace(link)
    return folder
