"""Rebalance calendars: which bars are calendar rebalances and which are drift checks.

These masks depend on the bar timestamps only, never on prices: the trading calendar is known in
advance, so knowing that bar ``t`` is the last bar of its month is not look-ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from backtest.kernel import check_bars_nb
from backtest.strategies.indicators import every_n_mask, month_end_mask
from portfolio.errors import ConfigError

__all__ = ["calendar_mask", "drift_check_mask"]

logger = logging.getLogger(__name__)

_NS_PER_HOUR = 3_600_000_000_000


def calendar_mask(
    index: pd.DatetimeIndex,
    calendar: str,
    every_n_bars: int = 21,
    dates: Sequence[str] = (),
) -> np.ndarray:
    """Bars on which a calendar capital rebalance fires.

    Parameters
    ----------
    index : DatetimeIndex, length T
        Bar timestamps.
    calendar : {"none", "month_end", "every_n_bars", "dates"}
        ``month_end``: the last bar of each calendar month present in the index;
        ``every_n_bars``: bars ``n, 2n, ...`` (the first bar is the initial allocation already);
        ``dates``: for each date, the first bar on or after it (dates past the end are ignored
        with a logged warning).
    every_n_bars : int
        Spacing for ``every_n_bars``.
    dates : sequence of str
        ISO dates for ``dates``.

    Returns
    -------
    ndarray of bool, shape (T,)
    """
    n = len(index)
    if calendar == "none":
        return np.zeros(n, dtype=bool)
    if calendar == "month_end":
        return np.asarray(month_end_mask(index), dtype=bool)
    if calendar == "every_n_bars":
        mask = np.asarray(every_n_mask(n, every_n_bars), dtype=bool).copy()
        mask[0] = False
        return mask
    if calendar == "dates":
        mask = np.zeros(n, dtype=bool)
        for d in dates:
            pos = int(index.searchsorted(pd.Timestamp(d).tz_localize(index.tz), side="left"))
            if pos < n:
                mask[pos] = True
            else:
                logger.warning("rebalance date %s is after the last bar %s; ignored", d, index[-1])
        return mask
    raise ConfigError(f"rebalance.calendar: unknown calendar {calendar!r}")


def drift_check_mask(index: pd.DatetimeIndex, frequency_hours: float) -> np.ndarray:
    """Bars on which the allocation drift is checked.

    The first bar, then each first bar at least ``frequency_hours`` after the previous check
    (calendar time, with a tolerance of 5% of the period but under half a bar: 24 hours checks
    every trading day on daily bars and every 24th bar on hourly bars; 168 hours once a week).

    Parameters
    ----------
    index : DatetimeIndex, length T
    frequency_hours : float
        ``PortfolioConfig.rebalance_frequency_hours``; must be positive.

    Returns
    -------
    ndarray of bool, shape (T,)
    """
    if not frequency_hours > 0:
        raise ConfigError(
            f"portfolio.rebalance_frequency_hours: must be > 0, got {frequency_hours!r}"
        )
    ts = np.asarray(index.as_unit("ns").asi8, dtype=np.int64)
    # Tolerance so that daylight-saving shifts or feed jitter do not skip a check (with
    # tz-aware daily closes "24 hours" must still mean "the next trading day"): 5% of the
    # period, but less than half a bar, so that on hourly bars 24 hours stays 24 bars.
    period = frequency_hours * _NS_PER_HOUR
    spacing = float(np.median(np.diff(ts))) if len(ts) > 1 else period
    every = max(round(period - min(0.05 * period, 0.49 * spacing)), 1)
    return np.asarray(check_bars_nb(ts, every), dtype=bool)
