"""Text models: a TF-IDF pipeline takes one document per row, lowercases as Python does (Unicode, through
onnxruntime's StringNormalizer under C.UTF-8, recorded in the manifest) and finds the words scikit-learn
finds, accents included. A machine without a model's locale gets exit 4 naming it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlpack
from tests.conftest import CliRunner, one_sentence_error

DOCS = ["Good movie", "bad film", "GREAT acting", "terrible plot", "Loved it", "hated it", "élan école",
        "naïve café", "über gut", "dull über film"]  # fmt: skip
LIKED = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def tfidf_model() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(1, 2))
    return make_pipeline(vectorizer, LogisticRegression()).fit(np.array(DOCS * 4), np.array(LIKED * 4))


def test_tfidf_pipeline_answers_unseen_unicode_text_as_scikit_learn(tmp_path: Path, cli: CliRunner) -> None:
    import skops.io as sio

    model = tfidf_model()
    package = mlpack.build(model, np.array(DOCS), name="reviews", out=tmp_path, resolve=False, timings=False)
    assert package.manifest.source is not None and package.manifest.source.details["locale"] == "C.UTF-8"
    assert mlpack.verify(package.path).verdict == "identical"
    fresh = np.array(["ÉCOLE ÉLAN", "Über Gut film", "NAÏVE CAFÉ good", "İstanbul straße", "DULL ÜBER"])
    got = mlpack.load(package.path).predict(fresh.reshape(-1, 1))
    np.testing.assert_array_equal(got["label"].ravel(), model.predict(fresh))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(fresh), atol=1e-5)

    sio.dump(model, tmp_path / "reviews.skops")
    np.save(tmp_path / "docs.npy", np.array(DOCS))
    trust = [a for t in sio.get_untrusted_types(file=tmp_path / "reviews.skops") for a in ("--trust-type", t)]
    built = cli("build", tmp_path / "reviews.skops", "--sample", tmp_path / "docs.npy", "--out", tmp_path / "dist",
                "--no-resolve", "--no-timings", *trust)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "needs the locale C.UTF-8" in built.stdout + built.stderr  # said at build, not only recorded
    numbers = tmp_path / "numbers.npy"
    np.save(numbers, np.zeros((4, 3)))
    refused = cli("build", tmp_path / "reviews.skops", "--sample", numbers, "--out", tmp_path / "refused", *trust)
    assert refused.returncode == 2 and "takes text, one document per row" in one_sentence_error(refused)


def test_a_machine_without_the_models_locale_is_exit_4_naming_it(tmp_path: Path, cli: CliRunner) -> None:
    """A StringNormalizer whose locale exists where the package was built (LOCPATH holds a copy of C.UTF-8
    under another name) but not where it is verified."""
    import onnx
    from onnx import TensorProto, helper

    source = Path("/usr/lib/locale/C.utf8")
    assert source.is_dir(), "Debian's libc-bin ships C.UTF-8 here"
    shutil.copytree(source, tmp_path / "locales" / "xx_XX.UTF-8")
    node = helper.make_node("StringNormalizer", ["text"], ["lower"], case_change_action="LOWER",
                            locale="xx_XX.UTF-8")  # fmt: skip
    graph = helper.make_graph(
        [node], "lower", [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("lower", TensorProto.STRING, ["N"])],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "lower.onnx")
    np.save(tmp_path / "text.npy", np.array(["ÉCOLE Ab", "Straße"]))
    with_locale = {"LOCPATH": str(tmp_path / "locales")}
    built = cli("build", tmp_path / "lower.onnx", "--sample", tmp_path / "text.npy", "--out", tmp_path / "dist",
                "--no-resolve", "--no-timings", env=with_locale)  # fmt: skip
    assert built.returncode == 0, built.stderr
    package = tmp_path / "dist" / "lower-1"
    assert list(np.load(package / "reference" / "outputs.npz")["lower"]) == ["école ab", "straße"]
    assert cli("verify", package, env=with_locale).returncode == 0
    refused = cli("verify", package)
    assert refused.returncode == 4 and "verdict: error" in refused.stdout
    assert "needs the locale xx_XX.UTF-8" in refused.stdout and "locale-gen xx_XX.UTF-8" in refused.stdout
    assert "likely causes" not in refused.stdout  # nothing in the environment diff explains it: no guess


@pytest.mark.parametrize("sample", [np.zeros((3, 2)), np.array([["a", "b"], ["c", "d"]])])
def test_a_text_model_refuses_anything_but_one_document_per_row(sample: np.ndarray, tmp_path: Path) -> None:
    from mlpack.errors import UsageError

    with pytest.raises(UsageError, match="one document per row"):
        mlpack.build(tfidf_model(), sample, out=tmp_path, resolve=False, timings=False)
