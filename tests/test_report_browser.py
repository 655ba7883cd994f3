"""The report in a real browser: headless Chromium opens the file from disk.

Checks that every ``<img>`` decoded to a natural size, that the console shows no error or
warning, that no request left the file (the page is self-contained), and saves a full-page
screenshot per mode under ``var/test-artifacts/`` (or ``$PB_ARTIFACTS``) for a person to look at.

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``, or ``$PB_CHROMIUM``), driven by
Playwright without any browser download; ``.ci/run`` installs it when missing. Outside CI the
test is skipped when Chromium is absent; under CI (``CI`` set) a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.report import write_report
from portfolio.config import default_config_path, load_config

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PB_ARTIFACTS", REPO / "var" / "test-artifacts"))
# Flags for a sandboxed machine without network: no sandbox (root in CI), no GPU, and no
# background connections (each would be refused and logged).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip

if not Path(CHROMIUM).is_file():
    if os.environ.get("CI"):
        pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
    pytest.skip(f"Chromium not found at {CHROMIUM}", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

RUNS = {
    "sleeves": (default_config_path(), "2010-01-01", "2016-12-31"),
    "black_litterman": (REPO / "config" / "portfolio_bl.yaml", "2010-01-01", "2014-12-31"),
}


@pytest.fixture(scope="module")
def browser() -> Any:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.mark.parametrize("mode", list(RUNS))
def test_report_opens_cleanly_in_chromium(browser: Any, mode: str, tmp_path: Path) -> None:
    cfg_path, start, end = RUNS[mode]
    result = PortfolioBacktestEngine.from_config(load_config(cfg_path), start=start, end=end).run()
    html = write_report(result, tmp_path / f"report_{mode}.html")[0]

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri(), wait_until="load")

    images = page.evaluate(
        "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
        " w: i.naturalWidth, h: i.naturalHeight}))"
    )
    assert len(images) >= 6
    for img in images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img["alt"]
        assert img["alt"].strip(), "an image without alt text"
    tables = page.evaluate("document.querySelectorAll('table').length")
    assert tables >= 5
    assert [m for m in console if m.split(":")[0] in ("error", "warning", "pageerror")] == []
    # Only the file itself and its data: URIs are loaded, nothing from any network.
    assert {u.split(":", 1)[0] for u in requests} <= {"file", "data"}, requests

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"report_{mode}.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
