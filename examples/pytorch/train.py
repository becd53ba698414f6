"""Train a small PyTorch classifier on iris, package it (dynamo exporter, dynamic batch), verify it.

The same network also goes through the CLI as a torch.export program (.pt2), as a release job would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_iris

import mlpack

DIST = Path(__file__).resolve().parent / "dist"


class IrisNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(x), dim=-1)


def main() -> int:
    torch.manual_seed(0)
    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    net = IrisNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(net(inputs)), targets)
        loss.backward()
        optimiser.step()
    net.eval()
    accuracy = (net(inputs).argmax(dim=1) == targets).float().mean().item()
    print(f"iris-net accuracy {accuracy:.3f}")

    package = mlpack.build(net, sample=X[::5], name="iris-net", version="1", out=DIST, force=True)
    print(f"built {package.path} with the {package.manifest.source.details['exporter']} exporter")

    program = torch.export.export(net, (inputs[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    DIST.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, DIST / "iris-net.pt2")
    np.save(DIST / "sample.npy", X[::5])
    cli = [sys.executable, "-m", "mlpack"]
    subprocess.run([*cli, "build", str(DIST / "iris-net.pt2"), "--sample", str(DIST / "sample.npy"),
                    "--name", "iris-net-pt2", "--out", str(DIST), "--force", "--quiet"], check=True)  # fmt: skip
    failures = sum(
        subprocess.run([*cli, "verify", str(DIST / n)]).returncode != 0 for n in ("iris-net-1", "iris-net-pt2-1")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
