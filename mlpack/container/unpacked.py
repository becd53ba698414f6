"""The release gate without an engine: an image's layers unpacked into a folder and its own CPython run on
them, natively for this machine's architecture and under QEMU user mode for another (or for another machine
class of this one). What runs is the image's files only: its interpreter and C libraries, its wheels, its
mlpack, its package; the host lends the kernel, and for another architecture the emulator.

Natively, the image's dynamic loader runs its interpreter with the image's library folders and PYTHONHOME,
and the command's absolute paths are taken inside the folder. Under QEMU, ``-L FOLDER`` makes every absolute
path resolve inside the folder first, so the command runs unchanged.
"""

from __future__ import annotations

import gzip
import io
import os
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from mlpack.container import verify_report
from mlpack.errors import EngineError
from mlpack.foreign import describe_cpu
from mlpack.oci.spec import blob_path

SPECIAL = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)  # device nodes: neither needed nor creatable


def unpack(layout: Path, manifest: Mapping[str, Any], into: Path) -> None:
    """Apply the image's layers in order into ``into``, with OCI whiteouts; device nodes are skipped."""
    for layer in manifest["layers"]:
        data = blob_path(layout, layer["digest"]).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                path = PurePosixPath(member.name.lstrip("/"))
                if path.name.startswith(".wh."):  # a whiteout: the layer below's file is gone
                    gone = into / path.parent / path.name.removeprefix(".wh.")
                    if path.name == ".wh..wh..opq":
                        shutil.rmtree(into / path.parent, ignore_errors=True)
                    elif gone.is_dir() and not gone.is_symlink():
                        shutil.rmtree(gone)
                    else:
                        gone.unlink(missing_ok=True)
                    continue
                if member.type in SPECIAL:
                    continue
                target = into / path
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()  # a later layer replaces the file
                tar.extract(member, into, filter="tar")


def inside(root: Path, path: str) -> Path:
    """``path`` as the image sees it, followed through the image's own symlinks, as a path on this machine."""
    current = PurePosixPath("/")
    parts = list(PurePosixPath(path).parts[1:])
    for _ in range(64):
        if not parts:
            return root / str(current).lstrip("/")
        current = current / parts.pop(0)
        here = root / str(current).lstrip("/")
        if here.is_symlink():
            link = PurePosixPath(os.readlink(here))
            parts = list(link.parts[1:] if link.is_absolute() else link.parts) + parts
            current = PurePosixPath("/") if link.is_absolute() else current.parent
    raise EngineError(f"{path} in the image is a loop of symlinks.")


def run(
    root: Path, config: Mapping[str, Any], argv: list[str], arch: str, cpu: str | None = None
) -> dict[str, Any]:
    """Run ``argv`` (the gate's command) from the unpacked image with its environment; the JSON report it
    prints, with its exit code. ``cpu`` (a QEMU model) emulates that class even on this architecture."""
    env = dict(item.split("=", 1) for item in (config.get("config") or {}).get("Env") or [] if "=" in item)
    env.update({"PYTHONNOUSERSITE": "1", "PYTHONWARNINGS": "ignore", "LC_ALL": "C.UTF-8"})
    python = inside(root, argv[0])
    if arch == platform.machine() and cpu is None:
        loader = next(iter(sorted((root / "usr" / "lib" / f"{arch}-linux-gnu").glob("ld-linux*.so*"))), None)
        if loader is None:
            raise EngineError(f"The image has no dynamic loader for {arch} under /usr/lib/{arch}-linux-gnu.")
        libraries = ":".join(str(root / d) for d in (f"usr/lib/{arch}-linux-gnu", "usr/lib", "lib"))
        args = [inside(root, a) if a.startswith("/") and inside(root, a).exists() else a for a in argv[1:]]
        env["PYTHONHOME"] = str(root / "usr")
        if "PYTHONPATH" in env:
            env["PYTHONPATH"] = os.pathsep.join(str(inside(root, p)) for p in env["PYTHONPATH"].split(os.pathsep))
        command = [str(loader), "--library-path", libraries, str(python), *map(str, args)]
    else:
        emulator = shutil.which(f"qemu-{arch}")
        if emulator is None:
            raise EngineError(f"Gating a {arch} image needs qemu-{arch}: apt-get install qemu-user.")
        if arch != platform.machine():  # QEMU 7.2 shows the host's cpuinfo, which another arch cannot parse
            describe_cpu(root, arch)
        command = [emulator, "-cpu", cpu or "max", "-L", str(root), str(python), *argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env, check=False)
    report = verify_report(done.stdout)
    if not report:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:300]
        report = {"verdict": "error", "passed": False, "message": f"the gate did not answer: {tail}"}
    report["exit_code"] = done.returncode
    return report
