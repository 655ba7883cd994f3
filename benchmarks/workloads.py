"""Seeded synthetic workloads shared by the benchmarks and the peer comparison.

Every panel is a deterministic function of its arguments (``np.random.default_rng(seed)``), so
two processes, or two engines in one process, see bit-identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
        50-100 random assets with a random total in ``[0.85, 1] * max_weight_sum``.
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
    for s in range(n_sleeves):
        for t in np.flatnonzero(has_signal[s]):
            k = int(rng.integers(50, 101))
            names = rng.choice(n_assets, size=k, replace=False)
            raw = rng.uniform(0.1, 1.0, k)
            total = rng.uniform(0.85, 1.0) * max_weight_sum
            weights[s, t, names] = raw * (total / raw.sum())
    index = pd.bdate_range("2000-01-03", periods=n_bars)
    return SyntheticPanel(index, np.ascontiguousarray(prices), weights, has_signal)
