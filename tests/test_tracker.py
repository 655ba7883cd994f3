"""PortfolioTracker: fills, marking, snapshots and thread safety."""

from __future__ import annotations

import dataclasses
import gzip
import threading
from pathlib import Path

import pandas as pd
import pytest

from portfolio.allocation import AllocationCalculator
from portfolio.contracts import (
    CostModel,
    FillEvent,
    OrderIntent,
    PortfolioConfig,
    PortfolioSnapshot,
    StrategyAllocation,
)
from portfolio.errors import ConfigError
from portfolio.tracker import PortfolioTracker

DATA = Path(__file__).resolve().parents[1] / "backtest" / "datasets" / "sp500_20_stocks.csv.gz"


def _config(threshold: float = 0.05) -> PortfolioConfig:
    return PortfolioConfig(
        "p1",
        100000.0,
        (
            StrategyAllocation("a", 0.5),
            StrategyAllocation("b", 0.25),
            StrategyAllocation("c", 0.25),
        ),
        rebalance_threshold=threshold,
    )


def test_initial_state() -> None:
    tracker = PortfolioTracker(_config())
    assert tracker.get_cash("a") == 50000.0
    assert tracker.get_strategy_capital("b") == 25000.0
    assert tracker.get_total_equity() == 100000.0
    assert tracker.get_positions("c") == {}


def test_fills_update_units_cash_and_marks() -> None:
    tracker = PortfolioTracker(_config())
    tracker.on_fill(FillEvent("a", "AAPL", "buy", 100.0, 100.0, commission=10.0, slippage=2.0))
    # cash = 50000 - 100 * 100 - 10 (slippage is inside the price, not charged again).
    assert tracker.get_cash("a") == 39990.0
    assert tracker.get_positions("a") == {"AAPL": 100.0}
    assert tracker.get_strategy_capital("a") == 49990.0  # marked at the fill price
    tracker.update_prices({"AAPL": 110.0}, timestamp_ns=5)
    assert tracker.get_strategy_capital("a") == 39990.0 + 100.0 * 110.0
    tracker.on_fill(FillEvent("a", "AAPL", "sell", 40.0, 120.0, commission=5.0))
    assert tracker.get_cash("a") == 39990.0 + 40.0 * 120.0 - 5.0
    assert tracker.get_positions("a") == {"AAPL": 60.0}
    # The fill's price is the new mark.
    assert tracker.get_strategy_capital("a") == 39990.0 + 4800.0 - 5.0 + 60.0 * 120.0
    # Closing the position removes it; other sleeves are untouched.
    tracker.on_fill(FillEvent("a", "AAPL", "sell", 60.0, 120.0))
    assert tracker.get_positions("a") == {}
    assert tracker.get_cash("b") == 25000.0
    assert tracker.get_total_equity() == 39990.0 + 4800.0 - 5.0 + 7200.0 + 50000.0


def test_unknown_strategy_and_bad_prices() -> None:
    tracker = PortfolioTracker(_config())
    with pytest.raises(ConfigError, match=r"^unknown strategy 'zz' for portfolio 'p1'"):
        tracker.on_fill(FillEvent("zz", "AAPL", "buy", 1.0, 1.0))
    with pytest.raises(ConfigError, match="unknown strategy 'zz'"):
        tracker.get_strategy_capital("zz")
    tracker.update_prices({"AAPL": 10.0})
    with pytest.raises(
        ConfigError,
        match=r"^PortfolioTracker\.update_prices\.prices\['MSFT'\] must be > 0, got -1\.0$",
    ):
        tracker.update_prices({"AAPL": 20.0, "MSFT": -1.0})
    # Nothing of the rejected update was stored.
    tracker.on_fill(FillEvent("a", "AAPL", "buy", 1.0, 10.0))
    tracker.update_prices({})
    assert tracker.get_strategy_capital("a") == 50000.0


def test_snapshot() -> None:
    tracker = PortfolioTracker(_config())
    tracker.on_fill(FillEvent("a", "AAPL", "buy", 100.0, 100.0, commission=10.0))
    tracker.update_prices({"AAPL": 110.0}, timestamp_ns=1_000)
    snap = tracker.get_snapshot()
    assert isinstance(snap, PortfolioSnapshot)
    assert snap.portfolio_id == "p1"
    assert snap.timestamp_ns == 1_000
    assert tracker.get_snapshot(timestamp_ns=7).timestamp_ns == 7
    # a: 39990 cash + 11000 stock; b, c untouched. Equity 100990, targets .5/.25/.25 of it.
    assert dict(snap.strategy_allocations) == {"a": 50990.0, "b": 25000.0, "c": 25000.0}
    assert snap.total_equity == 100990.0
    assert dict(snap.cash) == {"a": 39990.0, "b": 25000.0, "c": 25000.0}
    assert {k: dict(v) for k, v in snap.positions.items()} == {
        "a": {"AAPL": 100.0},
        "b": {},
        "c": {},
    }
    assert dict(snap.drift_from_target) == {
        "a": (50990.0 - 50495.0) / 50495.0,
        "b": (25000.0 - 25247.5) / 25247.5,
        "c": (25000.0 - 25247.5) / 25247.5,
    }
    assert snap.needs_rebalance is False  # max |drift| ~ 0.0098 <= 0.05
    # Same drift as the calculator computes from the capital.
    calc = AllocationCalculator(_config())
    assert dict(snap.drift_from_target) == calc.calculate_drift(dict(snap.strategy_allocations))
    # A 20 % rally in sleeve a breaks the band.
    tracker.update_prices({"AAPL": 250.0})
    assert tracker.get_snapshot().needs_rebalance is True
    # The snapshot is immutable and detached from the tracker.
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.total_equity = 0.0  # type: ignore[misc]
    assert snap.positions["a"]["AAPL"] == 100.0


def test_make_fill_applies_cost_model() -> None:
    costs = CostModel(commission_bps=10.0, commission_min=1.0, slippage_bps=20.0)
    tracker = PortfolioTracker(_config(), cost_model=costs)
    buy = tracker.make_fill(OrderIntent("a", "X", "buy", 10.0, 100.0), timestamp_ns=3)
    # 20 bp adverse: 100 * 1.002; commission 10 bp of 1000 = 1.0; slippage 20 bp of 1000 = 2.0.
    assert buy.price == 100.0 * (1.0 + 20.0 * 1e-4)
    assert buy.commission == costs.commission(1000.0) == 1.0
    assert buy.slippage == costs.slippage(1000.0)
    assert buy.timestamp_ns == 3
    sell = tracker.make_fill(OrderIntent("a", "X", "sell", 10.0, 100.0), price=50.0)
    assert sell.price == 50.0 * (1.0 - 20.0 * 1e-4)
    assert sell.commission == 1.0  # 10 bp of 500 = 0.5 < minimum 1.0
    tracker.on_fill(buy)
    assert tracker.get_cash("a") == 50000.0 - 10.0 * buy.price - 1.0


def test_concurrent_fills_are_exact() -> None:
    """8 threads x 1000 fills equal the sequential result exactly.

    Quantities, prices and commissions are small multiples of 1/8, so every partial sum is
    exactly representable and the result cannot depend on the order of the fills.
    """
    config = _config()
    prices = {"S0": 0.5, "S1": 1.25}
    fills_per_thread: list[list[FillEvent]] = []
    for t in range(8):
        fills = []
        for i in range(1000):
            fills.append(
                FillEvent(
                    strategy_id=("a", "b", "c")[(t + i) % 3],
                    symbol=f"S{i % 2}",
                    side="buy" if (i + t) % 4 else "sell",
                    quantity=float(1 + (i % 3)),
                    price=prices[f"S{i % 2}"],
                    commission=0.125 * (i % 5),
                )
            )
        fills_per_thread.append(fills)

    tracker = PortfolioTracker(config)
    barrier = threading.Barrier(9)
    errors: list[BaseException] = []

    def worker(fills: list[FillEvent]) -> None:
        barrier.wait()
        for fill in fills:
            tracker.on_fill(fill)

    def reader() -> None:  # concurrent reads must never see a torn state or crash
        barrier.wait()
        try:
            for _ in range(200):
                tracker.get_snapshot(timestamp_ns=0)
                tracker.get_total_equity()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f,)) for f in fills_per_thread]
    threads.append(threading.Thread(target=reader))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []

    # Sequential reference computed independently of the tracker.
    cash = {a.strategy_id: a.target_weight * config.total_capital for a in config.allocations}
    units: dict[str, dict[str, float]] = {sid: {} for sid in cash}
    for fills in fills_per_thread:
        for f in fills:
            signed = f.quantity if f.side == "buy" else -f.quantity
            units[f.strategy_id][f.symbol] = units[f.strategy_id].get(f.symbol, 0.0) + signed
            cash[f.strategy_id] += -signed * f.price - f.commission
    for sid, sleeve_cash in cash.items():
        assert tracker.get_cash(sid) == sleeve_cash
        expected_units = {s: u for s, u in units[sid].items() if u != 0.0}
        assert tracker.get_positions(sid) == expected_units
        capital = sleeve_cash + sum(u * prices[s] for s, u in units[sid].items())
        assert tracker.get_strategy_capital(sid) == capital


def test_buy_and_hold_on_real_prices() -> None:
    """One sleeve buys 10 AAPL at the first 2020 close and is marked at the last 2020 close."""
    with gzip.open(DATA, "rt") as fh:
        prices = pd.read_csv(fh, usecols=["Date", "AAPL"], parse_dates=["Date"], index_col="Date")
    year = prices.loc["2020", "AAPL"].to_numpy()
    first, last = float(year[0]), float(year[-1])
    config = PortfolioConfig("p", 10000.0, (StrategyAllocation("a", 1.0),))
    tracker = PortfolioTracker(config)
    tracker.on_fill(FillEvent("a", "AAPL", "buy", 10.0, first, commission=1.0))
    for px in year[1:]:
        tracker.update_prices({"AAPL": float(px)})
    expected = 10000.0 - 10.0 * first - 1.0 + 10.0 * last
    assert tracker.get_total_equity() == pytest.approx(expected, rel=1e-15, abs=1e-9)
