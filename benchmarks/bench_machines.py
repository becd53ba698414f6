"""Machine classes: what each emulated class costs, and how each model family drifts on it.

Seven tiny seeded models (bench_families' families: scikit-learn forest, ColumnTransformer pipeline and boosted
regressor; PyTorch MLP and CNN; XGBoost; LightGBM), each built with mlpack.build(..., resolve=False). Then:

  1. drift: the golden replay of each package under every class this machine can emulate (x86-64-v2 as
     QEMU's Nehalem, x86-64-avx as SandyBridge, x86-64-v3 as Haswell-v4, aarch64 as Neoverse-N1 with Debian's
     arm64 CPython), one verify each: identical, or equivalent/mismatch with the largest ULP distance and the
     share of bit-identical elements over the float outputs;
  2. cost: for the iris forest and the torch MLP, ``mlpack verify PKG --machine CLASS`` against ``mlpack
     verify PKG`` as a user waits for them, in rounds (native, then each class), the median of each round's
     ratio (the ratio the targets are read on: "emulated verify wall time vs native verify"); then, to show
     where a class's seconds go, the replay process alone (``python -m mlpack.replay``, interpreter start
     included: the only part of a verify that runs emulated) against the same process run natively; and
     ``mlpack.verify_matrix(PKG, ["all"])`` for the iris package as a whole (two classes at a time on two
     cores).

Targets (issue 11): x86 classes ≤ 10× native, aarch64 ≤ 30× native, `--machine all` for iris < 30 s.
The first aarch64 replay unpacks the arm64 CPython (mmdebstrap, about 5 s) and installs its wheels: an untimed
warm-up run pays for it. About eight minutes on two cores with --runs 7.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median
from bench_families import FAMILIES, Family

CLASSES = ("x86-64-v2", "x86-64-avx", "x86-64-v3", "aarch64")
TARGETS = {"x86-64-v2": 10.0, "x86-64-avx": 10.0, "x86-64-v3": 10.0, "aarch64": 30.0}


def build(family: Family, out: Path) -> Path:
    import mlpack

    slug = "".join(c if c.isalnum() else "-" for c in family.name.lower()).strip("-")[:40]
    return Path(mlpack.build(family.model, sample=family.sample, name=slug, out=out, resolve=False,
                             timings=False, force=True).path)  # fmt: skip


def drift(package: Path, name: str) -> str:
    from mlpack.machines import verify_on

    result = verify_on(package, name)
    if result.verdict == "identical":
        return "identical"
    floats = [o for o in result.outputs if o.get("max_ulp") is not None]
    if not floats:
        return f"{result.verdict} ({result.message[:60]})"
    ulp = max(int(o["max_ulp"]) for o in floats)
    same = sum(int(o.get("identical_elements", 0)) for o in floats) / max(1, sum(int(o["total"]) for o in floats))
    return f"{result.verdict}, max ulp {ulp}, {same:.0%} bit-identical"


def replay_seconds(package: Path, name: str) -> float:
    """One replay as the class runs it, timed from outside: the process verify --machine starts
    (``python -m mlpack.replay``: the interpreter, numpy and onnxruntime start, the session is made, the golden
    inputs run, the outputs come back); "native" runs the same process without an emulator."""
    from mlpack.machines import CLASSES as TABLE
    from mlpack.machines import Runner, _Replayer, _runner
    from mlpack.manifest import SessionSettings
    from mlpack.package import open_package

    runner = Runner([sys.executable], {}, "native") if name == "native" else _runner(TABLE[name], package)
    opened = open_package(package)
    started = time.perf_counter()
    with _Replayer(runner, started) as replayer:
        replayer.replay(opened, SessionSettings(), {})
    return time.perf_counter() - started


def cli_seconds(package: Path, machine: str | None) -> float:
    """What a user waits for: ``mlpack verify PKG`` natively, or with ``--machine CLASS``."""
    extra = ["--machine", machine] if machine else []
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mlpack", "verify", str(package), *extra], capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"mlpack verify {package} {' '.join(extra)} failed: {done.stdout[-400:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed replays per class and package (median)")
    parser.add_argument("--cost-only", action="store_true", help="skip the drift table (part 1)")
    args = parser.parse_args()
    from mlpack.machines import resolve, verify_matrix

    usable, left_out = resolve(["all"])
    classes = [c for c in CLASSES if c in usable]
    for name, reason in left_out.items():
        print(f"not run here: {name}: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-machines-") as tmp:
        packages = {}
        for make in FAMILIES:
            family = make()
            packages[family.name] = build(family, Path(tmp))
        if not args.cost_only:
            print("\n1. drift per family and class (golden outputs from this machine's native run)\n")
            print(f"| family | {' | '.join(classes)} |")
            print(f"| --- |{' --- |' * len(classes)}")
            for family_name, package in packages.items():
                print(f"| {family_name} | {' | '.join(drift(package, c) for c in classes)} |", flush=True)

        print(
            "\n2. cost per class: `mlpack verify PKG --machine CLASS` against `mlpack verify PKG` as a user waits"
        )
        print("   for them (median of each round's ratio: the machine's load drifts between rounds)\n")
        ratios: dict[str, float] = {}
        for family_name in ("sklearn RandomForestClassifier", "torch MLP 32-256-256-10"):
            package = packages[family_name]
            every_class = ("native", *classes)
            for c in every_class:  # warm-up: caches, the arm64 sysroot and wheels, bytecode
                cli_seconds(package, None if c == "native" else c)
            rounds = [{c: cli_seconds(package, None if c == "native" else c) for c in every_class}
                      for _ in range(args.runs)]  # fmt: skip
            row = [f"native {median([r['native'] for r in rounds]):.2f} s"]
            for c in classes:
                ratio = median([r[c] / r["native"] for r in rounds])
                ratios[c] = max(ratios.get(c, 0.0), ratio)
                row.append(f"{c} {median([r[c] for r in rounds]):.2f} s ({ratio:.1f}x)")
            print(f"{family_name}: " + ", ".join(row), flush=True)
            # where a class's seconds go: the replay process alone, against the same process run natively
            alone = [{c: replay_seconds(package, c) for c in every_class} for _ in range(args.runs)]
            print("  the replay process alone (interpreter, numpy and onnxruntime start included): "
                  + ", ".join(f"{c} {median([r[c] for r in alone]):.2f} s"
                              + ("" if c == "native" else f" ({median([r[c] / r['native'] for r in alone]):.1f}x)")
                              for c in every_class), flush=True)  # fmt: skip
        started = time.perf_counter()
        matrix = verify_matrix(packages["sklearn RandomForestClassifier"], ["all"])
        every = time.perf_counter() - started
        print(f"\nverify --machine all, iris forest: {every:.1f} s for {len(matrix.results)} classes "
              f"({matrix.verdict})")  # fmt: skip
    met = all(ratios[c] <= TARGETS[c] for c in ratios) and every < 30
    worst = ", ".join(f"{c} {ratios[c]:.1f}x" for c in ratios)
    print(
        f"target: x86 classes <= 10x and aarch64 <= 30x native, --machine all < 30 s; measured {worst}, all "
        f"{every:.1f} s: {'MET' if met else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
