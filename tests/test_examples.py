"""The PyTorch examples a newcomer meets in README, run end to end as scripts (offline: no package index)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "example, expected",
    [
        ("transformers", ["inputs {'input_ids': ['batch', 'axis1'], 'attention_mask': ['batch', 'axis1']}",
                          "outputs ['logits']", "sequence length 40: max abs difference"]),
        ("cnn", ["exported in eval mode, then put back in training mode", "5 new images: max abs difference"]),
    ],
)  # fmt: skip
def test_example_builds_verifies_and_predicts_like_the_native_model(example: str, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example / "train.py"), "--offline"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for phrase in expected:
        assert phrase in result.stdout, result.stdout
    assert "verdict: identical" in result.stdout
