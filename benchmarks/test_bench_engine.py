"""Speed goals of the accounting pass and of the runner.

Goal (issue): on a synthetic panel of 2520 bars x 500 assets x 3 sleeves with monthly
rebalancing and costs, :func:`backtest.kernel.simulate_nb` runs within 2x of a minimal
single-pass numba loop doing the same accounting (:func:`baseline_pass_nb`, below), measured
in the same run; a warm run of the runner on the embedded data takes seconds.

The baseline does the same accounting in its plainest form: lag-1 fills with costs, sleeve
signals, and the monthly capital rebalancing between sleeves. It is made a meaningful comparison
by :func:`test_baseline_matches_kernel`: in the case where the kernel's extra rules are all inert
(no netting, no capital moves between sleeves, cash never binds, no trade filter, no minimum
commission) both give the same final equity.

``make bench`` runs this file with pytest-benchmark enabled; under the default
``--benchmark-disable`` each benchmark body runs once (a smoke test).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba import njit

from backtest.calendar import calendar_mask, drift_check_mask
from backtest.kernel import LEVEL_PORTFOLIO, SimulationOutput, simulate_nb
from benchmarks.workloads import SyntheticPanel, make_synthetic_panel

CAPITAL = 10_000_000.0
ALLOC_WEIGHTS = np.array([0.40, 0.35, 0.25])
#: Capital bounds of the full run (fractions of the initial capital), so that
#: ``allocate_capital`` has real clamping to do.
MIN_CAPITAL = np.array([0.10, 0.10, 0.05]) * CAPITAL
MAX_CAPITAL = np.array([0.60, 0.50, 0.40]) * CAPITAL
#: ``[commission_bps, commission_fixed, commission_min, slippage_bps]``.
COSTS = np.array([1.0, 0.0, 1.0, 2.0])
COSTS_NO_MIN = np.array([1.0, 0.5, 0.0, 2.0])
THRESHOLD = 0.05
LAG = 1
REPEATS = 7
MAX_RATIO = 2.0
MAX_WARM_RUNNER_S = 10.0


# --------------------------------------------------------------------------- the panel
@pytest.fixture(scope="module")
def synthetic_panel() -> SyntheticPanel:
    """The speed-goal panel: 2520 bars x 500 assets x 3 sleeves, seed 42."""
    return make_synthetic_panel()


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


# --------------------------------------------------------------------------- kernel inputs
def kernel_args(
    panel: SyntheticPanel,
    *,
    weights: np.ndarray | None = None,
    netting: bool = True,
    portfolio_rebalancing: bool = True,
    bounded_capital: bool = True,
    costs: np.ndarray = COSTS,
    min_trade_value: float = 10.0,
    record_sleeve_units: bool = False,
) -> tuple[Any, ...]:
    """Positional arguments of :func:`simulate_nb`, built as ``PortfolioBacktestEngine`` does.

    Monthly calendar (last bar of each month), drift check every bar (24 h), relative band,
    lot 1, leverage 1, lag 1, no risk-adjusted tilt. The engine never records the dense
    per-account units history (``record_sleeve_units=False``); results rebuild it from trades.
    """
    n_s = panel.weights.shape[0]
    if portfolio_rebalancing:
        cal = calendar_mask(panel.index, "month_end")
        chk = drift_check_mask(panel.index, 24.0)
    else:
        cal = np.zeros(len(panel.index), dtype=bool)
        chk = np.zeros(len(panel.index), dtype=bool)
    min_cap = MIN_CAPITAL if bounded_capital else np.zeros(n_s)
    max_cap = MAX_CAPITAL if bounded_capital else np.full(n_s, np.inf)
    return (
        panel.prices,
        panel.weights if weights is None else np.ascontiguousarray(weights),
        panel.has_signal,
        ALLOC_WEIGHTS.copy(),
        min_cap.astype(np.float64),
        max_cap.astype(np.float64),
        np.ones(n_s),
        CAPITAL,
        chk,
        cal,
        THRESHOLD,
        True,
        costs.copy(),
        float(min_trade_value),
        1.0,
        1.0,
        netting,
        LAG,
        portfolio_rebalancing,
        False,
        63,
        1.0,
        record_sleeve_units,
    )


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def check_kernel_output(out: SimulationOutput, prices: np.ndarray) -> None:
    """Accounting identities of one kernel run (exact up to floating-point rounding)."""
    eq = out.equity.sum(axis=1)
    assert np.isfinite(out.equity).all()
    assert (eq > 0.0).all()
    # Book identity at the last bar: cash + units * price == equity.
    book = out.cash[-1].sum() + float(out.units[-1] @ prices[-1])
    assert _rel(book, eq[-1]) <= 1e-9, (book, eq[-1])
    # P&L identity over the whole run: transfers are internal, so the book's equity only moves
    # by mark-to-market of the previous bar's units and by the costs paid.
    pnl = float(np.einsum("ta,ta->", out.units[:-1], np.diff(prices, axis=0)))
    costs = float(out.commission.sum() + out.slippage.sum())
    assert costs > 0.0
    assert _rel(CAPITAL + pnl - costs, eq[-1]) <= 1e-9, (CAPITAL + pnl - costs, eq[-1])
    # Something actually happened.
    assert out.trades.shape[0] > 0


def check_baseline_output(
    out: tuple[np.ndarray, np.ndarray, np.ndarray], prices: np.ndarray
) -> None:
    """Book identity and sanity of one baseline run."""
    eq, cash, units = out
    assert np.isfinite(eq).all()
    assert (eq.sum(axis=1) > 0.0).all()
    book = cash[-1].sum() + float(units[-1] @ prices[-1])
    assert _rel(book, eq[-1].sum()) <= 1e-9, (book, eq[-1].sum())
    assert np.abs(units).sum() > 0.0


def _kernel_full(
    panel: SyntheticPanel, record_sleeve_units: bool = False
) -> Callable[[], SimulationOutput]:
    args = kernel_args(panel, record_sleeve_units=record_sleeve_units)
    return lambda: simulate_nb(*args)


def _baseline_full(
    panel: SyntheticPanel,
) -> Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    capital = CAPITAL * ALLOC_WEIGHTS
    monthly = calendar_mask(panel.index, "month_end")
    return lambda: baseline_pass_nb(
        panel.prices, panel.weights, panel.has_signal, capital, COSTS, monthly
    )


# --------------------------------------------------------------------------- tests
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
    assert _rel(k_final, b_final) <= 1e-9, (k_final, b_final)
    # Stronger than the brief asks: the same holdings at every bar, the same sleeve equities.
    np.testing.assert_array_equal(out.units, b_units)
    np.testing.assert_allclose(out.equity[:, :-1], b_eq, rtol=1e-9)
    # Equal units at every bar also show that the kernel never scaled a basket to fit cash.
    assert (out.cash >= 0.0).all()


def test_kernel_pass(benchmark: Any, synthetic_panel: SyntheticPanel) -> None:
    """simulate_nb, full rules: netting, monthly + drift capital rebalancing, costs."""
    run = _kernel_full(synthetic_panel)
    run()  # compile (or load from cache) outside the measurement
    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    check_kernel_output(out, synthetic_panel.prices)
    assert out.events.shape[0] > 0
    assert (out.events[:, 2] == LEVEL_PORTFOLIO).any()  # capital moved between sleeves


def test_baseline_pass(benchmark: Any, synthetic_panel: SyntheticPanel) -> None:
    """The minimal single-pass loop on the same inputs."""
    run = _baseline_full(synthetic_panel)
    run()
    out = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    check_baseline_output(out, synthetic_panel.prices)


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each callable, runs interleaved so load drifts hit both alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def test_kernel_within_2x_of_baseline(synthetic_panel: SyntheticPanel) -> None:
    """Speed goal: the full pass within 2x of the minimal loop, warm, same process.

    The kernel is called exactly as the engine calls it for this panel.
    """
    kernel = _kernel_full(synthetic_panel)
    baseline = _baseline_full(synthetic_panel)
    check_kernel_output(kernel(), synthetic_panel.prices)  # warm-up + correctness
    check_baseline_output(baseline(), synthetic_panel.prices)
    med = _median_times({"kernel": kernel, "baseline": baseline}, REPEATS)
    ratio = med["kernel"] / med["baseline"]
    msg = (
        f"kernel median {med['kernel'] * 1e3:.1f} ms, baseline median "
        f"{med['baseline'] * 1e3:.1f} ms, ratio {ratio:.2f} (goal <= {MAX_RATIO})"
    )
    print(f"\n[engine bench] {msg}")
    assert med["kernel"] <= MAX_RATIO * med["baseline"], msg


def test_runner_warm() -> None:
    """A warm run of the engine on the embedded data with the default config takes seconds."""
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from portfolio.config import default_config_path, load_config

    config = load_config(default_config_path())
    t0 = time.perf_counter()
    first = PortfolioBacktestEngine.from_config(config).run()
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = PortfolioBacktestEngine.from_config(config).run()
    warm_s = time.perf_counter() - t0
    msg = f"runner first run {first_s:.2f} s, warm run {warm_s:.2f} s (goal < {MAX_WARM_RUNNER_S})"
    print(f"\n[engine bench] {msg}")
    assert np.isfinite(result.equity.to_numpy()).all()
    assert result.equity.iloc[-1] == first.equity.iloc[-1]  # deterministic
    assert warm_s < MAX_WARM_RUNNER_S, msg


def test_runner_cold_subprocess(tmp_path: Path) -> None:
    """Informative: the CLI with an empty numba cache (every kernel compiled). Only success is
    asserted; the time is printed."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "backtest.portfolio_runner", "--out", str(tmp_path / "out"),
             "--no-progress"],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        cold_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").is_dir()
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(
        f"\n[engine bench] runner cold (empty NUMBA_CACHE_DIR, subprocess) {cold_s:.2f} s "
        f"wall incl. interpreter start and imports; runner says: {last!r}"
    )
