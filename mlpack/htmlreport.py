"""The verify report as one self-contained HTML page (``verify --html``, ``compare --html``, ``mlpack report``).

The page opens offline: its styles are inline and its plots are static SVG drawn by matplotlib (inline, text kept
as text), so it needs no script, font or network, prints, and reads on a phone. It shows the verdict first with
the package's identity and signature status; then per output the figures, an error histogram (absolute error,
log scale, the bit-identical share and the tolerance marked), golden against replayed values, the ULP
distance distribution and the worst elements with their indices, or for labels the confusion between golden
and replayed labels and the tied rows; the machine matrix when verified across machine classes; and the
environment and hardware differences, those that can move numbers first, with the likely causes.

Element-level plots need the replayed outputs (verify has them; ``mlpack report`` takes ``--outputs`` from
``verify --save-outputs``); without them the page shows the figures and says so. Rendering is pure apart from
matplotlib: the same report and arrays give the same page (no clock, fixed SVG ids).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlpack.manifest import Manifest, Tolerance
from mlpack.tensors import is_float

MAX_POINTS = 4000  # a scatter of more points says no more and weighs the page down
WORST_ROWS = 10
MAX_CLASSES = 20  # a confusion table wider than this does not fit a page; the most frequent labels are shown


def render(
    report: Mapping[str, Any], manifest: Manifest, golden: Mapping[str, np.ndarray] | None = None,
    replayed: Mapping[str, np.ndarray] | None = None, matrix: Mapping[str, Any] | None = None,
) -> str:  # fmt: skip
    """The page for a verify report (``Report.to_dict()``), the package's manifest, its golden outputs and what
    this run gave for them (both optional: figures only), and a machine matrix (``Matrix.to_dict()``)."""
    from mlpack import __version__

    overrides = report.get("tolerance_overrides") or {}
    outputs = []
    for figures in report.get("outputs", []):
        name = figures["name"]
        tol = _tolerance(manifest, name, overrides.get(name, {}))
        expected = golden.get(name) if golden is not None else None
        actual = replayed.get(name) if replayed is not None else None
        outputs.append(_output(figures, tol, expected, actual))
    from mlpack.verifier import why

    environment = report.get("environment") or {}
    hardware = [{**c, "why": why("hardware", str(c.get("field"))) if c.get("moves_numbers") else "context"}
                for c in report.get("hardware", [])]  # fmt: skip
    differences = {
        "runtime": [
            {**c, "why": why("runtime", str(c.get("name")))} for c in _packages(environment.get("runtime", []))
        ],
        "build": _packages(environment.get("build", [])),
        "hardware": sorted(hardware, key=lambda c: not c.get("moves_numbers")),
    }
    template = _environment().get_template("report.html.j2")
    return str(template.render(
        report=report, manifest=manifest, outputs=outputs, differences=differences, matrix=_matrix(matrix),
        mlpack_version=__version__, has_arrays=golden is not None and replayed is not None,
    ))  # fmt: skip


def _environment() -> Any:
    """The templates' jinja2 environment: autoescaped HTML, with the comparison-figure filter."""
    import jinja2

    from mlpack.container import templates_dir

    loader = jinja2.FileSystemLoader(str(templates_dir()))
    environment = jinja2.Environment(loader=loader, autoescape=True, keep_trailing_newline=True)
    environment.filters["figure"] = _figure_text
    return environment


def render_diff(result: Mapping[str, Any]) -> str:
    """``mlpack diff --html``: the diff's changes (what moves numbers first) and both cross-replays."""
    from mlpack import __version__

    return str(_environment().get_template("diff.html.j2").render(d=result, mlpack_version=__version__))


def _figure_text(value: Any) -> str:
    """A comparison figure for a table: 3 significant digits; "-" where there is none (labels have no error)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-" if value in (None, "") else str(value)
    return "-" if np.isnan(number) else f"{number:.3g}"


def _tolerance(manifest: Manifest, name: str, override: Mapping[str, float]) -> Tolerance:
    base = manifest.tolerances.get(name) or Tolerance(0.0, 0.0)
    return Tolerance(float(override.get("atol", base.atol)), float(override.get("rtol", base.rtol)), base.labels)


def _packages(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changed and missing packages before extra ones: a package that is not where it was locked moves numbers."""
    order = {"changed": 0, "missing": 1, "extra": 2}
    return sorted(changes, key=lambda c: (order.get(str(c.get("change")), 3), str(c.get("name"))))


def _matrix(matrix: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Machine × output: each cell the verdict of that output on that machine, with its largest ULP distance."""
    if not matrix:
        return None
    machines = list(matrix.get("machines", []))
    names: list[str] = []
    for result in machines:
        names += [o["name"] for o in result.get("outputs", []) if o["name"] not in names]
    rows = []
    for result in machines:
        by_name = {o["name"]: o for o in result.get("outputs", [])}
        cells = []
        for name in names:
            o = by_name.get(name)
            if o is None:
                cells.append({"verdict": result.get("verdict", "error"), "text": "-"})
                continue
            verdict = "identical" if o.get("identical") else "equivalent" if o.get("passed") else "mismatch"
            ulp = o.get("max_ulp")
            text = verdict if ulp in (None, 0) else f"{verdict}, {ulp} ulp"
            cells.append({"verdict": verdict, "text": text, "max_abs": o.get("max_abs")})
        rows.append({"machine": result.get("machine"), "how": result.get("how"), "verdict": result.get("verdict"),
                     "message": result.get("message"), "cells": cells, "causes": result.get("causes", [])})  # fmt: skip
    return {"names": names, "rows": rows, "verdict": matrix.get("verdict"), "left_out": matrix.get("left_out", {})}


def _output(
    figures: dict[str, Any], tol: Tolerance, expected: np.ndarray | None, actual: np.ndarray | None
) -> dict[str, Any]:
    """One output's section: its figures, and where both arrays are at hand its plots and tables."""
    total = int(figures.get("total") or 0)
    same = figures.get("identical_elements")
    section: dict[str, Any] = {
        "figures": figures, "tolerance": tol, "slug": re.sub(r"[^A-Za-z0-9_-]", "-", str(figures["name"])),
        "identical_share": (same / total) if isinstance(same, int) and total else None,
        "plots": [], "worst": [], "confusion": None,
    }  # fmt: skip
    if expected is None or actual is None or expected.shape != actual.shape or expected.size == 0:
        return section
    if figures.get("kind") == "label" or not is_float(expected.dtype):
        section["confusion"] = _confusion(expected, actual)
        return section
    errors = element_errors(expected, actual, tol.atol)
    section["plots"] = [
        ("Absolute error of each element, log scale", _error_histogram(errors, tol)),
        ("Golden against replayed values", _scatter(expected, actual)),
        ("Distance in units in the last place (ULP)", _ulp_histogram(errors)),
    ]
    section["worst"] = _worst(expected, actual, errors)
    return section


def element_errors(expected: np.ndarray, actual: np.ndarray, atol: float = 0.0) -> dict[str, np.ndarray]:
    """Per element: absolute and relative error (0 where the two are equal, NaNs in the same places
    included; inf where only one is NaN) and the ULP distance, -1 where verify does not count it either (a
    golden value within atol of zero, where a few ULPs of a tiny number are millions; or not finite). Pure."""
    from mlpack.compare import differences, ordered

    exp64, act64 = expected.astype(np.float64), actual.astype(np.float64)
    _, diff, rel = differences(exp64, act64)
    ulp = np.full(expected.shape, -1, dtype=np.int64)
    counted = np.isfinite(exp64) & np.isfinite(act64) & (np.abs(exp64) > atol)
    if expected.dtype.kind != "c" and counted.any():  # floats and bfloat16: their bits in order
        ulp[counted] = np.abs(ordered(expected[counted]) - ordered(actual[counted]))
    return {"abs": diff, "rel": rel, "ulp": ulp}


def _worst(expected: np.ndarray, actual: np.ndarray, errors: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    diff = errors["abs"].ravel()
    order = np.argsort(-np.nan_to_num(diff, posinf=np.finfo(np.float64).max), kind="stable")[:WORST_ROWS]
    rows = []
    for flat in order:
        if diff[flat] == 0:
            break
        index = tuple(int(i) for i in np.unravel_index(int(flat), expected.shape))
        rows.append({"index": list(index), "golden": float(expected.ravel()[flat]),
                     "replayed": float(actual.ravel()[flat]), "abs": float(diff[flat]),
                     "rel": float(errors["rel"].ravel()[flat]), "ulp": int(errors["ulp"].ravel()[flat])})  # fmt: skip
    return rows


def _confusion(expected: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    """Golden label × replayed label counts (the most frequent labels when there are many)."""
    gold, here = expected.ravel(), actual.ravel()
    values, counts = np.unique(np.concatenate([gold, here]), return_counts=True)
    shown = [v for _, v in sorted(zip(-counts, values.tolist(), strict=True))][:MAX_CLASSES]
    table = [[int(np.sum((gold == g) & (here == r))) for r in shown] for g in shown]
    differing = [{"index": [int(i) for i in np.unravel_index(int(k), expected.shape)], "golden": _plain(gold[k]),
                  "replayed": _plain(here[k])} for k in np.flatnonzero(gold != here)[:WORST_ROWS]]  # fmt: skip
    return {"labels": [_plain(v) for v in shown], "table": table, "agree": int(np.sum(gold == here)),
            "total": int(gold.size), "differing": differing, "more": len(values) > MAX_CLASSES}  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --- plots (matplotlib, to inline SVG) ----------------------------------------------------------------------


def _figure() -> Any:
    try:
        import matplotlib
    except ImportError:
        from mlpack.errors import UsageError

        raise UsageError(
            "The HTML report draws its plots with matplotlib: pip install 'mlpack[report]'."
        ) from None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "mlpack", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})  # fmt: skip
    return plt.subplots(figsize=(5.2, 3.0), layout="constrained")


def _svg(fig: Any) -> str:
    from matplotlib import pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # Dublin Core boilerplate: no value here
    text = re.sub(r' xmlns:(?:dc|cc|rdf)="[^"]*"', "", text)
    return text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML


def _error_histogram(errors: Mapping[str, np.ndarray], tol: Tolerance) -> str:
    diff = errors["abs"].ravel()
    nonzero = diff[(diff > 0) & np.isfinite(diff)]
    fig, ax = _figure()
    identical = int(np.sum(diff == 0))
    if nonzero.size:
        low, high = float(nonzero.min()), float(nonzero.max())
        bins = np.logspace(np.log10(low) - 0.1, np.log10(high) + 0.1, 30)
        ax.hist(nonzero, bins=bins, color="#b7791f")
        ax.set_xscale("log")
        if tol.atol > 0:
            ax.axvline(
                tol.atol,
                color="#c53030",
                linestyle="--",
                label=f"atol {tol.atol:g} (+ rtol {tol.rtol:g}·|golden|)",
            )
            ax.legend(loc="upper right", frameon=False)
    else:
        ax.text(0.5, 0.5, "no element differs", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_xlabel("absolute error")
    ax.set_ylabel("elements")
    ax.set_title(f"{identical} of {diff.size} elements bit-identical ({identical / diff.size:.1%})", loc="left")
    return _svg(fig)


def _scatter(expected: np.ndarray, actual: np.ndarray) -> str:
    gold = expected.astype(np.float64).ravel()
    here = actual.astype(np.float64).ravel()
    keep = np.isfinite(gold) & np.isfinite(here)
    gold, here = gold[keep], here[keep]
    if gold.size > MAX_POINTS:  # evenly spaced, so the same arrays always give the same picture
        pick = np.linspace(0, gold.size - 1, MAX_POINTS).astype(np.int64)
        gold, here = gold[pick], here[pick]
    fig, ax = _figure()
    differs = gold != here
    ax.scatter(gold[~differs], here[~differs], s=6, color="#2f855a", label="bit-identical", linewidths=0)
    ax.scatter(gold[differs], here[differs], s=6, color="#c05621", label="differs", linewidths=0)
    if gold.size:
        low, high = float(min(gold.min(), here.min())), float(max(gold.max(), here.max()))
        ax.plot([low, high], [low, high], color="#4a5568", linewidth=0.8)
    ax.set_xlabel("golden")
    ax.set_ylabel("replayed")
    ax.legend(loc="upper left", frameon=False)
    return _svg(fig)


def _ulp_histogram(errors: Mapping[str, np.ndarray]) -> str:
    ulp = errors["ulp"].ravel()
    ulp = ulp[ulp >= 0]
    fig, ax = _figure()
    if ulp.size and ulp.max() > 0:
        edges = np.unique(
            np.concatenate([[0, 1], np.logspace(0, np.log10(ulp.max() + 1), 25).astype(np.int64) + 1])
        )
        ax.hist(ulp, bins=edges, color="#2b6cb0")
        ax.set_xscale("symlog", linthresh=1)
    else:
        ax.hist(ulp, bins=[0, 1], color="#2b6cb0")
    ax.set_xlabel("ULP distance (0: bit-identical; values within atol of 0 not counted)")
    ax.set_ylabel("elements")
    return _svg(fig)


def matrix_report(matrix: Mapping[str, Any], manifest: Manifest, digest: str) -> dict[str, Any]:
    """The page's header and output figures for a machine matrix: the matrix's verdict, one line per machine,
    and the output figures of this machine's own run (or the first machine's) under the matrix table."""
    machines = list(matrix.get("machines", []))
    first = next((m for m in machines if m.get("machine") == "native"), machines[0] if machines else {})
    return {
        "name": manifest.name, "version": manifest.version, "digest": digest, "verdict": matrix.get("verdict"),
        "passed": matrix.get("passed"),
        "message": "; ".join(f"{m.get('machine')}: {m.get('verdict')}" for m in machines),
        "outputs": first.get("outputs", []), "causes": [], "signature": {}, "session": {},
        "environment": {}, "hardware": [], "judged": f"the golden inputs replayed on {len(machines)} machine class(es)",
    }  # fmt: skip


def write(
    out: str | Path, report: Mapping[str, Any], package: str | Path, replayed: Mapping[str, np.ndarray] | None = None,
    matrix: Mapping[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Render the page for a verify report (or a matrix) of ``package`` and write it atomically to ``out``."""
    from mlpack.fileio import load_npz, write_atomic
    from mlpack.package import open_package

    opened = open_package(package)
    try:
        golden: dict[str, np.ndarray] | None = load_npz(opened.path / opened.manifest.reference.outputs)
    except (OSError, ValueError):  # a damaged package still gets its page (the verdict says tampered)
        golden = None
    if matrix is not None:
        report = matrix_report(matrix, opened.manifest, opened.digest)
    page = render(report, opened.manifest, golden, replayed, matrix)
    path = Path(out)
    write_atomic(path, page.encode())
    return path
