"""Contracts: validation messages, frozen-ness, dict round trips, cost formulas."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.contracts import (
    CostModel,
    FillEvent,
    OrderIntent,
    PortfolioConfig,
    PortfolioSnapshot,
    RebalancePlan,
    StrategyAllocation,
)
from portfolio.errors import ConfigError


def _raises(message: str) -> Any:
    """``pytest.raises`` matching the whole message exactly."""
    return pytest.raises(ConfigError, match="^" + re.escape(message) + "$")


def _portfolio(**overrides: Any) -> PortfolioConfig:
    kwargs: dict[str, Any] = {
        "portfolio_id": "p1",
        "total_capital": 50000.0,
        "allocations": (
            StrategyAllocation("a", 0.5),
            StrategyAllocation("b", 0.25),
            StrategyAllocation("c", 0.25),
        ),
    }
    kwargs.update(overrides)
    return PortfolioConfig(**kwargs)


# ----------------------------------------------------------------------------- StrategyAllocation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"target_weight": -0.1},
            "StrategyAllocation.target_weight must be in [0, 1], got -0.1 (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 1.5},
            "StrategyAllocation.target_weight must be in [0, 1], got 1.5 (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": math.nan},
            "StrategyAllocation.target_weight must be finite, got nan (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": True},
            "StrategyAllocation.target_weight must be a number, got bool True "
            "(strategy 'momentum_v1')",
        ),
        (
            {"target_weight": "0.5"},
            "StrategyAllocation.target_weight must be a number, got str '0.5' "
            "(strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 0.5, "min_capital": -1.0},
            "StrategyAllocation.min_capital must be >= 0, got -1.0 (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 0.5, "min_capital": math.inf},
            "StrategyAllocation.min_capital must be finite, got inf (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 0.5, "max_capital": -5},
            "StrategyAllocation.max_capital must be >= 0, got -5 (strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 0.5, "min_capital": 300.0, "max_capital": 200.0},
            "StrategyAllocation.min_capital must be <= max_capital (200.0), got 300.0 "
            "(strategy 'momentum_v1')",
        ),
        (
            {"target_weight": 0.5, "risk_multiplier": -0.5},
            "StrategyAllocation.risk_multiplier must be >= 0, got -0.5 (strategy 'momentum_v1')",
        ),
    ],
)
def test_strategy_allocation_errors(kwargs: dict[str, Any], message: str) -> None:
    with _raises(message):
        StrategyAllocation("momentum_v1", **kwargs)


@pytest.mark.parametrize("bad_id", ["", "   ", 5, None])
def test_strategy_allocation_rejects_bad_id(bad_id: Any) -> None:
    with pytest.raises(ConfigError, match=r"^StrategyAllocation\.strategy_id must be a "):
        StrategyAllocation(bad_id, 0.5)


def test_strategy_allocation_normalizes_numbers() -> None:
    alloc = StrategyAllocation("x", 1, 10, np.float64(20.0), np.int64(2))
    assert alloc.target_weight == 1.0 and type(alloc.target_weight) is float
    assert type(alloc.min_capital) is float and type(alloc.max_capital) is float
    assert type(alloc.risk_multiplier) is float
    assert StrategyAllocation("x", 0.5).max_capital == math.inf


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    with _raises(
        "StrategyAllocation.from_dict: unknown key(s) 'weight', 'extra'; allowed keys: "
        "strategy_id, target_weight, min_capital, max_capital, risk_multiplier"
    ):
        StrategyAllocation.from_dict({"strategy_id": "a", "weight": 1.0, "extra": 2})
    with _raises("StrategyAllocation.from_dict: missing required key(s) 'target_weight'"):
        StrategyAllocation.from_dict({"strategy_id": "a"})
    with _raises("StrategyAllocation.from_dict expects a mapping, got list [1, 2]"):
        StrategyAllocation.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^PortfolioConfig\.from_dict: unknown key\(s\) 'id'"):
        PortfolioConfig.from_dict({"id": "p", "total_capital": 1.0, "allocations": []})


_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
_money = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def _allocations(draw: st.DrawFn) -> StrategyAllocation:
    lo = draw(_money)
    hi = draw(st.one_of(st.just(math.inf), _money.map(lambda x: lo + x)))
    return StrategyAllocation(
        draw(_ids),
        draw(st.floats(min_value=0.0, max_value=1.0)),
        lo,
        hi,
        draw(st.floats(min_value=0.0, max_value=10.0)),
    )


@settings(max_examples=100, deadline=None)
@given(_allocations())
def test_strategy_allocation_round_trip(alloc: StrategyAllocation) -> None:
    data = alloc.to_dict()
    assert type(data) is dict
    assert StrategyAllocation.from_dict(data) == alloc


@st.composite
def _portfolios(draw: st.DrawFn) -> PortfolioConfig:
    ids = draw(st.lists(_ids, min_size=1, max_size=6, unique=True))
    raw = draw(st.lists(st.integers(1, 1000), min_size=len(ids), max_size=len(ids)))
    total = sum(raw)
    allocs = tuple(
        StrategyAllocation(sid, r / total, draw(_money), math.inf)
        for sid, r in zip(ids, raw, strict=True)
    )
    return PortfolioConfig(
        draw(_ids),
        draw(st.floats(min_value=1.0, max_value=1e9)),
        allocs,
        draw(st.floats(min_value=0.0, max_value=1.0)),
        draw(st.floats(min_value=0.1, max_value=1000.0)),
    )


@settings(max_examples=100, deadline=None)
@given(_portfolios())
def test_portfolio_config_round_trip(config: PortfolioConfig) -> None:
    data = config.to_dict()
    assert isinstance(data["allocations"], list)
    assert all(type(a) is dict for a in data["allocations"])
    assert PortfolioConfig.from_dict(data) == config


# ----------------------------------------------------------------------------- PortfolioConfig


def test_portfolio_config_helpers() -> None:
    config = _portfolio(allocations=[StrategyAllocation("a", 0.75), StrategyAllocation("b", 0.25)])
    assert isinstance(config.allocations, tuple)
    assert config.strategy_ids == ("a", "b")
    np.testing.assert_array_equal(config.target_weights, np.array([0.75, 0.25]))
    assert config.target_weights.dtype == np.float64
    assert config.allocation("b") == StrategyAllocation("b", 0.25)
    with _raises(
        "PortfolioConfig.allocation: unknown strategy 'zz' in portfolio 'p1' (known: a, b)"
    ):
        config.allocation("zz")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"total_capital": 0.0},
            "PortfolioConfig.total_capital must be > 0, got 0.0 (portfolio 'p1')",
        ),
        (
            {"total_capital": "1e6"},
            "PortfolioConfig.total_capital must be a number, got str '1e6' (portfolio 'p1')",
        ),
        (
            {"rebalance_threshold": -0.01},
            "PortfolioConfig.rebalance_threshold must be >= 0, got -0.01 (portfolio 'p1')",
        ),
        (
            {"rebalance_frequency_hours": 0},
            "PortfolioConfig.rebalance_frequency_hours must be > 0, got 0 (portfolio 'p1')",
        ),
        ({"allocations": ()}, "PortfolioConfig.allocations must not be empty (portfolio 'p1')"),
        (
            {"allocations": (StrategyAllocation("a", 0.5), StrategyAllocation("b", 0.4))},
            "PortfolioConfig.allocations target weights must sum to 1 (tolerance 1e-9), "
            "got 0.9 (portfolio 'p1')",
        ),
        (
            {"allocations": (StrategyAllocation("a", 0.5), StrategyAllocation("a", 0.5))},
            "PortfolioConfig.allocations[1] duplicates strategy id 'a' (portfolio 'p1')",
        ),
        (
            {"allocations": (StrategyAllocation("a", 0.5), {"strategy_id": "b"})},
            "PortfolioConfig.allocations[1] must be a StrategyAllocation, got dict "
            "{'strategy_id': 'b'} (portfolio 'p1')",
        ),
    ],
)
def test_portfolio_config_errors(overrides: dict[str, Any], message: str) -> None:
    with _raises(message):
        _portfolio(**overrides)


def test_weight_sum_tolerance_is_1e9() -> None:
    ok = (StrategyAllocation("a", 0.5), StrategyAllocation("b", 0.5 + 5e-10))
    assert _portfolio(allocations=ok).allocations == ok
    bad = (StrategyAllocation("a", 0.5), StrategyAllocation("b", 0.5 + 2e-9))
    with pytest.raises(ConfigError, match="must sum to 1"):
        _portfolio(allocations=bad)


# ----------------------------------------------------------------------------- Snapshot


def _snapshot() -> PortfolioSnapshot:
    return PortfolioSnapshot(
        portfolio_id="p1",
        timestamp_ns=1_700_000_000_000_000_000,
        total_equity=100.0,
        strategy_allocations={"a": 60.0, "b": 40},
        drift_from_target={"a": 0.2, "b": -0.2},
        needs_rebalance=True,
        positions={"a": {"AAPL": 2.0, "MSFT": -1.0}, "b": {}},
        cash={"a": 10.0, "b": 40.0},
    )


def test_snapshot_is_read_only_and_round_trips() -> None:
    snap = _snapshot()
    with pytest.raises(TypeError):
        snap.strategy_allocations["a"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.positions["a"]["AAPL"] = 3.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.total_equity = 1.0  # type: ignore[misc]
    data = snap.to_dict()
    assert type(data["strategy_allocations"]) is dict
    assert type(data["positions"]["a"]) is dict
    assert data["strategy_allocations"] == {"a": 60.0, "b": 40.0}
    assert PortfolioSnapshot.from_dict(data) == snap
    # The snapshot copied its inputs: mutating them later changes nothing.
    cash = {"a": 1.0}
    snap2 = PortfolioSnapshot("p", 0, 1.0, {"a": 1.0}, {"a": 0.0}, False, {}, cash)
    cash["a"] = 99.0
    assert snap2.cash["a"] == 1.0
    assert PortfolioSnapshot("p", 0, 1.0, {}, {}, False).positions == {}


def test_snapshot_pickles_and_deep_copies() -> None:
    # MappingProxyType itself cannot be pickled; the snapshot rebuilds from plain dicts.
    snap = _snapshot()
    for clone in (pickle.loads(pickle.dumps(snap)), copy.deepcopy(snap)):
        assert clone == snap
        assert isinstance(clone.positions["a"], MappingProxyType)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timestamp_ns", 1.5, "PortfolioSnapshot.timestamp_ns must be an integer, got float 1.5"),
        ("total_equity", math.inf, "PortfolioSnapshot.total_equity must be finite, got inf"),
        (
            "drift_from_target",
            {"a": "x"},
            "PortfolioSnapshot.drift_from_target['a'] must be a number, got str 'x'",
        ),
        (
            "needs_rebalance",
            1,
            "PortfolioSnapshot.needs_rebalance must be a boolean (true/false), got int 1",
        ),
        (
            "positions",
            {"a": [1.0]},
            "PortfolioSnapshot.positions['a'] must be a mapping, got list [1.0]",
        ),
        ("cash", {"a": math.nan}, "PortfolioSnapshot.cash['a'] must be finite, got nan"),
    ],
)
def test_snapshot_errors(field: str, value: Any, message: str) -> None:
    kwargs = _snapshot().to_dict()
    kwargs[field] = value
    with _raises(message):
        PortfolioSnapshot(**kwargs)


# ----------------------------------------------------------------------------- Orders and fills


def test_order_intent_properties_and_errors() -> None:
    buy = OrderIntent("s", "AAPL", "buy", 3.0, 2.5)
    sell = OrderIntent("s", "AAPL", "sell", 3.0, 2.5, reason="exit")
    assert buy.notional == 7.5 and sell.notional == 7.5
    assert buy.signed_quantity == 3.0 and sell.signed_quantity == -3.0
    assert buy.reason == "rebalance"
    assert OrderIntent.from_dict(sell.to_dict()) == sell
    with _raises(
        "OrderIntent.side must be one of 'buy', 'sell', got 'BUY' (strategy 's', symbol 'AAPL')"
    ):
        OrderIntent("s", "AAPL", "BUY", 1.0, 1.0)  # type: ignore[arg-type]
    with _raises("OrderIntent.quantity must be > 0, got 0.0 (strategy 's', symbol 'AAPL')"):
        OrderIntent("s", "AAPL", "buy", 0.0, 1.0)
    with _raises("OrderIntent.price must be > 0, got -1.0 (strategy 's', symbol 'AAPL')"):
        OrderIntent("s", "AAPL", "buy", 1.0, -1.0)
    with _raises("OrderIntent.symbol must be a non-empty string, got '' (strategy 's', symbol '')"):
        OrderIntent("s", "", "buy", 1.0, 1.0)


def test_fill_event_cash_delta() -> None:
    # Buy 10 @ 100.5 with 2.0 commission: cash falls by 1005 + 2; slippage is attribution only.
    buy = FillEvent("s", "AAPL", "buy", 10.0, 100.5, commission=2.0, slippage=0.25)
    assert buy.notional == 1005.0
    assert buy.signed_quantity == 10.0
    assert buy.cash_delta == -1007.0
    # Sell 4 @ 50 with 1.5 commission: cash rises by 200 - 1.5.
    sell = FillEvent("s", "AAPL", "sell", 4.0, 50.0, commission=1.5, slippage=9.0)
    assert sell.signed_quantity == -4.0
    assert sell.cash_delta == 198.5
    assert FillEvent.from_dict(buy.to_dict()) == buy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"price": 0.0}, "FillEvent.price must be > 0, got 0.0 (strategy 's', symbol 'X')"),
        ({"quantity": -1}, "FillEvent.quantity must be > 0, got -1 (strategy 's', symbol 'X')"),
        (
            {"commission": -0.01},
            "FillEvent.commission must be >= 0, got -0.01 (strategy 's', symbol 'X')",
        ),
        (
            {"slippage": -2.0},
            "FillEvent.slippage must be >= 0, got -2.0 (strategy 's', symbol 'X')",
        ),
        (
            {"timestamp_ns": "now"},
            "FillEvent.timestamp_ns must be an integer, got str 'now' (strategy 's', symbol 'X')",
        ),
    ],
)
def test_fill_event_errors(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "strategy_id": "s",
        "symbol": "X",
        "side": "buy",
        "quantity": 1.0,
        "price": 1.0,
    }
    base.update(kwargs)
    with _raises(message):
        FillEvent(**base)


def test_rebalance_plan() -> None:
    trades = [OrderIntent("a", "X", "buy", 1.0, 10.0), OrderIntent("b", "Y", "sell", 2.0, 5.0)]
    plan = RebalancePlan("p", 5, trades, 0.03, 1.25)  # type: ignore[arg-type]
    assert plan.trades == tuple(trades)
    data = plan.to_dict()
    assert data["trades"][1] == {
        "strategy_id": "b",
        "symbol": "Y",
        "side": "sell",
        "quantity": 2.0,
        "price": 5.0,
        "reason": "rebalance",
    }
    assert RebalancePlan.from_dict(data) == plan
    assert RebalancePlan("p", 0, (), 0.0, 0.0).trades == ()
    with _raises("RebalancePlan.estimated_costs must be >= 0, got -1.0 (portfolio 'p')"):
        RebalancePlan("p", 0, (), 0.0, -1.0)
    with _raises("RebalancePlan.trades[0] must be an OrderIntent, got str 'x' (portfolio 'p')"):
        RebalancePlan("p", 0, ("x",), 0.0, 0.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CostModel


def test_cost_model_formulas() -> None:
    costs = CostModel(commission_bps=10.0, commission_fixed=1.0, commission_min=5.0, slippage_bps=2)
    assert costs.commission(0.0) == 0.0
    # 10 bp of 1000 = 1, + 1 fixed = 2 < min 5.
    assert costs.commission(1000.0) == 5.0
    # 10 bp of 100000 = 100, + 1 fixed = 101; the sign of the notional is ignored.
    assert costs.commission(100000.0) == 101.0
    assert costs.commission(-100000.0) == 101.0
    # 2 bp of 50000 = 10.
    assert costs.slippage(50000.0) == 10.0
    assert costs.slippage(-50000.0) == 10.0
    arr = costs.as_array()
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, np.array([10.0, 1.0, 5.0, 2.0]))
    assert CostModel().commission(1e6) == 0.0
    assert CostModel.from_dict(costs.to_dict()) == costs
    assert CostModel.from_dict({}) == CostModel()


@pytest.mark.parametrize(
    "name", ["commission_bps", "commission_fixed", "commission_min", "slippage_bps"]
)
def test_cost_model_errors(name: str) -> None:
    with _raises(f"CostModel.{name} must be >= 0, got -1.0"):
        CostModel(**{name: -1.0})
    with _raises(f"CostModel.{name} must be finite, got inf"):
        CostModel(**{name: math.inf})


# ----------------------------------------------------------------------------- frozen


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (StrategyAllocation("a", 1.0), "target_weight"),
        (_portfolio(), "total_capital"),
        (_snapshot(), "needs_rebalance"),
        (OrderIntent("s", "X", "buy", 1.0, 1.0), "quantity"),
        (FillEvent("s", "X", "buy", 1.0, 1.0), "price"),
        (RebalancePlan("p", 0, (), 0.0, 0.0), "estimated_costs"),
        (CostModel(), "slippage_bps"),
    ],
)
def test_contracts_are_frozen(obj: Any, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, 1.0)
    assert not hasattr(obj, "__dict__")  # slots: no ad-hoc attributes either
