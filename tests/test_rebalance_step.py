"""The shared rebalance step (:mod:`portfolio.rebalance_nb`): costs, buy scaling, sizing, fills."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _reference_kernel import ref_buy_scale, ref_commission, ref_step
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portfolio.rebalance_nb import (
    TRADE_FIELDS,
    buy_scale_nb,
    commission_nb,
    execute_fills_nb,
    plan_fills_nb,
    sleeve_target_units_nb,
)

# numba and the reference loop make single examples slowish: no deadline
_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _costs(bps: float = 0.0, fixed: float = 0.0, minimum: float = 0.0, slip: float = 0.0) -> Any:
    return np.array([bps, fixed, minimum, slip], dtype=np.float64)


# ----------------------------------------------------------------------------- commission


@pytest.mark.parametrize(
    ("notional", "costs", "expected"),
    [
        (0.0, _costs(10, 1, 5), 0.0),  # no order, no fee, even with a minimum
        (-100.0, _costs(10, 1, 5), 0.0),
        (10_000.0, _costs(10), 10.0),  # 10 bps of 10000
        (10_000.0, _costs(10, 2.5), 12.5),  # + fixed fee per order
        (1_000.0, _costs(10, 1, 5), 5.0),  # 1 + 1 < 5: the minimum binds
        (5_000.0, _costs(10, 1, 5), 6.0),  # 5 + 1 > 5
        (4_000.0, _costs(10, 1, 5), 5.0),  # 4 + 1 == 5: either branch, same number
        (1e-9, _costs(0, 0, 1), 1.0),  # a dust order still pays the minimum
        (10_000.0, _costs(0, 0, 0, 50), 0.0),  # slippage is not commission
    ],
)
def test_commission(notional: float, costs: np.ndarray, expected: float) -> None:
    assert commission_nb(notional, costs) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- buy scaling


def _basket_cash(notionals: np.ndarray, k: float, costs: np.ndarray) -> float:
    """Cash for k times the basket: notional + commission + slippage per non-empty order."""
    total = 0.0
    for n in notionals * k:
        if n > 0.0:
            total += n + ref_commission(n, costs) + costs[3] * 1e-4 * n
    return total


@settings(_BASE, max_examples=300)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(10.0, 1e5)), min_size=1, max_size=6),
    st.sampled_from([0.0, 1.0, 10.0, 100.0]),
    st.sampled_from([0.0, 0.5, 20.0]),
    st.sampled_from([0.0, 1.0, 50.0]),
    st.sampled_from([0.0, 2.0, 30.0]),
    st.floats(-100.0, 7e5),
)
def test_buy_scale_is_the_largest_fitting_k(
    notionals: list[float], bps: float, fixed: float, minimum: float, slip: float, budget: float
) -> None:
    n = np.array(notionals)
    costs = _costs(bps, fixed, minimum, slip)
    k = buy_scale_nb(n, costs, budget)
    assert 0.0 <= k <= 1.0
    if budget >= 0.0:
        assert _basket_cash(n, k, costs) <= budget * (1.0 + 1e-13)  # it fits
    if k < 1.0:
        assert _basket_cash(n, k + 1e-9, costs) > budget  # and a hair more does not
    # the exact piecewise-linear solve of the reference agrees with the bisection
    assert k == pytest.approx(ref_buy_scale(notionals, costs, budget), abs=1e-12)


def test_buy_scale_hand_computed() -> None:
    costs = _costs(10, 2, 5, 5)
    # one order of 10000: 10000 k + (10 k + 2) + 5 k = 10000 -> k = 9998 / 10015
    assert buy_scale_nb(np.array([10_000.0]), costs, 10_000.0) == pytest.approx(
        9998 / 10015, abs=1e-15
    )
    # it all fits: 1.0 exactly
    assert buy_scale_nb(np.array([1_000.0]), costs, 10_000.0) == 1.0
    # not even the minimum commission of one order fits: nothing is bought
    assert buy_scale_nb(np.array([1_000.0]), costs, 4.0) == 0.0
    assert buy_scale_nb(np.array([1_000.0]), costs, -1.0) == 0.0
    # two orders, minimum binding on the small one:
    # 9000 k + (9 k + 2) + 4.5 k + 1000 k + 5 + 0.5 k = 10014 k + 7 = 9000 -> k = 8993 / 10014
    # (check: 1 k + 2 = 2.9 < 5 so the minimum does bind on the 1000 order at that k)
    k = buy_scale_nb(np.array([9_000.0, 1_000.0]), costs, 9_000.0)
    assert k == pytest.approx(8993 / 10014, abs=1e-15)


# ----------------------------------------------------------------------------- target units


def _target(weights: list[float], capital: float, prices: list[float], **kw: float) -> list[float]:
    out = np.full(len(weights), -99.0)
    sleeve_target_units_nb(
        np.array(weights, dtype=np.float64),
        float(capital),
        np.array(prices, dtype=np.float64),
        kw.get("risk_multiplier", 1.0),
        kw.get("max_leverage", 1.0),
        kw.get("lot_size", 1.0),
        out,
    )
    return out.tolist()


def test_target_units_leverage_cap() -> None:
    # gross 1.6 > 1: m = 1 / 1.6 = 0.625; 0.8 * 0.625 * 10000 / 100 = 50, / 50 = 100
    assert _target([0.8, 0.8], 10_000, [100, 50]) == [50.0, 100.0]
    # max_leverage 2 leaves gross 1.6 alone: 80 and 160
    assert _target([0.8, 0.8], 10_000, [100, 50], max_leverage=2.0) == [80.0, 160.0]
    # risk multiplier 1.5 on gross 1 would be 1.5x: capped back to 1x
    assert _target([0.5, 0.5], 10_000, [100, 50], risk_multiplier=1.5) == [50.0, 100.0]
    # ... but allowed with max_leverage 1.5: 75 and 150
    assert _target([0.5, 0.5], 10_000, [100, 50], risk_multiplier=1.5, max_leverage=1.5) == [
        75.0,
        150.0,
    ]
    # risk multiplier below 1 scales down: 0.5 * 0.5 * 10000 / 100 = 25
    assert _target([0.5, 0.5], 10_000, [100, 50], risk_multiplier=0.5) == [25.0, 50.0]
    # shorts count in the gross: |-0.8| + 0.8 = 1.6 -> m = 0.625
    assert _target([-0.8, 0.8], 10_000, [100, 50]) == [-50.0, 100.0]
    # an asset that cannot be bought (NaN or zero price) does not count in the gross: the
    # tradable gross 0.8 <= 1 leaves m = 1, 0.8 * 10000 / 50 = 160 (not 0.625 * 160 = 100)
    assert _target([0.8, 0.8], 10_000, [np.nan, 50]) == [0.0, 160.0]
    assert _target([0.8, 0.8], 10_000, [0.0, 50]) == [0.0, 160.0]
    # ... and the cap still binds on what is tradable: 0.8 + 0.8 of three, m = 0.625
    assert _target([0.8, 0.8, 0.8], 10_000, [np.nan, 100, 50]) == [0.0, 50.0, 100.0]


def test_target_units_rounding_and_invalid_inputs() -> None:
    # lot 10 toward zero on both sides: 0.5 * 10000 / 30 = 166.7 -> 160, and -160
    assert _target([0.5], 10_000, [30], lot_size=10.0) == [160.0]
    assert _target([-0.5], 10_000, [30], lot_size=10.0) == [-160.0]
    assert _target([0.5], 10_000, [30], lot_size=0.0) == [pytest.approx(5000 / 30, rel=1e-15)]
    # NaN / zero price (not listed): zero units; the other assets are sized normally
    assert _target([0.5, 0.5], 10_000, [np.nan, 50]) == [0.0, 100.0]
    assert _target([0.5, 0.5], 10_000, [0.0, 50]) == [0.0, 100.0]
    # no capital, zero weights: all zero (written, not left over)
    assert _target([0.5, 0.5], 0.0, [100, 50]) == [0.0, 0.0]
    assert _target([0.5, 0.5], -500.0, [100, 50]) == [0.0, 0.0]
    assert _target([0.0, 0.0], 10_000, [100, 50]) == [0.0, 0.0]


# ----------------------------------------------------------------------------- plan and execute


def _step(
    prices: list[float],
    units: list[list[float]],
    cash: list[float],
    target: list[list[float]],
    *,
    active: list[bool] | None = None,
    transfer: list[float] | None = None,
    costs: np.ndarray | None = None,
    min_trade_value: float = 0.0,
    lot_size: float = 1.0,
    max_leverage: float = 1.0,
    netting: bool = False,
) -> dict[str, Any]:
    """Plan and execute one step; returns the state after it and the records."""
    p = np.array(prices, dtype=np.float64)
    u = np.array(units, dtype=np.float64)
    c = np.array(cash, dtype=np.float64)
    n_s = u.shape[0]
    eq = c + np.nan_to_num(u * p, nan=0.0).sum(axis=1)
    act = np.ones(n_s, dtype=np.bool_) if active is None else np.array(active, dtype=np.bool_)
    tr = np.zeros(n_s) if transfer is None else np.array(transfer, dtype=np.float64)
    cst = _costs() if costs is None else costs
    q = np.zeros_like(u)
    eff = np.zeros(n_s)
    plan_fills_nb(
        p, u, c, eq, np.array(target, dtype=np.float64), act, tr, cst, float(min_trade_value),
        float(lot_size), float(max_leverage), q, eff,
    )  # fmt: skip
    notional, comm, slip = np.zeros(n_s), np.zeros(n_s), np.zeros(n_s)
    u_after, c_after = u.copy(), c.copy()
    rec, n_rec, saved = execute_fills_nb(
        p, u_after, c_after, q, eff, cst, netting, 7, np.empty((0, 9)), 0, notional, comm, slip
    )
    return {
        "q": q,
        "eff": eff,
        "units": u_after,
        "cash": c_after,
        "rec": rec[:n_rec],
        "saved": saved,
        "notional": notional,
        "commission": comm,
        "slippage": slip,
        "equity": eq,
    }


def test_trade_fields() -> None:
    assert TRADE_FIELDS == (
        "bar", "sleeve", "asset", "units", "price", "notional", "commission", "slippage",
        "netted",
    )  # fmt: skip


def test_sells_are_recorded_before_buys() -> None:
    # sleeve 0: buys asset 0, sells asset 2; sleeve 1: sells asset 0, buys asset 1.
    r = _step(
        [10.0, 20.0, 30.0],
        [[0.0, 0.0, 10.0], [10.0, 0.0, 0.0]],
        [1000.0, 1000.0],
        [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]],
    )
    rec = r["rec"]
    # sells first (asset, then sleeve order within a side), then buys
    np.testing.assert_array_equal(
        rec[:, :4], [[7, 1, 0, -10], [7, 0, 2, -10], [7, 0, 0, 5], [7, 1, 1, 5]]
    )
    np.testing.assert_array_equal(rec[:, 4], [10.0, 30.0, 10.0, 20.0])
    np.testing.assert_array_equal(r["units"], [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    np.testing.assert_array_equal(r["cash"], [1000.0 + 300 - 50, 1000.0 + 100 - 100])


def test_sell_proceeds_fund_buys_of_the_same_sleeve() -> None:
    # no cash: the buy of 10 @ 20 is funded by selling 10 @ 30 in the same step (net of its
    # cost: 300 - max(1, 0.3) = 299 >= 200 + max(1, 0.2) = 201)
    r = _step([20.0, 30.0], [[0.0, 10.0]], [0.0], [[10.0, 0.0]], costs=_costs(10, 0, 1))
    np.testing.assert_array_equal(r["units"], [[10.0, 0.0]])
    assert r["cash"][0] == pytest.approx(300 - 1 - 200 - 1, abs=1e-12)


def test_transfer_clipping_and_pro_rata_scaling() -> None:
    # Account 0 must give 5000 but has 3000 cash + the sale of 10 @ 100 (1000 - min fee 5):
    # it can release 3995. Accounts 1 and 2 asked for 2000 and 3000 (5000): they get the
    # ratio 3995 / 5000 = 0.799 of it, 1598 and 2397.
    r = _step(
        [100.0],
        [[10.0], [0.0], [0.0]],
        [3000.0, 0.0, 0.0],
        [[0.0], [0.0], [0.0]],
        transfer=[-5000.0, 2000.0, 3000.0],
        costs=_costs(0, 0, 5),
    )
    assert r["eff"].tolist() == pytest.approx([-3995.0, 1598.0, 2397.0], abs=1e-9)
    assert r["cash"].tolist() == pytest.approx([0.0, 1598.0, 2397.0], abs=1e-9)
    assert r["eff"].sum() == pytest.approx(0.0, abs=1e-9)
    # a giver already overdrawn (leverage) releases nothing
    r2 = _step([100.0], [[0.0], [0.0]], [-50.0, 0.0], [[0.0], [0.0]], transfer=[-100.0, 100.0])
    assert r2["eff"].tolist() == [0.0, 0.0]
    # an inactive account (the reserve) still gives and receives cash
    r3 = _step(
        [100.0], [[0.0], [0.0]], [0.0, 700.0], [[5.0], [0.0]], active=[True, False],
        transfer=[500.0, -500.0],
    )  # fmt: skip
    assert r3["eff"].tolist() == [500.0, -500.0]
    np.testing.assert_array_equal(r3["units"], [[5.0], [0.0]])
    np.testing.assert_array_equal(r3["cash"], [0.0, 200.0])


def test_zero_target_sleeve_moves_all_capital_out() -> None:
    # A sleeve whose capital target is 0 (allocation weight 0) holds 10 @ 100 and 500 cash:
    # its target units are 0 and it must transfer its whole capital (1500) out. With a 10 bps
    # commission the sale nets 1000 - 1 = 999, so only 1499 can move; it ends at exactly 0.
    r = _step(
        [100.0],
        [[10.0], [0.0]],
        [500.0, 0.0],
        [[0.0], [0.0]],
        transfer=[-1500.0, 1500.0],
        costs=_costs(10),
    )
    assert r["units"][0, 0] == 0.0
    assert r["cash"][0] == pytest.approx(0.0, abs=1e-12)
    assert r["eff"].tolist() == pytest.approx([-1499.0, 1499.0], abs=1e-12)


def test_cash_scaling_rounds_down_and_refilters() -> None:
    # Budget 1000 for buys of 8 @ 100 and 4 @ 100 (1200): k = 1000/1200 -> 6.67 and 3.33
    # -> 6 and 3 whole units (900 spent).
    r = _step([100.0, 100.0], [[0.0, 0.0]], [1000.0], [[8.0, 4.0]])
    np.testing.assert_array_equal(r["units"], [[6.0, 3.0]])
    assert r["cash"][0] == 100.0
    # with min_trade_value 350 the scaled 3 units (300) are dropped after scaling
    r = _step([100.0, 100.0], [[0.0, 0.0]], [1000.0], [[8.0, 4.0]], min_trade_value=350.0)
    np.testing.assert_array_equal(r["units"], [[6.0, 0.0]])
    # leverage 1.5 adds half the equity (1000) to the buying power: all 1200 fit
    r = _step([100.0, 100.0], [[0.0, 0.0]], [1000.0], [[8.0, 4.0]], max_leverage=1.5)
    np.testing.assert_array_equal(r["units"], [[8.0, 4.0]])
    assert r["cash"][0] == -200.0


def test_min_trade_value_boundary_and_untradable_assets() -> None:
    # an order of exactly min_trade_value is kept, one just below is dropped
    r = _step([10.0, 10.0], [[0.0, 0.0]], [10_000.0], [[50.0, 49.0]], min_trade_value=500.0)
    np.testing.assert_array_equal(r["units"], [[50.0, 0.0]])
    # NaN / non-positive prices: no order at all in that asset
    r = _step([np.nan, 0.0, 10.0], [[0.0, 0.0, 0.0]], [1000.0], [[5.0, 5.0, 5.0]])
    np.testing.assert_array_equal(r["units"], [[0.0, 0.0, 5.0]])
    # inactive sleeves do not trade
    r = _step([10.0], [[0.0], [0.0]], [100.0, 100.0], [[5.0], [5.0]], active=[False, True])
    np.testing.assert_array_equal(r["units"], [[0.0], [5.0]])


def test_dust_orders_are_dropped() -> None:
    # Fractional units, no minimum notional, a minimum commission of 1. 0.1 + 0.2 is
    # 0.30000000000000004 in binary: against a target of 0.3 the difference (5.6e-17 units) is
    # floating-point dust (|d| <= 1e-9 * max(|target|, |units|)) and is not an order.
    costs = _costs(10, 0, 1)
    r = _step([100.0], [[0.1 + 0.2]], [1000.0], [[0.3]], costs=costs, lot_size=0.0)
    assert r["q"][0, 0] == 0.0
    assert r["rec"].shape == (0, 9)
    assert r["cash"][0] == 1000.0
    # dust on both sides of the bound, relative to the larger of target and units (1000):
    # 0.5e-9 relative is dropped, 2e-9 relative is a (tiny) order that pays the minimum
    r = _step([1.0], [[1000.0]], [10.0], [[1000.0 * (1 - 0.5e-9)]], costs=costs, lot_size=0.0)
    assert r["q"][0, 0] == 0.0
    r = _step([1.0], [[1000.0]], [10.0], [[1000.0 * (1 - 2e-9)]], costs=costs, lot_size=0.0)
    assert r["q"][0, 0] == pytest.approx(-2e-6, rel=1e-6)
    assert r["commission"][0] == 1.0
    # the bound is relative to the larger side: from 0 units any non-zero target is an order,
    # and so is closing any non-zero position
    r = _step([1.0, 1.0], [[0.0, 1e-12]], [10.0], [[1e-12, 0.0]], lot_size=0.0)
    np.testing.assert_array_equal(r["q"], [[1e-12, -1e-12]])


# ----------------------------------------------------------------------------- random steps


@st.composite
def step_states(draw: st.DrawFn) -> dict[str, Any]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_s = draw(st.integers(2, 4))
    n_a = draw(st.integers(1, 4))
    lot = draw(st.sampled_from([0.0, 1.0, 10.0]))
    prices = rng.uniform(1.0, 200.0, n_a)
    prices[rng.random(n_a) < 0.15] = np.nan
    units = rng.integers(0, 300, (n_s, n_a)).astype(np.float64)
    if lot == 10.0:
        units = np.round(units / 10.0) * 10.0
    units[:, np.isnan(prices)] = 0.0
    target = rng.integers(0, 300, (n_s, n_a)).astype(np.float64)
    if lot == 10.0:
        target = np.round(target / 10.0) * 10.0
    elif lot == 0.0:
        target = target * rng.uniform(0.9, 1.1, target.shape)
    # capital transfers sum to zero (a portfolio rebalance), or there are none (signals only)
    transfer = np.zeros(n_s)
    if draw(st.booleans()):
        transfer = rng.normal(0.0, 3000.0, n_s) * (rng.random(n_s) < 0.7)
        transfer -= transfer.mean()
    return {
        "prices": prices,
        "units": units,
        "cash": rng.uniform(0.0, 20_000.0, n_s) * (rng.random(n_s) < 0.85),
        "target": target,
        "active": rng.random(n_s) < 0.8,
        "transfer": transfer,
        "costs": _costs(
            draw(st.sampled_from([0.0, 1.0, 10.0, 50.0])),
            draw(st.sampled_from([0.0, 0.5, 5.0])),
            draw(st.sampled_from([0.0, 1.0, 20.0])),
            draw(st.sampled_from([0.0, 2.0, 20.0])),
        ),
        "min_trade_value": draw(st.sampled_from([0.0, 10.0, 500.0])),
        "lot_size": lot,
        "max_leverage": draw(st.sampled_from([1.0, 1.5])),
    }


@settings(_BASE, max_examples=200)
@given(step_states())
def test_netting_attribution_pro_rata_and_never_costlier(state: dict[str, Any]) -> None:
    kw = {k: state[k] for k in state if k not in ("prices", "units", "cash", "target")}
    args = (list(state["prices"]), state["units"].tolist(), list(state["cash"]), state["target"])
    on = _step(*args, netting=True, **kw)
    off = _step(*args, netting=False, **kw)
    scale = 1e-9 * max(1.0, float(np.abs(state["cash"]).sum() + np.nansum(state["prices"]) * 300))

    # same quantities, same units, same transfers: netting only changes who pays what
    np.testing.assert_array_equal(on["q"], off["q"])
    np.testing.assert_array_equal(on["units"], off["units"])
    np.testing.assert_array_equal(on["eff"], off["eff"])
    cost_on = on["commission"] + on["slippage"]
    cost_off = off["commission"] + off["slippage"]
    assert np.all(cost_on <= cost_off + scale)
    assert on["saved"] >= -scale
    assert on["saved"] == pytest.approx(cost_off.sum() - cost_on.sum(), abs=scale)
    assert off["saved"] == 0.0
    assert np.all(on["cash"] >= off["cash"] - scale)

    # pro rata: each leg pays (net cost) * |q_s| / sum |q| of its asset
    p = state["prices"]
    costs = state["costs"]
    q = on["q"]
    for a in range(q.shape[1]):
        legs = q[:, a]
        gross = np.abs(legs).sum()
        if gross == 0.0:
            continue
        net_value = abs(legs.sum()) * p[a]
        net_comm = ref_commission(net_value, costs)
        rows = on["rec"][on["rec"][:, 2] == a]
        for r in rows:
            share = abs(r[3]) / gross
            assert r[6] == pytest.approx(net_comm * share, abs=1e-9)
            assert r[7] == pytest.approx(costs[3] * 1e-4 * net_value * share, abs=1e-9)
            assert r[8] == (1.0 if np.count_nonzero(legs) > 1 else 0.0)

    # without leverage and with non-negative cash, no account is overdrawn by the step
    if state["max_leverage"] == 1.0:
        assert np.all(off["cash"] >= -scale)
    # the same step computed by the plain-Python reference
    for netting, got in ((True, on), (False, off)):
        units = state["units"].tolist()
        cash = list(state["cash"])
        ref = ref_step(
            list(p), units, cash, list(got["equity"]), state["target"].tolist(),
            list(state["active"]), list(state["transfer"]), costs, state["min_trade_value"],
            state["lot_size"], state["max_leverage"], netting, 7,
        )  # fmt: skip
        if state["lot_size"] >= 1.0:
            np.testing.assert_array_equal(got["units"], units)
        else:
            np.testing.assert_allclose(got["units"], units, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["cash"], cash, rtol=0.0, atol=scale)
        np.testing.assert_allclose(got["eff"], ref.transfers, rtol=0.0, atol=scale)
        ref_rec = np.array(ref.trades).reshape(-1, 9)
        assert got["rec"].shape == ref_rec.shape
        np.testing.assert_array_equal(got["rec"][:, [0, 1, 2, 8]], ref_rec[:, [0, 1, 2, 8]])
        np.testing.assert_allclose(got["rec"][:, 3:8], ref_rec[:, 3:8], rtol=1e-12, atol=scale)
        assert got["saved"] == pytest.approx(ref.saved, abs=scale)
