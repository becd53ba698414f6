"""mlpack diff A B: two versions of a model, a rebuild, an edited tolerance, a pushed package; the cross-replay
judged with verify's own figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from registry_fixture import Registry

import mlpack
from mlpack.fileio import canonical_json, load_npz, npz_bytes
from mlpack.manifest import SessionSettings
from mlpack.package import INPUTS, MODEL
from mlpack.reference import open_session, run
from mlpack.verifier import judge_saved
from tests.conftest import CliRunner


def forest(seed: int, out: Path, version: str) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, random_state=seed).fit(x, y)
    return Path(mlpack.build(model, sample=x[::3], name="flower", version=version, out=out, resolve=False,
                             timings=False).path)  # fmt: skip


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("diff")
    built = {"1": forest(0, out / "a", "1"), "2": forest(1, out / "b", "2")}
    # the rebuild at another time: within the same second it would be the very same package (same digest)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", "1700000000")
        built["rebuild"] = forest(0, out / "c", "1")
    return built


def test_two_versions_differ_in_weights_and_outputs(
    versions: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    done = cli("diff", versions["1"], versions["2"], "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    moved = {(c["section"], c["field"]) for c in result["changes"] if c["moves_numbers"]}
    assert ("model", "nodes with other attributes") in moved  # the trees themselves
    assert ("outputs", "flower 2 on the golden inputs of flower 1") in moved
    version = [c for c in result["changes"] if c["field"] == "version"]
    assert [(c["section"], c["a"], c["b"], c["moves_numbers"]) for c in version] == [("manifest", "1", "2", False)]

    # the cross-replay's figures are verify's: B's model run on A's golden inputs here, judged by compare
    b_on_a, a_on_b = result["cross"]
    assert b_on_a["verdict"] == "mismatch" and a_on_b["verdict"] == "mismatch"
    session = open_session(versions["2"] / MODEL, SessionSettings())
    (tmp_path / "b-on-a.npz").write_bytes(npz_bytes(run(session, load_npz(versions["1"] / INPUTS))))
    judged = judge_saved(versions["1"], tmp_path / "b-on-a.npz")
    assert b_on_a["outputs"] == json.loads(json.dumps([o.to_dict() for o in judged.outputs]))

    text = cli("diff", versions["1"], versions["2"])
    assert "moves numbers:" in text.stdout and "verdict: these differences move numbers (exit 1)" in text.stdout


def test_a_rebuild_moves_nothing(versions: dict[str, Path], cli: CliRunner) -> None:
    done = cli("diff", versions["1"], versions["rebuild"], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert not result["moves_numbers"] and all(c["verdict"] == "identical" for c in result["cross"])
    assert not [c for c in result["changes"] if c["section"] == "model"]  # the same graph, byte for byte


def test_a_loosened_tolerance_is_a_change_that_moves_numbers(
    versions: dict[str, Path], tmp_path: Path, cli: CliRunner
) -> None:
    import shutil

    edited = tmp_path / "flower-1"
    shutil.copytree(versions["1"], edited)
    manifest = json.loads((edited / "mlpack.json").read_text())
    manifest["tolerances"]["probabilities"]["atol"] = 0.5
    (edited / "mlpack.json").write_bytes(canonical_json(manifest))
    done = cli("diff", versions["1"], edited, "--json")
    assert done.returncode == 1
    (change,) = [c for c in json.loads(done.stdout)["changes"] if c["moves_numbers"]]
    assert change["field"] == "tolerances.probabilities.atol" and change["b"] == 0.5
    refused = cli("diff", versions["1"], tmp_path / "nowhere")
    assert refused.returncode == 2


@pytest.mark.registry
@pytest.mark.xdist_group("registry")
def test_a_pushed_package_is_pulled_and_compared(versions: dict[str, Path], reg: Registry, cli: CliRunner) -> None:
    assert cli("push", versions["1"], f"{reg.host}/flower").returncode == 0
    done = cli("diff", f"oci://{reg.host}/flower:1", versions["rebuild"], "--json")  # as KServe writes images
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["a"]["digest"] != result["b"]["digest"] and not result["moves_numbers"]
    assert np.all([c["verdict"] == "identical" for c in result["cross"]])


def test_the_diff_as_a_page(versions: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    from html.parser import HTMLParser

    done = cli("diff", versions["1"], versions["2"], "--html", tmp_path / "diff.html", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["moves_numbers"]  # --json stays one object
    page = (tmp_path / "diff.html").read_text()
    assert "<script" not in page and "https://" not in page and "http://" not in page
    sections: list[str] = []

    class Sections(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            sections.extend(v for k, v in attrs if tag == "section" and k == "id" and v)

    Sections().feed(page)
    assert sections == ["moves", "context", "cross"]
    assert "nodes with other attributes" in page and "flower 2 on the golden inputs of flower 1: mismatch" in page
