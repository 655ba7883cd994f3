"""The accounting pass (:func:`backtest.kernel.simulate_nb`): reference loop, identities, clock.

* The jitted pass equals the plain-Python reference loop of ``tests/_reference_kernel.py``
  (written from the docstrings) on random panels.
* Accounting identities at every bar, for the book and every account; cash never negative
  without leverage.
* Netting never changes quantities and never raises costs.
* No look-ahead, at the kernel level and through the engine on the embedded S&P 500 data.
* Determinism.
* Tiny hand-computed scenarios with exact numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _reference_kernel import ref_allocate, reference_simulate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.kernel import (
    LEVEL_PORTFOLIO,
    LEVEL_SLEEVE,
    REASON_CALENDAR,
    REASON_DRIFT,
    REASON_SIGNAL,
    SimulationOutput,
    simulate_nb,
)

# numba and the reference loop make single examples slowish: no deadline
_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Array outputs with one row per bar.
_PER_BAR = (
    "equity",
    "cash",
    "units",
    "sleeve_units",
    "traded",
    "commission",
    "slippage",
    "netting_saved",
    "target_capital",
    "flows",
    "drift",
)


# ----------------------------------------------------------------------------- running the pass


def simulate(
    prices: Any,
    weights: Any,
    has_signal: Any,
    alloc_weights: Any,
    *,
    min_capital: Any = None,
    max_capital: Any = None,
    risk_multiplier: Any = None,
    initial_capital: float = 10_000.0,
    check_mask: Any = None,
    calendar_mask: Any = None,
    threshold: float = 0.05,
    relative_band: bool = True,
    costs: Any = (0.0, 0.0, 0.0, 0.0),
    min_trade_value: float = 0.0,
    lot_size: float = 1.0,
    max_leverage: float = 1.0,
    netting: bool = True,
    lag: int = 0,
    portfolio_rebalancing: bool = True,
    risk_adjusted: bool = False,
    ra_lookback: int = 20,
    ra_sensitivity: float = 0.1,
    reference: bool = False,
) -> SimulationOutput:
    """``simulate_nb`` with readable defaults and the exact dtypes the engine passes.

    With ``reference=True`` the run is also checked against the reference loop.
    """
    kw = _kernel_args(**locals())
    out = simulate_nb(**kw)
    if reference:
        assert_matches_reference(out, reference_simulate(**kw), kw)
    return out


def _kernel_args(**kw: Any) -> dict[str, Any]:
    prices = np.ascontiguousarray(kw["prices"], dtype=np.float64)
    n_t = prices.shape[0]
    alloc = np.asarray(kw["alloc_weights"], dtype=np.float64)
    n_s = alloc.shape[0]

    def vec(x: Any, default: float) -> np.ndarray:
        return np.full(n_s, default) if x is None else np.asarray(x, dtype=np.float64)

    def mask(x: Any, default: bool) -> np.ndarray:
        return np.full(n_t, default) if x is None else np.ascontiguousarray(x, dtype=np.bool_)

    return {
        "prices": prices,
        "weights": np.ascontiguousarray(kw["weights"], dtype=np.float64),
        "has_signal": np.ascontiguousarray(kw["has_signal"], dtype=np.bool_),
        "alloc_weights": alloc,
        "min_capital": vec(kw["min_capital"], 0.0),
        "max_capital": vec(kw["max_capital"], np.inf),
        "risk_multiplier": vec(kw["risk_multiplier"], 1.0),
        "initial_capital": float(kw["initial_capital"]),
        "check_mask": mask(kw["check_mask"], True),
        "calendar_mask": mask(kw["calendar_mask"], False),
        "threshold": float(kw["threshold"]),
        "relative_band": bool(kw["relative_band"]),
        "costs": np.asarray(kw["costs"], dtype=np.float64),
        "min_trade_value": float(kw["min_trade_value"]),
        "lot_size": float(kw["lot_size"]),
        "max_leverage": float(kw["max_leverage"]),
        "netting": bool(kw["netting"]),
        "lag": int(kw["lag"]),
        "portfolio_rebalancing": bool(kw["portfolio_rebalancing"]),
        "risk_adjusted": bool(kw["risk_adjusted"]),
        "ra_lookback": int(kw["ra_lookback"]),
        "ra_sensitivity": float(kw["ra_sensitivity"]),
        "record_sleeve_units": True,
    }


# ----------------------------------------------------------------------------- random panels


@st.composite
def kernel_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments of ``simulate_nb`` for a small random panel.

    Structure (sizes, switches, cost model) comes from hypothesis; the arrays come from a numpy
    generator seeded by hypothesis, which keeps drawing cheap.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_t = draw(st.integers(5, 60))
    n_a = draw(st.integers(1, 5))
    n_s = draw(st.integers(1, 3))
    lot = draw(st.sampled_from([0.0, 1.0, 10.0]))
    # lot 0 with min_trade_value 0 included: floating-point dust orders are dropped by the
    # step (test_dust_orders_with_fractional_units_and_no_minimum)
    mtv = draw(st.sampled_from([0.0, 10.0, 500.0]))
    capital = draw(st.sampled_from([10_000.0, 50_000.0, 1_000_000.0]))
    costs = [
        draw(st.sampled_from([0.0, 1.0, 10.0, 50.0])),
        draw(st.sampled_from([0.0, 0.5, 5.0])),
        draw(st.sampled_from([0.0, 1.0, 20.0])),
        draw(st.sampled_from([0.0, 2.0, 20.0])),
    ]
    risk_adjusted = draw(st.booleans())
    signal_density = draw(st.floats(0.03, 0.6))

    # prices: geometric random walks, some assets listing late (NaN prefix)
    p0 = rng.uniform(5.0, 200.0, n_a)
    vol = rng.uniform(0.005, 0.08, n_a)
    prices = p0 * np.exp(np.cumsum(rng.normal(0.0, vol, (n_t, n_a)), axis=0))
    for a in range(n_a):
        if rng.random() < 0.3:
            prices[: int(rng.integers(1, n_t)), a] = np.nan

    # sparse target rows: all-zero rows, zero entries, unnormalized rows (leverage cap binds)
    has = rng.random((n_s, n_t)) < signal_density
    w = np.zeros((n_s, n_t, n_a))
    for s in range(n_s):
        for t in np.flatnonzero(has[s]):
            kind = rng.random()
            if kind < 0.15:
                continue  # all-zero row: exit everything
            row = rng.random(n_a) * (rng.random(n_a) < 0.7)
            if kind < 0.7 and row.sum() > 0.0:
                row = row / row.sum() * rng.choice([1.0, 0.5])
            w[s, t] = row

    alloc = rng.random(n_s) + 0.05
    if n_s > 1 and draw(st.booleans()):
        alloc[int(rng.integers(n_s))] = 0.0
    alloc = alloc / alloc.sum()
    caps = draw(st.sampled_from(["none", "min", "max", "both"]))
    min_cap = np.zeros(n_s)
    max_cap = np.full(n_s, np.inf)
    if caps in ("min", "both"):
        min_cap = rng.uniform(0.0, 0.45, n_s) * capital * (rng.random(n_s) < 0.7)
    if caps in ("max", "both"):
        max_cap = np.where(
            rng.random(n_s) < 0.7, min_cap + rng.uniform(0.05, 0.6, n_s) * capital, np.inf
        )

    return {
        "prices": np.ascontiguousarray(prices),
        "weights": np.ascontiguousarray(w),
        "has_signal": np.ascontiguousarray(has),
        "alloc_weights": alloc,
        "min_capital": min_cap,
        "max_capital": max_cap,
        "risk_multiplier": rng.choice([0.5, 1.0, 1.5], n_s).astype(np.float64),
        "initial_capital": capital,
        "check_mask": rng.random(n_t) < draw(st.floats(0.0, 1.0)),
        "calendar_mask": rng.random(n_t) < draw(st.floats(0.0, 0.3)),
        "threshold": draw(st.floats(0.005, 0.3)),
        "relative_band": draw(st.booleans()),
        "costs": np.array(costs),
        "min_trade_value": mtv,
        "lot_size": lot,
        "max_leverage": draw(st.sampled_from([1.0, 1.5])),
        "netting": draw(st.booleans()),
        "lag": draw(st.integers(0, 3)),
        "portfolio_rebalancing": draw(st.sampled_from([True, True, True, False])),
        "risk_adjusted": risk_adjusted,
        # a 2-bar window makes the tilt a ratio of near-zero volatilities: any last-bit
        # difference is amplified, so the reference comparison uses >= 5 bars
        "ra_lookback": draw(st.sampled_from([5, 10, 20])),
        "ra_sensitivity": draw(st.sampled_from([0.1, 1.0])),
        "record_sleeve_units": True,
    }


def run(kw: dict[str, Any]) -> SimulationOutput:
    return simulate_nb(**kw)


def _priced(prices: np.ndarray) -> np.ndarray:
    """Prices with NaN (unlisted) as 0: units are always 0 there."""
    return np.nan_to_num(prices, nan=0.0)


def assert_matches_reference(out: SimulationOutput, ref: Any, kw: dict[str, Any]) -> None:
    tol = 1e-10 * kw["initial_capital"]
    for name in (
        "equity",
        "cash",
        "traded",
        "commission",
        "slippage",
        "netting_saved",
        "target_capital",
        "flows",
    ):
        a, b = getattr(out, name), getattr(ref, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0.0, atol=tol, err_msg=name)
    np.testing.assert_allclose(out.drift, ref.drift, rtol=1e-9, atol=1e-10, err_msg="drift")
    np.testing.assert_array_equal(out.events, ref.events, err_msg="events")

    px = _priced(kw["prices"])
    assert out.sleeve_units.shape == ref.sleeve_units.shape
    if kw["lot_size"] >= 1.0:
        np.testing.assert_array_equal(out.sleeve_units, ref.sleeve_units, err_msg="units")
        np.testing.assert_array_equal(out.units, ref.units, err_msg="book units")
    else:
        value_diff = np.abs(out.sleeve_units - ref.sleeve_units) * px[:, None, :]
        assert value_diff.max(initial=0.0) <= tol, "units"
        assert np.all((out.sleeve_units == 0.0) | (px[:, None, :] > 0.0))

    tk, tr = out.trades, ref.trades
    assert tk.shape == tr.shape, "number of trades"
    np.testing.assert_array_equal(tk[:, [0, 1, 2, 4, 8]], tr[:, [0, 1, 2, 4, 8]], "trade keys")
    if kw["lot_size"] >= 1.0:
        np.testing.assert_array_equal(tk[:, 3], tr[:, 3], "trade units")
    else:
        assert np.all(np.abs(tk[:, 3] - tr[:, 3]) * tk[:, 4] <= tol), "trade units"
    np.testing.assert_allclose(tk[:, 5:8], tr[:, 5:8], rtol=0.0, atol=tol, err_msg="trade costs")


# ----------------------------------------------------------------------------- reference loop


@settings(_BASE, max_examples=150)
@given(kernel_cases())
def test_kernel_matches_reference_loop(kw: dict[str, Any]) -> None:
    assert_matches_reference(run(kw), reference_simulate(**kw), kw)


# ----------------------------------------------------------------------------- identities


@settings(_BASE, max_examples=100)
@given(kernel_cases())
def test_accounting_identities(kw: dict[str, Any]) -> None:
    out = run(kw)
    px = _priced(kw["prices"])
    n_t = px.shape[0]
    book = out.equity.sum(axis=1)
    scale = np.maximum(np.abs(book), kw["initial_capital"])
    tol = 1e-9 * scale

    # equity == cash + units * price, for every account and the book, at every bar
    held = np.einsum("tka,ta->tk", out.sleeve_units, px)
    assert np.all(np.abs(out.cash + held - out.equity) <= tol[:, None])
    assert np.all(np.abs(out.cash.sum(axis=1) + (out.units * px).sum(axis=1) - book) <= tol)
    np.testing.assert_allclose(out.units, out.sleeve_units.sum(axis=1), rtol=1e-14, atol=0.0)

    # self-financing: an account's equity moves by its holdings' P&L, minus its costs, plus
    # the capital transferred in; transfers between accounts sum to zero
    init, unalloc = ref_allocate(
        kw["initial_capital"], list(kw["alloc_weights"]), list(kw["min_capital"]),
        list(kw["max_capital"]),
    )  # fmt: skip
    prev_eq = np.array([*init, unalloc])
    prev_units = np.zeros_like(out.sleeve_units[0])
    prev_px = px[0]
    for t in range(n_t):
        pnl = prev_units @ (px[t] - prev_px)
        cost = out.commission[t] + out.slippage[t]
        expected = prev_eq + pnl - cost + out.flows[t]
        assert np.all(np.abs(out.equity[t] - expected) <= tol[t]), t
        assert abs(out.flows[t].sum()) <= tol[t]
        prev_eq, prev_units, prev_px = out.equity[t], out.sleeve_units[t], px[t]

    # the reserve account never trades; units exist only where there is a price
    assert np.all(out.sleeve_units[:, -1, :] == 0.0)
    assert np.all((out.sleeve_units == 0.0) | (px[:, None, :] > 0.0))
    # without leverage, no account's cash is ever overdrawn
    if kw["max_leverage"] == 1.0:
        assert np.all(out.cash >= -tol[:, None])
    # every trade at its bar's close, notional = |units| * price, costs >= 0
    tr = out.trades
    bars = tr[:, 0].astype(np.int64)
    np.testing.assert_array_equal(tr[:, 4], kw["prices"][bars, tr[:, 2].astype(np.int64)])
    np.testing.assert_allclose(tr[:, 5], np.abs(tr[:, 3]) * tr[:, 4], rtol=1e-15, atol=0.0)
    assert np.all(tr[:, 6:8] >= 0.0)
    assert np.all(tr[:, 3] != 0.0)
    assert np.all(tr[:, 5] >= kw["min_trade_value"])


@settings(_BASE, max_examples=100)
@given(kernel_cases())
def test_sells_before_buys_and_fill_bars(kw: dict[str, Any]) -> None:
    out = run(kw)
    tr = out.trades
    assert np.all(np.diff(tr[:, 0]) >= 0.0)  # bars in order
    for t in np.unique(tr[:, 0]):
        side = tr[tr[:, 0] == t, 3] > 0.0
        # once a buy appears in a bar, no sell follows
        assert not np.any(np.diff(side.astype(np.int64)) < 0)
    # every fill bar is the decision bar of some order plus the lag
    ev = out.events
    np.testing.assert_array_equal(ev[:, 1], ev[:, 0] + kw["lag"])
    fill_bars = set(ev[:, 1].tolist())
    assert set(tr[:, 0].astype(np.int64).tolist()) <= fill_bars


# ----------------------------------------------------------------------------- netting


@settings(_BASE, max_examples=100)
@given(kernel_cases())
def test_netting_never_changes_positions_nor_raises_costs(kw: dict[str, Any]) -> None:
    """Netting on versus off.

    Netting only changes what the market sees: the quantities of a step are identical and
    every account pays at most its standalone cost. The paths are identical until the first
    bar where netting saves something; from there the netted run has more cash, so later
    targets (sized on equity) legitimately differ. That bar is compared exactly.
    """
    on = run({**kw, "netting": True})
    off = run({**kw, "netting": False})
    tol = 1e-9 * kw["initial_capital"]
    n_t = kw["prices"].shape[0]
    saved = np.flatnonzero(on.netting_saved > tol)
    last = int(saved[0]) if saved.size else n_t - 1
    px = _priced(kw["prices"])

    cost_on = on.commission + on.slippage
    cost_off = off.commission + off.slippage
    for t in range(last + 1):
        if kw["lot_size"] >= 1.0:
            np.testing.assert_array_equal(on.sleeve_units[t], off.sleeve_units[t])
        else:
            diff = np.abs(on.sleeve_units[t] - off.sleeve_units[t]) * px[t]
            assert diff.max(initial=0.0) <= tol
        assert np.all(cost_on[t] <= cost_off[t] + tol)
        assert cost_on[t].sum() <= cost_off[t].sum() + tol
        np.testing.assert_allclose(on.traded[t], off.traded[t], rtol=0.0, atol=tol)
    # where the paths part, the saving is exactly the cost difference, and cash is higher
    np.testing.assert_allclose(
        cost_off[last].sum() - cost_on[last].sum(), on.netting_saved[last], rtol=0.0, atol=tol
    )
    assert np.all(on.cash[last] >= off.cash[last] - tol)
    assert np.all(on.netting_saved >= -tol)
    assert np.all(off.netting_saved == 0.0)
    assert np.all(off.trades[:, 8] == 0.0)
    # the trades up to there are the same orders
    k_on = on.trades[on.trades[:, 0] <= last]
    k_off = off.trades[off.trades[:, 0] <= last]
    np.testing.assert_array_equal(k_on[:, :3], k_off[:, :3])
    np.testing.assert_allclose(k_on[:, 3], k_off[:, 3], rtol=0.0, atol=1e-9)


def test_netting_crossing_orders_hand_computed() -> None:
    # costs: 10 bps commission, minimum 5, slippage 10 bps; capital 20000 -> 10000 per sleeve.
    # bar 0 (X = 50): sleeve 0 wants 10000 / 50 = 200 units; 10000 + max(5, 10) + 10 > 10000,
    #   so the buy is scaled: 10000 k + 10 k + 10 k = 10000 -> k = 10000/10020, 200 k = 199.6
    #   -> 199 units, cost 9950 + 9.95 + 9.95 -> cash 30.1. Sleeve 1 stays in cash.
    # bar 1 (X = 100): eq0 = 30.1 + 19900 = 19930.1, eq1 = 10000, targets 14965.05 each.
    #   Calendar rebalance: sleeve 0 keeps 199 * 14965.05 / 19930.1 = 149.42 -> 149 (sells 50);
    #   sleeve 1 also signals w = 0.1 at bar 1: 0.1 * 14965.05 / 100 = 14.97 -> 14 (buys 14).
    prices = np.array([[50.0], [100.0]])
    w, has = _one_signal(2, 2, 1, {(0, 0): [1.0], (1, 1): [0.1]})
    kw: dict[str, Any] = {
        "alloc_weights": [0.5, 0.5],
        "initial_capital": 20_000.0,
        "costs": [10.0, 0.0, 5.0, 10.0],
        "calendar_mask": [False, True],
        "check_mask": [False, False],
        "lot_size": 1.0,
    }
    on = simulate(prices, w, has, netting=True, **kw)
    off = simulate(prices, w, has, netting=False, **kw)
    for out in (on, off):
        assert out.cash[0, 0] == pytest.approx(30.1, abs=1e-9)
        np.testing.assert_array_equal(out.sleeve_units[:, :2, 0], [[199.0, 0.0], [149.0, 14.0]])
        np.testing.assert_array_equal(out.trades[out.trades[:, 0] == 1, 3], [-50.0, 14.0])
    # standalone: sell 5000 -> comm max(5, 5) = 5, slip 5; buy 1400 -> comm 5, slip 1.4
    assert off.commission[1, :2] == pytest.approx([5.0, 5.0], abs=1e-12)
    assert off.slippage[1, :2] == pytest.approx([5.0, 1.4], abs=1e-12)
    # netted: one sell of 36 @ 100 = 3600 -> comm max(5, 3.6) = 5, slip 3.6; shared pro rata to
    # units, 50/64 and 14/64; saved (10 + 6.4) - 8.6 = 7.8
    assert on.commission[1, :2] == pytest.approx([5 * 50 / 64, 5 * 14 / 64], abs=1e-12)
    assert on.slippage[1, :2] == pytest.approx([3.6 * 50 / 64, 3.6 * 14 / 64], abs=1e-12)
    assert on.netting_saved[1] == pytest.approx(7.8, abs=1e-12)
    assert on.netting_saved[0] == 0.0
    np.testing.assert_array_equal(on.trades[:, 8], [0.0, 1.0, 1.0])
    assert np.all(on.cash[1] >= off.cash[1])
    assert on.cash[1].sum() - off.cash[1].sum() == pytest.approx(7.8, abs=1e-9)


# ----------------------------------------------------------------------------- look-ahead


@settings(_BASE, max_examples=80)
@given(kernel_cases(), st.data())
def test_no_look_ahead_kernel(kw: dict[str, Any], data: st.DataObject) -> None:
    n_t = kw["prices"].shape[0]
    t = data.draw(st.integers(0, n_t - 2), label="t")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    future = kw["prices"].copy()
    future[t + 1 :] *= rng.uniform(0.5, 2.0, future[t + 1 :].shape)
    a = run(kw)
    b = run({**kw, "prices": np.ascontiguousarray(future)})
    for name in _PER_BAR:
        np.testing.assert_array_equal(getattr(a, name)[: t + 1], getattr(b, name)[: t + 1], name)
    np.testing.assert_array_equal(a.trades[a.trades[:, 0] <= t], b.trades[b.trades[:, 0] <= t])
    np.testing.assert_array_equal(a.events[a.events[:, 0] <= t], b.events[b.events[:, 0] <= t])


@pytest.fixture(scope="module")
def config_and_panel() -> tuple[Any, pd.DataFrame]:
    from backtest.data import load_default_panel
    from portfolio.config import default_config_path, load_config

    panel = load_default_panel()
    frame = panel.prices.loc["2015-01-01":"2017-06-30"].copy()
    return load_config(default_config_path()), frame


def _engine_result(config: Any, frame: pd.DataFrame) -> Any:
    from backtest.portfolio_engine import PortfolioBacktestEngine

    return PortfolioBacktestEngine.from_config(config, prices=frame).run()


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_no_look_ahead_engine(config_and_panel: tuple[Any, pd.DataFrame], cut: float) -> None:
    config, frame = config_and_panel
    t = int(cut * len(frame))
    ts = frame.index[t]
    rng = np.random.default_rng(12345 + t)
    perturbed = frame.copy()
    perturbed.iloc[t + 1 :] = frame.iloc[t + 1 :].to_numpy() * rng.uniform(
        0.5, 2.0, frame.iloc[t + 1 :].shape
    )
    a = _engine_result(config, frame)
    b = _engine_result(config, perturbed)
    assert not a.equity.equals(b.equity)  # the perturbation does change the future
    for name in ("allocations", "positions", "sleeve_cash", "costs", "target_allocations"):
        pd.testing.assert_frame_equal(
            getattr(a, name).loc[:ts], getattr(b, name).loc[:ts], check_exact=True
        )
    pd.testing.assert_series_equal(a.equity.loc[:ts], b.equity.loc[:ts], check_exact=True)
    ta = a.trades[a.trades["timestamp"] <= ts].reset_index(drop=True)
    tb = b.trades[b.trades["timestamp"] <= ts].reset_index(drop=True)
    assert len(ta) > 0
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    ra = a.rebalances[a.rebalances["timestamp"] <= ts].reset_index(drop=True)
    rb = b.rebalances[b.rebalances["timestamp"] <= ts].reset_index(drop=True)
    assert len(ra) > 0
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)


# ----------------------------------------------------------------------------- determinism


@settings(_BASE, max_examples=30)
@given(kernel_cases())
def test_deterministic_kernel(kw: dict[str, Any]) -> None:
    a, b = run(kw), run(kw)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_deterministic_engine(config_and_panel: tuple[Any, pd.DataFrame]) -> None:
    config, frame = config_and_panel
    a = _engine_result(config, frame)
    b = _engine_result(config, frame)
    pd.testing.assert_series_equal(a.equity, b.equity, check_exact=True)
    pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
    pd.testing.assert_frame_equal(a.allocations, b.allocations, check_exact=True)
    assert a.trade_records.tobytes() == b.trade_records.tobytes()
    for account in a.allocations.columns:
        pd.testing.assert_frame_equal(
            a.sleeve_positions(account), b.sleeve_positions(account), check_exact=True
        )


# ----------------------------------------------------------------------------- hand scenarios


def _one_signal(n_s: int, n_t: int, n_a: int, rows: dict[tuple[int, int], list[float]]) -> Any:
    w = np.zeros((n_s, n_t, n_a))
    has = np.zeros((n_s, n_t), dtype=bool)
    for (s, t), row in rows.items():
        w[s, t] = row
        has[s, t] = True
    return w, has


def test_a_drift_follows_prices() -> None:
    # Capital 2000, two sleeves of 1000. Sleeve 0 buys 100 units @ 10; sleeve 1 stays cash.
    # The asset doubles: sleeve 0 = 2000, sleeve 1 = 1000, book 3000, targets 1500 each.
    # relative drift = (2000 - 1500) / 1500 = +1/3 and -1/3; absolute = +-500 / 3000 = 1/6.
    prices = np.array([[10.0], [20.0]])
    w, has = _one_signal(2, 2, 1, {(0, 0): [1.0]})
    out = simulate(prices, w, has, [0.5, 0.5], initial_capital=2000.0, threshold=0.5)
    np.testing.assert_array_equal(out.equity, [[1000.0, 1000.0, 0.0], [2000.0, 1000.0, 0.0]])
    np.testing.assert_array_equal(out.cash[1], [0.0, 1000.0, 0.0])
    np.testing.assert_array_equal(out.units[:, 0], [100.0, 100.0])
    np.testing.assert_array_equal(out.target_capital[1], [1500.0, 1500.0, 0.0])
    np.testing.assert_array_equal(out.drift[0], [0.0, 0.0])
    assert out.drift[1] == pytest.approx([1 / 3, -1 / 3], abs=1e-15)
    # the book weight of the asset follows: 2000 / 3000
    assert out.units[1, 0] * 20.0 / out.equity[1].sum() == pytest.approx(2 / 3, abs=1e-15)
    # 1/3 < threshold 0.5: no portfolio rebalance, only the signal event
    np.testing.assert_array_equal(out.events, [[0, 0, LEVEL_SLEEVE, REASON_SIGNAL, 0]])

    absolute = simulate(
        prices, w, has, [0.5, 0.5], initial_capital=2000.0, threshold=0.1, relative_band=False
    )
    assert absolute.drift[1] == pytest.approx([1 / 6, -1 / 6], abs=1e-15)
    # 1/6 > 0.1 on a check bar: a drift rebalance fires at bar 1
    assert absolute.events[-1].tolist() == [1, 1, LEVEL_PORTFOLIO, REASON_DRIFT, -1]
    # ... and resizes: sleeve 0 keeps 1500 / 2000 of its 100 units = 75, sleeve 1 gets 500 cash
    np.testing.assert_array_equal(absolute.sleeve_units[1, :, 0], [75.0, 0.0, 0.0])
    np.testing.assert_array_equal(absolute.equity[1], [1500.0, 1500.0, 0.0])
    np.testing.assert_array_equal(absolute.flows[1], [-500.0, 500.0, 0.0])


def test_b_threshold_rebalance_two_sleeves() -> None:
    # Capital 20000, sleeves 50/50, each all-in on its own asset (X, Y) at 100: 100 units each.
    # bar 1: X = 105 -> 10500 vs 10000, targets 10250, drift 250/10250 = 0.0244 < 5 %: nothing.
    # bar 2: X = 120 -> 12000 vs 10000, targets 11000, drift 1000/11000 = 0.0909 > 5 %: fire.
    #   sleeve 0: 100 * 11000/12000 = 91.67 -> 91 units, sells 9 @ 120 = 1080, gives 1000.
    #   sleeve 1: 100 * 11000/10000 = 110 units, buys 10 @ 100 = 1000 with the 1000 received.
    #   after: sleeve 0 = 91 * 120 + 80 = 11000, sleeve 1 = 110 * 100 + 0 = 11000.
    prices = np.array([[100.0, 100.0], [105.0, 100.0], [120.0, 100.0]])
    w, has = _one_signal(2, 3, 2, {(0, 0): [1.0, 0.0], (1, 0): [0.0, 1.0]})
    out = simulate(prices, w, has, [0.5, 0.5], initial_capital=20_000.0, threshold=0.05)
    assert out.drift[1, 0] == pytest.approx(250 / 10250, abs=1e-15)
    assert out.drift[2] == pytest.approx([1 / 11, -1 / 11], abs=1e-15)
    np.testing.assert_array_equal(
        out.events,
        [
            [0, 0, LEVEL_SLEEVE, REASON_SIGNAL, 0],
            [0, 0, LEVEL_SLEEVE, REASON_SIGNAL, 1],
            [2, 2, LEVEL_PORTFOLIO, REASON_DRIFT, -1],
        ],
    )
    bar2 = out.trades[out.trades[:, 0] == 2]
    # sell first: sleeve 0 sells 9 X @ 120; then sleeve 1 buys 10 Y @ 100
    np.testing.assert_array_equal(bar2[:, :6], [[2, 0, 0, -9, 120, 1080], [2, 1, 1, 10, 100, 1000]])
    np.testing.assert_array_equal(out.sleeve_units[2, :2], [[91.0, 0.0], [0.0, 110.0]])
    np.testing.assert_array_equal(out.cash[2], [80.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.equity[2], [11000.0, 11000.0, 0.0])
    np.testing.assert_array_equal(out.flows[2], [-1000.0, 1000.0, 0.0])
    np.testing.assert_array_equal(out.target_capital[2], [11000.0, 11000.0, 0.0])


def test_c_costs_on_one_order() -> None:
    # costs: 10 bps + 1 fixed, minimum 5, slippage 5 bps. Capital 10000, prices X 50, Y 10.
    # buy X: 0.5 * 10000 / 50 = 100 units, notional 5000:
    #   commission max(5, 0.001 * 5000 + 1) = 6, slippage 0.0005 * 5000 = 2.5
    # buy Y: 0.1 * 10000 / 10 = 100 units, notional 1000:
    #   commission max(5, 1 + 1) = 5 (the minimum binds), slippage 0.5
    # cash = 10000 - 6000 - 14 = 3986; equity = 3986 + 6000 = 9986.
    # bar 1: sell all X at 50: +5000 - 6 - 2.5 -> cash 8977.5, equity 9977.5 (the Y weight
    # 0.1002 keeps the 100 units: 0.1002 * 9986 / 10 = 100.06 -> 100)
    prices = np.array([[50.0, 10.0], [50.0, 10.0]])
    w, has = _one_signal(1, 2, 2, {(0, 0): [0.5, 0.1], (0, 1): [0.0, 0.1002]})
    out = simulate(prices, w, has, [1.0], costs=[10.0, 1.0, 5.0, 5.0])
    tr = out.trades
    np.testing.assert_array_equal(tr[:, :6], [
        [0, 0, 0, 100, 50, 5000], [0, 0, 1, 100, 10, 1000], [1, 0, 0, -100, 50, 5000],
    ])  # fmt: skip
    assert tr[:, 6] == pytest.approx([6.0, 5.0, 6.0], abs=1e-12)
    assert tr[:, 7] == pytest.approx([2.5, 0.5, 2.5], abs=1e-12)
    assert out.cash[0, 0] == pytest.approx(3986.0, abs=1e-9)
    assert out.equity[0, 0] == pytest.approx(9986.0, abs=1e-9)
    assert out.commission[0, 0] == pytest.approx(11.0, abs=1e-12)
    assert out.slippage[0, 0] == pytest.approx(3.0, abs=1e-12)
    assert out.traded[0, 0] == 6000.0
    assert out.cash[1, 0] == pytest.approx(8977.5, abs=1e-9)
    # recording at the close with slippage apart is the same cash as filling at close * (1 +- s)
    fill_buy = 100 * 50 * (1 + 5e-4) + 6 + 100 * 10 * (1 + 5e-4) + 5
    assert out.cash[0, 0] == pytest.approx(10_000 - fill_buy, abs=1e-9)


def test_d_lot_rounding_toward_zero() -> None:
    # lot 10, price 100, capital 25400.
    # bar 0: w = 1   -> 254 units = 25.4 lots -> 25 lots = 250 (buy 250), cash 400
    # bar 1: w = 0.5 -> 127 units = 12.7 lots -> 12 lots = 120 (sell 130), cash 13400
    # bar 2: w = -0.5 (short) -> -127 = -12.7 lots -> -12 lots = -120 (sell 240), cash 37400
    prices = np.full((3, 1), 100.0)
    w, has = _one_signal(1, 3, 1, {(0, 0): [1.0], (0, 1): [0.5], (0, 2): [-0.5]})
    out = simulate(prices, w, has, [1.0], initial_capital=25_400.0, lot_size=10.0)
    np.testing.assert_array_equal(out.units[:, 0], [250.0, 120.0, -120.0])
    np.testing.assert_array_equal(out.trades[:, 3], [250.0, -130.0, -240.0])
    np.testing.assert_array_equal(out.cash[:, 0], [400.0, 13_400.0, 37_400.0])
    np.testing.assert_array_equal(out.equity[:, 0], [25_400.0] * 3)


def test_e_min_trade_value_drops_small_orders() -> None:
    # min_trade_value 500, price 10, capital 10000, whole units.
    # bar 0: w = 0.5      -> 500 units, notional 5000: kept
    # bar 1: w = 33/64    -> 515.625 -> 515 units: order 15 units = 150 < 500: dropped
    # bar 2: w = 9/16     -> 562.5 -> 562 units: order 62 units = 620 >= 500: kept
    # bar 3: w = 0.55     -> 550 units: order -12 units = 120 < 500: dropped
    # bar 4: w = 0.5      -> 500 units: order -62 units = 620: kept
    prices = np.full((5, 1), 10.0)
    rows = {(0, 0): [0.5], (0, 1): [33 / 64], (0, 2): [9 / 16], (0, 3): [0.55], (0, 4): [0.5]}
    w, has = _one_signal(1, 5, 1, rows)
    out = simulate(prices, w, has, [1.0], min_trade_value=500.0)
    np.testing.assert_array_equal(out.units[:, 0], [500.0, 500.0, 562.0, 562.0, 500.0])
    np.testing.assert_array_equal(out.trades[:, [0, 3]], [[0, 500], [2, 62], [4, -62]])
    # exactly at the threshold: 50 units * 10 = 500 is kept
    prices2 = np.full((2, 1), 10.0)
    w2, has2 = _one_signal(1, 2, 1, {(0, 0): [0.5], (0, 1): [0.25]})
    out2 = simulate(prices2, w2, has2, [1.0], initial_capital=2000.0, min_trade_value=500.0)
    # bar 0: 100 units (1000); bar 1: 50 units, sell 50 * 10 = 500 -> kept
    np.testing.assert_array_equal(out2.trades[:, 3], [100.0, -50.0])


def test_f_zero_target_weight_sleeve() -> None:
    # Sleeve 1 has allocation weight 0: target capital 0, drift absolute (current / E) = 0,
    # never any capital, its signals size to zero units, and no NaN anywhere even on
    # calendar rebalances (no division by its zero target).
    # Inside the pass a zero-target sleeve starts at 0 and is never given capital, so
    # "capital moves out of it" is tested on the shared step directly
    # (test_rebalance_step.test_zero_target_sleeve_moves_all_capital_out) and through the
    # live Rebalancer (test_rebalancer.test_plan_zero_weight_sleeve_moves_out).
    prices = np.array([[100.0, 50.0], [120.0, 40.0], [90.0, 60.0], [95.0, 55.0]])
    w, has = _one_signal(
        2, 4, 2, {(0, 0): [0.5, 0.5], (1, 0): [0.5, 0.5], (1, 2): [1.0, 0.0], (0, 2): [1.0, 0.0]}
    )
    for relative in (True, False):
        out = simulate(
            prices, w, has, [1.0, 0.0], calendar_mask=[False, True, True, True],
            relative_band=relative, costs=[10.0, 1.0, 2.0, 5.0], threshold=0.0,
        )  # fmt: skip
        for arr in out:
            assert np.all(np.isfinite(arr))
        np.testing.assert_array_equal(out.target_capital[:, 1], 0.0)
        np.testing.assert_array_equal(out.drift[:, 1], 0.0)
        np.testing.assert_array_equal(out.equity[:, 1], 0.0)
        assert not np.any(out.trades[:, 1] == 1)
        # sleeve 0's target is the whole book as marked before the (lag 0) fills of the bar,
        # which only change the equity by their costs
        before_fills = out.equity.sum(axis=1) + (out.commission + out.slippage).sum(axis=1)
        np.testing.assert_allclose(out.target_capital[:, 0], before_fills, rtol=1e-15)
        # calendar rebalances still fire (reason calendar) and move nothing
        portfolio = out.events[out.events[:, 2] == LEVEL_PORTFOLIO]
        np.testing.assert_array_equal(portfolio[:, 3], REASON_CALENDAR)
        np.testing.assert_allclose(out.flows, 0.0, atol=1e-9)


def test_g_cash_limited_buy_scaled_exactly() -> None:
    # Capital 10000, w = 1 at price 100 -> 100 units; costs 10 bps + 2 fixed, min 5, slip 5 bps.
    # Full basket: 10000 + max(5, 10 + 2) + 5 = 10017 > 10000, so the buy is scaled by k with
    #   10000 k + (0.001 * 10000 k + 2) + 0.0005 * 10000 k = 10015 k + 2 = 10000
    #   -> k = 9998 / 10015, units = 100 k = 99.8302..., cash ends at 0.
    prices = np.full((1, 1), 100.0)
    w, has = _one_signal(1, 1, 1, {(0, 0): [1.0]})
    costs = [10.0, 2.0, 5.0, 5.0]
    frac = simulate(prices, w, has, [1.0], costs=costs, lot_size=0.0)
    assert frac.units[0, 0] == pytest.approx(100 * 9998 / 10015, rel=1e-13)
    assert frac.cash[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert frac.cash[0, 0] >= -1e-9
    # whole units: floor(99.83) = 99 units, cash = 10000 - 9900 - (9.9 + 2) - 4.95 = 83.15,
    # at least 0 and less than the cost of one more unit (100 + 0.1 + 0.05)
    whole = simulate(prices, w, has, [1.0], costs=costs, lot_size=1.0)
    assert whole.units[0, 0] == 99.0
    assert whole.cash[0, 0] == pytest.approx(83.15, abs=1e-9)
    assert 0.0 <= whole.cash[0, 0] < 100.15
    # when the minimum commission binds on the scaled order the solve is on the other piece:
    # capital 100, 1 unit @ 100 wanted, min 5: 100 k + 5 + 0.05 k = 100 -> k = 95 / 100.05
    tiny = simulate(prices, w, has, [1.0], initial_capital=100.0, costs=costs, lot_size=0.0)
    assert tiny.units[0, 0] == pytest.approx(95 / 100.05, rel=1e-13)
    assert tiny.cash[0, 0] == pytest.approx(0.0, abs=1e-12)


def test_h_execution_lag() -> None:
    # Decision at the close of bar 0 (price 100, capital 10000, w = 1 -> 100 units).
    # lag 0 fills at 100; lag 1 fills the frozen 100 units at the next close, 90.
    prices = np.array([[100.0], [90.0], [80.0]])
    w, has = _one_signal(1, 3, 1, {(0, 0): [1.0]})
    now = simulate(prices, w, has, [1.0], lag=0)
    nxt = simulate(prices, w, has, [1.0], lag=1)
    np.testing.assert_array_equal(now.trades[:, [0, 3, 4]], [[0, 100, 100]])
    np.testing.assert_array_equal(nxt.trades[:, [0, 3, 4]], [[1, 100, 90]])
    np.testing.assert_array_equal(now.events, [[0, 0, LEVEL_SLEEVE, REASON_SIGNAL, 0]])
    np.testing.assert_array_equal(nxt.events, [[0, 1, LEVEL_SLEEVE, REASON_SIGNAL, 0]])
    np.testing.assert_array_equal(now.equity[:, 0], [10_000.0, 9_000.0, 8_000.0])
    np.testing.assert_array_equal(nxt.equity[:, 0], [10_000.0, 10_000.0, 9_000.0])
    np.testing.assert_array_equal(nxt.cash[:, 0], [10_000.0, 1_000.0, 1_000.0])
    # rising instead: the frozen 100 units cost 11000 at the fill close, more than the cash;
    # the buy is scaled to the cash: 10000 / 110 units (fractional lots)
    up = np.array([[100.0], [110.0], [121.0]])
    scaled = simulate(up, w, has, [1.0], lag=1, lot_size=0.0)
    assert scaled.units[1, 0] == pytest.approx(10_000 / 110, rel=1e-15)
    assert scaled.cash[1, 0] == pytest.approx(0.0, abs=1e-9)
    # lag 2: the fill bar is past the end of a 2-bar panel: the event says so, nothing fills
    late = simulate(prices[:2], w[:, :2], has[:, :2], [1.0], lag=2)
    np.testing.assert_array_equal(late.events, [[0, 2, LEVEL_SLEEVE, REASON_SIGNAL, 0]])
    assert late.trades.shape == (0, 9)


def test_i_max_capital_binding_goes_to_reserve() -> None:
    # One sleeve (weight 1, max_capital 6000), capital 10000 -> sleeve 6000, reserve 4000.
    # bar 0: 60 units @ 100. bar 1: price 200, sleeve 12000, book 16000; the cap holds the
    # sleeve at 6000, the reserve target is 10000. Calendar rebalance: 60 * 6000/12000 = 30
    # units, sell 30 @ 200 = 6000, which moves to the reserve.
    prices = np.array([[100.0], [200.0]])
    w, has = _one_signal(1, 2, 1, {(0, 0): [1.0]})
    out = simulate(
        prices, w, has, [1.0], max_capital=[6000.0], calendar_mask=[False, True],
        check_mask=[False, False],
    )  # fmt: skip
    np.testing.assert_array_equal(out.equity[0], [6000.0, 4000.0])
    np.testing.assert_array_equal(out.cash[0], [0.0, 4000.0])
    np.testing.assert_array_equal(out.target_capital[1], [6000.0, 10_000.0])
    assert out.drift[1, 0] == 1.0  # (12000 - 6000) / 6000
    np.testing.assert_array_equal(out.trades[:, [0, 1, 3, 4]], [[0, 0, 60, 100], [1, 0, -30, 200]])
    np.testing.assert_array_equal(out.flows[1], [-6000.0, 6000.0])
    np.testing.assert_array_equal(out.equity[1], [6000.0, 10_000.0])
    np.testing.assert_array_equal(out.cash[1], [0.0, 10_000.0])
    np.testing.assert_array_equal(out.sleeve_units[1, :, 0], [30.0, 0.0])
    assert out.events[-1].tolist() == [1, 1, LEVEL_PORTFOLIO, REASON_CALENDAR, -1]


def test_portfolio_rebalance_in_flight_blocks_a_new_one() -> None:
    # lag 2, sleeves 50/50 of 10000; sleeve 0 signals w = 1 at bar 0 (50 units at bar 2).
    # Bar 3 (X = 200): sleeve 0 is worth 10000, sleeve 1 5000: the calendar rebalance fires
    # (fills at bar 5); the calendar bar 4 is skipped (in flight); bar 5 may start a new one
    # once the first has filled (X moved again, the sleeves are off target): fills at bar 7.
    prices = np.array([[100.0], [100.0], [100.0], [200.0], [300.0], [400.0], [500.0], [600.0]])
    w, has = _one_signal(2, 8, 1, {(0, 0): [1.0]})
    out = simulate(
        prices, w, has, [0.5, 0.5], lag=2,
        calendar_mask=[False, False, False, True, True, True, False, False],
        check_mask=[False] * 8,
    )  # fmt: skip
    portfolio = out.events[out.events[:, 2] == LEVEL_PORTFOLIO]
    np.testing.assert_array_equal(portfolio[:, :2], [[3, 5], [5, 7]])


def test_rebalance_with_every_sleeve_on_target_places_no_order() -> None:
    # lag 2: at bar 1 both sleeves still hold exactly their target capital in cash (sleeve
    # 0's signal fills at bar 2): the calendar decision is recorded but trades nothing and
    # leaves nothing in flight, so the calendar bar 2 fires again.
    prices = np.array([[100.0], [200.0], [300.0], [400.0], [500.0]])
    w, has = _one_signal(2, 5, 1, {(0, 0): [1.0]})
    out = simulate(
        prices, w, has, [0.5, 0.5], lag=2, calendar_mask=[False, True, True, False, False],
        check_mask=[False] * 5, reference=True,
    )  # fmt: skip
    portfolio = out.events[out.events[:, 2] == LEVEL_PORTFOLIO]
    np.testing.assert_array_equal(portfolio[:, :2], [[1, 3], [2, 4]])
    # Bar 2 fills the signal, cut for cash at 300: 16 units for 4800, cash 200, so sleeve 0 is
    # worth 16 * 300 + 200 = 5000 at that close: on target again, and the bar-2 decision
    # trades nothing either. The only fill of the run is the signal's.
    np.testing.assert_array_equal(out.trades[:, [0, 1, 3]], [[2, 0, 16]])


def test_rebalance_in_flight_does_not_undo_a_pending_signal() -> None:
    # lag 2, one sleeve of two (50/50 of 10000) signals w = 1 at bar 0 (fills at bar 2);
    # a calendar rebalance is decided at bar 1 (fills at bar 3) while nothing has moved:
    # both sleeves are exactly at target, so it should change nothing. Flat prices.
    prices = np.full((5, 1), 100.0)
    w, has = _one_signal(2, 5, 1, {(0, 0): [1.0]})
    out = simulate(
        prices, w, has, [0.5, 0.5], lag=2, reference=True,
        calendar_mask=[False, True, False, False, False], check_mask=[False] * 5,
    )  # fmt: skip
    # bar 2: the signal fills, 50 units (5000 / 100)
    assert out.sleeve_units[2, 0, 0] == 50.0
    # bar 3: the rebalance (decided at bar 1, before the 50 units existed) keeps them
    np.testing.assert_array_equal(out.sleeve_units[2:, 0, 0], [50.0, 50.0, 50.0])
    np.testing.assert_array_equal(out.trades[:, [0, 1, 3]], [[2, 0, 50]])


def test_rebalance_in_flight_resizes_the_pending_signal() -> None:
    # lag 2, sleeves 50/50 of 10000, whole units, no costs.
    # bar 0 (X = 100): sleeve 0 signals w = 1 -> 50 units, filled at bar 2 (cash 0).
    # bar 3 (X = 200): equity [10000, 5000]; sleeve 0 signals w = 0.5 -> 25 units (bar 5).
    # bar 4: calendar rebalance, targets 7500 each: sleeve 0 resizes the 25 units it will hold
    #   by 7500 / 10000 -> 18.75 -> 18 units and gives 2500; sleeve 1 gets 2500 (bar 6).
    # bar 5: the signal fills: sells 25 @ 200 -> 25 units, cash 5000.
    # bar 6: the rebalance fills: sells 7 @ 200 = 1400 -> cash 6400 - 2500 = 3900,
    #   equity 18 * 200 + 3900 = 7500; sleeve 1 cash 7500.
    # (Resizing the 50 units held at bar 4 instead would buy 12 back at bar 6: 37 units.)
    prices = np.array([[100.0], [100.0], [100.0], [200.0], [200.0], [200.0], [200.0]])
    w, has = _one_signal(2, 7, 1, {(0, 0): [1.0], (0, 3): [0.5]})
    calendar = np.zeros(7, dtype=bool)
    calendar[4] = True
    out = simulate(
        prices, w, has, [0.5, 0.5], lag=2, reference=True,
        calendar_mask=calendar, check_mask=[False] * 7,
    )  # fmt: skip
    np.testing.assert_array_equal(
        out.events,
        [
            [0, 2, LEVEL_SLEEVE, REASON_SIGNAL, 0],
            [3, 5, LEVEL_SLEEVE, REASON_SIGNAL, 0],
            [4, 6, LEVEL_PORTFOLIO, REASON_CALENDAR, -1],
        ],
    )
    np.testing.assert_array_equal(out.sleeve_units[:, 0, 0], [0, 0, 50, 50, 50, 25, 18])
    np.testing.assert_array_equal(out.trades[:, [0, 1, 3]], [[2, 0, 50], [5, 0, -25], [6, 0, -7]])
    np.testing.assert_array_equal(out.cash[6], [3900.0, 7500.0, 0.0])
    np.testing.assert_array_equal(out.equity[6], [7500.0, 7500.0, 0.0])
    np.testing.assert_array_equal(out.flows[6], [-2500.0, 2500.0, 0.0])


def test_signal_while_transfer_in_flight_is_sized_on_post_transfer_capital() -> None:
    # lag 2, sleeves 50/50 of 10000, whole units, no costs.
    # bar 0 (X = 100): sleeve 0 signals w = 1 -> 50 units, filled at bar 2 (cash 0).
    # bar 3 (X = 200): equity [10000, 5000], targets 7500 each; calendar rebalance: sleeve 0
    #   resizes 50 * 0.75 = 37.5 -> 37 units and gives 2500, sleeve 1 gets 2500 (bar 5).
    # bar 4 (X = 250), the transfer still in flight: equity [12500, 5000].
    #   sleeve 0 signals w = 0.5 on 12500 - 2500 = 10000 -> 20 units (bar 6);
    #   sleeve 1 signals w = 1 on 5000 + 2500 = 7500 -> 30 units (bar 6).
    #   (On the equity alone it would be 25 and 20 units.)
    # bar 5: the rebalance fills: sleeve 0 sells 13 @ 250 = 3250 -> cash 3250 - 2500 = 750;
    #   sleeve 1 cash 7500.
    # bar 6: the signals fill: sleeve 0 sells 17 -> cash 750 + 4250 = 5000, 20 units;
    #   sleeve 1 buys 30 @ 250 = 7500 with exactly its cash -> cash 0.
    prices = np.array([[100.0], [100.0], [100.0], [200.0], [250.0], [250.0], [250.0]])
    w, has = _one_signal(2, 7, 1, {(0, 0): [1.0], (0, 4): [0.5], (1, 4): [1.0]})
    calendar = np.zeros(7, dtype=bool)
    calendar[3] = True
    for netting in (True, False):
        out = simulate(
            prices, w, has, [0.5, 0.5], lag=2, reference=True,
            calendar_mask=calendar, check_mask=[False] * 7, netting=netting,
        )  # fmt: skip
        np.testing.assert_array_equal(
            out.events,
            [
                [0, 2, LEVEL_SLEEVE, REASON_SIGNAL, 0],
                [3, 5, LEVEL_PORTFOLIO, REASON_CALENDAR, -1],
                [4, 6, LEVEL_SLEEVE, REASON_SIGNAL, 0],
                [4, 6, LEVEL_SLEEVE, REASON_SIGNAL, 1],
            ],
        )
        np.testing.assert_array_equal(out.flows[5], [-2500.0, 2500.0, 0.0])
        np.testing.assert_array_equal(out.cash[5], [750.0, 7500.0, 0.0])
        np.testing.assert_array_equal(out.sleeve_units[5:, :2, 0], [[37.0, 0.0], [20.0, 30.0]])
        np.testing.assert_array_equal(out.cash[6], [5000.0, 0.0, 0.0])
        np.testing.assert_array_equal(out.equity[6], [10_000.0, 7500.0, 0.0])


def test_dust_orders_with_fractional_units_and_no_minimum() -> None:
    """Fractional units, no minimum notional: no dust orders for sleeves at their targets.

    Three sleeves 20/30/50 % all in one asset (10 bps, minimum 1: proportional at bar 0), the
    asset moves 100 -> 130 and a calendar rebalance fires. Every sleeve sits exactly at its
    target, so nothing trades: resizing by ``target / equity`` leaves differences of the last
    bit (~1e-14 units), which the step drops as dust instead of paying a minimum commission
    on each.
    """
    prices = np.array([[100.0], [130.0]])
    w = np.ones((3, 2, 1))
    has = np.zeros((3, 2), dtype=bool)
    has[:, 0] = True
    out = simulate(
        prices, w, has, [0.2, 0.3, 0.5], reference=True,
        calendar_mask=[False, True], check_mask=[False, False], costs=[10.0, 0.0, 1.0, 0.0],
        lot_size=0.0, min_trade_value=0.0, netting=False,
    )  # fmt: skip
    # the rebalance fired ...
    assert out.events[-1].tolist() == [1, 1, LEVEL_PORTFOLIO, REASON_CALENDAR, -1]
    # ... and every sleeve is at its target: it neither trades nor pays anything
    assert out.trades[out.trades[:, 0] == 1].shape[0] == 0
    assert out.commission[1].sum() == 0.0
    np.testing.assert_array_equal(out.sleeve_units[1], out.sleeve_units[0])


def test_reference_matches_hand_scenarios() -> None:
    # The reference loop reproduces one of the hand scenarios (a sanity check of the reference).
    prices = np.array([[100.0, 100.0], [105.0, 100.0], [120.0, 100.0]])
    w, has = _one_signal(2, 3, 2, {(0, 0): [1.0, 0.0], (1, 0): [0.0, 1.0]})
    kw = _kernel_args(
        prices=prices, weights=w, has_signal=has, alloc_weights=[0.5, 0.5], min_capital=None,
        max_capital=None, risk_multiplier=None, initial_capital=20_000.0, check_mask=None,
        calendar_mask=None, threshold=0.05, relative_band=True, costs=[0.0] * 4,
        min_trade_value=0.0, lot_size=1.0, max_leverage=1.0, netting=True, lag=0,
        portfolio_rebalancing=True, risk_adjusted=False, ra_lookback=20, ra_sensitivity=0.1,
    )  # fmt: skip
    ref = reference_simulate(**kw)
    np.testing.assert_array_equal(ref.equity[2], [11000.0, 11000.0, 0.0])
    assert math.isclose(ref.drift[2, 0], 1 / 11, abs_tol=1e-15)
    assert_matches_reference(simulate_nb(**kw), ref, kw)
