"""Image size and build time of mlpack containerize, against published peers and against its own rebuild.

Needs a container engine at DOCKER_HOST (Docker, or Podman's API service: see docs/design.md "Containers") holding the base
image given by --base, and for the daemonless engine a rootfs tar (--rootfs, e.g. from mmdebstrap).
Published peers (their own reports, not measured here): MLflow's scikit-learn image about 1 GB after its
slimming; Cog's python-slim ResNet image 1.94 GB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import conclude, iris_forest

import mlpack

MLFLOW_IMAGE_BYTES = 1.0e9
COG_IMAGE_BYTES = 1.94e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="localhost/mlpack-test-base:bookworm")
    parser.add_argument(
        "--rootfs", default=str(Path("~/.cache/mlpack-test/bookworm-python3-1700000000.tar").expanduser())
    )
    args = parser.parse_args()

    import docker

    from mlpack.container.engine import containerize
    from mlpack.container.oci import write_image

    engine = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        model, x_test = iris_forest()
        package = mlpack.build(
            model, sample=x_test, name="bench-forest", out=tmp, force=True
        )  # with its runtime lock
        engine.images.remove("localhost/bench/forest:1", force=True) if engine.images.list(
            "localhost/bench/forest"
        ) else None
        timings = []
        for cache in (False, True):  # a cold build (no cached layers), then a rebuild with nothing changed
            started = time.perf_counter()
            result = containerize(package.path, tag="localhost/bench/forest:1", base=args.base, cache=cache)
            timings.append((time.perf_counter() - started, result.seconds))
        base_layers = {layer["Id"] for layer in engine.api.history(args.base)}
        history = engine.api.history(result.image_id)
        runtime = sum(layer["Size"] for layer in history if layer["Id"] not in base_layers)
        total = sum(layer["Size"] for layer in history)
        print(
            f"docker engine: first build {timings[0][0]:.1f} s {timings[0][1]}, repeat {timings[1][0]:.1f} s {timings[1][1]}"
        )
        print(
            f"  image {total / 1e6:.0f} MB = base {(total - runtime) / 1e6:.0f} MB + runtime and package {runtime / 1e6:.0f} MB"
        )
        print(
            f"  vs MLflow's scikit-learn image (~1 GB): {total / MLFLOW_IMAGE_BYTES:.2f}x; vs Cog's ResNet image "
            f"(1.94 GB): {total / COG_IMAGE_BYTES:.2f}x"
        )
        started = time.perf_counter()
        written = write_image(package.path, Path(tmp) / "oci", args.rootfs)
        print(
            f"oci engine: {time.perf_counter() - started:.1f} s, compressed layers {written.layers}, digest {written.digest}"
        )
        conclude("runtime layer above the base (MB)", runtime / 1e6, 200, " MB")
        conclude("repeat build / first build", timings[1][0] / timings[0][0], 0.5, "x")


if __name__ == "__main__":
    main()
