"""`Rebalancer.create_rebalance_plan`: the live step, through the same jitted rebalance rule."""

from __future__ import annotations

import math
from typing import Any

import pytest

from portfolio.allocation import AllocationCalculator
from portfolio.contracts import (
    CostModel,
    FillEvent,
    PortfolioConfig,
    PortfolioSnapshot,
    StrategyAllocation,
)
from portfolio.position_sizer import PositionSizer
from portfolio.rebalancer import Rebalancer
from portfolio.tracker import PortfolioTracker

COSTS = CostModel(commission_bps=10.0, commission_fixed=1.0, commission_min=5.0, slippage_bps=5.0)
PRICES = {"X": 100.0, "Y": 50.0}


def _config(wa: float = 0.5, wb: float = 0.3, wc: float = 0.2) -> PortfolioConfig:
    return PortfolioConfig(
        portfolio_id="p",
        total_capital=100_000.0,
        allocations=(
            StrategyAllocation("A", wa),
            StrategyAllocation("B", wb),
            StrategyAllocation("C", wc),
        ),
        rebalance_threshold=0.05,
    )


def _snapshot(config: PortfolioConfig, *, with_cash: bool = True) -> PortfolioSnapshot:
    # A: 400 X (40000) + 20000 cash = 60000
    # B: 100 X (10000) + 100 Y (5000) + 10000 cash = 25000
    # C: 200 Y (10000) + 5000 cash = 15000            total 100000
    positions = {"A": {"X": 400.0}, "B": {"X": 100.0, "Y": 100.0}, "C": {"Y": 200.0}}
    cash = {"A": 20_000.0, "B": 10_000.0, "C": 5_000.0}
    capital = {"A": 60_000.0, "B": 25_000.0, "C": 15_000.0}
    calc = AllocationCalculator(config)
    drift = calc.calculate_drift(capital)
    return PortfolioSnapshot(
        portfolio_id="p",
        timestamp_ns=1,
        total_equity=100_000.0,
        strategy_allocations=capital,
        drift_from_target=drift,
        needs_rebalance=calc.needs_rebalance(drift),
        positions=positions,
        cash=cash if with_cash else {},
    )


def _rebalancer(config: PortfolioConfig, **kw: Any) -> Rebalancer:
    return Rebalancer(
        AllocationCalculator(config),
        PositionSizer(lot_size=kw.pop("lot_size", 1.0)),
        kw.pop("min_trade_value", 10.0),
        cost_model=kw.pop("cost_model", COSTS),
        **kw,
    )


def _trades(plan: Any) -> list[tuple[str, str, str, float, float]]:
    return [(t.strategy_id, t.symbol, t.side, t.quantity, t.price) for t in plan.trades]


def _worst_drift_after(after: list[float], weights: list[float]) -> float:
    """Largest relative drift of ``after`` capitals from ``w * sum(after)``."""
    total = sum(after)
    return max(abs((a - w * total) / (w * total)) for a, w in zip(after, weights, strict=True))


@pytest.mark.parametrize("with_cash", [True, False])
def test_plan_hand_computed_with_netting(with_cash: bool) -> None:
    # Targets 50000 / 30000 / 20000; holdings resized by target / capital, whole units:
    #   A: 400 * 5/6 = 333.3 -> 333 X  (sell 67 X = 6700), gives 10000
    #   B: 100 * 1.2 = 120 X and 120 Y (buy 20 X = 2000, 20 Y = 1000), gets 5000
    #   C: 200 * 4/3 = 266.7 -> 266 Y  (buy 66 Y = 3300), gets 5000
    # Netted per asset (10 bps + 1, min 5, slippage 5 bps):
    #   X: net sell 47 @ 100 = 4700: commission max(5, 4.7 + 1) = 5.7, slippage 2.35
    #   Y: net buy 86 @ 50 = 4300: commission max(5, 4.3 + 1) = 5.3, slippage 2.15
    #   estimated costs 5.7 + 2.35 + 5.3 + 2.15 = 15.5
    config = _config()
    plan = _rebalancer(config).create_rebalance_plan(_snapshot(config, with_cash=with_cash), PRICES)
    assert _trades(plan) == [
        ("A", "X", "sell", 67.0, 100.0),  # sells first
        ("B", "X", "buy", 20.0, 100.0),
        ("B", "Y", "buy", 20.0, 50.0),
        ("C", "Y", "buy", 66.0, 50.0),
    ]
    assert plan.estimated_costs == pytest.approx(15.5, abs=1e-12)
    # Drift before: A +0.2, B -1/6, C -0.25 -> worst 0.25. After, each sleeve holds its target
    # minus its share of the netted costs (pro rata to units):
    share_x, share_y = 8.05 / 87, 7.45 / 86
    after = [50_000 - 67 * share_x, 30_000 - 20 * share_x - 20 * share_y, 20_000 - 66 * share_y]
    expected = 0.25 - _worst_drift_after(after, [0.5, 0.3, 0.2])
    assert plan.expected_drift_reduction == pytest.approx(expected, abs=1e-12)
    assert plan.expected_drift_reduction > 0.24


def test_plan_without_netting_pays_standalone_costs() -> None:
    # A sell 6700: 7.7 + 3.35; B buy 2000: 5 + 1; B buy 1000: 5 + 0.5; C buy 3300: 5 + 1.65
    config = _config()
    plan = _rebalancer(config, netting=False).create_rebalance_plan(_snapshot(config), PRICES)
    assert plan.estimated_costs == pytest.approx(29.2, abs=1e-12)
    assert [t.quantity for t in plan.trades] == [67.0, 20.0, 20.0, 66.0]


def test_plan_min_trade_filter() -> None:
    # min_trade_value 2500 drops B's 2000 and 1000 orders; A's sale and C's buy stay, each
    # alone in its asset: 7.7 + 3.35 + 5 + 1.65 = 17.7
    config = _config()
    plan = _rebalancer(config, min_trade_value=2500.0).create_rebalance_plan(
        _snapshot(config), PRICES
    )
    assert _trades(plan) == [("A", "X", "sell", 67.0, 100.0), ("C", "Y", "buy", 66.0, 50.0)]
    assert plan.estimated_costs == pytest.approx(17.7, abs=1e-12)


def test_plan_zero_weight_sleeve_moves_out() -> None:
    # C has allocation weight 0: its target is 0 and its drift is absolute, 15000 / 100000.
    # Targets A 60000 (at target), B 40000 (ratio 1.6: 160 X, 160 Y), C 0 (sells its 200 Y).
    config = _config(0.6, 0.4, 0.0)
    snap = _snapshot(config)
    assert snap.drift_from_target["C"] == pytest.approx(0.15, abs=1e-15)
    assert snap.drift_from_target["B"] == pytest.approx(-0.375, abs=1e-15)
    free = CostModel()
    plan = _rebalancer(config, cost_model=free).create_rebalance_plan(snap, PRICES)
    assert _trades(plan) == [
        ("C", "Y", "sell", 200.0, 50.0),
        ("B", "X", "buy", 60.0, 100.0),
        ("B", "Y", "buy", 60.0, 50.0),
    ]
    assert plan.estimated_costs == 0.0
    assert plan.expected_drift_reduction == pytest.approx(0.375, abs=1e-12)  # all at target

    # With a 10 bps commission (no netting), C's sale nets 10000 - 10, so it can only release
    # 5000 + 9990 = 14990 (its cash is never overdrawn), which B receives and spends 6 + 3 of.
    # After: A 60000, B 25000 + 14990 - 9 = 39981, C 0.
    bps = CostModel(commission_bps=10.0)
    plan = _rebalancer(config, cost_model=bps, netting=False).create_rebalance_plan(snap, PRICES)
    assert plan.estimated_costs == pytest.approx(10 + 6 + 3, abs=1e-12)
    total = 60_000 + 39_981
    worst = max(
        abs(60_000 - 0.6 * total) / (0.6 * total), abs(39_981 - 0.4 * total) / (0.4 * total)
    )
    assert plan.expected_drift_reduction == pytest.approx(0.375 - worst, abs=1e-12)


def test_plan_scales_buys_to_cash() -> None:
    # A: 600 X (60000), B: 400 X (40000), no cash; targets 50000 each (C has weight 0).
    # A resizes to 500 X (sells 100 = 10000) and must give 10000; its sale nets
    # 10000 - max(5, 10 + 1) - 5 = 9984, all it can release. B resizes to 500 X (buys 100)
    # with those 9984: 10000 k + (10 k + 1) + 5 k = 9984 -> k = 9983 / 10015, 99.68 -> 99 X.
    config = _config(0.5, 0.5, 0.0)
    calc = AllocationCalculator(config)
    capital = {"A": 60_000.0, "B": 40_000.0, "C": 0.0}
    drift = calc.calculate_drift(capital)
    snap = PortfolioSnapshot(
        "p", 1, 100_000.0, capital, drift, calc.needs_rebalance(drift),
        positions={"A": {"X": 600.0}, "B": {"X": 400.0}}, cash={"A": 0.0, "B": 0.0, "C": 0.0},
    )  # fmt: skip
    plan = _rebalancer(config, netting=False).create_rebalance_plan(snap, PRICES)
    assert _trades(plan) == [("A", "X", "sell", 100.0, 100.0), ("B", "X", "buy", 99.0, 100.0)]
    # standalone: 11 + 5 on the sale, max(5, 9.9 + 1) + 4.95 on the buy
    assert plan.estimated_costs == pytest.approx(16 + 10.9 + 4.95, abs=1e-12)
    # With min_trade_value 20000 both orders are dropped: A releases nothing (no cash), B
    # receives nothing, the plan is empty and reduces no drift.
    plan = _rebalancer(config, min_trade_value=20_000.0).create_rebalance_plan(snap, PRICES)
    assert plan.trades == ()
    assert plan.estimated_costs == 0.0
    assert plan.expected_drift_reduction == 0.0


def test_executing_the_plan_reaches_the_capital_targets() -> None:
    config = _config()
    tracker = PortfolioTracker(config, cost_model=COSTS)
    # Build the holdings with free fills at X = 100, Y = 50 (cash A 50000, B 30000, C 20000).
    for sid, sym, qty, px in [
        ("A", "X", 400.0, 100.0),
        ("B", "X", 100.0, 100.0),
        ("B", "Y", 100.0, 50.0),
        ("C", "Y", 200.0, 50.0),
    ]:
        tracker.on_fill(FillEvent(sid, sym, "buy", qty, px))
    # Prices move: X 125, Y 40 -> A 10000 + 50000 = 60000, B 15000 + 12500 + 4000 = 31500,
    # C 10000 + 8000 = 18000; total 109500, targets 54750 / 32850 / 21900.
    prices = {"X": 125.0, "Y": 40.0}
    tracker.update_prices(prices)
    snap = tracker.get_snapshot()
    before = dict(snap.strategy_allocations)
    assert before == {"A": 60_000.0, "B": 31_500.0, "C": 18_000.0}
    assert snap.needs_rebalance
    targets = {"A": 54_750.0, "B": 32_850.0, "C": 21_900.0}
    held = {sid: dict(pos) for sid, pos in snap.positions.items()}

    plan = _rebalancer(config, netting=False).create_rebalance_plan(snap, prices)
    sides = [t.side for t in plan.trades]
    assert sides == sorted(sides, key=lambda s: s == "buy")  # sells first
    paid = dict.fromkeys(targets, 0.0)
    for intent in plan.trades:
        fill = tracker.make_fill(intent)
        paid[intent.strategy_id] += fill.commission + fill.slippage
        tracker.on_fill(fill)
    tracker.update_prices(prices)  # marks back at the reference closes (fills were slipped)
    assert sum(paid.values()) == pytest.approx(plan.estimated_costs, abs=1e-9)

    for sid, target in targets.items():
        # holdings are the old ones resized by target / capital, whole units toward zero
        ratio = target / before[sid]
        pos = tracker.get_positions(sid)
        for sym, units in held[sid].items():
            assert pos.get(sym, 0.0) == math.floor(units * ratio + 1e-9)
        # so their value is the target's share of them, up to one unit per asset
        value = sum(u * prices[s] for s, u in pos.items())
        wanted = target * sum(u * prices[s] for s, u in held[sid].items()) / before[sid]
        assert wanted - sum(prices[s] for s in pos) <= value <= wanted
        # trades move no capital (only costs leave); the plan's cash transfer target - capital
        # then lands every sleeve on its target, minus its own costs
        after = tracker.get_strategy_capital(sid)
        assert after == pytest.approx(before[sid] - paid[sid], abs=1e-9)
        assert after + (target - before[sid]) == pytest.approx(target - paid[sid], abs=1e-9)


def test_rebalancer_rejects_missing_prices() -> None:
    from portfolio.errors import ConfigError

    config = _config()
    with pytest.raises(ConfigError, match="no price for held symbol 'Y'"):
        _rebalancer(config).create_rebalance_plan(_snapshot(config), {"X": 100.0})
