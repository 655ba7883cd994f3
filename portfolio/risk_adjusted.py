"""Risk-adjusted allocation: tilt base sleeve weights by trailing Sharpe and current drawdown.

The rule (one jitted kernel, :func:`risk_adjusted_weights_nb`, used by both the class and the
backtest pass) for a trailing window of ``L`` rows of simple returns of ``S`` strategies:

1. Per strategy ``i``: mean ``m_i``, sample standard deviation ``sd_i`` (``ddof=1``), per-period
   Sharpe ``SR_i = m_i / sd_i`` (no risk-free rate: only the cross-section matters), and the
   *current* drawdown ``DD_i = 1 - W_L / max(1, max_t W_t)`` of the wealth ``W_t = prod(1 + r)``
   started at 1 (so a loss from the first day counts, as in the metrics module).
2. A strategy is *uninformative* (score 0, no tilt of its own) if its window contains a
   non-finite value or ``sd_i <= 1e-12`` (constant returns: Sharpe undefined).
3. ``z_i``: the cross-sectional z-score of ``SR_i`` among informative strategies (population
   standard deviation), clipped to ``[-3, 3]``; all 0 when fewer than two strategies are
   informative or their Sharpe ratios are equal.
4. ``p_i = clip(DD_i / (sd_i * sqrt(L)), 0, 3)``: the drawdown in units of the window's own
   volatility ``sd_i * sqrt(L)``, so "deep" means deep for that strategy (a driftless random walk
   sits about 0.8 of those units below its peak on average, Lévy's ``|B_T|`` law).
5. Tilt: ``t_i = base_i * exp(k * (z_i - p_i))`` with ``k = sensitivity``; the factor is bounded in
   ``[exp(-6k), exp(3k)]`` whatever the data, so a single window cannot swing weights wildly.
6. Bounds: ``w_i = clip(lambda * t_i, min_w_i, max_w_i)`` with the scalar ``lambda >= 0`` solving
   ``sum(w) = 1`` exactly (a monotone piecewise-linear equation, solved at its breakpoints), then
   the rounding residual is spread over the strategies strictly inside their bounds. Without
   binding bounds this is plain normalization ``t / sum(t)``.

If there is no tilt (fewer than 2 rows, ``k = 0``, or all strategies uninformative) and the base
weights already satisfy the bounds and sum to 1 within 1e-12, they are returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from portfolio.errors import ConfigError, DataError

__all__ = [
    "RiskAdjustedAllocator",
    "project_to_bounds_nb",
    "risk_adjusted_weights_nb",
    "strategy_scores_nb",
]

_ZERO_VOL = 1e-12
_SCORE_CLIP = 3.0
_SUM_TOL = 1e-12


# Not cached on its own: it is compiled into (and cached with) its jitted callers. A separately
# cached copy of this nested, array-returning callee came back from numba's cache without its
# Python wrapper after the backtest pass had loaded ("NRT_adapt_ndarray_to_python: descr is
# NULL", numba 0.68), so Python calls compile it fresh once per process instead.
@njit
def strategy_scores_nb(returns_window: np.ndarray) -> np.ndarray:
    """Tilt score ``z_i - p_i`` of each strategy (steps 1-4 of the module docstring).

    Parameters
    ----------
    returns_window : ndarray, shape (L, S)
        Trailing simple returns, oldest first.

    Returns
    -------
    ndarray, shape (S,)
        Scores in ``[-6, 3]``; 0 for uninformative strategies and when ``L < 2``.
    """
    n_rows, n_s = returns_window.shape
    scores = np.zeros(n_s)
    if n_rows < 2:
        return scores
    sharpe = np.zeros(n_s)
    penalty = np.zeros(n_s)
    valid = np.zeros(n_s, dtype=np.bool_)
    for s in range(n_s):
        total = 0.0
        finite = True
        for t in range(n_rows):
            r = returns_window[t, s]
            if not np.isfinite(r):
                finite = False
                break
            total += r
        if not finite:
            continue
        mean = total / n_rows
        ss = 0.0
        for t in range(n_rows):
            d = returns_window[t, s] - mean
            ss += d * d
        sd = math.sqrt(ss / (n_rows - 1))
        if sd <= _ZERO_VOL:
            continue
        wealth = 1.0
        peak = 1.0
        for t in range(n_rows):
            wealth *= 1.0 + returns_window[t, s]
            peak = max(peak, wealth)
        dd = 1.0 - wealth / peak
        valid[s] = True
        sharpe[s] = mean / sd
        penalty[s] = min(max(dd / (sd * math.sqrt(n_rows)), 0.0), _SCORE_CLIP)
    n_valid = 0
    sr_sum = 0.0
    for s in range(n_s):
        if valid[s]:
            n_valid += 1
            sr_sum += sharpe[s]
    cs_sd = 0.0
    cs_mean = 0.0
    if n_valid >= 2:
        cs_mean = sr_sum / n_valid
        ss = 0.0
        for s in range(n_s):
            if valid[s]:
                d = sharpe[s] - cs_mean
                ss += d * d
        cs_sd = math.sqrt(ss / n_valid)
    for s in range(n_s):
        if not valid[s]:
            continue
        z = 0.0
        if cs_sd > _ZERO_VOL:
            z = min(max((sharpe[s] - cs_mean) / cs_sd, -_SCORE_CLIP), _SCORE_CLIP)
        scores[s] = z - penalty[s]
    return scores


@njit(cache=True)
def _bounded_sum_nb(lam: float, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """``sum_i clip(lam * t_i, lo_i, hi_i)`` (monotone non-decreasing in ``lam``)."""
    total = 0.0
    for i in range(t.shape[0]):
        total += min(max(lam * t[i], lo[i]), hi[i])
    return total


@njit  # not cached on its own, see strategy_scores_nb
def project_to_bounds_nb(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Weights ``clip(lambda * t, lo, hi)`` summing to 1 (step 6 of the module docstring).

    Parameters
    ----------
    t : ndarray, shape (S,)
        Non-negative tilted weights (any positive scale; entries below ``1e-200 * max(t)``
        count as 0).
    lo, hi : ndarray, shape (S,)
        Bounds with ``lo <= hi``; they are clipped to ``[0, 1]`` first, so ``hi = inf`` means no
        cap. Feasibility ``sum(lo) <= 1 <= sum(hi)`` is the caller's job; if it fails, summing
        to 1 wins: the weights are ``lo / sum(lo)`` when ``sum(lo) > 1``, and the bounded
        weights rescaled to sum 1 (equal weights if all are 0) when ``sum(hi) < 1``.

    Returns
    -------
    ndarray, shape (S,)
        Weights within the bounds summing to 1 up to rounding (< 1e-12). Strategies with
        ``t_i = 0`` stay at ``lo_i`` unless the others are all at their upper bounds, in which
        case the rest is spread over them in proportion to their room ``hi_i - lo_i``.
    """
    n = t.shape[0]
    w = np.empty(n)
    lo_c = np.minimum(np.maximum(lo, 0.0), 1.0)
    hi_c = np.minimum(np.maximum(hi, lo_c), 1.0)
    # Work with t / max(t) and treat relative values below 1e-200 as 0: the breakpoints
    # lo / t and hi / t then stay finite (a subnormal t would make them inf).
    t_max = 0.0
    for i in range(n):
        t_max = max(t_max, t[i])
    tn = t / t_max if t_max > 0.0 else np.zeros(n)
    for i in range(n):
        if tn[i] < 1e-200:
            tn[i] = 0.0
    lo_sum = 0.0
    for i in range(n):
        lo_sum += lo_c[i]
    if lo_sum >= 1.0:
        w[:] = lo_c / lo_sum if lo_sum > 1.0 else lo_c
        return w
    bps = np.empty(2 * n)
    nb = 0
    for i in range(n):
        if tn[i] > 0.0:
            bps[nb] = lo_c[i] / tn[i]
            bps[nb + 1] = hi_c[i] / tn[i]
            nb += 2
    f_top = lo_sum
    if nb > 0:
        bps = np.sort(bps[:nb])
        f_top = _bounded_sum_nb(bps[nb - 1], tn, lo_c, hi_c)
    if f_top < 1.0:
        # Every tilted strategy is at its upper bound (or none is tilted): fill the others.
        room = 0.0
        for i in range(n):
            if tn[i] <= 0.0:
                room += hi_c[i] - lo_c[i]
        fill = min((1.0 - f_top) / room, 1.0) if room > 0.0 else 0.0
        total = 0.0
        for i in range(n):
            if tn[i] > 0.0:
                w[i] = hi_c[i]
            else:
                w[i] = lo_c[i] + (hi_c[i] - lo_c[i]) * fill
            total += w[i]
        if total < 1.0 - _SUM_TOL:
            # Infeasible upper bounds (sum(hi) < 1): summing to 1 takes precedence.
            if total > 0.0:
                w /= total
            else:
                w[:] = 1.0 / n
        return w
    lam = bps[nb - 1]
    prev = 0.0
    f_prev = lo_sum
    for j in range(nb):
        f_b = _bounded_sum_nb(bps[j], tn, lo_c, hi_c)
        if f_b >= 1.0:
            # f is linear between consecutive breakpoints: interpolate exactly.
            if f_b > f_prev:
                lam = prev + (1.0 - f_prev) * (bps[j] - prev) / (f_b - f_prev)
            else:
                lam = bps[j]
            break
        prev = bps[j]
        f_prev = f_b
    total = 0.0
    inner = 0.0
    for i in range(n):
        if tn[i] > 0.0:
            w[i] = min(max(lam * tn[i], lo_c[i]), hi_c[i])
        else:
            w[i] = lo_c[i]
        total += w[i]
        if lo_c[i] < w[i] < hi_c[i]:
            inner += w[i]
    # Spread the floating-point residual over the strategies strictly inside their bounds.
    resid = 1.0 - total
    if resid != 0.0 and inner > 0.0:
        for i in range(n):
            if lo_c[i] < w[i] < hi_c[i]:
                w[i] = min(max(w[i] + resid * (w[i] / inner), lo_c[i]), hi_c[i])
    return w


@njit(cache=True)
def risk_adjusted_weights_nb(
    returns_window: np.ndarray,
    base: np.ndarray,
    sensitivity: float,
    min_w: np.ndarray,
    max_w: np.ndarray,
) -> np.ndarray:
    """Risk-adjusted sleeve weights from a trailing window (the rule of the module docstring).

    Parameters
    ----------
    returns_window : ndarray, shape (L, S)
        Trailing simple returns of the sleeves, oldest first; only data up to the decision
        close. Columns with a non-finite value are treated as uninformative (no own tilt).
    base : ndarray, shape (S,)
        Base weights, non-negative, normally summing to 1.
    sensitivity : float
        Tilt strength ``k >= 0``; 0 returns the (bounded) base weights.
    min_w, max_w : ndarray, shape (S,)
        Weight bounds, ``min_w <= max_w`` (clipped to ``[0, 1]``; ``inf`` means no cap), and
        normally ``sum(min_w) <= 1 <= sum(max_w)``; see :func:`project_to_bounds_nb` for what
        happens when they are infeasible (the sum stays 1).

    Returns
    -------
    ndarray, shape (S,)
        Weights within the bounds summing to 1 (within 1e-12).

    Raises
    ------
    ValueError
        If the shapes disagree or ``sensitivity`` is negative or not finite (numba cannot
        format the values into the message).
    """
    n_s = base.shape[0]
    if returns_window.shape[1] != n_s or min_w.shape[0] != n_s or max_w.shape[0] != n_s:
        raise ValueError("risk_adjusted_weights_nb: returns_window, base, min_w, max_w disagree")
    if not (np.isfinite(sensitivity) and sensitivity >= 0.0):
        raise ValueError("risk_adjusted_weights_nb: sensitivity must be finite and >= 0")
    scores = strategy_scores_nb(returns_window)
    tilted = False
    if sensitivity != 0.0:
        for s in range(n_s):
            if scores[s] != 0.0:
                tilted = True
                break
    if not tilted:
        total = 0.0
        inside = True
        for s in range(n_s):
            total += base[s]
            if base[s] < min_w[s] or base[s] > max_w[s]:
                inside = False
        if inside and abs(total - 1.0) <= _SUM_TOL:
            return base.copy()
    # Subtract the top score (of strategies with weight) before exp: the normalized result is
    # the same, and a large sensitivity cannot underflow every tilted weight to 0.
    top = -np.inf
    for s in range(n_s):
        if base[s] > 0.0 and scores[s] > top:
            top = scores[s]
    if not np.isfinite(top):
        top = 0.0
    t = np.empty(n_s)
    for s in range(n_s):
        t[s] = base[s] * math.exp(sensitivity * (scores[s] - top))
    return project_to_bounds_nb(t, min_w, max_w)


def _nonneg_or_none(name: str, value: Any) -> float | None:
    """A capital bound as float, or None when absent/infinite; ConfigError if invalid."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number or None, got {value!r}")
    v = float(value)
    if math.isnan(v) or v < 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return None if math.isinf(v) else v


class RiskAdjustedAllocator:
    """Tilt a base allocator's sleeve weights toward recent risk-adjusted winners.

    Parameters
    ----------
    base_allocator : object
        Anything with ``config.total_capital`` (float) and ``config.allocations``, an iterable of
        items with ``strategy_id``, ``target_weight``, ``min_capital`` and ``max_capital``
        (currency; ``None`` or ``inf`` for no upper bound).
    lookback_period_days : int, default 30
        Trailing window length in rows (trading days), ``>= 2``.
    adjustment_sensitivity : float, default 0.1
        Tilt strength ``k >= 0`` (see the module docstring); with the default the weight ratio of
        two strategies moves by at most ``exp(0.9)`` per decision.

    Raises
    ------
    ConfigError
        If ``base_allocator`` lacks the attributes above or a parameter is out of range.
    """

    def __init__(
        self,
        base_allocator: Any,
        lookback_period_days: int = 30,
        adjustment_sensitivity: float = 0.1,
    ) -> None:
        config = getattr(base_allocator, "config", None)
        if config is None or not hasattr(config, "allocations"):
            raise ConfigError(
                "base_allocator must have a config with allocations, got "
                f"{type(base_allocator).__name__}"
            )
        if (
            isinstance(lookback_period_days, (bool, np.bool_))
            or not isinstance(lookback_period_days, (int, np.integer))
            or lookback_period_days < 2
        ):
            raise ConfigError(
                f"lookback_period_days must be an integer >= 2, got {lookback_period_days!r}"
            )
        if (
            isinstance(adjustment_sensitivity, (bool, np.bool_))
            or not isinstance(adjustment_sensitivity, (int, float, np.integer, np.floating))
            or not math.isfinite(float(adjustment_sensitivity))
            or adjustment_sensitivity < 0
        ):
            raise ConfigError(
                f"adjustment_sensitivity must be finite and >= 0, got {adjustment_sensitivity!r}"
            )
        self.base_allocator = base_allocator
        self.lookback_period_days = int(lookback_period_days)
        self.adjustment_sensitivity = float(adjustment_sensitivity)

    def __repr__(self) -> str:
        return (
            f"RiskAdjustedAllocator(lookback_period_days={self.lookback_period_days!r}, "
            f"adjustment_sensitivity={self.adjustment_sensitivity!r})"
        )

    def weight_bounds(
        self, strategy_ids: list[str], total_capital: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weight bounds ``(min_capital, max_capital) / total_capital`` clipped to ``[0, 1]``.

        Strategies without an allocation in the config get ``[0, 1]``.

        Raises
        ------
        ConfigError
            For a non-positive total capital, invalid bounds, ``min > max``, or bounds that no
            weights summing to 1 can satisfy.
        """
        config = self.base_allocator.config
        cap_src = "total_capital" if total_capital is not None else "config.total_capital"
        cap = total_capital if total_capital is not None else getattr(config, "total_capital", None)
        if (
            isinstance(cap, bool)
            or not isinstance(cap, (int, float, np.integer, np.floating))
            or not (math.isfinite(float(cap)) and cap > 0)
        ):
            raise ConfigError(f"{cap_src} must be finite and > 0, got {cap!r}")
        capital = float(cap)
        by_id = {a.strategy_id: a for a in config.allocations}
        lo = np.zeros(len(strategy_ids))
        hi = np.ones(len(strategy_ids))
        for i, sid in enumerate(strategy_ids):
            alloc = by_id.get(sid)
            if alloc is None:
                continue
            mn = _nonneg_or_none(f"allocations[{sid!r}].min_capital", alloc.min_capital)
            mx = _nonneg_or_none(f"allocations[{sid!r}].max_capital", alloc.max_capital)
            lo[i] = min((mn or 0.0) / capital, 1.0)
            hi[i] = 1.0 if mx is None else min(mx / capital, 1.0)
            if lo[i] > hi[i]:
                raise ConfigError(
                    f"allocations[{sid!r}]: min_capital {alloc.min_capital!r} exceeds "
                    f"max_capital {alloc.max_capital!r} (as weights of capital {capital!r})"
                )
        if lo.sum() > 1.0 + _SUM_TOL:
            raise ConfigError(
                f"sum of min_capital bounds is {lo.sum() * capital!r}, above total capital "
                f"{capital!r}: no allocation can satisfy them"
            )
        if hi.sum() < 1.0 - _SUM_TOL:
            raise ConfigError(
                f"sum of max_capital bounds is {hi.sum() * capital!r}, below total capital "
                f"{capital!r}: no allocation can satisfy them"
            )
        return lo, hi

    def calculate_adjusted_allocations(
        self,
        performance_history: pd.DataFrame,
        base_allocations: Mapping[str, float],
        total_capital: float | None = None,
    ) -> dict[str, float]:
        """Tilted weights from the last ``lookback_period_days`` rows of sleeve returns.

        Parameters
        ----------
        performance_history : DataFrame, shape (dates, strategies)
            Simple daily returns per strategy with an increasing index; it must contain a column
            for every key of ``base_allocations`` (other columns are ignored). Only the last
            ``lookback_period_days`` rows are read, and they must be finite.
        base_allocations : mapping of str to float
            Base weights, each in ``[0, 1]``, summing to 1 within 1e-9.
        total_capital : float, optional
            Capital used to turn ``min_capital``/``max_capital`` into weights; defaults to
            ``config.total_capital``.

        Returns
        -------
        dict of str to float
            Weights in the order of ``base_allocations``, within the bounds and summing to 1
            within 1e-12. With fewer than 2 rows the base weights come back unchanged (if they
            satisfy the bounds).

        Raises
        ------
        DataError
            For invalid base weights, missing columns, a non-increasing index or non-finite
            returns in the window (naming strategy and date).
        ConfigError
            For bounds that cannot be met (see :meth:`weight_bounds`).
        """
        ids = list(base_allocations)
        if not ids:
            raise DataError("base_allocations is empty")
        base = np.empty(len(ids))
        for i, sid in enumerate(ids):
            v = base_allocations[sid]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise DataError(f"base_allocations[{sid!r}] must be a number, got {v!r}")
            if not (math.isfinite(float(v)) and 0.0 <= float(v) <= 1.0):
                raise DataError(f"base_allocations[{sid!r}] must be in [0, 1], got {v!r}")
            base[i] = float(v)
        if abs(base.sum() - 1.0) > 1e-9:
            raise DataError(f"base_allocations must sum to 1, got {base.sum()!r}")
        if not isinstance(performance_history, pd.DataFrame):
            raise DataError(
                "performance_history must be a DataFrame (dates x strategies), got "
                f"{type(performance_history).__name__}"
            )
        if not performance_history.columns.is_unique:
            raise DataError("performance_history has duplicate strategy columns")
        missing = [sid for sid in ids if sid not in performance_history.columns]
        if missing:
            raise DataError(f"performance_history has no column for strategies {missing}")
        if not performance_history.index.is_monotonic_increasing:
            raise DataError("performance_history index must be increasing (oldest row first)")
        window_df = performance_history.iloc[-self.lookback_period_days :][ids]
        window = window_df.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(window)
        if bad.any():
            row, col = (int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
            raise DataError(
                f"performance_history[{ids[col]!r}] is not finite at {window_df.index[row]!r} "
                f"(value {window[row, col]!r})"
            )
        lo, hi = self.weight_bounds(ids, total_capital)
        w = risk_adjusted_weights_nb(
            np.ascontiguousarray(window), base, self.adjustment_sensitivity, lo, hi
        )
        return {sid: float(w[i]) for i, sid in enumerate(ids)}
