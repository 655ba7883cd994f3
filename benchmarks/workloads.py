"""Seeded workloads shared by the benchmarks, the memory probe and the peer comparison.

Every synthetic panel is a deterministic function of its arguments
(``np.random.default_rng(seed)``), so two processes, or two engines in one process, see
bit-identical inputs. Besides the three synthetic sizes of :data:`SIZES` there is the ``real``
case: the embedded 20-stock S&P 500 closes (8313 bars, 1990-2022) with the target weights of
the default configuration's three strategies.

The settings of every benchmark run live here once (:func:`kernel_args` for the pass,
:func:`make_engine` for the full engine), so the pass, the engine and the memory probe measure
the same backtest: three sleeves (40/35/25 %, with capital bounds), a monthly calendar
rebalance plus a 5 % relative drift band checked daily, commission 1 bp (minimum 1 per order),
slippage 2 bp, netting, minimum trade 10, whole units, lag 1. The ``check_*`` functions are the
cheap correctness asserts each benchmark runs on its own result.

``backtest`` is imported inside the functions that need it, so importing this module stays
cheap for :mod:`benchmarks.peers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from backtest.kernel import SimulationOutput
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from backtest.result import PortfolioBacktestResult

#: Named panel sizes ``(bars, assets)`` of the benchmark suite (issue 5).
SIZES: dict[str, tuple[int, int]] = {
    "small": (2520, 20),
    "medium": (2520, 500),
    "large": (10080, 1000),
}
N_BARS = 2520
N_ASSETS = 500
N_SLEEVES = 3
#: Bars between two target-weight rows of a sleeve (one trading month).
SIGNAL_EVERY = 21
SEED = 42


@dataclass(frozen=True, slots=True)
class SyntheticPanel:
    """A seeded synthetic backtest input.

    Attributes
    ----------
    index : DatetimeIndex, length T
        Business days from 2000-01-03.
    prices : ndarray, shape (T, A)
        Closes of independent geometric random walks, currency per unit, all finite and > 0.
    weights : ndarray, shape (S, T, A)
        Long-only target weights per sleeve; non-zero only on signal bars, each such row over
        50-100 random assets (``A // 2`` to ``A`` when ``A < 100``) with a random total in
        ``[0.85, 1] * max_weight_sum``.
    has_signal : ndarray of bool, shape (S, T)
        True on bars ``0, SIGNAL_EVERY, 2 * SIGNAL_EVERY, ...`` for every sleeve.
    """

    index: pd.DatetimeIndex
    prices: np.ndarray
    weights: np.ndarray
    has_signal: np.ndarray


def make_synthetic_panel(
    n_bars: int = N_BARS,
    n_assets: int = N_ASSETS,
    n_sleeves: int = N_SLEEVES,
    *,
    every: int = SIGNAL_EVERY,
    max_weight_sum: float = 1.0,
    seed: int = SEED,
) -> SyntheticPanel:
    """Build a :class:`SyntheticPanel` from ``np.random.default_rng(seed)``.

    Parameters
    ----------
    n_bars, n_assets, n_sleeves : int
        Shape ``(S, T, A)`` of the weights.
    every : int
        Spacing of the signal bars.
    max_weight_sum : float
        Upper bound of the sum of each target-weight row (fraction of sleeve capital).
    seed : int
        Seed of the generator; the same arguments always give the same panel.
    """
    rng = np.random.default_rng(seed)
    start = rng.uniform(10.0, 500.0, n_assets)
    vol = rng.uniform(0.01, 0.03, n_assets)  # daily log-return volatility
    drift = rng.normal(0.0003, 0.0002, n_assets)
    log_ret = drift + vol * rng.standard_normal((n_bars, n_assets))
    log_ret[0] = 0.0
    prices = start * np.exp(np.cumsum(log_ret, axis=0))

    weights = np.zeros((n_sleeves, n_bars, n_assets))
    has_signal = np.zeros((n_sleeves, n_bars), dtype=bool)
    has_signal[:, ::every] = True
    # 50-100 names per row; on a panel of fewer than 100 assets, half of them to all of them.
    k_low, k_high = min(50, max(1, n_assets // 2)), min(100, n_assets)
    for s in range(n_sleeves):
        for t in np.flatnonzero(has_signal[s]):
            k = int(rng.integers(k_low, k_high + 1))
            names = rng.choice(n_assets, size=k, replace=False)
            raw = rng.uniform(0.1, 1.0, k)
            total = rng.uniform(0.85, 1.0) * max_weight_sum
            weights[s, t, names] = raw * (total / raw.sum())
    index = pd.bdate_range("2000-01-03", periods=n_bars)
    return SyntheticPanel(index, np.ascontiguousarray(prices), weights, has_signal)


# --------------------------------------------------------------------------- the suite's cases
#: Every case of the suite: the synthetic sizes plus the embedded data.
CASES: tuple[str, ...] = (*SIZES, "real")
CAPITAL = 10_000_000.0
ALLOC_WEIGHTS = np.array([0.40, 0.35, 0.25])
#: Capital bounds of the sleeves (fractions of the initial capital), so that
#: ``allocate_capital`` has real clamping to do.
MIN_CAPITAL = np.array([0.10, 0.10, 0.05]) * CAPITAL
MAX_CAPITAL = np.array([0.60, 0.50, 0.40]) * CAPITAL
#: ``[commission_bps, commission_fixed, commission_min, slippage_bps]``.
COSTS = np.array([1.0, 0.0, 1.0, 2.0])
THRESHOLD = 0.05
LAG = 1
MIN_TRADE_VALUE = 10.0
SLEEVE_IDS: tuple[str, ...] = ("sleeve_a", "sleeve_b", "sleeve_c")


def asset_names(n_assets: int) -> list[str]:
    """Column names of a synthetic panel: ``S0000``, ``S0001``, ..."""
    return [f"S{i:04d}" for i in range(n_assets)]


def make_case(case: str) -> SyntheticPanel:
    """Build the panel of a named case (a fresh copy on every call).

    Parameters
    ----------
    case : str
        A key of :data:`SIZES` (seeded synthetic panel, 3 sleeves, monthly signals) or
        ``"real"``: the embedded closes (8313 bars x 20 assets, no missing price) with the
        target-weight rows of the default configuration's three strategies
        (``config/portfolio.yaml``), as ``PortfolioBacktestEngine.strategy_targets`` makes them.

    Returns
    -------
    SyntheticPanel
    """
    if case in SIZES:
        n_bars, n_assets = SIZES[case]
        return make_synthetic_panel(n_bars, n_assets)
    if case == "real":
        engine = make_real_engine()
        weights, has_signal = engine.strategy_targets()
        return SyntheticPanel(engine.panel.index, engine.panel.values(), weights, has_signal)
    raise ValueError(f"case: expected one of {list(CASES)}, got {case!r}")


@cache
def load_case(case: str) -> SyntheticPanel:
    """:func:`make_case`, built once per process (callers must not modify the arrays)."""
    return make_case(case)


def kernel_args(
    panel: SyntheticPanel,
    *,
    weights: np.ndarray | None = None,
    netting: bool = True,
    portfolio_rebalancing: bool = True,
    bounded_capital: bool = True,
    costs: np.ndarray = COSTS,
    min_trade_value: float = MIN_TRADE_VALUE,
    record_sleeve_units: bool = False,
) -> tuple[Any, ...]:
    """Positional arguments of ``simulate_nb``, built as ``PortfolioBacktestEngine`` does.

    Monthly calendar (last bar of each month), drift check every bar (24 h), relative band,
    lot 1, leverage 1, lag 1, no risk-adjusted tilt. The engine never records the dense
    per-account units history (``record_sleeve_units=False``); results rebuild it from trades.
    The keywords switch rules off for the baseline comparison of ``test_bench_engine``.
    """
    from backtest.calendar import calendar_mask, drift_check_mask

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


# --------------------------------------------------------------------------- the full engine
def weight_schedules(panel: SyntheticPanel, columns: list[str]) -> list[pd.DataFrame]:
    """One weight schedule per sleeve: the panel's target rows on that sleeve's signal bars.

    Each is the ``schedule`` of a ``backtest.strategies.WeightScheduleStrategy``: shape
    ``(n_signal_bars, A)``, indexed by the signal dates (about ``T / 21`` rows).
    """
    return [
        pd.DataFrame(
            panel.weights[s][panel.has_signal[s]],
            index=panel.index[panel.has_signal[s]],
            columns=columns,
        )
        for s in range(panel.weights.shape[0])
    ]


def make_engine(panel: SyntheticPanel, portfolio_id: str = "bench") -> PortfolioBacktestEngine:
    """A ``PortfolioBacktestEngine`` running ``panel`` with the settings of :func:`kernel_args`.

    Each sleeve is a ``WeightScheduleStrategy`` replaying :func:`weight_schedules`, so
    ``run()`` does the whole work of a run (each strategy turns its schedule into a
    ``(T, A)`` target frame, the engine validates and stacks the frames, runs the pass and one
    standalone pass per sleeve, builds the result's frames and metrics) and its main pass is
    exactly ``simulate_nb(*kernel_args(panel))`` (the schedules start with a non-zero row, so
    every schedule row is emitted).
    """
    from backtest.data import PricePanel
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from backtest.strategies import WeightScheduleStrategy
    from portfolio.config import RebalanceSettings
    from portfolio.contracts import CostModel, PortfolioConfig, StrategyAllocation

    n_s = panel.weights.shape[0]
    if n_s != len(SLEEVE_IDS):
        raise ValueError(f"panel: expected {len(SLEEVE_IDS)} sleeves, got {n_s}")
    columns = asset_names(panel.prices.shape[1])
    prices = PricePanel.from_frame(
        pd.DataFrame(panel.prices, index=panel.index, columns=columns, copy=False)
    )
    strategies = [
        WeightScheduleStrategy(strategy_id=sid, schedule=schedule)
        for sid, schedule in zip(SLEEVE_IDS, weight_schedules(panel, columns), strict=True)
    ]
    config = PortfolioConfig(
        portfolio_id=portfolio_id,
        total_capital=CAPITAL,
        allocations=tuple(
            StrategyAllocation(sid, float(w), float(lo), float(hi))
            for sid, w, lo, hi in zip(
                SLEEVE_IDS, ALLOC_WEIGHTS, MIN_CAPITAL, MAX_CAPITAL, strict=True
            )
        ),
        rebalance_threshold=THRESHOLD,
        rebalance_frequency_hours=24.0,
    )
    return PortfolioBacktestEngine(
        config,
        strategies,
        prices=prices,
        costs=CostModel(*(float(c) for c in COSTS)),
        execution_lag=LAG,
        rebalance=RebalanceSettings(
            drift_band="relative",
            calendar="month_end",
            min_trade_value=MIN_TRADE_VALUE,
            lot_size=1.0,
            netting=True,
            max_leverage=1.0,
        ),
    )


def make_real_engine() -> PortfolioBacktestEngine:
    """The default configuration on the embedded data, as the runner builds it."""
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from portfolio.config import default_config_path, load_config

    return PortfolioBacktestEngine.from_config(load_config(default_config_path()))


def make_case_engine(case: str) -> PortfolioBacktestEngine:
    """The engine of a named case: :func:`make_engine` over :func:`load_case`, or the real one."""
    if case == "real":
        return make_real_engine()
    return make_engine(load_case(case), f"bench_{case}")


# --------------------------------------------------------------------------- correctness checks
def rel_diff(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)`` (0 when both are 0)."""
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def check_bars(n_bars: int) -> list[int]:
    """The bars the accounting identity is checked at: first, thirds, last."""
    return sorted({0, n_bars // 3, 2 * n_bars // 3, n_bars - 1})


def check_simulation_output(
    out: SimulationOutput, prices: np.ndarray, initial_capital: float = CAPITAL
) -> None:
    """Cheap accounting checks of one ``simulate_nb`` run (exact up to rounding, 1e-9).

    * everything finite, book equity > 0 at every bar;
    * book identity ``sum(cash) + units . price == sum(equity)`` at :func:`check_bars`;
    * P&L identity over the run: transfers between accounts are internal, so the book only
      moves by the mark-to-market of the previous bar's units and by the costs paid:
      ``initial + sum_t units[t-1] . (p[t] - p[t-1]) - costs == equity[-1]``;
    * costs were paid and trades were made.
    """
    px = np.nan_to_num(prices, nan=0.0)  # units are 0 wherever a price is missing
    assert np.isfinite(out.equity).all()
    assert np.isfinite(out.cash).all()
    assert np.isfinite(out.units).all()
    eq = out.equity.sum(axis=1)
    assert (eq > 0.0).all()
    for t in check_bars(len(eq)):
        book = out.cash[t].sum() + float(out.units[t] @ px[t])
        assert rel_diff(book, eq[t]) <= 1e-9, (t, book, eq[t])
    pnl = float(np.einsum("ta,ta->", out.units[:-1], np.diff(px, axis=0)))
    costs = float(out.commission.sum() + out.slippage.sum())
    assert costs > 0.0
    assert rel_diff(initial_capital + pnl - costs, eq[-1]) <= 1e-9, (pnl, costs, eq[-1])
    assert out.trades.shape[0] > 0


def check_engine_result(result: PortfolioBacktestResult) -> None:
    """Cheap checks of one ``PortfolioBacktestEngine.run()`` result (rounding tolerance 1e-9).

    * book equity finite and > 0 at every bar, standalone equities finite and > 0;
    * ``cash + (positions * prices).sum(axis=1) == equity`` at :func:`check_bars`;
    * the accounts add up to the book: ``allocations.sum(axis=1) == equity``;
    * trades were made, costs were paid, the portfolio's Sharpe ratio is finite.
    """
    eq = result.equity.to_numpy()
    assert np.isfinite(eq).all()
    assert (eq > 0.0).all()
    px = np.nan_to_num(result.prices.to_numpy(), nan=0.0)
    pos = result.positions.to_numpy()
    cash = result.cash.to_numpy()
    for t in check_bars(len(eq)):
        book = float(cash[t] + pos[t] @ px[t])
        assert rel_diff(book, float(eq[t])) <= 1e-9, (t, book, eq[t])
    np.testing.assert_allclose(result.allocations.to_numpy().sum(axis=1), eq, rtol=1e-9)
    solo = result.standalone_equity.to_numpy()
    assert solo.shape[1] > 0
    assert np.isfinite(solo).all()
    assert (solo > 0.0).all()
    assert len(result.trades) > 0
    assert result.total_costs > 0.0
    assert np.isfinite(np.asarray(result.metrics.loc["portfolio", "sharpe"], dtype=np.float64))
