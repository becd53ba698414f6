"""Package a ResNet-style image classifier (convolutions, batch norm, residual blocks) and verify it.

torchvision's models would be the usual source, but torchvision cannot be installed beside the CPU build of
torch 2.13 these machines carry, so the same architecture is written out here. The network trains for a few
steps on synthetic 32x32 images and is left in training mode on purpose: mlpack exports it in eval mode
(batch norm on its running statistics), says so, and hands it back in training mode.

  python examples/cnn/train.py [--offline]   # --offline: skip the runtime lock (no package index)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import mlpack

DIST = Path(__file__).resolve().parent / "dist"


class Block(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
            )
            if stride != 1 or channels_in != channels_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.head = nn.Linear(64, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(images)).mean(dim=(2, 3))
        return torch.softmax(self.head(features), dim=-1)


def main() -> int:
    torch.manual_seed(0)
    net = SmallResNet()
    images = torch.randn(64, 3, 32, 32)
    labels = (images.mean(dim=(1, 2, 3)) > 0).long()  # something learnable
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        optimiser.zero_grad()
        nn.functional.nll_loss(torch.log(net(images) + 1e-9), labels).backward()
        optimiser.step()
    sample = images[:8].numpy()
    package = mlpack.build(net, sample={"images": sample}, name="small-resnet", version="1", out=DIST, force=True,
                           resolve="--offline" not in sys.argv, progress=lambda step: print(f"  {step}"))  # fmt: skip
    assert net.training, "mlpack hands the model back in the mode it was in"
    print(f"built {package.path}: {package.manifest.source.details.get('note')}")

    fresh = np.random.default_rng(1).normal(size=(5, 3, 32, 32)).astype(np.float32)
    got = mlpack.load(package.path).predict({"images": fresh})["output"]
    net.eval()
    with torch.no_grad():
        native = net(torch.from_numpy(fresh)).numpy()
    worst = float(np.abs(got - native).max())
    print(f"5 new images: max abs difference from the native model {worst:.3g}")
    verified = subprocess.run([sys.executable, "-m", "mlpack", "verify", str(package.path)]).returncode
    return 0 if verified == 0 and worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
