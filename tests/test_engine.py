"""End-to-end tests of `PortfolioBacktestEngine` through its Python API (README, "The Python API").

Every run uses a short slice of the embedded S&P 500 panel, so the whole file stays fast. The
checks are accounting identities that must hold at every bar (cash + marked positions == equity,
for the book and for each account), agreement between the tables of one result (trades vs costs,
metrics vs :func:`backtest.metrics.compute_metrics`), the clock (decision bar vs fill bar) and the
calendars, each derived independently from the price index or by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from backtest.data import PricePanel, load_default_panel
from backtest.metrics import METRIC_KEYS, compute_metrics
from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.result import RESERVE, PortfolioBacktestResult
from backtest.strategies import Strategy, StrategyViews, create_strategy
from portfolio.allocation import allocate_capital
from portfolio.config import (
    RebalanceSettings,
    RiskAdjustedSettings,
    default_config_path,
    load_config,
    parse_config,
)
from portfolio.contracts import CostModel, PortfolioConfig, StrategyAllocation
from portfolio.errors import ConfigError, DataError

START, END = "2014-01-01", "2016-12-31"  # 3 years: momentum (12-1 months) trades for 2 of them
REL = 1e-9

CFG = load_config(default_config_path())
SIDS = list(CFG.portfolio.strategy_ids)
ACCOUNTS = [*SIDS, RESERVE]


@pytest.fixture(scope="module")
def panel() -> PricePanel:
    return load_default_panel().slice(START, END)


def make_strategies() -> dict[str, Strategy]:
    """Exactly the README snippet."""
    return {sid: create_strategy(sid, s.kind, s.params) for sid, s in CFG.strategies.items()}


@pytest.fixture(scope="module")
def result(panel: PricePanel) -> PortfolioBacktestResult:
    engine = PortfolioBacktestEngine(
        CFG.portfolio, make_strategies(), costs=CFG.costs, execution_lag=1, prices=panel
    )
    return engine.run()


@pytest.fixture(scope="module")
def netting_runs(panel: PricePanel) -> dict[bool, PortfolioBacktestResult]:
    """The YAML's month-end calendar (many cross-sleeve orders), netting on and off."""
    out = {}
    for netting in (True, False):
        engine = PortfolioBacktestEngine(
            CFG.portfolio,
            make_strategies(),
            costs=CFG.costs,
            execution_lag=1,
            prices=panel,
            rebalance=dataclasses.replace(CFG.rebalance, netting=netting),
        )
        out[netting] = engine.run()
    return out


class FixedWeights:
    """A user strategy outside the registry: one target row at ``bar``, hold afterwards."""

    def __init__(
        self,
        strategy_id: str,
        weights: dict[str, float],
        bar: int,
        universe: Sequence[str] | None = None,
        nan_asset: str | None = None,
    ) -> None:
        self.strategy_id = strategy_id
        self.universe = None if universe is None else tuple(universe)
        self._weights = weights
        self._bar = bar
        self._nan_asset = nan_asset

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        out = np.full(prices.shape, np.nan)
        row = np.zeros(prices.shape[1])
        for asset, w in self._weights.items():
            row[prices.columns.get_loc(asset)] = w
        if self._nan_asset is not None:  # a malformed row: numbers and a NaN
            row[prices.columns.get_loc(self._nan_asset)] = np.nan
        out[self._bar] = row
        return pd.DataFrame(out, index=prices.index, columns=prices.columns)

    def views(self, prices: pd.DataFrame) -> StrategyViews:
        empty = pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)
        return StrategyViews(empty, empty.copy())


def one_sleeve(sid: str = "custom", capital: float = 100_000.0) -> PortfolioConfig:
    return PortfolioConfig("solo", capital, (StrategyAllocation(sid, 1.0),))


def equal_weight_strategies(sids: Sequence[str]) -> dict[str, Strategy]:
    return {sid: create_strategy(sid, "equal_weight", {}) for sid in sids}


def check_identities(res: PortfolioBacktestResult) -> None:
    """Book and account accounting identities at every bar (relative tolerance 1e-9)."""
    px = res.prices.fillna(0.0)
    scale = float(res.equity.abs().max())
    marked = res.cash + (res.positions * px).sum(axis=1)
    np.testing.assert_allclose(res.equity.to_numpy(), marked.to_numpy(), rtol=REL, atol=REL * scale)
    np.testing.assert_allclose(
        res.allocations.sum(axis=1).to_numpy(), res.equity.to_numpy(), rtol=REL, atol=REL * scale
    )
    np.testing.assert_allclose(
        res.sleeve_cash.sum(axis=1).to_numpy(), res.cash.to_numpy(), rtol=REL, atol=REL * scale
    )
    total_units = np.sum(
        [res.sleeve_positions(acc).to_numpy() for acc in res.allocations.columns], axis=0
    )
    np.testing.assert_allclose(total_units, res.positions.to_numpy(), atol=1e-9)
    for acc in res.allocations.columns:
        value = res.sleeve_cash[acc] + (res.sleeve_positions(acc) * px).sum(axis=1)
        np.testing.assert_allclose(
            res.allocations[acc].to_numpy(), value.to_numpy(), rtol=REL, atol=REL * scale
        )
    # The reserve holds cash only.
    assert (res.sleeve_positions(RESERVE).to_numpy() == 0.0).all()


# ------------------------------------------------------------------------------------ shapes


def test_result_shapes_indices_and_columns(
    result: PortfolioBacktestResult, panel: PricePanel
) -> None:
    idx = panel.index
    assets = panel.assets
    assert isinstance(result.equity, pd.Series) and result.equity.index.equals(idx)
    assert isinstance(result.cash, pd.Series) and result.cash.index.equals(idx)
    assert result.netting_saved.index.equals(idx)
    for frame, cols in (
        (result.strategy_equity, SIDS),
        (result.allocations, ACCOUNTS),
        (result.target_allocations, ACCOUNTS),
        (result.drift, SIDS),
        (result.weights, assets),
        (result.positions, assets),
        (result.sleeve_cash, ACCOUNTS),
        (result.costs, ACCOUNTS),
        (result.traded_notional, ACCOUNTS),
        (result.standalone_equity, SIDS),
    ):
        assert frame.index.equals(idx)
        assert list(frame.columns) == cols
        assert frame.notna().all().all()
    assert list(result.trades.columns) == [
        "timestamp", "strategy", "asset", "units", "price", "notional", "commission",
        "slippage", "netted",
    ]  # fmt: skip
    assert list(result.rebalances.columns) == [
        "timestamp", "fill_timestamp", "level", "reason", "strategy",
    ]  # fmt: skip
    assert list(result.metrics.index) == ["portfolio", *SIDS]
    assert list(result.metrics.columns) == list(METRIC_KEYS)
    assert list(result.comparison.index) == SIDS
    keys = ["total_return", "cagr", "sharpe", "max_drawdown", "total_costs"]
    assert list(result.comparison.columns) == [
        *(f"in_portfolio_{k}" for k in keys),
        *(f"standalone_{k}" for k in keys),
    ]
    pd.testing.assert_frame_equal(result.prices, panel.prices)
    assert result.sleeve_positions(SIDS[0]).shape == (panel.n_bars, panel.n_assets)
    with pytest.raises(KeyError, match="nope"):
        result.sleeve_positions("nope")
    m = result.manifest
    assert (m["start"], m["end"], m["n_bars"]) == ("2014-01-02", "2016-12-30", panel.n_bars)
    assert m["assets"] == assets and m["execution_lag"] == 1
    assert m["cost_model"] == CFG.costs.to_dict()
    # Sanity of the run itself: all three sleeves traded.
    assert set(result.trades["strategy"]) == set(SIDS)
    assert result.equity.iloc[0] == CFG.portfolio.total_capital  # nothing filled on bar 0


def test_accounting_identities_every_bar(result: PortfolioBacktestResult) -> None:
    check_identities(result)
    eq = result.equity.to_numpy()
    w = (result.positions * result.prices).to_numpy() / eq[:, None]
    np.testing.assert_allclose(result.weights.to_numpy(), w, rtol=REL, atol=1e-12)


def test_trade_costs_match_costs_table(result: PortfolioBacktestResult) -> None:
    tr = result.trades
    assert len(tr) > 100
    per = (
        tr.assign(cost=tr["commission"] + tr["slippage"])
        .pivot_table(index="timestamp", columns="strategy", values="cost", aggfunc="sum")
        .reindex(index=result.costs.index, columns=ACCOUNTS)
        .fillna(0.0)
    )
    np.testing.assert_allclose(per.to_numpy(), result.costs.to_numpy(), rtol=REL, atol=1e-9)
    notional = (
        tr.pivot_table(index="timestamp", columns="strategy", values="notional", aggfunc="sum")
        .reindex(index=result.costs.index, columns=ACCOUNTS)
        .fillna(0.0)
    )
    np.testing.assert_allclose(
        notional.to_numpy(), result.traded_notional.to_numpy(), rtol=REL, atol=1e-9
    )
    # Each trade is at the close of its bar and notional = |units| * price.
    closes = result.prices.stack()
    np.testing.assert_array_equal(
        tr["price"].to_numpy(), closes.loc[list(zip(tr["timestamp"], tr["asset"], strict=True))]
    )
    np.testing.assert_allclose(tr["notional"], tr["units"].abs() * tr["price"], rtol=1e-12)
    assert (tr["units"] != 0).all()
    assert math.isclose(result.total_costs, float(tr["commission"].sum() + tr["slippage"].sum()))


def test_rebalances_table(result: PortfolioBacktestResult) -> None:
    rb = result.rebalances
    assert len(rb) > 0
    assert set(rb["reason"]) <= {"signal", "drift", "calendar"}
    assert set(rb["level"]) <= {"sleeve", "portfolio"}
    sleeve = rb[rb["level"] == "sleeve"]
    assert (sleeve["reason"] == "signal").all()
    assert set(sleeve["strategy"]) <= set(SIDS)
    assert (rb.loc[rb["level"] == "portfolio", "strategy"] == "").all()
    # lag 1: the fill is the next bar, NaT for a decision on the last bar.
    idx = result.equity.index
    pos = idx.get_indexer(pd.DatetimeIndex(rb["timestamp"]))
    expected = pd.DatetimeIndex([idx[int(p) + 1] if p + 1 < len(idx) else pd.NaT for p in pos])
    assert pd.DatetimeIndex(rb["fill_timestamp"]).equals(expected)


def test_metrics_are_traceable_to_compute_metrics(result: PortfolioBacktestResult) -> None:
    ref = compute_metrics(
        result.equity,
        traded_notional=result.traded_notional.sum(axis=1),
        costs=result.costs.sum(axis=1),
        initial_capital=CFG.portfolio.total_capital,
    )
    np.testing.assert_array_equal(
        result.metrics.loc["portfolio"].to_numpy(), np.array([ref[k] for k in METRIC_KEYS])
    )
    caps, _ = allocate_capital(
        CFG.portfolio.total_capital,
        CFG.portfolio.target_weights,
        np.array([a.min_capital for a in CFG.portfolio.allocations]),
        np.array([a.max_capital for a in CFG.portfolio.allocations]),
    )
    for i, sid in enumerate(SIDS):
        ref = compute_metrics(
            result.strategy_equity[sid],
            traded_notional=result.traded_notional[sid],
            costs=result.costs[sid],
            initial_capital=float(caps[i]),
            # turnover is measured against the capital actually at work, not the NAV
            turnover_capital=result.allocations[sid],
        )
        np.testing.assert_array_equal(
            result.metrics.loc[sid].to_numpy(), np.array([ref[k] for k in METRIC_KEYS])
        )
    assert result.metrics.loc["portfolio", "total_costs"] == pytest.approx(result.total_costs)
    np.testing.assert_array_equal(
        result.comparison["in_portfolio_total_return"].to_numpy(),
        result.metrics.loc[SIDS, "total_return"].to_numpy(),
    )


# ----------------------------------------------------------------------------------- netting


def _order_cost(notional: np.ndarray, costs: CostModel) -> np.ndarray:
    """Vectorized ``CostModel.commission + CostModel.slippage`` (README, "Costs")."""
    comm = np.maximum(
        costs.commission_min, costs.commission_bps * notional / 1e4 + costs.commission_fixed
    )
    return np.where(notional > 0.0, comm, 0.0) + costs.slippage_bps * notional / 1e4


def test_order_cost_helper_matches_cost_model() -> None:
    n = np.array([0.0, 5.0, 12_345.0, 1e7])
    ref = [CFG.costs.commission(x) + CFG.costs.slippage(x) for x in n]
    np.testing.assert_allclose(_order_cost(n, CFG.costs), ref, rtol=1e-15)


def test_netting_saved_matches_trades_formula(
    netting_runs: dict[bool, PortfolioBacktestResult],
) -> None:
    """Per bar: saved = sum over assets of (cost of each sleeve's order alone - cost of the net)."""
    res = netting_runs[True]
    tr = res.trades.assign(
        alone=_order_cost(res.trades["notional"].to_numpy(), CFG.costs),
        paid=res.trades["commission"] + res.trades["slippage"],
        signed=res.trades["units"] * res.trades["price"],
    )
    g = tr.groupby(["timestamp", "asset"])
    per = g.agg(
        alone=("alone", "sum"),
        paid=("paid", "sum"),
        net=("signed", "sum"),
        n=("units", "size"),
        netted=("netted", "all"),
        any_netted=("netted", "any"),
    )
    net_cost = _order_cost(per["net"].abs().to_numpy(), CFG.costs)
    # The net order's cost is what the participants pay together, pro rata.
    np.testing.assert_allclose(per["paid"].to_numpy(), net_cost, rtol=1e-12, atol=1e-12)
    # Orders are flagged as netted exactly when several sleeves traded the asset on that bar.
    assert (per["netted"] == (per["n"] > 1)).all()
    assert (per["any_netted"] == per["netted"]).all()
    saved = (per["alone"] - net_cost).groupby(level="timestamp").sum()
    expected = saved.reindex(res.equity.index, fill_value=0.0)
    np.testing.assert_allclose(res.netting_saved.to_numpy(), expected.to_numpy(), atol=1e-9)
    assert res.total_netting_saved > 1.0
    assert res.netting_saved.min() >= -1e-9
    assert netting_runs[False].total_netting_saved == 0.0
    assert not netting_runs[False].trades["netted"].any()


def test_netting_changes_costs_not_positions(
    netting_runs: dict[bool, PortfolioBacktestResult],
) -> None:
    """Same decisions, netting on/off: identical positions, costs lower by exactly the saving.

    Exact equality holds until the first bar after a netting saving: from then on the sleeves'
    cash differs by the saving, and target units (``w * capital / price`` rounded to lots) are
    sized from that cash, so later orders may differ by a lot. The identity is therefore checked
    on every bar up to and including the first bar where netting saved something material.
    """
    on, off = netting_runs[True], netting_runs[False]
    saved = on.netting_saved.to_numpy()
    first = int(np.flatnonzero(saved > 1e-6)[0])
    upto = slice(0, first + 1)
    np.testing.assert_array_equal(on.positions.to_numpy()[upto], off.positions.to_numpy()[upto])
    for acc in ACCOUNTS:
        np.testing.assert_array_equal(
            on.sleeve_positions(acc).to_numpy()[upto], off.sleeve_positions(acc).to_numpy()[upto]
        )
    cost_on = on.costs.sum(axis=1).to_numpy()[upto]
    cost_off = off.costs.sum(axis=1).to_numpy()[upto]
    assert (cost_on <= cost_off + 1e-12).all()
    np.testing.assert_allclose(cost_off - cost_on, saved[upto], atol=1e-9)
    assert cost_off[-1] - cost_on[-1] > 1e-6
    # Over the whole run netting is cheaper, and both runs keep their books straight.
    assert on.total_costs <= off.total_costs
    check_identities(on)
    check_identities(off)


# ------------------------------------------------------------------------------------- clock


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_fill_lag_moves_the_first_trade(panel: PricePanel, lag: int) -> None:
    decision = 10
    strat = FixedWeights("custom", {"AAPL": 0.45, "MSFT": 0.45}, decision)
    res = PortfolioBacktestEngine(
        one_sleeve(), [strat], costs=CFG.costs, execution_lag=lag, prices=panel
    ).run()
    idx = panel.index
    tr = res.trades
    assert set(tr["timestamp"]) == {idx[decision + lag]}
    assert sorted(tr["asset"]) == ["AAPL", "MSFT"]
    # Units are sized with the decision close (and frozen), the fill uses the fill close.
    close = panel.prices
    for _, row in tr.iterrows():
        assert row["units"] == math.floor(0.45 * 100_000.0 / close[row["asset"]].iloc[decision])
        assert row["price"] == close[row["asset"]].iloc[decision + lag]
    sig = res.rebalances[res.rebalances["reason"] == "signal"]
    assert list(sig["timestamp"]) == [idx[decision]]
    assert list(sig["fill_timestamp"]) == [idx[decision + lag]]
    # Nothing is held before the fill bar; everything after it.
    held = res.positions[["AAPL", "MSFT"]].to_numpy()
    assert (held[: decision + lag] == 0.0).all()
    assert (held[decision + lag :] > 0.0).all()
    check_identities(res)


def test_lag_one_sizes_at_decision_close_not_fill_close(panel: PricePanel) -> None:
    """The lag-1 units equal the lag-0 units (decision close), and differ from fill-close sizing."""
    runs = {}
    for lag in (0, 1):
        strat = FixedWeights("custom", {"AAPL": 0.45, "MSFT": 0.45}, 10)
        runs[lag] = PortfolioBacktestEngine(
            one_sleeve(), [strat], costs=CFG.costs, execution_lag=lag, prices=panel
        ).run()
    u0 = runs[0].trades.set_index("asset")["units"]
    u1 = runs[1].trades.set_index("asset")["units"]
    pd.testing.assert_series_equal(u0, u1)
    at_fill_close = np.floor(0.45 * 100_000.0 / panel.prices.iloc[11][["AAPL", "MSFT"]])
    assert (u1.loc[["AAPL", "MSFT"]].to_numpy() != at_fill_close.to_numpy()).any()


# --------------------------------------------------------------------------------- calendars


def _portfolio_events(panel: PricePanel, rebalance: RebalanceSettings) -> pd.DataFrame:
    # A drift band no sleeve can reach: every portfolio-level rebalance is a calendar one.
    config = dataclasses.replace(CFG.portfolio, rebalance_threshold=1e9)
    res = PortfolioBacktestEngine(
        config,
        equal_weight_strategies(SIDS),
        costs=CFG.costs,
        prices=panel,
        rebalance=rebalance,
    ).run()
    check_identities(res)
    ev = res.rebalances[res.rebalances["level"] == "portfolio"]
    assert (ev["reason"] == "calendar").all()
    return ev


def test_calendar_every_n_bars(panel: PricePanel) -> None:
    ev = _portfolio_events(panel, RebalanceSettings(calendar="every_n_bars", every_n_bars=40))
    # Bars n, 2n, ... (bar 0 is the initial allocation itself).
    expected = panel.index[list(range(40, panel.n_bars, 40))]
    assert pd.DatetimeIndex(ev["timestamp"]).equals(expected)


def test_calendar_month_end(panel: PricePanel) -> None:
    ev = _portfolio_events(panel, RebalanceSettings(calendar="month_end"))
    idx = panel.index
    s = pd.Series(idx, index=idx)
    expected = pd.DatetimeIndex(s.groupby([idx.year, idx.month]).max().to_numpy())
    # The slice ends on Friday 2016-12-30: no weekday is left in December, so it counts.
    assert expected[-1] == pd.Timestamp("2016-12-30")
    assert len(expected) == 36
    assert pd.DatetimeIndex(ev["timestamp"]).equals(expected)


def test_calendar_dates(panel: PricePanel) -> None:
    dates = (
        "2014-01-01",  # holiday before the first bar -> the first bar (2014-01-02)
        "2015-03-14",  # Saturday -> Monday 2015-03-16
        "2015-07-03",  # NYSE closed (Independence Day observed) -> 2015-07-06
        "2016-02-10",  # a trading day -> itself
        "2017-06-30",  # after the last bar -> ignored
    )
    ev = _portfolio_events(panel, RebalanceSettings(calendar="dates", dates=dates))
    expected = pd.DatetimeIndex(["2014-01-02", "2015-03-16", "2015-07-06", "2016-02-10"])
    idx = panel.index
    derived = pd.DatetimeIndex([idx[idx >= pd.Timestamp(d)][0] for d in dates[:-1]])
    assert derived.equals(expected)
    assert pd.DatetimeIndex(ev["timestamp"]).equals(expected)


# ------------------------------------------------------------------------ capital allocation


def test_risk_adjusted_run_respects_identities_and_bounds(panel: PricePanel) -> None:
    ra = RiskAdjustedSettings(enabled=True, lookback_period_days=30, adjustment_sensitivity=0.5)
    res = PortfolioBacktestEngine(
        CFG.portfolio,
        make_strategies(),
        costs=CFG.costs,
        prices=panel,
        rebalance=CFG.rebalance,
        risk_adjusted=ra,
    ).run()
    check_identities(res)
    tgt = res.target_allocations
    eq = res.equity.to_numpy()
    np.testing.assert_allclose(tgt.sum(axis=1).to_numpy(), eq, rtol=REL)
    for a in CFG.portfolio.allocations:
        col = tgt[a.strategy_id].to_numpy()
        assert (col >= a.min_capital * (1 - REL)).all()
        assert (col <= a.max_capital * (1 + REL)).all()
    # The tilt is live: some targets differ from the plain weight split of the same equity.
    mins = np.array([a.min_capital for a in CFG.portfolio.allocations])
    maxs = np.array([a.max_capital for a in CFG.portfolio.allocations])
    plain = np.array([allocate_capital(e, CFG.portfolio.target_weights, mins, maxs)[0] for e in eq])
    assert np.abs(tgt[SIDS].to_numpy() - plain).max() > 1.0
    # Capital rebalances happened and the accounts follow their (tilted) targets afterwards.
    assert (res.rebalances["level"] == "portfolio").any()


def test_max_capital_binding_fills_the_reserve() -> None:
    """Over 1995-2022 equity outgrows every cap: the excess waits as cash in `unallocated`."""
    panel = load_default_panel().slice("1995-01-01", None)
    res = PortfolioBacktestEngine(
        CFG.portfolio,
        equal_weight_strategies(SIDS),
        costs=CFG.costs,
        prices=panel,
        rebalance=CFG.rebalance,
    ).run()
    check_identities(res)
    caps = np.array([a.max_capital for a in CFG.portfolio.allocations])
    weights = CFG.portfolio.target_weights
    eq = res.equity.to_numpy()
    # Where even the raw split w * E exceeds every cap, each sleeve targets exactly its cap.
    binding = (eq[:, None] * weights[None, :] > caps[None, :]).all(axis=1)
    assert binding.sum() > 1000
    np.testing.assert_allclose(
        res.target_allocations[SIDS].to_numpy()[binding], np.broadcast_to(caps, (binding.sum(), 3))
    )
    np.testing.assert_allclose(
        res.target_allocations[RESERVE].to_numpy()[binding], eq[binding] - caps.sum(), rtol=REL
    )
    # Initially 50 000 splits within the caps: nothing in reserve.
    assert res.allocations[RESERVE].iloc[0] == 0.0
    reserve = res.allocations[RESERVE]
    np.testing.assert_array_equal(reserve.to_numpy(), res.sleeve_cash[RESERVE].to_numpy())
    assert reserve.iloc[-1] > 0.5 * eq[-1]
    # After the last capital rebalance each sleeve is back at most at its cap (plus drift).
    last = res.rebalances[res.rebalances["level"] == "portfolio"]["fill_timestamp"].dropna().max()
    after = res.allocations.loc[last, SIDS].to_numpy()
    assert (after <= caps * 1.01).all()


# ------------------------------------------------------------------------- user strategies


def test_custom_user_strategy_runs_through_the_engine(panel: PricePanel) -> None:
    strat = FixedWeights("mine", {"KO": 0.3, "PEP": 0.3, "WMT": 0.3}, 5)
    config = PortfolioConfig(
        "mix",
        60_000.0,
        (StrategyAllocation("mine", 0.5), StrategyAllocation("ew_v1", 0.5)),
    )
    strategies: dict[str, Strategy] = {
        "mine": strat,
        "ew_v1": create_strategy("ew_v1", "equal_weight", {}),
    }
    res = PortfolioBacktestEngine(config, strategies, costs=CFG.costs, prices=panel).run()
    check_identities(res)
    mine = res.sleeve_positions("mine")
    held = mine.columns[(mine != 0.0).any()]
    assert sorted(held) == ["KO", "PEP", "WMT"]
    trades = res.trades[res.trades["strategy"] == "mine"]
    # Bought on the bar after the decision (lag 1); later trades only resize it on drift.
    assert trades["timestamp"].min() == panel.index[6]
    rb = res.rebalances
    assert list(rb.loc[rb["strategy"] == "mine", "timestamp"]) == [panel.index[5]]
    assert (rb["level"] == "portfolio").any()
    assert list(res.metrics.index) == ["portfolio", "mine", "ew_v1"]
    assert list(res.comparison.index) == ["mine", "ew_v1"]


def test_strategy_row_mixing_nan_and_numbers_is_rejected(panel: PricePanel) -> None:
    strat = FixedWeights("bad_v1", {"KO": 0.5, "PEP": 0.5}, 7, nan_asset="AAPL")
    engine = PortfolioBacktestEngine(one_sleeve("bad_v1"), [strat], prices=panel)
    day = panel.index[7].date().isoformat()
    with pytest.raises(ConfigError, match=rf"strategies\.bad_v1: .*{day}.*mixes NaN"):
        engine.run()


# ------------------------------------------------------------------------------- bad input


def test_missing_strategy_for_an_allocation(panel: PricePanel) -> None:
    strategies = make_strategies()
    del strategies["momentum_v1"]
    with pytest.raises(ConfigError, match=r"strategies: no strategy given .*momentum_v1"):
        PortfolioBacktestEngine(CFG.portfolio, strategies, prices=panel)


def test_strategy_without_allocation(panel: PricePanel) -> None:
    strategies = make_strategies()
    strategies["extra_v1"] = create_strategy("extra_v1", "equal_weight", {})
    with pytest.raises(ConfigError, match=r"extra_v1.*no allocation"):
        PortfolioBacktestEngine(CFG.portfolio, strategies, prices=panel)


@pytest.mark.parametrize("lag", [-1, 1.5, True])
def test_bad_execution_lag(panel: PricePanel, lag: object) -> None:
    with pytest.raises(ConfigError, match=r"execution\.lag: must be an integer >= 0"):
        PortfolioBacktestEngine(CFG.portfolio, make_strategies(), execution_lag=lag, prices=panel)  # type: ignore[arg-type]


def test_universe_with_missing_asset(panel: PricePanel) -> None:
    strategies = make_strategies()
    strategies["momentum_v1"] = create_strategy(
        "momentum_v1", "momentum", {"top_k": 2}, ["AAPL", "NOPE"]
    )
    with pytest.raises(DataError, match=r"strategies\.momentum_v1\.universe: .*'NOPE'"):
        PortfolioBacktestEngine(CFG.portfolio, strategies, prices=panel)
    # The same check for a user strategy object.
    user = FixedWeights("custom", {"KO": 1.0}, 0, universe=["KO", "ZZZ"])
    with pytest.raises(DataError, match=r"strategies\.custom\.universe: .*'ZZZ'"):
        PortfolioBacktestEngine(one_sleeve(), [user], prices=panel)


def test_bad_prices_and_config_types(panel: PricePanel) -> None:
    with pytest.raises(ConfigError, match="prices: expected a PricePanel or DataFrame"):
        PortfolioBacktestEngine(CFG.portfolio, make_strategies(), prices=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="portfolio_config: expected PortfolioConfig"):
        PortfolioBacktestEngine({"id": "x"}, make_strategies(), prices=panel)  # type: ignore[arg-type]


def test_capital_moved_in_or_out_is_not_sleeve_performance(panel: PricePanel) -> None:
    """A sleeve that never trades stays flat in `strategy_equity` while transfers move its cash."""

    class Idle(FixedWeights):
        def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)

    config = PortfolioConfig(
        "idle", 60_000.0, (StrategyAllocation("idle", 0.5), StrategyAllocation("ew_v1", 0.5))
    )
    strategies: dict[str, Strategy] = {
        "idle": Idle("idle", {}, 0),
        "ew_v1": create_strategy("ew_v1", "equal_weight", {}),
    }
    res = PortfolioBacktestEngine(
        config, strategies, costs=CFG.costs, prices=panel, rebalance=CFG.rebalance
    ).run()
    check_identities(res)
    cash_sleeve = res.allocations["idle"]
    assert cash_sleeve.nunique() > 10  # month-end transfers moved capital in and out
    np.testing.assert_allclose(res.strategy_equity["idle"].to_numpy(), 30_000.0, rtol=1e-12)
    assert res.metrics.loc["idle", "total_return"] == pytest.approx(0.0, abs=1e-12)
    assert (res.sleeve_positions("idle").to_numpy() == 0.0).all()
    # A cash-only sleeve is exactly at the target decided at the close before each transfer.
    ev = res.rebalances[
        (res.rebalances["level"] == "portfolio") & res.rebalances["fill_timestamp"].notna()
    ]
    assert len(ev) >= 30
    decided = res.target_allocations.loc[pd.DatetimeIndex(ev["timestamp"]), "idle"]
    after = res.allocations.loc[pd.DatetimeIndex(ev["fill_timestamp"]), "idle"]
    np.testing.assert_allclose(after.to_numpy(), decided.to_numpy(), rtol=1e-12)


def test_metrics_conventions_come_from_the_yaml() -> None:
    """``metrics: {rf_annual, periods_per_year}`` reaches every metric and the manifest."""
    raw = load_config(default_config_path()).to_dict()
    raw["metrics"] = {"periods_per_year": 250, "rf_annual": 0.03}
    cfg = parse_config(raw)
    res = PortfolioBacktestEngine.from_config(cfg, start="2016-01-01", end="2016-12-31").run()
    assert res.manifest["rf_annual"] == 0.03 and res.manifest["periods_per_year"] == 250
    ref = compute_metrics(
        res.equity,
        traded_notional=res.traded_notional.sum(axis=1),
        costs=res.costs.sum(axis=1),
        initial_capital=cfg.portfolio.total_capital,
        rf_annual=0.03,
        periods_per_year=250,
    )
    np.testing.assert_array_equal(
        res.metrics.loc["portfolio"].to_numpy(), np.array([ref[k] for k in METRIC_KEYS])
    )


def test_standalone_false_skips_only_the_comparison() -> None:
    """``standalone=False``: same book, no standalone runs, an empty comparison table."""
    from portfolio.config import default_config_path, load_config

    cfg = load_config(default_config_path())
    full = PortfolioBacktestEngine.from_config(cfg, start="2016-01-01", end="2016-12-31").run()
    lean_engine = PortfolioBacktestEngine.from_config(cfg, start="2016-01-01", end="2016-12-31")
    lean_engine.standalone = False
    lean = lean_engine.run()
    pd.testing.assert_series_equal(lean.equity, full.equity)
    pd.testing.assert_frame_equal(lean.metrics, full.metrics)
    assert lean.standalone_equity.shape[1] == 0 and lean.comparison.empty
    assert full.standalone_equity.shape[1] == 3 and not full.comparison.empty
