"""Peak memory of `mlpack verify --json` on a package that holds a 1 GiB file, against the same package without it.

Integrity checking hashes every listed file; done in chunks, a large file must not raise peak RSS by anything
like its size. Each measurement runs verify under a fresh wrapper process whose RUSAGE_CHILDREN max RSS is the
peak of verify alone. Target: the growth stays below 5% of the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import MLPACK, build_iris, conclude, median

from mlpack.fileio import canonical_json

BLOB = "reference/blob.bin"
BLOB_BYTES = 1 << 30
CHUNK_BYTES = 16 << 20
TARGET_FRACTION = 0.05

# Runs verify and reports its peak RSS (KiB on Linux) and wall time; the wrapper's own RSS is not counted.
WRAPPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": result.returncode, "peak_kib": peak, "seconds": seconds, "stdout": result.stdout}))
"""


def add_blob(pkg: Path) -> None:
    """Write a 1 GiB file into the package and list it in the manifest with its sha256."""
    digest = hashlib.sha256()
    chunk = bytearray(hashlib.shake_256(b"mlpack").digest(CHUNK_BYTES))  # incompressible, no RNG state
    with open(pkg / BLOB, "wb") as f:
        for i in range(BLOB_BYTES // CHUNK_BYTES):
            chunk[:8] = i.to_bytes(8, "little")  # every chunk differs
            digest.update(chunk)
            f.write(chunk)
    manifest = json.loads((pkg / "mlpack.json").read_text())
    manifest["files"][BLOB] = digest.hexdigest()
    (pkg / "mlpack.json").write_bytes(canonical_json(manifest))


def measure(pkg: Path) -> tuple[float, float]:
    """Peak RSS in MiB and wall seconds of one `mlpack verify PKG --json`, which must pass."""
    wrapped = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(MLPACK), "verify", str(pkg), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(wrapped.stdout)
    report = json.loads(result["stdout"]) if result["stdout"].strip() else {}
    if result["rc"] != 0 or not report.get("passed"):
        sys.exit(f"verify failed on {pkg} (exit {result['rc']}): {result['stdout'][-2000:]}")
    return result["peak_kib"] / 1024, result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measurements of each package (default 3)")
    parser.add_argument("--tmp", default="/tmp", help="where the temporary packages go (default /tmp)")
    args = parser.parse_args()

    free = shutil.disk_usage(args.tmp).free
    if free < 2 * BLOB_BYTES:
        sys.exit(f"{args.tmp} has {free / 2**30:.1f} GiB free; this benchmark needs 2 GiB.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-hash-memory-", dir=args.tmp))
    try:
        plain = build_iris(tmp, name="plain")
        big = tmp / "big-1"
        shutil.copytree(plain, big)
        add_blob(big)
        measure(plain)  # warm-up: .pyc files and page cache
        peaks: dict[str, list[float]] = {"plain": [], "blob": []}
        seconds: dict[str, list[float]] = {"plain": [], "blob": []}
        for _ in range(args.runs):
            for label, pkg in (("plain", plain), ("blob", big)):
                peak, wall = measure(pkg)
                peaks[label].append(peak)
                seconds[label].append(wall)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"mlpack verify --json, {args.runs} interleaved runs each, medians:")
    print(f"  without blob   peak RSS {median(peaks['plain']):7.1f} MiB   wall {median(seconds['plain']):6.2f} s")
    print(f"  with 1 GiB     peak RSS {median(peaks['blob']):7.1f} MiB   wall {median(seconds['blob']):6.2f} s")
    growth = median(peaks["blob"]) - median(peaks["plain"])
    fraction = growth / (BLOB_BYTES / 2**20)
    print(f"growth {growth:.1f} MiB = {fraction:.2%} of the file's {BLOB_BYTES / 2**20:.0f} MiB")
    extra = median(seconds["blob"]) - median(seconds["plain"])
    print(f"extra wall time to hash the 1 GiB file (warm page cache): {extra:.2f} s")
    conclude("peak RSS growth / file size", fraction * 100, TARGET_FRACTION * 100, "%")


if __name__ == "__main__":
    main()
