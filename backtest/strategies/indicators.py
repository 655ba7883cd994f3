"""Vectorized technical indicators on wide price panels.

Every function takes a wide ``DataFrame`` (rows = bars on a ``DatetimeIndex``, columns = assets,
``float64`` closes, ``NaN`` = no price) and returns frames with the same index and columns.
All of them are strictly causal: the value at bar ``t`` uses bars ``<= t`` only.

NaN policy (the same for every indicator): a ``NaN`` input makes the output ``NaN`` and restarts
the indicator, which is ``NaN`` again until it has seen a full warm-up of consecutive valid
bars. Rolling-window indicators get this for free (a window containing a ``NaN`` is ``NaN``);
the recursive ones (:func:`ema`, :func:`tema`, :func:`rsi_wilder`) reset their state in a small
numba kernel. Inputs are expected to be finite where they are not ``NaN``.

The two schedule helpers (:func:`month_end_mask`, :func:`every_n_mask`) use only the calendar
(the index dates or the bar count), never prices.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from portfolio.errors import ConfigError, DataError

__all__ = [
    "BollingerBands",
    "RollingLinReg",
    "bollinger",
    "ema",
    "every_n_mask",
    "month_end_mask",
    "rolling_linreg",
    "rolling_trendline",
    "rsi_wilder",
    "tema",
]

logger = logging.getLogger(__name__)


class BollingerBands(NamedTuple):
    """Bollinger bands (Bollinger, *Bollinger on Bollinger Bands*, 2001).

    Each field is a frame shaped like the input. ``std`` is the population (``ddof=0``)
    standard deviation of the close over the window, as in Bollinger's definition.
    """

    middle: pd.DataFrame
    upper: pd.DataFrame
    lower: pd.DataFrame
    std: pd.DataFrame


class RollingLinReg(NamedTuple):
    """Rolling least-squares line ``y = a + b x`` of the close on the bar number.

    ``endpoint`` is the line evaluated at the window's last bar (price units), ``slope`` is
    ``b`` (price units per bar) and ``r2`` the coefficient of determination in ``[0, 1]``
    (``0`` for a constant window, where nothing is explained).
    """

    endpoint: pd.DataFrame
    slope: pd.DataFrame
    r2: pd.DataFrame


def _check_period(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _values(prices: pd.DataFrame) -> np.ndarray:
    if not isinstance(prices, pd.DataFrame):
        raise DataError(f"prices: expected a pandas DataFrame, got {type(prices).__name__}")
    return np.ascontiguousarray(prices.to_numpy(dtype=np.float64))


def _frame(values: np.ndarray, like: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(values, index=like.index, columns=like.columns)


@njit(cache=True)
def _ema_2d_nb(x: np.ndarray, period: int, alpha: float) -> np.ndarray:
    """Exponential smoothing per column, seeded with the simple mean of the first `period`.

    ``s_t = s_{t-1} + alpha * (x_t - s_{t-1})``; a NaN resets the column (see module doc).
    """
    n, m = x.shape
    out = np.full((n, m), np.nan)
    for j in range(m):
        count = 0
        acc = 0.0
        prev = 0.0
        for i in range(n):
            v = x[i, j]
            if np.isnan(v):
                count = 0
                acc = 0.0
                continue
            if count < period:
                acc += v
                count += 1
                if count == period:
                    prev = acc / period
                    out[i, j] = prev
            else:
                prev = prev + alpha * (v - prev)
                out[i, j] = prev
    return out


def ema(prices: pd.DataFrame, period: int) -> pd.DataFrame:
    """Exponential moving average with smoothing ``alpha = 2 / (period + 1)``.

    Seeded with the simple mean of the first ``period`` valid values (the TA-Lib convention),
    then ``ema_t = ema_{t-1} + alpha * (x_t - ema_{t-1})``.

    Parameters
    ----------
    prices : DataFrame, shape (n_bars, n_assets)
        Input series (any units); ``NaN`` resets the average.
    period : int
        Span in bars, ``>= 1``.

    Returns
    -------
    DataFrame, shape (n_bars, n_assets)
        Same units as the input; ``NaN`` for the first ``period - 1`` valid bars.
    """
    period = _check_period(period, "ema.period", 1)
    return _frame(_ema_2d_nb(_values(prices), period, 2.0 / (period + 1.0)), prices)


def tema(prices: pd.DataFrame, period: int) -> pd.DataFrame:
    """Triple exponential moving average (Mulloy, *TASC*, 1994).

    ``TEMA = 3 EMA1 - 3 EMA2 + EMA3`` with ``EMA1 = ema(x)``, ``EMA2 = ema(EMA1)`` and
    ``EMA3 = ema(EMA2)``, all with the same ``period``. Each stage is seeded by its own simple
    mean, so the first value appears after ``3 * (period - 1)`` valid bars.

    Parameters
    ----------
    prices : DataFrame, shape (n_bars, n_assets)
        Input series; ``NaN`` resets the average.
    period : int
        Span in bars, ``>= 1``.

    Returns
    -------
    DataFrame, shape (n_bars, n_assets)
        Same units as the input.
    """
    period = _check_period(period, "tema.period", 1)
    alpha = 2.0 / (period + 1.0)
    e1 = _ema_2d_nb(_values(prices), period, alpha)
    e2 = _ema_2d_nb(e1, period, alpha)
    e3 = _ema_2d_nb(e2, period, alpha)
    return _frame(3.0 * e1 - 3.0 * e2 + e3, prices)


def rsi_wilder(prices: pd.DataFrame, period: int = 14) -> pd.DataFrame:
    """Relative strength index with Wilder smoothing (Wilder, *New Concepts*, 1978).

    With ``d_t = p_t - p_{t-1}``, gains ``max(d, 0)`` and losses ``max(-d, 0)`` are averaged by
    Wilder's recursion ``avg_t = (avg_{t-1} (period - 1) + x_t) / period``, seeded by the simple
    mean of the first ``period`` changes. ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``,
    computed as ``100 avg_gain / (avg_gain + avg_loss)``: 100 when there are no losses, 50 when
    the price did not move at all.

    Parameters
    ----------
    prices : DataFrame, shape (n_bars, n_assets)
        Close prices; ``NaN`` resets the indicator.
    period : int, default 14
        Smoothing length in bars, ``>= 1``.

    Returns
    -------
    DataFrame, shape (n_bars, n_assets)
        RSI in ``[0, 100]``; the first value is at the ``period``-th change (bar ``period``
        of a series listed from bar 0).
    """
    period = _check_period(period, "rsi_wilder.period", 1)
    p = _values(prices)
    d = np.full_like(p, np.nan)
    d[1:] = p[1:] - p[:-1]
    # np.clip keeps NaN, so a missing change stays missing and resets the smoothing.
    gains = np.clip(d, 0.0, None)
    losses = np.clip(-d, 0.0, None)
    avg_gain = _ema_2d_nb(gains, period, 1.0 / period)
    avg_loss = _ema_2d_nb(losses, period, 1.0 / period)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0.0, 100.0 * avg_gain / total, 50.0)
    rsi[np.isnan(total)] = np.nan
    return _frame(rsi, prices)


def bollinger(prices: pd.DataFrame, period: int = 20, n_std: float = 2.0) -> BollingerBands:
    """Bollinger bands: simple moving average plus/minus ``n_std`` population deviations.

    Parameters
    ----------
    prices : DataFrame, shape (n_bars, n_assets)
        Close prices.
    period : int, default 20
        Window length in bars, ``>= 2``; a window containing ``NaN`` gives ``NaN``.
    n_std : float, default 2.0
        Band half-width in standard deviations, ``> 0``.

    Returns
    -------
    BollingerBands
        ``middle``, ``upper``, ``lower`` (price units) and ``std`` (``ddof=0``), each shaped
        like ``prices``.
    """
    period = _check_period(period, "bollinger.period", 2)
    if isinstance(n_std, bool) or not isinstance(n_std, int | float) or not n_std > 0:
        raise ConfigError(f"bollinger.n_std: must be a number > 0, got {n_std!r}")
    frame = _frame(_values(prices), prices)
    roll = frame.rolling(period, min_periods=period)
    middle = roll.mean()
    std = roll.std(ddof=0)
    return BollingerBands(middle, middle + n_std * std, middle - n_std * std, std)


def rolling_linreg(prices: pd.DataFrame, window: int) -> RollingLinReg:
    """Rolling ordinary least squares of the close on the bar number, per asset.

    Inside each window the abscissa is ``x_j = j`` for ``j = 0 .. window - 1``. Because the
    design does not depend on the data, the OLS estimates are fixed linear combinations of the
    window's closes (the closed form of the rolling sums of ``x``, ``y``, ``x y``):
    ``slope = sum_j (x_j - xbar) y_j / Sxx`` and
    ``endpoint = ybar + slope (window - 1 - xbar)``, with ``xbar = (window - 1) / 2`` and
    ``Sxx = sum_j (x_j - xbar)^2``. They are evaluated as ``window`` shifted multiply-adds over
    the whole panel, so each value is computed from its own window only (no running sums that
    carry rounding error from bar to bar). ``r2 = slope^2 Sxx / sum_j (y_j - ybar)^2``, set to
    ``0`` for a constant window.

    Parameters
    ----------
    prices : DataFrame, shape (n_bars, n_assets)
        Close prices.
    window : int
        Window length in bars, ``>= 2``; windows containing ``NaN`` give ``NaN``.

    Returns
    -------
    RollingLinReg
        ``endpoint`` (price units), ``slope`` (price units per bar) and ``r2`` (in ``[0, 1]``),
        each shaped like ``prices`` and ``NaN`` for the first ``window - 1`` bars.
    """
    window = _check_period(window, "rolling_linreg.window", 2)
    y = _values(prices)
    n, m = y.shape
    endpoint = np.full((n, m), np.nan)
    slope = np.full((n, m), np.nan)
    r2 = np.full((n, m), np.nan)
    if n >= window:
        rows = n - window + 1
        xc = np.arange(window, dtype=np.float64) - (window - 1) / 2.0
        sxx = float(np.sum(xc * xc))
        w_slope = xc / sxx
        acc_sum = np.zeros((rows, m))
        acc_slope = np.zeros((rows, m))
        for j in range(window):
            seg = y[j : j + rows]
            acc_sum += seg
            acc_slope += w_slope[j] * seg
        mean = acc_sum / window
        ss = np.zeros((rows, m))
        for j in range(window):
            dev = y[j : j + rows] - mean
            ss += dev * dev
        endpoint[window - 1 :] = mean + acc_slope * ((window - 1) / 2.0)
        slope[window - 1 :] = acc_slope
        with np.errstate(invalid="ignore", divide="ignore"):
            fit = np.where(ss > 0.0, acc_slope * acc_slope * sxx / ss, 0.0)
        fit = np.clip(fit, 0.0, 1.0)
        fit[np.isnan(ss)] = np.nan
        r2[window - 1 :] = fit
    return RollingLinReg(_frame(endpoint, prices), _frame(slope, prices), _frame(r2, prices))


def rolling_trendline(prices: pd.DataFrame, window: int) -> pd.DataFrame:
    """Value of the rolling OLS trend line at each window's last bar.

    Shortcut for ``rolling_linreg(prices, window).endpoint``; see :func:`rolling_linreg`.

    Returns
    -------
    DataFrame, shape (n_bars, n_assets)
        Trend value in price units; ``NaN`` for the first ``window - 1`` bars.
    """
    return rolling_linreg(prices, window).endpoint


def month_end_mask(index: pd.Index) -> np.ndarray:
    """Boolean mask of the last bar of each calendar month present in ``index``.

    Bar ``i < n - 1`` is a month end when bar ``i + 1`` falls in a later month. Reading the
    next *date* is not look-ahead: the calendar of trading dates is known in advance, and no
    price is read. The panel's last bar has no successor, so it counts as a month end only when
    no weekday (Monday to Friday) is left in its month after it; a panel that stops mid-month
    therefore does not rebalance on its last bar, and a live run on the month's last weekday
    does.

    Parameters
    ----------
    index : DatetimeIndex, length n_bars
        Strictly increasing bar dates.

    Returns
    -------
    ndarray of bool, shape (n_bars,)
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"month_end_mask: expected a DatetimeIndex, got {type(index).__name__}")
    n = len(index)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataError("month_end_mask: the index must be unique and strictly increasing")
    key = index.year.to_numpy().astype(np.int64) * 12 + index.month.to_numpy()
    mask[:-1] = key[:-1] != key[1:]
    last = index[-1]
    day_after = np.datetime64(last.date(), "D") + np.timedelta64(1, "D")
    month_stop = np.datetime64(last.replace(day=last.days_in_month).date(), "D") + 1
    mask[-1] = bool(np.busday_count(day_after, month_stop) == 0)
    return mask


def every_n_mask(n_bars: int, n: int, offset: int = 0) -> np.ndarray:
    """Boolean mask that is true on bars ``offset, offset + n, offset + 2 n, ...``.

    Parameters
    ----------
    n_bars : int
        Length of the mask, ``>= 0``.
    n : int
        Period in bars, ``>= 1``.
    offset : int, default 0
        First scheduled bar, ``>= 0``.

    Returns
    -------
    ndarray of bool, shape (n_bars,)
    """
    n_bars = _check_period(n_bars, "every_n_mask.n_bars", 0)
    n = _check_period(n, "every_n_mask.n", 1)
    offset = _check_period(offset, "every_n_mask.offset", 0)
    mask = np.zeros(n_bars, dtype=bool)
    mask[offset::n] = True
    return mask
