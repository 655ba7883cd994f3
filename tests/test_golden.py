"""Golden-file regression tests, and the portfolio checked against its strategies run alone.

1. **Golden files.** The example configurations (``config/portfolio.yaml``, sleeves mode, and
   ``config/portfolio_bl.yaml``, black_litterman mode) run on fixed windows of the embedded data
   must reproduce ``tests/golden/<case>/*``: labels, strings, dates and counts exactly, floats to
   1e-10 relative (rules and file layout: ``tests/golden_files.py``). A failure prints what
   moved, per file. After a deliberate change, regenerate and review the printed summary::

       make golden-update          # or: PB_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

2. **One sleeve at 100 % is the strategy alone.** With a single allocation of target weight 1
   and no caps, the capital target is the sleeve's own equity (``1.0 * equity``, the reserve
   adds an exact 0.0), so the drift is exactly 0 and every calendar rebalance resizes the
   holdings by ``target / capital == 1.0``: no order. The pass then performs the same
   floating-point operations in the same order as the standalone run, and the equity paths
   are bit-identical, which is what is asserted (all three strategies, 33 years, lags 0 to 2).
   With ``lag >= 2`` this needs the kernel's rule that a sleeve already on target is left out
   of a capital rebalance: resizing its pending target would re-buy whatever that fill gets
   cut for cash.

3. **Several sleeves add up.** The accounts' capital (sleeves plus the ``unallocated``
   reserve) adds up to the book's equity at every bar, and each account's capital is its own
   cash plus its own holdings at the close.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import golden_files as gf  # tests/ is on sys.path under pytest, like _reference_kernel
import numpy as np
import pandas as pd
import pytest

from backtest.data import load_default_panel
from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.result import RESERVE, PortfolioBacktestResult
from backtest.strategies import create_strategy
from portfolio.config import BacktestConfig, load_config
from portfolio.contracts import PortfolioConfig, StrategyAllocation

#: The old switch, still honoured: rewrite the golden files before comparing.
UPDATE = os.environ.get("PB_UPDATE_GOLDEN") == "1"
SLEEVES_YAML = gf.REPO / "config" / "portfolio.yaml"
GOLDEN_PARAMS = [
    pytest.param(case, name, id=f"{case.name}/{name}") for case in gf.CASES for name in case.files
]


@pytest.fixture(scope="module", autouse=True)
def _update_golden_files() -> Iterator[None]:
    """With ``PB_UPDATE_GOLDEN=1``, rewrite the golden files once and show what changed."""
    if UPDATE:
        diffs = gf.update()
        # A warning shows in pytest's summary even without -s: the change is never silent.
        warnings.warn(
            "PB_UPDATE_GOLDEN=1 updated tests/golden from fresh runs:\n" + gf.render(diffs),
            stacklevel=1,
        )
    yield


# ------------------------------------------------------------------------------ golden files
@pytest.mark.parametrize(("case", "name"), GOLDEN_PARAMS)
def test_golden_file(case: gf.GoldenCase, name: str) -> None:
    """A fresh run of the case reproduces its golden file."""
    table = gf.produce(case)[name]
    diff = gf.diff_table(table, gf.GOLDEN_DIR / case.name / name, name=f"{case.name}/{name}")
    if not diff.ok:
        pytest.fail(
            f"{diff.render()}\nIf this change is intended, run `make golden-update` and review "
            "the summary it prints.",
            pytrace=False,
        )


def test_no_stale_golden_files() -> None:
    """Every file in tests/golden/ is produced by a case (no unreviewed leftovers)."""
    expected = [gf.GOLDEN_DIR / c.name / f for c in gf.CASES for f in c.files]
    stale = gf.stale_files(expected)
    assert stale == [], f"not produced by any case (run `make golden-update`): {stale}"


@pytest.mark.parametrize("case", gf.CASES, ids=[c.name for c in gf.CASES])
def test_omitted_trade_columns_are_implied(case: gf.GoldenCase) -> None:
    """``trades.csv`` omits price and notional: the fill price is the asset's close at the fill
    bar and the notional is ``|units| * price``, bit for bit, so the omission loses nothing."""
    trades = gf.run_case(case).trades
    prices = gf.run_case(case).prices
    rows = prices.index.get_indexer(pd.Index(trades["timestamp"]))
    cols = prices.columns.get_indexer(pd.Index(trades["asset"]))
    assert (rows >= 0).all() and (cols >= 0).all()
    price = trades["price"].to_numpy()
    np.testing.assert_array_equal(price, prices.to_numpy()[rows, cols])
    np.testing.assert_array_equal(
        trades["notional"].to_numpy(), np.abs(trades["units"].to_numpy()) * price
    )
    assert len(trades) > 1000  # the window really trades (the check is not vacuous)


# ----------------------------------------------------------------- the comparison machinery
def _table(frame: pd.DataFrame, atol: dict[str, float] | None = None) -> gf.GoldenTable:
    return gf._csv_table("t.csv", frame, atol)


def _frame() -> pd.DataFrame:
    idx = pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-06"], name="date")
    return pd.DataFrame(
        {"x": [1.0, 0.1 + 0.2, 1e-300], "cash": [0.0, 3.5, 7.0], "why": ["a", "", "c"]},
        index=idx,
    )


def _diff(old: pd.DataFrame, new: pd.DataFrame, tmp_path: Path, **kw: float) -> gf.FileDiff:
    path = tmp_path / "t.csv"
    path.write_text(_table(old).text, encoding="utf-8")
    return gf.diff_table(_table(new, dict(kw)), path, name="t.csv")


def test_float_text_round_trips_bit_for_bit() -> None:
    """``%.17g`` text parsed with float() gives back the written doubles exactly."""
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            rng.standard_normal(2000) * 10.0 ** rng.integers(-300, 300, 2000),
            [0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0],
        ]
    )
    text = [gf.FLOAT_FORMAT % v for v in values]
    back = gf._to_float(text)
    assert back.tobytes() == values.tobytes()


def test_diff_identical_text_is_unchanged(tmp_path: Path) -> None:
    d = _diff(_frame(), _frame(), tmp_path)
    assert d.status == "unchanged" and d.ok
    assert d.render() == "t.csv: unchanged"


def test_diff_float_within_and_beyond_tolerance(tmp_path: Path) -> None:
    """A change of 1e-12 relative passes (but is counted); 1e-9 relative fails, with its label."""
    new = _frame()
    new.iloc[1, 0] = (0.1 + 0.2) * (1.0 + 1e-12)  # the x of 2020-01-03
    d = _diff(_frame(), new, tmp_path)
    assert d.status == "changed" and d.ok
    assert (d.n_changed, d.n_beyond) == (1, 0)
    new.loc["2020-01-02", "x"] = 1.0 + 1e-9
    d = _diff(_frame(), new, tmp_path)
    assert not d.ok
    assert (d.n_changed, d.n_beyond) == (2, 1)
    assert d.max_rel_where == "2020-01-02 / x"
    assert math.isclose(d.max_rel, 1e-9, rel_tol=1e-6)
    assert "2020-01-02 / x: 1 -> 1.000000001" in d.render()


def test_diff_absolute_floor_only_where_given(tmp_path: Path) -> None:
    """0 -> 1e-8 fails relative to 0, passes with an absolute floor of 1e-7 on that column."""
    new = _frame()
    new.loc["2020-01-02", "cash"] = 1e-8
    assert not _diff(_frame(), new, tmp_path).ok
    assert _diff(_frame(), new, tmp_path, cash=1e-7).ok
    assert not _diff(_frame(), new, tmp_path, x=1e-7).ok


def test_diff_exact_columns_rows_and_columns(tmp_path: Path) -> None:
    """Strings, labels and the row/column sets are compared exactly."""
    new = _frame()
    new.loc["2020-01-03", "why"] = "b"
    d = _diff(_frame(), new, tmp_path)
    assert not d.ok and d.n_beyond == 1
    assert "2020-01-03 / why: (empty) -> b" in d.render()

    d = _diff(_frame(), _frame().drop(index=pd.Timestamp("2020-01-03")), tmp_path)
    assert not d.ok and d.rows_removed == ["2020-01-03"] and d.rows_added == []

    shifted = _frame().set_axis(
        pd.DatetimeIndex(["2020-01-02", "2020-01-03", "2020-01-07"], name="date")
    )
    d = _diff(_frame(), shifted, tmp_path)
    assert (d.rows_added, d.rows_removed) == (["2020-01-07"], ["2020-01-06"])

    d = _diff(_frame(), _frame().drop(columns=["cash"]), tmp_path)
    assert not d.ok and d.columns_removed == ["cash"]

    d = _diff(_frame(), _frame().iloc[::-1], tmp_path)
    assert not d.ok and d.row_order_changed


def test_diff_json_counts_exact_floats_tolerant(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    old = {"n": 3, "x": 1.0, "d": {"a": 1}}
    path.write_text(json.dumps(old), encoding="utf-8")

    def diff(new: dict[str, object]) -> gf.FileDiff:
        return gf.diff_table(gf.GoldenTable("s.json", json.dumps(new)), path)

    assert diff({"n": 3, "x": 1.0 + 1e-13, "d": {"a": 1}}).ok
    assert not diff({"n": 3, "x": 1.0 + 1e-9, "d": {"a": 1}}).ok
    d = diff({"n": 3, "x": 1.0, "d": {"a": 2}})
    assert not d.ok and d.largest[0].label == "d/a"
    assert diff({"n": 3, "x": 1.0, "d": {"a": 1}, "m": 0}).rows_added == ["m"]


def test_update_writes_then_reports_unchanged(tmp_path: Path) -> None:
    """update() creates every file, a second update changes nothing, stale files are removed."""
    first = gf.update(gf.CASES, tmp_path)
    assert {d.status for d in first} == {"new"}
    assert len(first) == sum(len(c.files) for c in gf.CASES)
    (tmp_path / "old_case").mkdir()
    (tmp_path / "old_case" / "monthly.csv").write_text("date,x\n2020-01,1\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("docs\n", encoding="utf-8")
    second = gf.update(gf.CASES, tmp_path)
    assert [d.status for d in second] == ["unchanged"] * len(first) + ["removed"]
    assert second[-1].path == "old_case/monthly.csv" and second[-1].n_rows_old == 1
    assert not (tmp_path / "old_case").exists() and (tmp_path / "README.md").exists()
    assert all(d.ok for d in gf.check(gf.CASES, tmp_path))


# -------------------------------------------------- portfolio versus its strategies run alone
@pytest.fixture(scope="module")
def sleeves_config() -> BacktestConfig:
    return load_config(SLEEVES_YAML)


def _single_sleeve_run(cfg: BacktestConfig, sid: str, lag: int) -> PortfolioBacktestResult:
    spec = cfg.strategies[sid]
    solo = PortfolioConfig(
        portfolio_id=f"solo_{sid}",
        total_capital=cfg.portfolio.total_capital,
        allocations=(StrategyAllocation(sid, 1.0),),  # no min/max capital, no risk multiplier
        rebalance_threshold=cfg.portfolio.rebalance_threshold,
        rebalance_frequency_hours=cfg.portfolio.rebalance_frequency_hours,
    )
    return PortfolioBacktestEngine(
        solo,
        {sid: create_strategy(sid, spec.kind, spec.params, spec.universe)},
        prices=load_default_panel(),
        costs=cfg.costs,
        execution_lag=lag,
        rebalance=cfg.rebalance,  # month-end calendar, relative band, netting, whole shares
    ).run()


@pytest.mark.parametrize("lag", [0, 1, 2])
@pytest.mark.parametrize("sid", ["trendline_break_v1", "rsi_tema_bb_v1", "momentum_v1"])
def test_single_sleeve_equals_strategy_alone(
    sleeves_config: BacktestConfig, sid: str, lag: int
) -> None:
    """One sleeve at 100 % (no caps) reproduces the strategy run alone, bit for bit.

    Over the whole embedded history (8313 bars), with the shipped costs and rebalancing rules:
    ~395 month-end capital rebalances fire and 8313 daily drift checks run; all must be no-ops.
    """
    r = _single_sleeve_run(sleeves_config, sid, lag)
    assert list(r.standalone_equity.columns) == [sid]
    together = r.equity.to_numpy()
    alone = r.standalone_equity[sid].to_numpy()
    # The calendar rebalances did fire; they just had nothing to do.
    assert (r.rebalances["reason"] == "calendar").sum() > 300
    assert len(r.trades) > 1000
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(r.allocations[RESERVE].to_numpy(), 0.0)
    cmp = r.comparison.loc[sid]
    assert cmp["in_portfolio_total_costs"] == cmp["standalone_total_costs"]
    # The sleeve's time-weighted value has no flows to remove, so it follows the equity; it is
    # rebuilt as a product of bar returns (8313 roundings of ~1e-16), hence not bit-identical.
    np.testing.assert_allclose(r.strategy_equity[sid].to_numpy(), together, rtol=1e-12, atol=0)


# ------------------------------------------------------------------ several sleeves add up
@pytest.fixture(scope="module")
def full_sleeves_run(sleeves_config: BacktestConfig) -> PortfolioBacktestResult:
    """The shipped sleeves configuration over the whole embedded history (1990-2022)."""
    return PortfolioBacktestEngine.from_config(sleeves_config).run()


def test_sleeves_capital_adds_up_to_book_equity(
    sleeves_config: BacktestConfig, full_sleeves_run: PortfolioBacktestResult
) -> None:
    """At every bar: the accounts' capital sums to the equity, each account's capital is its
    cash plus its holdings at the close, and the accounts' holdings sum to the book's."""
    r = full_sleeves_run
    accounts = list(r.allocations.columns)
    assert accounts == [*sleeves_config.portfolio.strategy_ids, RESERVE]
    equity = r.equity.to_numpy()
    alloc = r.allocations.to_numpy()
    # Coverage: the run grows past the sum of the caps (75,000), so the reserve holds capital
    # at most bars; every sleeve holds assets at some bar.
    assert (alloc[:, -1] > 0.0).mean() > 0.9

    # 1. Capital adds up: an exactly rounded sum of four accounts vs the book's equity. The
    # book sums the same four numbers in floating point (error <= 3 ulp of the total).
    exact = np.array([math.fsum(row) for row in alloc])
    np.testing.assert_allclose(exact, equity, rtol=4 * np.finfo(float).eps, atol=0)
    # The capital targets (allocate_capital) add up too: sleeves within caps, rest in reserve.
    targets = r.target_allocations.to_numpy()
    np.testing.assert_allclose(targets.sum(axis=1), equity, rtol=1e-13, atol=0)

    # 2. Each account's capital is its own cash plus its own units at the close, and the
    # accounts' units (rebuilt from their fills) add up to the book's units exactly (whole lots).
    px = np.nan_to_num(r.prices.to_numpy(), nan=0.0)
    units_sum = np.zeros_like(px)
    for i, acct in enumerate(accounts):
        units = r.sleeve_positions(acct).to_numpy()
        units_sum += units
        held = units * px
        value = r.sleeve_cash[acct].to_numpy() + held.sum(axis=1)
        # Summation order differs from the pass (numpy's pairwise sum vs a loop over assets):
        # a few ulp of the gross amounts involved.
        scale = np.abs(r.sleeve_cash[acct].to_numpy()) + np.abs(held).sum(axis=1)
        assert np.all(np.abs(value - alloc[:, i]) <= 1e-13 * scale), acct
        if acct == RESERVE:
            assert not units.any()  # the reserve is cash only
        else:
            assert units.any()
    np.testing.assert_array_equal(units_sum, r.positions.to_numpy())

    # 3. The book valued on its own (book cash + book units at the close) is the equity.
    book = r.cash.to_numpy() + (r.positions.to_numpy() * px).sum(axis=1)
    gross = np.abs(r.cash.to_numpy()) + np.abs(r.positions.to_numpy() * px).sum(axis=1)
    assert np.all(np.abs(book - equity) <= 1e-13 * gross)
