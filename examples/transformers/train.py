"""Package a small BERT sequence classifier as a transformers user holds it, and verify it.

The model is made from a BertConfig with random weights: nothing is downloaded. It takes input_ids and
attention_mask, with the batch and the sequence length dynamic (dynamic_shapes), and returns a Hugging Face
ModelOutput whose `logits` becomes the package's output name. The package is then asked for a sequence length
the sample never had, and its answer checked against the native model called with the same names.

  python examples/transformers/train.py [--offline]   # --offline: skip the runtime lock (no package index)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification

import mlpack

DIST = Path(__file__).resolve().parent / "dist"


def tokens(rng: np.random.Generator, batch: int, length: int) -> dict[str, np.ndarray]:
    ids = rng.integers(0, 1000, (batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, length // 2 :] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


def main() -> int:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, num_labels=3)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    rng = np.random.default_rng(0)
    sample = tokens(rng, 8, 16)
    package = mlpack.build(
        model, sample=sample, name="bert-tiny", version="1", out=DIST, force=True,
        resolve="--offline" not in sys.argv,
        dynamic_shapes={"input_ids": [1], "attention_mask": [1]},  # the sequence length, shared by both
    )  # fmt: skip
    inputs = {spec.name: list(spec.shape) for spec in package.manifest.model.inputs}
    print(f"built {package.path}: inputs {inputs}, outputs {[o.name for o in package.manifest.model.outputs]}")

    fresh = tokens(rng, 3, 40)  # a batch and a length the sample never had
    got = mlpack.load(package.path).predict(fresh)["logits"]
    with torch.no_grad():
        native = model(**{name: torch.from_numpy(value) for name, value in fresh.items()}).logits.numpy()
    worst = float(np.abs(got - native).max())
    print(f"sequence length 40: max abs difference from the native model {worst:.3g}")
    verified = subprocess.run([sys.executable, "-m", "mlpack", "verify", str(package.path)]).returncode
    return 0 if verified == 0 and worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
