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


class TinyEncoder(torch.nn.Module):
    """A transformer's calling convention: token ids and a mask over a sequence of any length."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        hidden = self.layer(self.embed(input_ids))
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return {"logits": self.head(pooled), "last_hidden_state": hidden}


class Pooler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.head(pooled)
        return logits


def tokens(seed: int, batch: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), np.int64)
    mask[0, length // 2 :] = 0  # a padded row
    return {"attention_mask": mask, "input_ids": rng.integers(0, 50, (batch, length)).astype(np.int64)}


def test_a_sequence_axis_made_dynamic_takes_lengths_not_in_the_sample(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    package = mlpack.build(model, sample=tokens(7, 4, 8), name="enc", out=tmp_path, resolve=False, timings=False,
                           dynamic_shapes={"input_ids": [1], "attention_mask": [1]})  # fmt: skip
    shapes = {spec.name: spec.shape for spec in package.manifest.model.inputs}
    assert isinstance(shapes["input_ids"][1], str) and shapes["input_ids"][1] == shapes["attention_mask"][1]
    assert package.manifest.source is not None
    assert package.manifest.source.details["dynamic_axes"] == {
        "input_ids": {"1": "axis1"},
        "attention_mask": {"1": "axis1"},
    }
    assert mlpack.verify(package.path).verdict == "identical"
    loaded = mlpack.load(package.path)
    for batch, length in ((1, 13), (3, 5), (2, 31)):  # lengths and batches the sample never had
        fresh = tokens(batch * length, batch, length)
        got, expected = loaded.predict(fresh), native(model, fresh)
        np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), rtol=1e-4, atol=1e-5)
        assert got["last_hidden_state"].shape == (batch, length, 8)


def test_dynamic_axes_from_the_command_line(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    torch.manual_seed(0)
    traced = torch.jit.script(Pooler())  # scripted, not traced: a trace would fix the sequence length
    traced.save(str(tmp_path / "enc.pt"))  # type: ignore[no-untyped-call]
    sample = tokens(2, 4, 9)
    np.savez(tmp_path / "sample.npz", input_ids=sample["input_ids"], attention_mask=sample["attention_mask"])
    result = subprocess.run(
        [sys.executable, "-m", "mlpack", "build", str(tmp_path / "enc.pt"), "--sample", str(tmp_path / "sample.npz"),
         "--out", str(tmp_path / "dist"), "--no-resolve", "--no-timings", "--json",
         "--dynamic", "input_ids:1=sequence", "--dynamic", "attention_mask:1=sequence"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inputs = json.loads(result.stdout)["manifest"]["model"]["inputs"]
    assert [spec["shape"][1] for spec in inputs] == ["sequence", "sequence"]
    fresh = tokens(3, 2, 17)
    got = mlpack.load(json.loads(result.stdout)["package"]).predict(fresh)
    np.testing.assert_allclose(
        got["output"],
        traced(**{k: torch.from_numpy(v) for k, v in fresh.items()}).detach().numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "dynamic, message",
    [
        ({"input_ids": [0]}, "must be a whole number of at least 1"),
        ({"token_ids": [1]}, "not an input (input_ids, attention_mask)"),
        ({"input_ids": [2]}, "has no axis 2 to make dynamic"),
        ({"input_ids": {1: "not a name"}}, "needs a name such as 'sequence'"),
    ],
)
def test_bad_dynamic_axes_are_refused(dynamic: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mlpack.build(TinyEncoder().eval(), sample=tokens(1, 2, 4), out=tmp_path, resolve=False, timings=False,
                     dynamic_shapes=dynamic)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_tuple_sample_is_forward_in_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoInputs().eval()
    given = rows(8, "image", "tabular")
    package = mlpack.build(model, sample=(given["image"], given["tabular"]), name="tuple", out=tmp_path,
                           resolve=False, timings=False)  # fmt: skip
    assert [spec.name for spec in package.manifest.model.inputs] == ["image", "tabular"]
    got = mlpack.load(package.path).predict((given["image"], given["tabular"]))["output"]
    np.testing.assert_allclose(got, native(model, given).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError, match=r"tuple holds 4 tensors; forward\(image, tabular, scale\) takes 3"):
        mlpack.build(model, sample=(given["image"],) * 4, out=tmp_path / "four", resolve=False, timings=False)


class Branches(torch.nn.Module):
    """An `if` on a tensor's value: torch.export cannot capture it, and tracing keeps the sample's branch."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        if x.sum() > 0:
            return self.up(x)
        return self.down(x)


class EditsItsInput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        x.sub_(1.0)
        return self.linear(x)


def test_a_branch_on_a_tensor_value_is_refused_not_frozen(tmp_path: Path) -> None:
    """The legacy exporter would trace the sample's branch into the graph: every other input answered with
    the wrong layer (0.88 off). The build refuses, naming the line."""
    from mlpack.errors import ConversionError

    torch.manual_seed(0)
    with pytest.raises(
        ConversionError, match=r"forward reads a Python value from a tensor \(test_torch_inputs\.py:"
    ):
        mlpack.build(Branches(), torch.ones(3, 4), name="branches", out=tmp_path, resolve=False, timings=False)
    assert not any(tmp_path.iterdir())


def test_a_forward_that_edits_its_input_changes_neither_the_sample_nor_the_golden_inputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sample = torch.randn(6, 4)
    before = sample.clone()
    built = mlpack.build(EditsItsInput(), sample, name="inplace", out=tmp_path, resolve=False, timings=False)
    assert torch.equal(sample, before)
    golden = np.load(built.path / "reference" / "inputs.npz")
    np.testing.assert_array_equal(next(iter(golden.values())), before.numpy())
    assert mlpack.verify(built.path).verdict == "identical"


def test_a_float64_model_asks_for_float64_precision_and_then_answers_in_it(tmp_path: Path) -> None:
    """A .double() model was given a float32 copy of its sample and failed inside torch ("mat1 and mat2 must
    have the same dtype"); now one sentence says what to do, and --precision float64 keeps every bit."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).double()
    sample = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(UsageError, match=r"computes in float64 .*--precision float64"):
        mlpack.build(model, sample, name="double", out=tmp_path, resolve=False, timings=False)
    built = mlpack.build(
        model, sample, name="double", out=tmp_path, resolve=False, timings=False, precision="float64"
    )
    fresh = np.random.default_rng(1).normal(size=(7, 4))
    got = next(iter(mlpack.load(built.path).predict(fresh).values()))
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(fresh)).numpy(), rtol=0, atol=1e-12)
