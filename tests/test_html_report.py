"""The verify report as an HTML page, opened in a real headless browser (Debian's chromium through selenium):
it loads with no console error and no network request, shows the verdict and every output's section, its plots
render with a size, it fits a phone's width, prints, and a screenshot is kept under the test's temp folder."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpack.fileio import load_npz, npz_bytes
from mlpack.package import OUTPUTS
from tests.conftest import CliRunner

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are missing: apt-get install -y chromium chromium-driver "
                    "(tests/provision installs them; the report tests never skip)")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,2400"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, page: Path, screenshot: Path) -> dict[str, Any]:
    """Load the page; what the browser saw: console entries, requested URLs, sections and plot sizes."""
    driver.get_log("browser"), driver.get_log("performance")  # drop what earlier pages left
    driver.set_window_size(1200, 2400)
    driver.get(page.as_uri())
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    plots = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure svg')).map(s => {"
        " const r = s.getBoundingClientRect(); return [r.width, r.height]; });"
    )
    sections = driver.execute_script("return Array.from(document.querySelectorAll('section[id]')).map(s => s.id);")
    verdict = driver.execute_script("return document.querySelector('#verdict h1').textContent.trim();")
    driver.save_screenshot(str(screenshot))
    driver.set_window_size(
        390, 844
    )  # a phone: the page itself must not scroll sideways (wide tables scroll alone)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
    )
    printed = base64.b64decode(driver.print_page())
    return {"console": driver.get_log("browser"), "requests": requests, "plots": plots, "sections": sections,
            "verdict": verdict, "overflow": overflow, "pdf": printed}  # fmt: skip


@pytest.fixture
def package(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pkg" / built.name
    shutil.copytree(built, copy)
    return copy


def perturbed(package: Path, out: Path) -> Path:
    """The golden outputs with 25 probabilities moved by a few 1e-7 and one label changed: a mismatch."""
    golden = load_npz(package / OUTPUTS)
    moved = {name: array.copy() for name, array in golden.items()}
    flat = moved["probabilities"].reshape(-1)
    for i, k in enumerate(np.random.default_rng(0).choice(flat.size, 25, replace=False)):
        flat[k] = flat[k] + np.float32(1e-7 * (i + 1))
    moved["label"][3] = (moved["label"][3] + 1) % 3
    out.write_bytes(npz_bytes(moved))
    return out


def test_the_report_of_a_mismatch_in_a_real_browser(
    package: Path, browser: Any, tmp_path: Path, cli: CliRunner
) -> None:
    outputs = perturbed(package, tmp_path / "moved.npz")
    judged = cli("compare", package, outputs, "--json", "--html", tmp_path / "compare.html")
    assert judged.returncode == 1, judged.stderr  # mismatch, and --json is still one object on stdout
    (tmp_path / "report.json").write_text(judged.stdout)
    made = cli("report", package, "--verify-json", tmp_path / "report.json", "--outputs", outputs,
               "--out", tmp_path / "report.html")  # fmt: skip
    assert made.returncode == 0, made.stderr
    page = (tmp_path / "report.html").read_text()
    assert page == (tmp_path / "compare.html").read_text()  # the saved report renders the same page
    # no script, nothing fetched: the only URLs are the SVG namespaces
    assert "<script" not in page and not re.search(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", page))

    seen = open_page(browser, tmp_path / "report.html", tmp_path / "report.png")
    assert seen["console"] == [], seen["console"]
    assert all(url.startswith("file://") for url in seen["requests"]), seen["requests"]
    assert seen["verdict"] == "mismatch"
    assert {"outputs", "output-label", "output-probabilities", "differences"} <= set(seen["sections"])
    assert len(seen["plots"]) == 3 and all(w > 100 and h > 50 for w, h in seen["plots"]), seen["plots"]
    assert seen["overflow"] <= 1, f"the page is {seen['overflow']} px wider than a phone"
    assert seen["pdf"].startswith(b"%PDF") and len(seen["pdf"]) > 10_000
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # the figures a reviewer reads: the changed label in the confusion, the worst element by index
    total = load_npz(outputs)["label"].size
    assert f"{total - 1} of {total} agree" in page and "[3]" in page
    moved = load_npz(outputs)["probabilities"] - load_npz(package / OUTPUTS)["probabilities"]
    worst = np.unravel_index(int(np.argmax(np.abs(moved))), moved.shape)
    assert f"[{worst[0]}, {worst[1]}]" in page


def test_verify_html_of_an_identical_package_and_a_machine_matrix(
    package: Path, browser: Any, tmp_path: Path, cli: CliRunner
) -> None:
    done = cli("verify", package, "--html", tmp_path / "verify.html", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["verdict"] == "identical", done.stderr
    seen = open_page(browser, tmp_path / "verify.html", tmp_path / "verify.png")
    assert seen["verdict"] == "identical" and seen["console"] == []
    assert all(url.startswith("file://") for url in seen["requests"])
    assert len(seen["plots"]) == 3 and all(w > 100 and h > 50 for w, h in seen["plots"])
    assert re.search(r"(\d+) of \1 elements bit-identical \(100.0%\)", (tmp_path / "verify.html").read_text())

    across = cli("verify", package, "--machine", "native", "--machine", "x86-64-v2", "--html", tmp_path / "m.html")
    assert across.returncode == 0, across.stderr
    seen = open_page(browser, tmp_path / "m.html", tmp_path / "matrix.png")
    assert "matrix" in seen["sections"] and seen["console"] == []
    rows = browser.execute_script("return document.querySelectorAll('#matrix tr').length;")
    assert rows == 3  # a header and one row per machine class
    text = (tmp_path / "m.html").read_text()
    assert "qemu-x86_64 -cpu Nehalem" in text


def test_a_report_needs_a_saved_verify_report(package: Path, tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "not.json").write_text("[1, 2]")
    bad = cli("report", package, "--verify-json", tmp_path / "not.json", "--out", tmp_path / "x.html")
    assert bad.returncode == 2 and not (tmp_path / "x.html").exists()
    # a saved report without the outputs: the figures, and a note on how to get the plots
    done = cli("verify", package, "--json")
    (tmp_path / "r.json").write_text(done.stdout)
    made = cli("report", package, "--verify-json", tmp_path / "r.json", "--out", tmp_path / "r.html")
    assert made.returncode == 0
    page = (tmp_path / "r.html").read_text()
    assert "Element-level plots need the replayed outputs" in page and "<svg" not in page


def test_the_wheel_ships_every_template() -> None:
    """templates/ ships as mlpack/templates by the package-data patterns: a file they miss (report.css was
    one) would break the report of an installed mlpack only."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = patterns["mlpack.templates"]
    for path in (root / "templates").iterdir():
        assert any(fnmatch.fnmatch(path.name, p) for p in shipped), f"{path.name} is not in the wheel"


def test_differences_say_why_they_move_numbers(package: Path, tmp_path: Path, cli: CliRunner) -> None:
    """A report saved on another machine (its hardware and runtime differ): each row says why it matters, the
    ones that move numbers first."""
    done = cli("verify", package, "--json")
    report = json.loads(done.stdout)
    report["hardware"] = [
        {"field": "os.kernel", "built": "6.1", "here": "6.18", "moves_numbers": False},
        {"field": "cpu.level", "built": "x86-64-v3", "here": "x86-64-v2", "moves_numbers": True},
    ]
    report["environment"]["runtime"] = [
        {"name": "onnxruntime", "change": "changed", "locked": "1.32.0", "here": "1.31.0"}
    ]
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert (
        cli("report", package, "--verify-json", tmp_path / "r.json", "--out", tmp_path / "r.html").returncode == 0
    )
    page = (tmp_path / "r.html").read_text()
    level, kernel = page.index("cpu.level"), page.index("os.kernel")
    assert level < kernel  # what moves numbers first
    assert "another micro-architecture level, so other SIMD kernels" in page[level:kernel]
    assert "context" in page[kernel:]
    assert "its kernels and graph optimisations change between releases" in page
