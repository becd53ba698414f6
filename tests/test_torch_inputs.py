"""PyTorch models as users hold them: several inputs bound by name whatever the sample's order, outputs named
by their keys, and a model left in training mode. Every check is against the native module called by name."""

from __future__ import annotations

import itertools
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mlpack
from mlpack.errors import UsageError

Pair = namedtuple("Pair", ["score", "embedding"])


class TwoInputs(torch.nn.Module):
    """Same-shaped inputs, so that a swap is a wrong answer and not a shape error."""

    def __init__(self) -> None:
        super().__init__()
        self.image = torch.nn.Linear(4, 3)
        self.tabular = torch.nn.Linear(4, 3)

    def forward(self, image: Any, tabular: Any, scale: Any = None) -> Any:
        out = self.image(image) - 3 * self.tabular(tabular)
        return out if scale is None else out * scale


class ThreeInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Linear(2, 2) for _ in range(3))

    def forward(self, a: Any, b: Any, c: Any) -> Any:
        return {"logits": self.a(a) + 2 * self.b(b) - 5 * self.c(c), "nested": (a.sum(1), Pair(b.mean(1), c))}


class Dropout(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: Any) -> Any:
        return self.drop(self.linear(x))


def native(model: Any, sample: dict[str, np.ndarray]) -> Any:
    with torch.no_grad():
        return model(**{name: torch.from_numpy(value) for name, value in sample.items()})


def rows(seed: int, *names: str, width: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(12, width)).astype(np.float32) for name in names}


@pytest.mark.parametrize("order", list(itertools.permutations(["a", "b", "c"])), ids="".join)
def test_three_inputs_in_every_order_predict_like_the_native_model(order: tuple[str, ...], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ThreeInputs().eval()
    given = rows(1, *order, width=2)  # the dict's order is the permutation
    package = mlpack.build(model, sample=given, name="three", out=tmp_path, resolve=False, timings=False)
    assert [spec.name for spec in package.manifest.model.inputs] == ["a", "b", "c"]  # forward()'s order
    outputs = [spec.name for spec in package.manifest.model.outputs]
    assert outputs == ["logits", "nested_0", "nested_1.score", "nested_1.embedding"]
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = rows(2, *reversed(order), width=2)  # rows never seen at build, keyed in yet another order
    got = mlpack.load(package.path).predict(fresh)
    expected = native(model, fresh)
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["nested_1.embedding"], expected["nested"][1].embedding.numpy(), rtol=0, atol=0)


def test_a_swap_would_be_far_off(tmp_path: Path) -> None:
    """The check above has teeth: feeding the two inputs crosswise changes the answer by far more than any
    tolerance, so a build that bound them by position could not pass parity nor match natively."""
    torch.manual_seed(0)
    model = TwoInputs().eval()
    given = rows(3, "tabular", "image")
    package = mlpack.build(model, sample=given, name="two", out=tmp_path, resolve=False, timings=False)
    got = mlpack.load(package.path).predict(given)["output"]
    straight = native(model, given).numpy()
    crossed = native(model, {"image": given["tabular"], "tabular": given["image"]}).numpy()
    np.testing.assert_allclose(got, straight, rtol=1e-5, atol=1e-5)
    assert np.abs(got - crossed).max() > 1.0


@pytest.mark.parametrize(
    "sample, message",
    [
        ({"image": np.ones((2, 4), np.float32), "table": np.ones((2, 4), np.float32)},
         "names the input 'table', which is not a parameter of forward(image, tabular, scale)"),
        ({"tabular": np.ones((2, 4), np.float32)}, "gives no 'image', which forward(image, tabular, scale) needs"),
    ],
    ids=["unknown-name", "missing-name"],
)  # fmt: skip
def test_names_that_do_not_fit_forward_are_refused(
    sample: dict[str, np.ndarray], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        mlpack.build(TwoInputs().eval(), sample=sample, out=tmp_path, resolve=False, timings=False)
    assert refused.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_an_optional_parameter_can_be_given_out_of_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoInputs().eval()
    given = {"scale": np.full((12, 3), 2.0, np.float32), **rows(4, "tabular", "image")}
    package = mlpack.build(model, sample=given, name="scaled", out=tmp_path, resolve=False, timings=False)
    assert [spec.name for spec in package.manifest.model.inputs] == ["image", "tabular", "scale"]
    got = mlpack.load(package.path).predict(given)["output"]
    np.testing.assert_allclose(got, native(model, given).numpy(), rtol=1e-5, atol=1e-5)


def test_a_model_in_training_mode_is_exported_in_eval_mode_and_handed_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Dropout().train()
    given = rows(5, "x")
    lines: list[str] = []
    package = mlpack.build(model, sample=given, name="drop", out=tmp_path, resolve=False, timings=False,
                           progress=lines.append)  # fmt: skip
    assert model.training  # the user's object, as it was
    assert package.manifest.source is not None and "training mode" in package.manifest.source.details["note"]
    assert any(line.startswith("note: the model was in training mode") for line in lines), lines
    got = mlpack.load(package.path).predict(given)["output"]
    np.testing.assert_allclose(got, native(model.eval(), given).numpy(), rtol=1e-5, atol=1e-5)  # no dropout
    assert mlpack.verify(package.path).verdict == "identical"


@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_saved_programs_bind_a_reordered_npz_by_name(kind: str, tmp_path: Path) -> None:
    """A torch.export program takes its inputs by position and TorchScript by its schema: an .npz keyed in the
    other order still reaches each parameter by name."""
    torch.manual_seed(0)
    model = TwoInputs().eval()
    example = (torch.randn(4, 4), torch.randn(4, 4))
    if kind == "pt2":
        batch = torch.export.Dim("batch")
        program = torch.export.export(model, example, dynamic_shapes=({0: batch}, {0: batch}))
        torch.export.save(program, tmp_path / "model.pt2")
        path = tmp_path / "model.pt2"
    else:
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]  # torch leaves it untyped
        traced.save(str(tmp_path / "model.pt"))
        path = tmp_path / "model.pt"
    given = rows(6, "tabular", "image")
    np.savez(tmp_path / "sample.npz", tabular=given["tabular"], image=given["image"])
    package = mlpack.build(path, sample=tmp_path / "sample.npz", name=kind, out=tmp_path / "dist", resolve=False,
                           timings=False)  # fmt: skip
    assert [spec.name for spec in package.manifest.model.inputs] == ["image", "tabular"]
    got = mlpack.load(package.path).predict(given)
    np.testing.assert_allclose(got["output"], native(model, given).numpy(), rtol=1e-5, atol=1e-5)
    assert mlpack.verify(package.path).verdict == "identical"
