"""The HTML report: builds in both modes, self-contained, deterministic, numbers that add up.

The browser checks (images load, no console error, screenshot) are in
``tests/test_report_browser.py``; the metric definitions in ``tests/test_metrics*.py``.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from backtest.metrics import monthly_returns
from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.report import default_report_path, fmt, render_report, write_report
from backtest.report_data import (
    build_report_data,
    contributions_by_account,
    contributions_by_asset,
    contributions_by_source,
)
from backtest.result import PortfolioBacktestResult
from backtest.strategies.base import StrategyViews
from portfolio.config import default_config_path, load_config
from portfolio.contracts import PortfolioConfig, StrategyAllocation

REPO = Path(__file__).resolve().parents[1]
BL_CONFIG = REPO / "config" / "portfolio_bl.yaml"


class _Page(HTMLParser):
    """Collects what the checks need: images, tables, text, every URL-like attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str]] = []
        self.tables = 0
        self.captions = 0
        self.text: list[str] = []
        self.cells: list[str] = []
        self.attrs: list[str] = []
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        d = {k: v or "" for k, v in attrs}
        self.attrs.extend(d.values())
        if tag == "img":
            self.images.append(d)
        elif tag == "table":
            self.tables += 1
        elif tag == "caption":
            self.captions += 1
        elif tag == "style":
            self.in_style = True
        if tag not in ("img", "meta", "br", "hr", "link", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        # Well-formed nesting: every end tag closes the innermost open element.
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.text.append(data)
        if "td" in self.stack:
            self.cells.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert page.stack == [], page.stack
    return page


@pytest.fixture(scope="module")
def sleeves_result() -> PortfolioBacktestResult:
    cfg = load_config(default_config_path())
    return PortfolioBacktestEngine.from_config(cfg, start="2012-01-01", end="2016-12-31").run()


@pytest.fixture(scope="module")
def bl_result() -> PortfolioBacktestResult:
    cfg = load_config(BL_CONFIG)
    return PortfolioBacktestEngine.from_config(cfg, start="2012-01-01", end="2015-12-31").run()


@pytest.fixture(scope="module")
def sleeves_html(sleeves_result: PortfolioBacktestResult) -> str:
    return render_report(sleeves_result)


@pytest.fixture(scope="module")
def bl_html(bl_result: PortfolioBacktestResult) -> str:
    return render_report(bl_result)


def check_self_contained(html: str) -> _Page:
    """Parse, decode every image, require alt text, forbid any network reference and NaN."""
    page = parse(html)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    for value in page.attrs:  # no protocol-relative URL or external file either
        assert not value.startswith("//"), value
    assert page.images, "no chart"
    for img in page.images:
        assert len(img.get("alt", "").strip()) > 20, img.get("alt")
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
        with Image.open(io.BytesIO(raw)) as im:
            assert im.size[0] >= 600 and im.size[1] >= 200
    # No undefined value printed as a number in any table cell; only the formulas appendix
    # says in words when a metric is NaN or infinite.
    bad = [c for c in page.cells if re.search(r"\b(nan|NaN|inf|None|NaT|null)\b", c)]
    formula_cells = {f for f in page.cells if "NaN if" in f or "+inf if" in f}
    assert [c for c in bad if c not in formula_cells] == []
    assert page.tables >= 5 and page.captions >= 5
    return page


# ---------------------------------------------------------------------------- both modes
def test_sleeves_report_is_self_contained(sleeves_html: str) -> None:
    page = check_self_contained(sleeves_html)
    ids = {img["alt"].split(":")[0] for img in page.images}
    assert {"Line chart, log scale", "Underwater chart", "Stacked area chart"} <= ids
    for section in ("metrics", "equity", "allocation", "drift", "contributions", "monthly",
                    "rebalancing", "appendix"):  # fmt: skip
        assert f'<section id="{section}">' in sleeves_html
    assert 'id="black-litterman"' not in sleeves_html
    text = " ".join(page.text)
    for sid in ("trendline_break_v1", "rsi_tema_bb_v1", "momentum_v1", "sum of standalone"):
        assert sid in text
    assert "Saved by netting" in text and "Best month" in text and "VaR 5%" in text


def test_black_litterman_report_has_its_section(bl_html: str) -> None:
    page = check_self_contained(bl_html)
    assert '<section id="black-litterman">' in bl_html
    text = " ".join(page.text)
    assert "equilibrium" in text and "posterior μ" in text
    alts = " ".join(img["alt"] for img in page.images)
    assert "regime clarity" in alts and "attributed to the equilibrium" in alts


def test_same_run_gives_the_same_bytes(
    sleeves_result: PortfolioBacktestResult, sleeves_html: str
) -> None:
    assert render_report(sleeves_result) == sleeves_html


def test_write_report_files(sleeves_result: PortfolioBacktestResult, tmp_path: Path) -> None:
    path = tmp_path / "r" / "report.html"
    files = write_report(sleeves_result, path)
    assert files[0] == path and path.read_text(encoding="utf-8") == render_report(sleeves_result)
    folder = tmp_path / "r" / "report"
    assert {f.name for f in folder.iterdir()} == {f.name for f in files[1:]}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(sleeves_result.manifest, default=str))
    for key in ("version", "config_hash", "data_hash", "start", "end", "seed", "cost_model",
                "periods_per_year", "rf_annual", "libraries"):  # fmt: skip
        assert key in manifest
    metrics = pd.read_csv(folder / "metrics.csv", index_col=0)
    want = build_report_data(sleeves_result).metrics
    assert list(metrics.index) == list(want.index)
    np.testing.assert_allclose(metrics["sharpe"], want["sharpe"].astype(float), rtol=1e-15)
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temp file
    assert default_report_path(sleeves_result) == Path(
        "var/backtest/portfolio_multi_strategy_v1_report.html"
    )


def test_full_history_report_within_size_budget(tmp_path: Path) -> None:
    """30+ years, 3 strategies, 20 assets: under 5 MB (charts are drawn from few points)."""
    result = PortfolioBacktestEngine.from_config(load_config(default_config_path())).run()
    html = render_report(result)
    assert len(result.equity) > 8000
    assert len(html.encode("utf-8")) < 5_000_000


# ------------------------------------------------------------------------ numbers add up
def _yearly_from_equity(result: PortfolioBacktestResult) -> pd.Series:
    m = monthly_returns(result.equity, float(result.initial_allocations.sum()))
    return (1.0 + m).groupby(m.index.year).prod() - 1.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["account", "asset"])
def test_sleeve_contributions_add_up(sleeves_result: PortfolioBacktestResult, which: str) -> None:
    fn = contributions_by_account if which == "account" else contributions_by_asset
    c = fn(sleeves_result)
    np.testing.assert_allclose(
        c.drop(columns="portfolio").sum(axis=1), c["portfolio"], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        c["portfolio"].to_numpy(), _yearly_from_equity(sleeves_result).to_numpy(), rtol=1e-10
    )


def test_bl_contributions_add_up(bl_result: PortfolioBacktestResult) -> None:
    for c in (contributions_by_source(bl_result), contributions_by_asset(bl_result)):
        np.testing.assert_allclose(
            c.drop(columns="portfolio").sum(axis=1), c["portfolio"], rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(
            c["portfolio"].to_numpy(), _yearly_from_equity(bl_result).to_numpy(), rtol=1e-10
        )
    src = contributions_by_source(bl_result)
    assert {"equilibrium", "momentum_v1", "costs", "unattributed"} <= set(src.columns)
    assert (src["costs"] < 0).all()


def test_account_contribution_is_capital_change_without_transfers(
    sleeves_result: PortfolioBacktestResult,
) -> None:
    """Hand check for one year and one sleeve, from the raw tables."""
    r = sleeves_result
    sid = "momentum_v1"
    year = 2014
    alloc, flows = r.allocations[sid], r.flows[sid]
    prev_year_end = r.equity[r.equity.index.year == year - 1].iloc[-1]
    sel = alloc.index.year == year
    start_cap = alloc[alloc.index.year == year - 1].iloc[-1]
    pnl = alloc[sel].iloc[-1] - start_cap - flows[sel].sum()
    assert contributions_by_account(r).loc[year, sid] == pytest.approx(
        pnl / prev_year_end, rel=1e-12
    )


def test_rebalance_events_cover_every_fill(sleeves_result: PortfolioBacktestResult) -> None:
    ev = build_report_data(sleeves_result).events
    traded = sleeves_result.traded_notional.to_numpy().sum()
    assert ev["traded_notional"].sum() == pytest.approx(traded, rel=1e-12)
    assert ev["n_trades"].sum() == len(sleeves_result.trades)
    assert ev["costs"].sum() == pytest.approx(sleeves_result.total_costs, rel=1e-12)
    assert set(ev["reasons"].str.split(", ").explode()) <= {"signal", "drift", "calendar"}


def test_monthly_grid_matches_equity(sleeves_result: PortfolioBacktestResult) -> None:
    grid = build_report_data(sleeves_result).monthly
    eq = sleeves_result.equity
    # March 2015 by hand: last close of March over last close of February.
    want = (
        eq[eq.index.to_period("M") == "2015-03"].iloc[-1]
        / (eq[eq.index.to_period("M") == "2015-02"].iloc[-1])
        - 1.0
    )
    assert grid.loc[2015, 3] == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(
        grid["year"].to_numpy(), _yearly_from_equity(sleeves_result).to_numpy(), rtol=1e-10
    )


# --------------------------------------------------------------------------- bad input
class _NeverTrades:
    """A strategy that never states a target (every row NaN) and has no views."""

    strategy_id = "idle_v1"
    universe = None

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)

    def views(self, prices: pd.DataFrame) -> StrategyViews:
        empty = pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)
        return StrategyViews(empty, empty.copy())


def _notes_rendered(html: str) -> str:
    page = check_self_contained(html)
    return " ".join(page.text)


def test_one_month_run_renders_with_notes() -> None:
    cfg = load_config(default_config_path())
    result = PortfolioBacktestEngine.from_config(cfg, start="2016-01-01", end="2016-01-31").run()
    text = _notes_rendered(render_report(result))
    assert "Not enough data" in text and "single month" in text


def test_one_bar_run_renders_with_notes() -> None:
    cfg = load_config(default_config_path())
    result = PortfolioBacktestEngine.from_config(cfg, start="2016-01-04", end="2016-01-04").run()
    assert len(result.equity) == 1
    html = render_report(result)
    text = _notes_rendered(html)
    assert "Not enough data: 1 bar;" in text
    assert "Not enough data to draw" in html or "Not enough data" in text


def test_strategy_without_trades_renders_with_note() -> None:
    cfg = load_config(default_config_path())
    allocs = (
        StrategyAllocation(strategy_id="momentum_v1", target_weight=0.5),
        StrategyAllocation(strategy_id="idle_v1", target_weight=0.5),
    )
    pcfg = PortfolioConfig(portfolio_id="idle_test", total_capital=100_000.0, allocations=allocs)
    from backtest.strategies import create_strategy

    strategies = {"momentum_v1": create_strategy("momentum_v1", "momentum", {}),
                  "idle_v1": _NeverTrades()}  # fmt: skip
    engine = PortfolioBacktestEngine(pcfg, strategies, costs=cfg.costs, execution_lag=1)
    result = engine.run()
    text = _notes_rendered(render_report(result))
    assert "Strategy idle_v1 made no trades in this run." in text


def test_all_idle_run_renders_with_note() -> None:
    """An empty result: nothing ever traded, the book is all cash."""
    pcfg = PortfolioConfig(
        portfolio_id="empty", total_capital=10_000.0,
        allocations=(StrategyAllocation(strategy_id="idle_v1", target_weight=1.0),),
    )  # fmt: skip
    result = PortfolioBacktestEngine(pcfg, {"idle_v1": _NeverTrades()}).run()
    assert result.trades.empty
    text = _notes_rendered(render_report(result))
    assert "No trades" in text


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (float("nan"), "pct", "—"),
        (None, "date", "—"),
        (pd.NaT, "date", "—"),
        (float("inf"), "ratio", "+∞"),
        (0.12345, "pct", "12.35%"),
        (1234.5, "money", "1,234.50"),
        (pd.Timestamp("2020-03-23"), "date", "2020-03-23"),
    ],
)
def test_fmt_never_prints_nan(value: object, kind: str, text: str) -> None:
    assert fmt(value, kind) == text
