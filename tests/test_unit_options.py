"""Settings (mlpack/options.py): defaults < [tool.mlpack] in pyproject.toml < explicit values, and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpack import options
from mlpack.errors import UsageError
from mlpack.options import BuildOptions, cache_dir, from_file, merge

GIVEN = {"model": "m.onnx", "sample": "s.npy"}  # the two settings every build needs


def write_project(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\n\n[tool.mlpack]\n{body}\n', encoding="utf-8"
    )
    return folder


# ---- defaults


def test_defaults_apply_when_nothing_else_is_given(tmp_path: Path) -> None:
    opts = merge(GIVEN, start=tmp_path)
    assert opts == BuildOptions(model="m.onnx", sample="s.npy")
    assert (opts.version, opts.out, opts.threads, opts.opset) == ("1", "dist", 1, 17)
    assert (opts.precision, opts.max_rows, opts.trust_pickle) == ("float32", 1024, False)
    assert opts.tolerances is None and opts.lineage == {} and opts.name is None and opts.index_url is None


def test_none_means_not_given(tmp_path: Path) -> None:
    opts = merge({**GIVEN, "threads": None, "version": None, "lineage": None}, start=tmp_path)
    assert opts.threads == options.DEFAULT_THREADS and opts.version == "1" and opts.lineage == {}


def test_no_pyproject_gives_no_file_settings(tmp_path: Path) -> None:
    assert from_file(tmp_path) == {}


def test_a_missing_model_or_sample_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^Give a MODEL and --sample, or set model and sample under \[tool"):
        merge({"model": "m.onnx"}, start=tmp_path)


# ---- pyproject.toml


def test_pyproject_values_apply_with_paths_relative_to_its_folder(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "proj",
        'model = "models/m.onnx"\nsample = "data/s.npy"\nout = "packages"\nname = "churn"\nversion = "3"\n'
        'threads = 4\nopset = 15\nprecision = "float64"\nmax-rows = 10\nindex-url = "https://example.invalid/simple"\n'
        "tolerances = 0.001\n",
    )
    opts = merge({}, start=project)
    assert opts.model == str(project.resolve() / "models/m.onnx")
    assert opts.sample == str(project.resolve() / "data/s.npy")
    assert opts.out == str(project.resolve() / "packages")
    assert (opts.name, opts.version, opts.threads, opts.opset) == ("churn", "3", 4, 15)
    assert (opts.precision, opts.max_rows, opts.tolerances) == ("float64", 10, 0.001)
    assert opts.index_url == "https://example.invalid/simple"


def test_the_nearest_pyproject_is_found_from_a_subfolder(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", 'version = "9"\nsample = "s.npy"')
    inner = project / "src" / "deep"
    inner.mkdir(parents=True)
    assert from_file(inner) == {"version": "9", "sample": str(project.resolve() / "s.npy")}


def test_the_working_folder_is_the_default_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path / "proj", "threads = 3")
    monkeypatch.chdir(project)
    assert from_file() == {"threads": 3}
    assert merge(GIVEN).threads == 3


def test_explicit_values_beat_the_file(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "proj", 'version = "3"\nthreads = 4\nprecision = "float64"\nmodel = "a.onnx"'
    )
    opts = merge({"version": "5", "threads": 2, "model": "/abs/b.onnx", "sample": "s.npy"}, start=project)
    assert (opts.version, opts.threads, opts.model, opts.precision) == ("5", 2, "/abs/b.onnx", "float64")


def test_project_false_ignores_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(write_project(tmp_path / "proj", "threads = 4\nunknown-key = 1"))
    assert merge(GIVEN, project=False).threads == 1


def test_lineage_merges_key_by_key(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", '[tool.mlpack.lineage]\nteam = "risk"\nticket = "R-1"')
    opts = merge({**GIVEN, "lineage": {"ticket": "R-2", "run": "nightly"}}, start=project)
    assert opts.lineage == {"team": "risk", "ticket": "R-2", "run": "nightly"}
    assert merge(GIVEN, start=project).lineage == {"team": "risk", "ticket": "R-1"}


def test_tolerance_tables_from_the_file(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "proj", "[tool.mlpack.tolerances.probabilities]\natol = 1e-3\nrtol = 0\nlabels = 'exact'"
    )
    assert merge(GIVEN, start=project).tolerances == {
        "probabilities": {"atol": 1e-3, "rtol": 0, "labels": "exact"}
    }


def test_trust_pickle_in_the_working_folder_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path / "proj", "trust-pickle = true")
    monkeypatch.chdir(project)
    assert from_file() == {"trust_pickle": True}
    assert merge(GIVEN).trust_pickle is True


def test_trust_pickle_in_a_parent_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = write_project(tmp_path / "proj", "trust-pickle = true")
    sub = project / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    with pytest.raises(UsageError) as caught:
        from_file()
    message = caught.value.message
    assert "trust-pickle" in message and "never inherited from a parent folder" in message
    assert str(project.resolve()) in message and message.endswith(".")
    with pytest.raises(UsageError):
        merge(GIVEN)


def test_trust_pickle_false_in_a_parent_folder_is_harmless(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "trust-pickle = false\nthreads = 2")
    (project / "sub").mkdir()
    assert from_file(project / "sub") == {"trust_pickle": False, "threads": 2}


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "thread = 2")
    with pytest.raises(UsageError, match=r"unknown key 'thread'; known: model, sample"):
        from_file(project)


@pytest.mark.parametrize(
    ("line", "key", "kind"),
    [
        ("threads = '2'", "threads", "int"),
        ("threads = true", "threads", "int"),
        ("opset = 17.0", "opset", "int"),
        ("version = 2", "version", "str"),
        ("trust-pickle = 'yes'", "trust-pickle", "bool"),
        ("trust-pickle = 1", "trust-pickle", "bool"),
        ("lineage = 'main'", "lineage", "dict"),
        ("tolerances = 'tight'", "tolerances", "table or number"),
        ("tolerances = true", "tolerances", "table or number"),
        ("model = ['a.onnx']", "model", "str"),
    ],
)
def test_wrong_types_in_the_file_are_refused(tmp_path: Path, line: str, key: str, kind: str) -> None:
    project = write_project(tmp_path / "proj", line)
    with pytest.raises(UsageError) as caught:
        from_file(project)
    assert (
        caught.value.message == f"[tool.mlpack] {key} in {project.resolve() / 'pyproject.toml'} must be a {kind}."
    )


def test_invalid_toml_is_refused_in_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mlpack\nthreads = 2\n")
    with pytest.raises(UsageError, match=r"pyproject.toml is not valid TOML: "):
        from_file(tmp_path)


def test_a_pyproject_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.mlpack]\nname = "caf\xe9"\n')
    with pytest.raises(UsageError, match=r"is not valid TOML"):
        from_file(tmp_path)


@pytest.mark.parametrize("body", ['tool = "x"\n', '[tool]\nmlpack = "fast"\n', "[tool]\nmlpack = [1, 2]\n"])
def test_a_tool_mlpack_that_is_no_table_is_refused(tmp_path: Path, body: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(UsageError, match=r"^\[tool.mlpack\] in .* must be a table\.$"):
        from_file(tmp_path)


def test_a_pyproject_without_tool_mlpack_gives_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n')
    assert from_file(tmp_path) == {}


# ---- validation of merged values


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"threads": 0}, "--threads must be a whole number of at least 1, not 0."),
        ({"threads": -3}, "--threads must be a whole number of at least 1, not -3."),
        ({"threads": True}, "--threads must be a whole number of at least 1, not True."),
        ({"threads": 2.0}, "--threads must be a whole number of at least 1, not 2.0."),
        ({"opset": 0}, "--opset must be a whole number of at least 1, not 0."),
        ({"max_rows": 0}, "--max-rows must be a whole number of at least 1, not 0."),
        ({"precision": "float16"}, "--precision must be one of float32, float64, not 'float16'."),
        ({"tolerances": -1e-3}, "The tolerance atol must be a finite number of at least 0, not -0.001."),
        ({"tolerances": float("nan")}, "The tolerance atol must be a finite number of at least 0, not nan."),
        ({"tolerances": True}, "The tolerance atol must be a finite number of at least 0, not True."),
        (
            {"tolerances": {"probabilities": {"atol": -1}}},
            "The tolerance atol of 'probabilities' must be a finite number of at least 0, not -1.",
        ),
        (
            {"tolerances": {"value": {"rtol": "0.1"}}},
            "The tolerance rtol of 'value' must be a finite number of at least 0, not '0.1'.",
        ),
        (
            {"tolerances": {"label": {"labels": "fuzzy"}}},
            "The label rule of 'label' must be one of exact-unless-tied, exact, not 'fuzzy'.",
        ),
        (
            {"tolerances": {"probabilities": {"abs": 1e-3}}},
            "The tolerances of 'probabilities' take atol, rtol and labels, not 'abs'.",
        ),
        (
            {"tolerances": {"probabilities": 1e-3}},
            "The tolerances of 'probabilities' must be a table such as {atol = 1e-5, rtol = 1e-4}, not 0.001.",
        ),
    ],
)
def test_impossible_values_are_refused(tmp_path: Path, given: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError) as caught:
        merge({**GIVEN, **given}, start=tmp_path)
    assert caught.value.message == words
    assert caught.value.exit_code == 2


def test_valid_tolerances_pass(tmp_path: Path) -> None:
    for tolerances in (0, 1e-4, {"probabilities": {"atol": 1e-3, "rtol": 0}, "label": {"labels": "exact"}}):
        assert merge({**GIVEN, "tolerances": tolerances}, start=tmp_path).tolerances == tolerances


def test_impossible_values_from_the_file_are_refused_too(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", "threads = 0")
    with pytest.raises(UsageError, match=r"^--threads must be a whole number of at least 1, not 0\.$"):
        merge(GIVEN, start=project)


def test_an_unknown_keyword_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown build option 'thread'"):
        merge({**GIVEN, "thread": 2}, start=tmp_path)


def test_cli_refuses_threads_0_with_exit_2(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((2, 4), np.float32))
    (tmp_path / "m.onnx").write_bytes(b"not checked before the settings are")
    result = subprocess.run(
        [sys.executable, "-m", "mlpack", "build", "m.onnx", "--sample", "s.npy", "--threads", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "mlpack: error: --threads must be a whole number of at least 1, not 0."
    )
    assert not (tmp_path / "dist").exists()


# ---- cache_dir


def test_cache_dir_follows_mlpack_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPACK_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("locks") == tmp_path / "mine" / "locks"


def test_cache_dir_then_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLPACK_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("wheels") == tmp_path / "xdg" / "mlpack" / "wheels"


def test_cache_dir_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLPACK_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("locks") == tmp_path / "home" / ".cache" / "mlpack" / "locks"


def test_empty_cache_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPACK_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir("x") == tmp_path / ".cache" / "mlpack" / "x"


def test_index_url_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPACK_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert options.index_url() == "https://pypi.org/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://pip.invalid/simple")
    assert options.index_url() == "https://pip.invalid/simple"
    monkeypatch.setenv("MLPACK_INDEX_URL", "https://mlpack.invalid/simple")
    assert options.index_url() == "https://mlpack.invalid/simple"
    assert options.index_url("https://given.invalid/simple") == "https://given.invalid/simple"


# ---- the Python API reads [tool.mlpack] too


def test_tool_mlpack_applies_to_the_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlpack

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    project = write_project(
        tmp_path / "proj",
        'name = "from-file"\nversion = "7"\nthreads = 2\nout = "packages"\nmax-rows = 20\n'
        '[tool.mlpack.lineage]\nteam = "risk"\nticket = "R-1"',
    )
    monkeypatch.chdir(project)
    package = mlpack.build(model, sample=X, version="8", lineage={"ticket": "R-2"}, resolve=False, timings=False)
    assert package.path == project.resolve() / "packages" / "from-file-8"
    manifest = json.loads((package.path / "mlpack.json").read_text())
    assert manifest["name"] == "from-file" and manifest["version"] == "8"  # the file's name, the caller's version
    assert manifest["runtime"]["session"]["intra_op_num_threads"] == 2
    assert manifest["reference"]["rows"] == 20
    assert manifest["lineage"]["team"] == "risk" and manifest["lineage"]["ticket"] == "R-2"
    assert sorted(os.listdir(project)) == ["packages", "pyproject.toml"]  # nothing else written


def test_machine_classes_from_the_file_and_from_flags(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", 'machines = ["x86-64-v2", "aarch64"]')
    assert merge(GIVEN, start=project).machines == ("x86-64-v2", "aarch64")
    assert merge({**GIVEN, "machines": "x86-64-avx,x86-64-v3"}, start=project).machines == (
        "x86-64-avx",
        "x86-64-v3",
    )
    with pytest.raises(UsageError, match=r"^Unknown machine class 'pentium'; choose from native, x86-64-v2"):
        merge({**GIVEN, "machines": ["pentium"]}, start=tmp_path)
    bad = write_project(tmp_path / "bad", 'machines = "x86-64-v2"')
    with pytest.raises(UsageError, match=r"\[tool.mlpack\] machines in .* must be a list"):
        merge(GIVEN, start=bad)
