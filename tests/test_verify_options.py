"""verify's per-run tolerances, saved outputs, and mlpack compare judging them later without the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlpack
from mlpack.errors import UsageError
from mlpack.fileio import load_npz
from mlpack.manifest import Tolerance
from mlpack.verifier import override_tolerances
from tests.conftest import CliRunner, one_sentence_error


def nudged(saved: Path, out: Path, by: float) -> Path:
    outputs = dict(np.load(saved))
    outputs["probabilities"][3] += np.array([by, -by, 0], np.float32)
    np.savez(out, **outputs)
    return out


def test_saved_outputs_are_what_the_replay_gave_and_compare_judges_them(
    package: Path, tmp_path: Path, cli: CliRunner
) -> None:
    saved = tmp_path / "here.npz"
    result = cli("verify", package, "--save-outputs", saved, "--json")
    assert result.returncode == 0, result.stderr
    golden = load_npz(package / "reference" / "outputs.npz")
    replayed = dict(np.load(saved))
    assert set(replayed) == set(golden) and all(np.array_equal(replayed[k], golden[k]) for k in golden)

    same = cli("compare", package, saved, "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["verdict"] == "identical"
    assert json.loads(same.stdout)["judged"] == "saved"

    off = nudged(saved, tmp_path / "off.npz", 0.02)
    text = cli("compare", package, off)
    assert text.returncode == 1 and "verdict: mismatch" in text.stdout
    assert "the model was not run here" in text.stdout and "passes from atol 0.02" in text.stdout
    assert "top-1 agrees" in text.stdout and "bit-identical" in text.stdout

    widened = cli("compare", package, off, "--atol", "probabilities=0.05", "--json")
    report = json.loads(widened.stdout)
    assert widened.returncode == 0 and report["verdict"] == "equivalent"
    assert report["tolerance_overrides"] == {"probabilities": {"atol": 0.05}}
    assert "Tolerances overridden for this run: probabilities atol 0.05." in report["message"]
    assert cli("compare", package, off, "--atol", "0.05", "--strict").returncode == 1  # not bit-identical


def test_verify_takes_tolerances_for_one_run(package: Path) -> None:
    report = mlpack.verify(package, atol={"probabilities": 0.5}, rtol={"": 0.1})
    assert report.verdict == "identical"
    assert report.tolerance_overrides == {"probabilities": {"rtol": 0.1, "atol": 0.5}}
    assert "label" not in report.tolerance_overrides  # a bare value leaves labels exact


def test_compare_refuses_what_it_cannot_judge(package: Path, tmp_path: Path, cli: CliRunner) -> None:
    missing = cli("compare", package, tmp_path / "none.npz")
    assert missing.returncode == 2 and "does not exist" in one_sentence_error(missing)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    junk = cli("compare", package, tmp_path / "junk.npz")
    assert junk.returncode == 2 and "is not an .npz of outputs" in one_sentence_error(junk)
    np.savez(tmp_path / "partial.npz", label=np.zeros(3, np.int64))
    partial = cli("compare", package, tmp_path / "partial.npz", "--json")
    assert partial.returncode == 1
    problems = {o["name"]: o["problem"] for o in json.loads(partial.stdout)["outputs"]}
    assert "gave no output 'probabilities'" in problems["probabilities"]
    assert "shape [3]" in problems["label"]
    (package / "model.onnx").write_bytes(b"changed")
    tampered = cli("compare", package, tmp_path / "partial.npz")
    assert tampered.returncode == 3 and "model.onnx" in tampered.stdout


@pytest.mark.parametrize(
    "atol, rtol, message",
    [
        (
            {"nope": 1.0},
            {},
            r"names 'nope', which is neither an output \(p, y\) nor an output kind \(label, probabilities\)",
        ),
        ({"": -1.0}, {}, "must be a finite number of at least 0"),
        ({}, {"p": float("inf")}, "must be a finite number of at least 0"),
    ],
)
def test_bad_overrides_are_refused(atol: dict[str, float], rtol: dict[str, float], message: str) -> None:
    tolerances = {"p": Tolerance(1e-4, 1e-3), "y": Tolerance(0, 0)}
    with pytest.raises(UsageError, match=message):
        override_tolerances(tolerances, {"p": "probabilities", "y": "label"}, atol, rtol)


def test_a_name_beats_a_kind_beats_everything() -> None:
    tolerances = {"p": Tolerance(1e-4, 1e-3), "q": Tolerance(1e-4, 1e-3), "y": Tolerance(0, 0)}
    kinds = {"p": "probabilities", "q": "probabilities", "y": "label"}
    resolved, changed = override_tolerances(tolerances, kinds, {"": 1.0, "probabilities": 2.0, "q": 3.0}, {})
    assert resolved["p"].atol == 2.0 and resolved["q"].atol == 3.0 and resolved["y"].atol == 0
    assert changed == {"p": {"atol": 2.0}, "q": {"atol": 3.0}}
    assert override_tolerances(tolerances, kinds, {"label": 1.0}, {})[1] == {"y": {"atol": 1.0}}


def test_the_tolerances_judged_with_are_shown_and_one_loosened_in_the_manifest_is_marked(
    package: Path, cli: CliRunner
) -> None:
    """An unsigned manifest can be edited without any file changing: the report shows what each output was
    judged with, and marks a tolerance over tenfold mlpack's default."""
    plain = cli("verify", package)
    assert "  tolerances   label exact-unless-tied; probabilities atol " in plain.stdout
    assert "LOOSER" not in plain.stdout
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["tolerances"]["probabilities"]["atol"] = 1.0
    (package / "mlpack.json").write_text(json.dumps(manifest))
    loosened = cli("verify", package)
    assert loosened.returncode == 0 and "integrity    every file matches the manifest" in loosened.stdout
    rtol = manifest["tolerances"]["probabilities"]["rtol"]
    assert (
        f"probabilities atol 1 rtol {rtol:.3g} (LOOSER: over 10x mlpack's default for its kind)" in loosened.stdout
    )
    data = json.loads(cli("verify", package, "--json").stdout)
    assert data["tolerances"]["probabilities"] == {"atol": 1.0, "rtol": rtol, "looser_than_default": True}
    assert data["tolerances"]["label"] == {"labels": "exact-unless-tied"}


def test_compare_checks_the_signature_and_digest_as_verify_does(
    package: Path, tmp_path: Path, cli: CliRunner
) -> None:
    """Saved outputs judged against a signed package whose manifest was loosened after signing: tampered."""
    saved = tmp_path / "outputs.npz"
    assert cli("verify", package, "--save-outputs", saved).returncode == 0
    assert cli("keygen", tmp_path / "release").returncode == 0
    assert cli("sign", package, "--key", tmp_path / "release").returncode == 0
    public = tmp_path / "release.pub"
    digest = json.loads(cli("verify", package, "--json").stdout)["digest"]
    assert cli("compare", package, saved, "--key", public, "--digest", digest).returncode == 0
    manifest = json.loads((package / "mlpack.json").read_text())
    manifest["tolerances"]["probabilities"]["atol"] = 1.0
    (package / "mlpack.json").write_text(json.dumps(manifest))
    signed = cli("compare", package, saved, "--key", public, "--json")
    assert signed.returncode == 3 and json.loads(signed.stdout)["verdict"] == "tampered"
    assert "changed since signing: mlpack.json" in json.loads(signed.stdout)["message"]
    pinned = cli("compare", package, saved, "--digest", digest, "--json")
    assert pinned.returncode == 3 and json.loads(pinned.stdout)["verdict"] == "tampered"
    (package / "mlpack.sig").unlink()
    assert cli("compare", package, saved).returncode == 0  # unsigned and unpinned: judged as it stands
    unsigned = cli("compare", package, saved, "--require-signature", "--key", public, "--json")
    assert unsigned.returncode == 3 and json.loads(unsigned.stdout)["verdict"] == "tampered"
