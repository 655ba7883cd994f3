"""Benchmarks of the simulation pass (group ``pass``) and its speed goal.

The pass is :func:`backtest.kernel.simulate_nb` called exactly as the engine calls it
(:func:`benchmarks.workloads.kernel_args`: three sleeves, monthly calendar rebalancing plus a
daily-checked drift band, commission and slippage, netting, lag 1) on every case of the suite:
the seeded synthetic panels ``small`` (2520 bars x 20 assets), ``medium`` (2520 x 500) and
``large`` (10080 x 1000), and ``real``, the embedded S&P 500 closes with the default
configuration's strategy weights. Next to it, in the same group, runs :func:`baseline_pass_nb`
on the same inputs.

Goal (issue): on the medium panel the pass runs within 2x of a minimal single-pass numba loop
doing the same accounting (:func:`baseline_pass_nb`, below), measured in the same run
(:func:`test_kernel_within_2x_of_baseline`).

The baseline does the same accounting in its plainest form: lag-1 fills with costs, sleeve
signals, and the monthly capital rebalancing between sleeves. It is made a meaningful comparison
by :func:`test_baseline_matches_kernel`: in the case where the kernel's extra rules are all inert
(no netting, no capital moves between sleeves, cash never binds, no trade filter, no minimum
commission) both give the same final equity.

Every benchmark checks its own result (:func:`benchmarks.workloads.check_simulation_output`:
accounting identities at several bars, finite, equity > 0, costs paid, trades made).
``make bench`` runs the benchmarks with pytest-benchmark enabled; under the default
``--benchmark-disable`` each benchmark body runs once (a smoke test).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numba import njit

from backtest.calendar import calendar_mask
from backtest.kernel import LEVEL_PORTFOLIO, SimulationOutput, simulate_nb
from benchmarks.timing import median_times
from benchmarks.workloads import (
    ALLOC_WEIGHTS,
    CAPITAL,
    CASES,
    COSTS,
    SyntheticPanel,
    check_simulation_output,
    kernel_args,
    load_case,
    rel_diff,
)

COSTS_NO_MIN = np.array([1.0, 0.5, 0.0, 2.0])
#: Interleaved kernel/baseline pairs timed by the ratio goal (medians are compared).
REPEATS = 15
MAX_RATIO = 2.0
#: pytest-benchmark rounds per case (each round is one pass).
ROUNDS = {"small": 20, "medium": 10, "large": 5, "real": 10}


# --------------------------------------------------------------------------- the panel
@pytest.fixture(scope="module")
def synthetic_panel() -> SyntheticPanel:
    """The speed-goal panel: 2520 bars x 500 assets x 3 sleeves, seed 42 (``medium``)."""
    return load_case("medium")


# --------------------------------------------------------------------------- the baseline
@njit(cache=True)
def baseline_pass_nb(
    prices: np.ndarray, weights: np.ndarray, has_signal: np.ndarray, capital: np.ndarray,
    costs: np.ndarray, rebalance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Minimal single-pass accounting of ``S`` sleeves with lag-1 fills and calendar rebalancing.

    Per bar ``t``: fill the orders decided at ``t - 1`` at the close of ``t`` (commission
    ``max(min, bps * 1e-4 * notional + fixed)`` and slippage ``slippage_bps * 1e-4 * notional``
    paid from the sleeve's cash, plus any capital transfer), mark every sleeve to the close, and
    on a signal bar of sleeve ``s`` size its target units ``floor(w * equity_s / price)``. On a
    ``rebalance`` bar every sleeve is brought back to its starting share of the book: its
    holdings are resized by ``target capital / equity`` (or sized from its signal row) and the
    capital difference moves as cash. No netting, no cash scaling, no trade filter, no drift
    band, no capital bounds.

    Parameters
    ----------
    prices : ndarray, shape (T, A)
        Closes, all finite and > 0.
    weights : ndarray, shape (S, T, A)
        Target weights (fractions of sleeve equity), long only.
    has_signal : ndarray of bool, shape (S, T)
        Signal bars per sleeve.
    capital : ndarray, shape (S,)
        Starting cash per sleeve, currency (also the target split of the book).
    costs : ndarray, shape (4,)
        ``[commission_bps, commission_fixed, commission_min, slippage_bps]``.
    rebalance : ndarray of bool, shape (T,)
        Calendar bars on which capital is moved back to the starting split.

    Returns
    -------
    equity, cash : ndarray, shape (T, S)
        End-of-bar equity and cash per sleeve, currency.
    units : ndarray, shape (T, A)
        End-of-bar units per asset of the whole book.
    """
    n_t, n_a = prices.shape
    n_s = capital.shape[0]
    bps = costs[0] * 1e-4
    fixed = costs[1]
    cmin = costs[2]
    slip = costs[3] * 1e-4
    units = np.zeros((n_s, n_a))
    cash = capital.copy()
    split = capital / capital.sum()
    target = np.zeros((n_s, n_a))
    transfer = np.zeros(n_s)
    pending = np.zeros(n_s, dtype=np.bool_)
    eq = np.zeros(n_s)
    out_eq = np.empty((n_t, n_s))
    out_cash = np.empty((n_t, n_s))
    out_units = np.empty((n_t, n_a))
    for t in range(n_t):
        p = prices[t]
        for s in range(n_s):
            if pending[s]:
                cash[s] += transfer[s]
                transfer[s] = 0.0
                for a in range(n_a):
                    d = target[s, a] - units[s, a]
                    if d != 0.0:
                        notional = abs(d) * p[a]
                        comm = max(cmin, bps * notional + fixed)
                        units[s, a] += d
                        cash[s] -= d * p[a] + comm + slip * notional
                pending[s] = False
        total = 0.0
        for s in range(n_s):
            v = cash[s]
            for a in range(n_a):
                v += units[s, a] * p[a]
            eq[s] = v
            total += v
            out_eq[t, s] = v
            out_cash[t, s] = cash[s]
        if t + 1 < n_t:
            for s in range(n_s):
                cap = eq[s]
                if rebalance[t]:
                    cap = split[s] * total
                    transfer[s] = cap - eq[s]
                if has_signal[s, t]:
                    for a in range(n_a):
                        target[s, a] = np.floor(weights[s, t, a] * cap / p[a])
                    pending[s] = True
                elif rebalance[t]:
                    ratio = cap / eq[s] if eq[s] > 0.0 else 1.0
                    for a in range(n_a):
                        target[s, a] = np.floor(units[s, a] * ratio)
                    pending[s] = True
        for a in range(n_a):
            u = 0.0
            for s in range(n_s):
                u += units[s, a]
            out_units[t, a] = u
    return out_eq, out_cash, out_units


# --------------------------------------------------------------------------- helpers
def check_baseline_output(
    out: tuple[np.ndarray, np.ndarray, np.ndarray], prices: np.ndarray
) -> None:
    """Book identity and sanity of one baseline run."""
    eq, cash, units = out
    assert np.isfinite(eq).all()
    assert (eq.sum(axis=1) > 0.0).all()
    book = cash[-1].sum() + float(units[-1] @ prices[-1])
    assert rel_diff(book, eq[-1].sum()) <= 1e-9, (book, eq[-1].sum())
    assert np.abs(units).sum() > 0.0


def _kernel_full(panel: SyntheticPanel) -> Callable[[], SimulationOutput]:
    args = kernel_args(panel)
    return lambda: simulate_nb(*args)


def _baseline_full(
    panel: SyntheticPanel,
) -> Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    capital = CAPITAL * ALLOC_WEIGHTS
    monthly = calendar_mask(panel.index, "month_end")
    return lambda: baseline_pass_nb(
        panel.prices, panel.weights, panel.has_signal, capital, COSTS, monthly
    )


# --------------------------------------------------------------------------- correctness
def test_baseline_matches_kernel(synthetic_panel: SyntheticPanel) -> None:
    """The baseline does the kernel's accounting where the kernel's extra rules are inert."""
    panel = synthetic_panel
    w = panel.weights * 0.9  # row sums <= 0.9: cash never binds
    assert w.sum(axis=2).max() <= 0.9 + 1e-12
    args = kernel_args(
        panel, weights=w, netting=False, portfolio_rebalancing=False, bounded_capital=False,
        costs=COSTS_NO_MIN, min_trade_value=0.0, record_sleeve_units=False,
    )  # fmt: skip
    out = simulate_nb(*args)
    b_eq, _, b_units = baseline_pass_nb(
        panel.prices, np.ascontiguousarray(w), panel.has_signal, CAPITAL * ALLOC_WEIGHTS,
        COSTS_NO_MIN, np.zeros(len(panel.index), dtype=bool),
    )  # fmt: skip
    k_final = float(out.equity[-1].sum())
    b_final = float(b_eq[-1].sum())
    assert rel_diff(k_final, b_final) <= 1e-9, (k_final, b_final)
    # Stronger than the brief asks: the same holdings at every bar, the same sleeve equities.
    np.testing.assert_array_equal(out.units, b_units)
    np.testing.assert_allclose(out.equity[:, :-1], b_eq, rtol=1e-9)
    # Equal units at every bar also show that the kernel never scaled a basket to fit cash.
    assert (out.cash >= 0.0).all()


# --------------------------------------------------------------------------- group "pass"
@pytest.mark.benchmark(group="pass")
@pytest.mark.parametrize("case", CASES)
def test_pass(benchmark: Any, case: str) -> None:
    """simulate_nb, full rules: netting, monthly + drift capital rebalancing, costs."""
    panel = load_case(case)
    run = _kernel_full(panel)
    # The warm-up round compiles (or loads from the cache) outside the measurement.
    out = benchmark.pedantic(run, rounds=ROUNDS[case], iterations=1, warmup_rounds=1)
    check_simulation_output(out, panel.prices)
    assert out.events.shape[0] > 0
    assert (out.events[:, 2] == LEVEL_PORTFOLIO).any()  # capital moved between sleeves


@pytest.mark.benchmark(group="pass")
@pytest.mark.parametrize("case", CASES)
def test_pass_baseline(benchmark: Any, case: str) -> None:
    """The minimal single-pass loop on the same inputs."""
    panel = load_case(case)
    run = _baseline_full(panel)
    out = benchmark.pedantic(run, rounds=ROUNDS[case], iterations=1, warmup_rounds=1)
    check_baseline_output(out, panel.prices)


# --------------------------------------------------------------------------- the speed goal
def test_kernel_within_2x_of_baseline(synthetic_panel: SyntheticPanel) -> None:
    """Speed goal: the full pass within 2x of the minimal loop, warm, same process.

    The kernel is called exactly as the engine calls it for this panel; the medians of
    :data:`REPEATS` interleaved runs are compared.
    """
    kernel = _kernel_full(synthetic_panel)
    baseline = _baseline_full(synthetic_panel)
    check_simulation_output(kernel(), synthetic_panel.prices)  # warm-up + correctness
    check_baseline_output(baseline(), synthetic_panel.prices)
    med = median_times({"kernel": kernel, "baseline": baseline}, REPEATS)
    ratio = med["kernel"] / med["baseline"]
    msg = (
        f"kernel median {med['kernel'] * 1e3:.1f} ms, baseline median "
        f"{med['baseline'] * 1e3:.1f} ms, ratio {ratio:.2f} (goal <= {MAX_RATIO})"
    )
    print(f"\n[engine bench] {msg}")
    assert med["kernel"] <= MAX_RATIO * med["baseline"], msg
