"""Performance metrics: pure, vectorized functions shared by the result, CLI, report and tests.

Conventions (empyrical-style, see ``docs`` of each function for the exact formula):

* **Returns** are simple decimal returns ``r_t = E_t / E_{t-1} - 1`` (0.01 means +1 %).
* **Equity** is a 1-D series of portfolio values in currency units, one value per bar, strictly
  positive and finite. When ``initial_capital`` is given it is the value *before* the first bar, so
  the first return is ``E_0 / initial_capital - 1`` and a first-day loss counts in the return, the
  drawdown and the drawdown duration.
* **Annualization** uses one ``periods_per_year`` (``ppy``, default 252 bars per year).
* **Risk-free rate** is ``rf_annual``, an annual decimal rate (0.02 = 2 % a year), converted to a
  per-bar rate by geometric compounding: ``rf = (1 + rf_annual) ** (1 / ppy) - 1``.
* **Sample statistics** use ``ddof=1``.
* **Inputs** may be numpy arrays, pandas Series or sequences of floats; only the values are used
  (a Series index is read solely to name the offending label in error messages).
* **NaN policy**: inputs are never silently cleaned. Empty input, a non-1-D input, NaN or +/-inf
  values raise :class:`~portfolio.errors.DataError` (a ``ValueError``) whose message names the
  argument, the first bad position and, for a Series, its index label. Bad parameters
  (``periods_per_year``, ``rf_annual``, ``initial_capital``) raise
  :class:`~portfolio.errors.ConfigError` (also a ``ValueError``). Outputs are NaN only where a
  quantity is undefined, as documented per function (for example a Sharpe ratio with zero
  dispersion).

:data:`METRIC_FORMULAS` holds a human-readable formula for every key returned by
:func:`compute_metrics`, so the report can print exactly what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from portfolio.errors import ConfigError, DataError

__all__ = [
    "EXTRA_FORMULAS",
    "METRIC_FORMULAS",
    "METRIC_KEYS",
    "annual_volatility",
    "cagr",
    "calmar_ratio",
    "compute_metrics",
    "drawdown_details",
    "drawdown_series",
    "max_drawdown",
    "max_drawdown_duration",
    "metrics_table",
    "month_stats",
    "monthly_returns",
    "sharpe_ratio",
    "simple_returns",
    "sortino_ratio",
    "total_return",
    "turnover",
    "value_at_risk",
]

VectorLike: TypeAlias = "npt.NDArray[np.floating] | pd.Series | Sequence[float]"
FloatArray: TypeAlias = npt.NDArray[np.float64]

#: Keys of :func:`compute_metrics`, in the order used by :func:`metrics_table` columns.
METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "turnover",
    "total_costs",
)

#: Human-readable formula of every metric key (E = equity, r = simple return per bar,
#: rf = per-bar risk-free rate, ppy = periods per year, n = number of return periods).
METRIC_FORMULAS: dict[str, str] = {
    "total_return": "E_T / E_0 - 1, E_0 = initial capital if given, else the first equity value",
    "cagr": "(E_T / E_0)^(ppy / n) - 1, n = number of return periods",
    "annual_volatility": "std(r, ddof=1) * sqrt(ppy)",
    "sharpe": (
        "mean(r - rf) / std(r - rf, ddof=1) * sqrt(ppy), rf = (1 + rf_annual)^(1/ppy) - 1; "
        "NaN if fewer than 2 returns or zero dispersion"
    ),
    "sortino": (
        "mean(r - rf) * ppy / (sqrt(mean(min(r - rf, 0)^2)) * sqrt(ppy)); "
        "+inf if no return is below rf and the mean excess is positive, NaN if undefined"
    ),
    "max_drawdown": (
        "min_t(E_t / max(E_0, ..., E_t) - 1), running peak starting at the initial capital (<= 0)"
    ),
    "max_drawdown_duration": (
        "longest run of consecutive bars with E_t below its running peak (bars; a run still "
        "open at the end counts to the last bar)"
    ),
    "calmar": "cagr / |max_drawdown|; NaN if max_drawdown = 0",
    "turnover": (
        "(sum_t traded_notional_t / 2) / mean_t(E_t) * ppy / n_bars, traded_notional_t = "
        "|buys_t| + |sells_t| (one-way, annualized)"
    ),
    "total_costs": "sum_t costs_t (currency units; 0 when no costs are given)",
}

#: Formulas of the report's extra rows (calendar, tail and drawdown-date metrics).
EXTRA_FORMULAS: dict[str, str] = {
    "best_month": "max_m R_m, R_m = E_last(m) / E_last(m-1) - 1 (calendar months, compounded)",
    "worst_month": "min_m R_m",
    "positive_months": "share of calendar months with R_m > 0",
    "var_5": "historical VaR: 5th percentile of r (linear interpolation), per bar",
    "max_drawdown_dates": (
        "peak = last bar at the running peak before the trough; trough = argmin DD_t; "
        "recovery = first later bar with E_t >= the peak"
    ),
    "netting_saved": "sum_t (costs without netting - costs with netting), currency units",
}

# Returns derived from equity ratios carry an absolute rounding error of about 1e-16 per bar, so a
# dispersion below this (per bar, scaled up only for returns larger than 100 %) is rounding noise
# of a constant-return series, not risk: treat it as exactly zero instead of dividing by it.
_ZERO_DISPERSION_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_vector(values: VectorLike, name: str) -> FloatArray:
    """Return ``values`` as a 1-D float64 array, raising DataError if empty, 2-D or non-finite."""
    index: pd.Index | None = None
    if isinstance(values, pd.Series):
        index = values.index
        try:
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name}: values must be numeric, got dtype {values.dtype}") from exc
    elif isinstance(values, pd.DataFrame):
        raise DataError(f"{name}: expected a 1-D array or Series, got a DataFrame")
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name}: values must be numeric ({exc})") from exc
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name}: empty input, at least one value is required")
    finite = np.isfinite(arr)
    if not finite.all():
        pos = int(np.argmin(finite))
        label = f" (index label {index[pos]})" if index is not None else ""
        raise DataError(f"{name}: non-finite value {float(arr[pos])!r} at position {pos}{label}")
    return arr


def _check_ppy(periods_per_year: float) -> float:
    ppy = float(periods_per_year)
    if not (math.isfinite(ppy) and ppy > 0):
        raise ConfigError(f"periods_per_year must be a finite number > 0, got {periods_per_year!r}")
    return ppy


def _per_period_rf(rf_annual: float, ppy: float) -> float:
    rf = float(rf_annual)
    if not (math.isfinite(rf) and rf > -1.0):
        raise ConfigError(f"rf_annual must be a finite annual decimal rate > -1, got {rf_annual!r}")
    return float((1.0 + rf) ** (1.0 / ppy) - 1.0)


def _check_initial_capital(initial_capital: float | None) -> float | None:
    if initial_capital is None:
        return None
    ic = float(initial_capital)
    if not (math.isfinite(ic) and ic > 0):
        raise ConfigError(f"initial_capital must be a finite number > 0, got {initial_capital!r}")
    return ic


def _as_equity(equity: VectorLike, name: str = "equity") -> FloatArray:
    arr = _as_vector(equity, name)
    positive = arr > 0
    if not positive.all():
        pos = int(np.argmin(positive))
        raise DataError(
            f"{name}: equity must be strictly positive, got {float(arr[pos])!r} at position {pos}"
        )
    return arr


def _same_length(arr: FloatArray, n: int, name: str) -> None:
    if arr.size != n:
        raise DataError(f"{name}: length {arr.size} does not match equity length {n}")


# --------------------------------------------------------------------------------------------
# Return-based metrics
# --------------------------------------------------------------------------------------------


def simple_returns(equity: VectorLike, initial_capital: float | None = None) -> FloatArray:
    """Simple per-bar returns of an equity curve.

    Formula: ``r_t = E_t / E_{t-1} - 1``; with ``initial_capital`` C the first return is
    ``r_0 = E_0 / C - 1``.

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar in currency units, finite and > 0.
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    ndarray of float64, shape (n,) with ``initial_capital``, else (n - 1,)
        Decimal returns (index, if any, is dropped). May be empty for a single equity value
        without ``initial_capital``.

    Raises
    ------
    DataError
        Empty or non-1-D equity, NaN/inf (message names the first position) or a value <= 0.
    ConfigError
        ``initial_capital`` not finite and > 0.
    """
    e = _as_equity(equity)
    ic = _check_initial_capital(initial_capital)
    if ic is not None:
        e = np.concatenate(([ic], e))
    return np.asarray(e[1:] / e[:-1] - 1.0, dtype=np.float64)


def total_return(equity: VectorLike, initial_capital: float | None = None) -> float:
    """Total simple return over the whole curve.

    Formula: ``E_T / E_0 - 1`` where ``E_0`` is ``initial_capital`` if given, else the first
    equity value, and ``E_T`` the last equity value.

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    float
        Decimal return (0.21 = +21 %). 0.0 for a single value without ``initial_capital``.

    Raises
    ------
    DataError, ConfigError
        As in :func:`simple_returns` (NaN/inf in equity is never skipped).
    """
    e = _as_equity(equity)
    ic = _check_initial_capital(initial_capital)
    start = e[0] if ic is None else ic
    return float(e[-1] / start - 1.0)


def cagr(
    equity: VectorLike,
    periods_per_year: float = 252,
    initial_capital: float | None = None,
) -> float:
    """Compound annual growth rate.

    Formula: ``(E_T / E_0) ** (ppy / n) - 1`` with ``n`` the number of return periods:
    ``len(equity)`` when ``initial_capital`` is given (the first bar is a full period from the
    capital), else ``len(equity) - 1``.

    Parameters
    ----------
    equity : array-like or Series, shape (n_bars,)
        Portfolio value per bar (currency units, finite, > 0).
    periods_per_year : float, default 252
        Bars per year.
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    float
        Annual decimal growth rate. NaN when ``n == 0`` (a single value without capital); may be
        ``+inf`` when a very short, very large gain overflows the power.

    Raises
    ------
    DataError, ConfigError
        As in :func:`simple_returns`; ``periods_per_year`` not finite and > 0.
    """
    e = _as_equity(equity)
    ppy = _check_ppy(periods_per_year)
    ic = _check_initial_capital(initial_capital)
    n = e.size if ic is not None else e.size - 1
    if n == 0:
        return math.nan
    growth = np.float64(e[-1] / (e[0] if ic is None else ic))
    with np.errstate(over="ignore"):
        return float(np.power(growth, ppy / n) - 1.0)


def annual_volatility(returns: VectorLike, periods_per_year: float = 252) -> float:
    """Annualized volatility of simple returns.

    Formula: ``std(r, ddof=1) * sqrt(ppy)``.

    Parameters
    ----------
    returns : array-like or Series, shape (n,)
        Decimal returns per bar, finite.
    periods_per_year : float, default 252
        Bars per year.

    Returns
    -------
    float
        Annual decimal volatility (>= 0). NaN when fewer than 2 returns.

    Raises
    ------
    DataError
        Empty or non-1-D returns or NaN/inf (message names the first position).
    ConfigError
        ``periods_per_year`` not finite and > 0.
    """
    r = _as_vector(returns, "returns")
    ppy = _check_ppy(periods_per_year)
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(ppy))


def _excess_returns(
    returns: VectorLike, rf_annual: float, periods_per_year: float
) -> tuple[FloatArray, float, float]:
    """Validated excess returns ``r - rf``, their zero-dispersion tolerance, and ``ppy``.

    The tolerance ``1e-12 * max(1, max|r|, |rf|)`` scales with the data, so a constant series
    counts as dispersion-free whatever its level.
    """
    r = _as_vector(returns, "returns")
    ppy = _check_ppy(periods_per_year)
    rf = _per_period_rf(rf_annual, ppy)
    tol = _ZERO_DISPERSION_TOL * max(1.0, float(np.max(np.abs(r))), abs(rf))
    return r - rf, tol, ppy


def sharpe_ratio(
    returns: VectorLike, rf_annual: float = 0.0, periods_per_year: float = 252
) -> float:
    """Annualized Sharpe ratio.

    Formula: ``mean(x) / std(x, ddof=1) * sqrt(ppy)`` with excess returns ``x_t = r_t - rf`` and
    per-bar risk-free ``rf = (1 + rf_annual) ** (1 / ppy) - 1``.

    Parameters
    ----------
    returns : array-like or Series, shape (n,)
        Decimal returns per bar, finite.
    rf_annual : float, default 0.0
        Annual decimal risk-free rate (0.02 = 2 %/year), > -1.
    periods_per_year : float, default 252
        Bars per year.

    Returns
    -------
    float
        Dimensionless annualized ratio. NaN when fewer than 2 returns or when the excess returns
        have zero dispersion (``std <= 1e-12``, i.e. a constant-return series up to rounding),
        whatever the sign of their mean.

    Raises
    ------
    DataError
        Empty or non-1-D returns or NaN/inf (message names the first position).
    ConfigError
        ``periods_per_year`` or ``rf_annual`` out of range.
    """
    excess, tol, ppy = _excess_returns(returns, rf_annual, periods_per_year)
    if excess.size < 2:
        return math.nan
    sd = float(np.std(excess, ddof=1))
    if sd <= tol:
        return math.nan
    return float(np.mean(excess) / sd * math.sqrt(ppy))


def sortino_ratio(
    returns: VectorLike, rf_annual: float = 0.0, periods_per_year: float = 252
) -> float:
    """Annualized Sortino ratio with empyrical's downside deviation (target = risk-free rate).

    Formula: ``mean(x) * ppy / (sqrt(mean(min(x, 0) ** 2)) * sqrt(ppy))`` with excess returns
    ``x_t = r_t - rf`` and per-bar ``rf = (1 + rf_annual) ** (1 / ppy) - 1``. The downside
    deviation averages the squared shortfalls over *all* n bars (bars at or above the target count
    as zero), not over the losing bars only.

    Parameters
    ----------
    returns : array-like or Series, shape (n,)
        Decimal returns per bar, finite.
    rf_annual : float, default 0.0
        Annual decimal risk-free rate, > -1.
    periods_per_year : float, default 252
        Bars per year.

    Returns
    -------
    float
        Dimensionless annualized ratio. NaN when fewer than 2 returns. When no excess return is
        below zero (downside deviation <= 1e-12, i.e. zero up to rounding): ``+inf`` if the mean
        excess return is positive, NaN otherwise (all excess returns are zero).

    Raises
    ------
    DataError
        Empty or non-1-D returns or NaN/inf (message names the first position).
    ConfigError
        ``periods_per_year`` or ``rf_annual`` out of range.
    """
    excess, tol, ppy = _excess_returns(returns, rf_annual, periods_per_year)
    if excess.size < 2:
        return math.nan
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)))
    mean_excess = float(np.mean(excess))
    if downside <= tol:
        return math.inf if mean_excess > tol else math.nan
    return float(mean_excess * ppy / (downside * math.sqrt(ppy)))


# --------------------------------------------------------------------------------------------
# Drawdown-based metrics
# --------------------------------------------------------------------------------------------


def _running_peak(e: FloatArray, ic: float | None) -> FloatArray:
    peak = np.maximum.accumulate(e)
    if ic is not None:
        peak = np.maximum(peak, ic)
    return np.asarray(peak, dtype=np.float64)


def drawdown_series(equity: VectorLike, initial_capital: float | None = None) -> FloatArray:
    """Drawdown of each bar from the running peak.

    Formula: ``DD_t = E_t / P_t - 1`` with ``P_t = max(C, E_0, ..., E_t)`` where the initial
    capital ``C`` is included only when given (so a first-bar loss is a drawdown).

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    ndarray of float64, shape (n,)
        Decimal drawdowns in ``[-1, 0]`` (0 at a new peak; index, if any, is dropped).

    Raises
    ------
    DataError, ConfigError
        As in :func:`simple_returns`.
    """
    e = _as_equity(equity)
    ic = _check_initial_capital(initial_capital)
    return np.asarray(e / _running_peak(e, ic) - 1.0, dtype=np.float64)


def max_drawdown(equity: VectorLike, initial_capital: float | None = None) -> float:
    """Maximum drawdown, as a negative number like empyrical.

    Formula: ``min_t DD_t`` with ``DD_t`` from :func:`drawdown_series`.

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    initial_capital : float, optional
        Value before the first bar; when given, the peak starts there.

    Returns
    -------
    float
        Decimal drawdown in ``[-1, 0]``; ``-0.1`` means a 10 % fall from the peak. 0.0 if the
        curve never falls below its running peak.

    Raises
    ------
    DataError, ConfigError
        As in :func:`simple_returns`.
    """
    return float(np.min(drawdown_series(equity, initial_capital)))


def max_drawdown_duration(equity: VectorLike, initial_capital: float | None = None) -> int:
    """Longest time spent below a previous peak, in bars.

    Formula: the length of the longest run of consecutive bars with ``E_t < P_t`` where
    ``P_t = max(C, E_0, ..., E_t)`` (``C`` = initial capital, when given). The bar that regains the
    peak (``E_t >= P_t``) ends the run and is not counted; a run never recovered counts up to and
    including the last bar. Equivalently, for a recovered drawdown it is
    ``recovery_bar - peak_bar - 1``. Example: ``[100, 110, 99, 121]`` -> 1 (only the bar at 99).

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    initial_capital : float, optional
        Value before the first bar; when given, bars below it count as under water.

    Returns
    -------
    int
        Number of bars, in ``[0, n]``; 0 if the curve never falls below its peak.

    Raises
    ------
    DataError, ConfigError
        As in :func:`simple_returns`.
    """
    e = _as_equity(equity)
    ic = _check_initial_capital(initial_capital)
    # Compare values directly rather than DD_t < 0 so rounding in the division cannot hide a bar.
    under = (e < _running_peak(e, ic)).astype(np.int8)
    edges = np.diff(np.concatenate(([0], under, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return 0
    return int(np.max(ends - starts))


def calmar_ratio(
    equity: VectorLike,
    periods_per_year: float = 252,
    initial_capital: float | None = None,
) -> float:
    """Calmar ratio over the whole curve.

    Formula: ``cagr / |max_drawdown|`` (both from this module, same ``initial_capital``).

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    periods_per_year : float, default 252
        Bars per year.
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    float
        Dimensionless ratio. NaN when there is no drawdown (``max_drawdown == 0``) or the CAGR is
        NaN.

    Raises
    ------
    DataError, ConfigError
        As in :func:`cagr`.
    """
    mdd = max_drawdown(equity, initial_capital)
    growth = cagr(equity, periods_per_year, initial_capital)
    if mdd == 0.0:
        return math.nan
    return float(growth / abs(mdd))


# --------------------------------------------------------------------------------------------
# Calendar and tail metrics (need the equity's DatetimeIndex)
# --------------------------------------------------------------------------------------------


def _dated_equity(equity: pd.Series, name: str = "equity") -> tuple[FloatArray, pd.DatetimeIndex]:
    if not isinstance(equity, pd.Series) or not isinstance(equity.index, pd.DatetimeIndex):
        raise DataError(f"{name}: expected a Series with a DatetimeIndex")
    if not equity.index.is_monotonic_increasing or not equity.index.is_unique:
        raise DataError(f"{name}: the index must be unique and increasing")
    return _as_equity(equity, name), equity.index


def monthly_returns(equity: pd.Series, initial_capital: float | None = None) -> pd.Series:
    """Compounded return of each calendar month (empyrical ``aggregate_returns(..., "monthly")``).

    Formula: ``R_m = E_last(m) / E_last(m-1) - 1`` where ``E_last(m)`` is the last equity value of
    month ``m``; for the first month the base is ``initial_capital`` when given, else the first
    equity value. This equals ``prod(1 + r_t) - 1`` over the bars of the month. A partial first
    or last month is a month like any other.

    Parameters
    ----------
    equity : Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0) on a unique increasing
        DatetimeIndex.
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    Series of float64, shape (n_months,)
        Decimal returns indexed by ``PeriodIndex`` (freq ``M``).

    Raises
    ------
    DataError
        Not a dated Series, or bad values as in :func:`simple_returns`.
    """
    e, index = _dated_equity(equity)
    ic = _check_initial_capital(initial_capital)
    months = index.to_period("M")
    last = pd.Series(e, index=months).groupby(level=0).last()
    base = np.concatenate(([e[0] if ic is None else ic], last.to_numpy()[:-1]))
    return pd.Series(last.to_numpy() / base - 1.0, index=last.index, name="monthly_return")


def month_stats(equity: pd.Series, initial_capital: float | None = None) -> dict[str, float]:
    """Best and worst month and the share of positive months, from :func:`monthly_returns`.

    Returns
    -------
    dict[str, float]
        ``best_month`` (max R_m), ``worst_month`` (min R_m), ``positive_months`` (fraction of
        months with ``R_m > 0``, in [0, 1]) and ``n_months``.
    """
    m = monthly_returns(equity, initial_capital).to_numpy()
    return {
        "best_month": float(m.max()),
        "worst_month": float(m.min()),
        "positive_months": float(np.mean(m > 0.0)),
        "n_months": float(m.size),
    }


def drawdown_details(
    equity: pd.Series, initial_capital: float | None = None
) -> dict[str, pd.Timestamp | float | None]:
    """Dates of the maximum drawdown: its peak, its trough and its recovery.

    Formula: the trough is ``argmin_t DD_t`` (:func:`drawdown_series`, first bar on ties); the
    peak is the last bar at or before the trough where ``E_t`` equals the running peak (``None``
    when the peak is the initial capital, before the first bar); the recovery is the first bar
    after the trough with ``E_t >= P_trough`` (``None`` if the curve has not recovered).
    ``duration_bars`` is the number of bars under water from the peak to the recovery, the last
    bar included if not recovered (the run containing the trough, as in
    :func:`max_drawdown_duration`).

    Parameters
    ----------
    equity : Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0) on a DatetimeIndex.
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).

    Returns
    -------
    dict
        ``max_drawdown`` (float, <= 0), ``peak``, ``trough``, ``recovery`` (Timestamp or None),
        ``duration_bars`` (float, whole number). All dates are None when there is no drawdown.
    """
    e, index = _dated_equity(equity)
    ic = _check_initial_capital(initial_capital)
    peak = _running_peak(e, ic)
    dd = e / peak - 1.0
    trough = int(np.argmin(dd))
    if not e[trough] < peak[trough]:
        return {"max_drawdown": 0.0, "peak": None, "trough": None, "recovery": None,
                "duration_bars": 0.0}  # fmt: skip
    at_peak = np.flatnonzero(e[: trough + 1] >= peak[: trough + 1])
    peak_bar = int(at_peak[-1]) if at_peak.size else -1  # -1: the initial capital
    after = np.flatnonzero(e[trough + 1 :] >= peak[trough]) + trough + 1
    rec_bar = int(after[0]) if after.size else None
    end = len(e) if rec_bar is None else rec_bar
    return {
        "max_drawdown": float(dd[trough]),
        "peak": None if peak_bar < 0 else index[peak_bar],
        "trough": index[trough],
        "recovery": None if rec_bar is None else index[rec_bar],
        "duration_bars": float(end - peak_bar - 1),
    }


def value_at_risk(returns: VectorLike, cutoff: float = 0.05) -> float:
    """Historical value at risk of per-bar returns (empyrical ``value_at_risk``).

    Formula: the ``cutoff`` quantile of the returns, linear interpolation between order
    statistics (``numpy.percentile(r, 100 * cutoff)``). A value of -0.02 means that on
    ``cutoff`` of the bars the return was -2 % or worse.

    Parameters
    ----------
    returns : array-like or Series, shape (n,)
        Simple per-bar returns (decimal, finite).
    cutoff : float, default 0.05
        Tail probability in (0, 1).

    Returns
    -------
    float
        Decimal return (usually negative).
    """
    r = _as_vector(returns, "returns")
    if not 0.0 < float(cutoff) < 1.0:
        raise ConfigError(f"cutoff must be in (0, 1), got {cutoff!r}")
    return float(np.percentile(r, 100.0 * float(cutoff)))


# --------------------------------------------------------------------------------------------
# Trading metrics
# --------------------------------------------------------------------------------------------


def turnover(
    traded_notional: VectorLike, equity: VectorLike, periods_per_year: float = 252
) -> float:
    """Annualized one-way turnover (cvxportfolio-style half-gross convention).

    Formula: ``(sum_t N_t / 2) / mean_t(E_t) * ppy / n_bars`` where ``N_t = |buys_t| + |sells_t|``
    is the gross traded notional at bar t and ``n_bars = len(equity)``. Halving the gross notional
    counts a sale-and-repurchase once: replacing the whole portfolio once a year (sell 100 %, buy
    100 %) is a turnover of 1.0 per year.

    Parameters
    ----------
    traded_notional : array-like or Series, shape (n_bars,)
        Gross traded notional per bar (currency units, finite, >= 0).
    equity : array-like or Series, shape (n_bars,)
        Portfolio value per bar (currency units, finite, > 0).
    periods_per_year : float, default 252
        Bars per year.

    Returns
    -------
    float
        Annual turnover as a multiple of mean equity (0.5 = half the book traded one way a year).

    Raises
    ------
    DataError
        Empty, non-1-D or non-finite input, equity <= 0, negative traded notional, or lengths that
        differ.
    ConfigError
        ``periods_per_year`` not finite and > 0.
    """
    e = _as_equity(equity)
    tn = _as_vector(traded_notional, "traded_notional")
    _same_length(tn, e.size, "traded_notional")
    nonneg = tn >= 0
    if not nonneg.all():
        pos = int(np.argmin(nonneg))
        raise DataError(
            "traded_notional: gross notional must be >= 0, "
            f"got {float(tn[pos])!r} at position {pos}"
        )
    ppy = _check_ppy(periods_per_year)
    return float(np.sum(tn) / 2.0 / np.mean(e) * ppy / e.size)


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------


def compute_metrics(
    equity: VectorLike,
    *,
    traded_notional: VectorLike | None = None,
    costs: VectorLike | None = None,
    initial_capital: float | None = None,
    rf_annual: float = 0.0,
    periods_per_year: float = 252,
    turnover_capital: VectorLike | None = None,
) -> dict[str, float]:
    """All headline metrics of one equity curve.

    Returns are ``simple_returns(equity, initial_capital)``; each key is computed by the function
    of the same name in this module (formulas in :data:`METRIC_FORMULAS`).

    Parameters
    ----------
    equity : array-like or Series, shape (n,)
        Portfolio value per bar (currency units, finite, > 0).
    traded_notional : array-like or Series, shape (n,), optional
        Gross traded notional per bar (currency units, >= 0). Without it ``turnover`` is NaN.
    costs : array-like or Series, shape (n,), optional
        Trading costs per bar (currency units, finite). Without it ``total_costs`` is 0.0 (no
        cost model means nothing was charged).
    initial_capital : float, optional
        Value before the first bar (currency units, > 0).
    rf_annual : float, default 0.0
        Annual decimal risk-free rate for Sharpe and Sortino.
    periods_per_year : float, default 252
        Bars per year.
    turnover_capital : array-like or Series, shape (n,), optional
        The capital the traded notional is measured against in ``turnover`` (currency units,
        > 0 on average); default ``equity``. A sleeve whose performance curve is a
        time-weighted NAV passes its actual capital here.

    Returns
    -------
    dict[str, float]
        Keys exactly :data:`METRIC_KEYS`, in that order. ``max_drawdown_duration`` is a whole
        number of bars stored as float so every value has one type. NaN values follow the policy
        of each function.

    Raises
    ------
    DataError, ConfigError
        As in the individual functions; ``traded_notional`` and ``costs`` must have the length of
        ``equity``.
    """
    ppy = _check_ppy(periods_per_year)
    e = _as_equity(equity)
    ic = _check_initial_capital(initial_capital)
    _per_period_rf(rf_annual, ppy)  # validate rf even when there are no returns to use it on
    returns = simple_returns(e, ic)
    # A single equity value without capital has no return at all; the return-based functions
    # reject empty input, and the statistics are undefined (NaN) for fewer than 2 returns anyway.
    if returns.size == 0:
        vol = sharpe = sortino = math.nan
    else:
        vol = annual_volatility(returns, ppy)
        sharpe = sharpe_ratio(returns, rf_annual, ppy)
        sortino = sortino_ratio(returns, rf_annual, ppy)

    base = e if turnover_capital is None else turnover_capital
    turn = math.nan if traded_notional is None else turnover(traded_notional, base, ppy)
    if costs is None:
        total_costs = 0.0
    else:
        c = _as_vector(costs, "costs")
        _same_length(c, e.size, "costs")
        total_costs = float(np.sum(c))

    return {
        "total_return": total_return(e, ic),
        "cagr": cagr(e, ppy, ic),
        "annual_volatility": vol,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown(e, ic),
        "max_drawdown_duration": float(max_drawdown_duration(e, ic)),
        "calmar": calmar_ratio(e, ppy, ic),
        "turnover": turn,
        "total_costs": total_costs,
    }


def metrics_table(
    equities: pd.DataFrame,
    *,
    traded_notional: pd.DataFrame | None = None,
    costs: pd.DataFrame | None = None,
    initial_capital: pd.Series | Mapping[str, float] | None = None,
    rf_annual: float = 0.0,
    periods_per_year: float = 252,
    turnover_capital: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Metrics of several equity curves side by side (one row per curve).

    Each row is :func:`compute_metrics` of one column of ``equities`` with the same column of
    ``traded_notional`` / ``costs`` and the matching ``initial_capital`` entry.

    Parameters
    ----------
    equities : DataFrame, shape (n_bars, n_curves)
        Equity per bar (currency units) with unique column names, e.g. ``"portfolio"`` and one
        column per strategy. No NaN: a curve that starts later must be passed separately.
    traded_notional : DataFrame, shape (n_bars, >= n_curves), optional
        Gross traded notional per bar; same index as ``equities`` and every equity column present.
    costs : DataFrame, shape (n_bars, >= n_curves), optional
        Costs per bar (currency units); same index as ``equities`` and every column present.
    initial_capital : Series or Mapping[str, float], optional
        Capital before the first bar per column name; when given, every column needs an entry.
    rf_annual : float, default 0.0
        Annual decimal risk-free rate.
    periods_per_year : float, default 252
        Bars per year.
    turnover_capital : DataFrame, shape (n_bars, >= n_curves), optional
        Per column, the capital ``turnover`` divides by (default: the equity column).

    Returns
    -------
    DataFrame, shape (n_curves, len(METRIC_KEYS))
        Index = ``equities.columns``; columns = :data:`METRIC_KEYS` in order; float64 values.

    Raises
    ------
    DataError
        Not a DataFrame, no columns, duplicate column names, a missing column or misaligned index in
        ``traded_notional`` / ``costs``, or any error of :func:`compute_metrics` (the message is
        prefixed with the column name).
    ConfigError
        ``initial_capital`` missing an entry, or bad ``rf_annual`` / ``periods_per_year``.
    """
    if not isinstance(equities, pd.DataFrame):
        raise DataError(f"equities: expected a DataFrame, got {type(equities).__name__}")
    if equities.shape[1] == 0:
        raise DataError("equities: the DataFrame has no columns")
    if not equities.columns.is_unique:
        dupes = sorted({str(c) for c in equities.columns[equities.columns.duplicated()]})
        raise DataError(f"equities: duplicate column names {dupes}")
    for frame_name, frame in (
        ("traded_notional", traded_notional),
        ("costs", costs),
        ("turnover_capital", turnover_capital),
    ):
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{frame_name}: expected a DataFrame, got {type(frame).__name__}")
        if not frame.index.equals(equities.index):
            raise DataError(f"{frame_name}: index does not match the index of equities")
        missing = [c for c in equities.columns if c not in frame.columns]
        if missing:
            raise DataError(f"{frame_name}: missing columns {missing} present in equities")
    if initial_capital is not None:
        missing = [c for c in equities.columns if c not in initial_capital]
        if missing:
            raise ConfigError(f"initial_capital: no entry for columns {missing}")

    rows: list[list[float]] = []
    for col in equities.columns:
        try:
            m = compute_metrics(
                equities[col],
                traded_notional=None if traded_notional is None else traded_notional[col],
                costs=None if costs is None else costs[col],
                initial_capital=None if initial_capital is None else float(initial_capital[col]),
                rf_annual=rf_annual,
                periods_per_year=periods_per_year,
                turnover_capital=None if turnover_capital is None else turnover_capital[col],
            )
        except ConfigError as exc:
            raise ConfigError(f"column {col!r}: {exc}") from exc
        except DataError as exc:
            raise DataError(f"column {col!r}: {exc}") from exc
        rows.append([m[k] for k in METRIC_KEYS])
    return pd.DataFrame(
        np.asarray(rows, dtype=np.float64),
        index=pd.Index(equities.columns, name=equities.columns.name),
        columns=list(METRIC_KEYS),
    )
