"""Rebalance to a user-given schedule of target weights.

A :class:`WeightScheduleStrategy` replays a table of target weights: one row per date, one
column per asset. A row of finite weights means "at this close, rebalance the sleeve to these
fractions of its capital"; an all-``NaN`` row (or a date absent from the table) means "hold".
The strategy makes no forecast of its own, which makes it the common ground for comparing the
engine with other backtesters on the same orders (``benchmarks/peers.py``).

It is built from a DataFrame (or a CSV file with :meth:`WeightScheduleStrategy.from_csv`), not
from the YAML registry: a file path among a strategy's ``params`` would be resolved against the
current directory rather than the YAML's folder, and its contents would not enter the run's
config or data hash, so a run could not be reproduced from its manifest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtest.strategies.base import BaseStrategy
from portfolio.errors import DataError

__all__ = ["MAX_WEIGHT_SUM", "WeightScheduleStrategy"]

#: Largest accepted row sum: fully invested plus room for floating-point rounding of weights
#: that were meant to add up to exactly 1.
MAX_WEIGHT_SUM = 1.0 + 1e-9


def _fmt(ts: Any) -> str:
    """A date as ``YYYY-MM-DD`` when it has no time of day, else in ISO format."""
    stamp = pd.Timestamp(ts)
    return str(stamp.date()) if stamp == stamp.normalize() else stamp.isoformat()


def _dates_of(frame: pd.DataFrame, where: str) -> tuple[pd.DatetimeIndex, pd.DataFrame]:
    """Split a schedule into its dates (index, or a ``Date`` column of any case) and weights."""
    if isinstance(frame.index, pd.DatetimeIndex):
        return frame.index, frame
    labels = [c for c in frame.columns if isinstance(c, str) and c.strip().lower() == "date"]
    if len(labels) != 1:
        raise DataError(
            f"{where}: dates must be a DatetimeIndex or one 'Date' column, got an index of "
            f"type {type(frame.index).__name__} and columns {list(frame.columns)[:5]!r}"
        )
    raw = frame[labels[0]]
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(raw, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: column {labels[0]!r} has a value that is not a date") from exc
    if dates.hasnans:
        row = int(np.argmax(np.asarray(dates.isna())))
        raise DataError(f"{where}: column {labels[0]!r} is empty at row {row}")
    return dates, frame.drop(columns=[labels[0]])


def _validated_schedule(schedule: Any, where: str) -> pd.DataFrame:
    """Check a schedule and return it as a float64 frame on a DatetimeIndex.

    Raises
    ------
    DataError
        Naming ``where`` and the offending date, asset and value.
    """
    if not isinstance(schedule, pd.DataFrame):
        raise DataError(f"{where}: expected a pandas DataFrame, got {type(schedule).__name__}")
    dates, frame = _dates_of(schedule, where)
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(
            f"{where}: empty schedule ({frame.shape[0]} dates x {frame.shape[1]} assets)"
        )
    names = list(frame.columns)
    bad = [c for c in names if not isinstance(c, str) or not c]
    if bad:
        raise DataError(f"{where}: asset names must be non-empty strings, got {bad[:5]!r}")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise DataError(f"{where}: duplicate assets {dupes!r}")
    if not dates.is_unique:
        raise DataError(f"{where}: duplicate date {_fmt(dates[dates.duplicated()][0])}")
    if not dates.is_monotonic_increasing:
        t = int(np.argmax(np.asarray(dates[1:] < dates[:-1]))) + 1
        raise DataError(
            f"{where}: dates must be increasing, {_fmt(dates[t])} comes after {_fmt(dates[t - 1])}"
        )
    values = np.empty(frame.shape)
    for j, name in enumerate(names):
        try:
            values[:, j] = pd.to_numeric(frame.iloc[:, j]).to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: weights of {name!r} must be numbers ({exc})") from exc
    finite = np.isfinite(values)
    if np.isinf(values).any():
        t, a = np.argwhere(np.isinf(values))[0]
        raise DataError(
            f"{where}: weight of {names[a]!r} on {_fmt(dates[t])} must be finite, "
            f"got {float(values[t, a])!r}"
        )
    rows = np.asarray(finite.all(axis=1), dtype=bool)
    mixed = finite.any(axis=1) & ~rows
    if mixed.any():
        t = int(np.argmax(mixed))
        missing = [names[a] for a in np.flatnonzero(~finite[t])]
        raise DataError(
            f"{where}: row {_fmt(dates[t])} mixes weights and NaN (NaN for {missing[:5]!r}); a "
            "row must be all weights (rebalance) or all NaN (hold)"
        )
    negative = (values < 0.0) & rows[:, None]
    if negative.any():
        t, a = np.argwhere(negative)[0]
        raise DataError(
            f"{where}: weight of {names[a]!r} on {_fmt(dates[t])} must be >= 0 (long only), "
            f"got {float(values[t, a])!r}"
        )
    sums = np.where(rows, values.sum(axis=1, where=finite), 0.0)
    over = sums > MAX_WEIGHT_SUM
    if over.any():
        t = int(np.argmax(over))
        raise DataError(
            f"{where}: weights on {_fmt(dates[t])} sum to {float(sums[t])!r}, more than 1 (the "
            "sleeve would need leverage; the rest of a row below 1 is held as cash)"
        )
    return pd.DataFrame(values, index=dates.rename("date"), columns=pd.Index(names))


@dataclass(frozen=True, kw_only=True)
class WeightScheduleStrategy(BaseStrategy):
    """Rebalance to the rows of a given table of target weights, hold in between.

    On every date of ``schedule`` whose row is all finite the sleeve is re-targeted to exactly
    those weights (fractions of its capital; assets of the panel that are not columns of the
    schedule get 0), even when the row equals the previous one: that re-balances away the
    drift since. All-``NaN`` rows and dates not in the schedule hold. Rows before the first
    one with a non-zero weight are not emitted (the sleeve starts in cash, so they would be
    no-ops; see :func:`backtest.strategies.base.emission_mask`).

    Views: none (all ``NaN``); the strategy has no return forecast.

    Parameters
    ----------
    strategy_id : str
        Name of the sleeve.
    schedule : DataFrame, shape (n_dates, n_assets)
        Target weights, rows = dates (a DatetimeIndex, or a ``Date`` column of any case),
        columns = asset names. Each row is all finite (weights ``>= 0`` summing to at most 1,
        the rest held as cash) or all ``NaN``. Validated and copied at construction.
    universe : tuple of str, optional
        If given, every column of ``schedule`` must be in it.

    Raises
    ------
    DataError
        At construction: a schedule that is not a DataFrame, has no dates, duplicate or
        unsorted dates, non-string or duplicate asset names, a non-numeric or infinite value,
        a row that mixes numbers and ``NaN``, a negative weight, a row summing to more than 1
        (:data:`MAX_WEIGHT_SUM`), or an asset outside ``universe``. From
        :meth:`target_weights`: a schedule date that is not a bar of the price panel, an asset
        that is not a column of it, or a non-zero weight on a bar where the asset has no price.
        Every message names ``strategies.<id>.schedule`` and the offending date, asset and
        value.

    Examples
    --------
    >>> import pandas as pd
    >>> schedule = pd.DataFrame(
    ...     {"AAPL": [0.6, 0.5], "MSFT": [0.4, 0.5]},
    ...     index=pd.to_datetime(["2020-01-02", "2020-07-01"]),
    ... )
    >>> strategy = WeightScheduleStrategy(strategy_id="plan", schedule=schedule)
    >>> strategy.schedule.shape
    (2, 2)
    """

    schedule: pd.DataFrame = field(compare=False, repr=False)

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would skip the schedule (a frame has no boolean equality).
        if not isinstance(other, WeightScheduleStrategy) or other.__class__ is not self.__class__:
            return NotImplemented
        return (
            self.strategy_id == other.strategy_id
            and self.universe == other.universe
            and self.schedule.equals(other.schedule)
        )

    __hash__ = BaseStrategy.__hash__

    def _validate_params(self) -> None:
        where = f"strategies.{self.strategy_id}.schedule"
        schedule = _validated_schedule(self.schedule, where)
        if self.universe is not None:
            outside = [a for a in schedule.columns if a not in self.universe]
            if outside:
                raise DataError(f"{where}: assets {outside!r} are not in the strategy's universe")
        object.__setattr__(self, "schedule", schedule)

    @classmethod
    def from_csv(
        cls,
        strategy_id: str,
        path: str | os.PathLike[str],
        universe: Sequence[str] | None = None,
    ) -> WeightScheduleStrategy:
        """Build the strategy from a CSV file (gzip too) with a ``Date`` column and one per asset.

        Parameters
        ----------
        strategy_id : str
            Name of the sleeve.
        path : path-like
            CSV file: a ``Date`` column (any case, ISO dates) and one column of weights per
            asset; empty cells are ``NaN`` (an all-empty row holds).
        universe : sequence of str, optional
            See the class docstring.

        Raises
        ------
        DataError
            The file is missing or unreadable, or its contents fail the checks of the class
            (the message then names the file).
        """
        source = os.fspath(path)
        try:
            raw = pd.read_csv(source)
        except FileNotFoundError as exc:
            raise DataError(f"{source}: weight schedule file not found") from exc
        except (
            pd.errors.ParserError,
            pd.errors.EmptyDataError,
            UnicodeDecodeError,
            OSError,
        ) as exc:
            raise DataError(f"{source}: cannot read as CSV ({exc})") from exc
        try:
            return cls(
                strategy_id=strategy_id,
                universe=None if universe is None else tuple(universe),
                schedule=raw,
            )
        except DataError as exc:
            raise DataError(f"{source}: {exc}") from None

    def _rows(
        self, index: pd.Index, columns: pd.Index, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Check the schedule against a panel and locate its rebalance rows in it.

        Parameters
        ----------
        index : DatetimeIndex, length T
            The panel's bars (validated by ``_prepare``).
        columns : Index, length A
            The panel's assets.
        values : ndarray, shape (T, A)
            The panel's closes (``NaN`` = not listed).

        Returns
        -------
        bars : ndarray of int, shape (R,)
            Bar of each finite schedule row, in order.
        cols : ndarray of int, shape (C,)
            Panel column of each schedule asset.
        weights : ndarray, shape (R, C)
            The rows' weights.
        """
        where = f"strategies.{self.strategy_id}.schedule"
        schedule = self.schedule
        positions = {name: i for i, name in enumerate(columns)}
        missing = [a for a in schedule.columns if a not in positions]
        if missing:
            raise DataError(f"{where}: assets {missing!r} are not columns of the price panel")
        tz_schedule = getattr(schedule.index, "tz", None)
        tz_panel = getattr(index, "tz", None)
        if str(tz_schedule) != str(tz_panel):
            raise DataError(
                f"{where}: dates are in time zone {tz_schedule or 'none (naive)'} but the price "
                f"panel's are in {tz_panel or 'none (naive)'}"
            )
        bars = index.get_indexer(schedule.index)
        if (bars < 0).any():
            absent = schedule.index[bars < 0]
            raise DataError(
                f"{where}: {len(absent)} date(s) are not bars of the price panel, first "
                f"{_fmt(absent[0])} (panel {_fmt(index[0])} .. {_fmt(index[-1])})"
            )
        table = schedule.to_numpy()
        rows = np.isfinite(table).all(axis=1)
        cols = np.array([positions[a] for a in schedule.columns], dtype=np.int64)
        bars, weights = bars[rows], table[rows]
        unpriced = (weights != 0.0) & ~np.isfinite(values[bars][:, cols])
        if unpriced.any():
            r, a = np.argwhere(unpriced)[0]
            raise DataError(
                f"{where}: weight of {schedule.columns[a]!r} on {_fmt(index[bars[r]])} is "
                f"{float(weights[r, a])!r} but the asset has no price on that bar"
            )
        return bars, cols, weights

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        """The schedule's rows on their bars, ``NaN`` ("hold") elsewhere.

        The same frame as the generic :meth:`BaseStrategy.target_weights` over
        :meth:`_targets` (tested), built directly: the rows are known, so nothing needs to
        be carried forward and compared over the whole panel.

        Parameters
        ----------
        prices : DataFrame, shape (n_bars, n_assets)
            Wide close panel; ``NaN`` = not listed.

        Returns
        -------
        DataFrame, shape (n_bars, n_assets)
            Same index and columns; the schedule's finite rows (0 for the panel's other
            assets) from its first row with a non-zero weight on, all-``NaN`` rows elsewhere.
        """
        values, _ = self._prepare(prices)
        bars, cols, weights = self._rows(prices.index, prices.columns, values)
        # The sleeve starts in cash: rows before the first non-zero one are no-ops.
        live = np.logical_or.accumulate((weights != 0.0).any(axis=1))
        out = np.full(values.shape, np.nan)
        out[bars[live]] = 0.0
        out[np.ix_(bars[live], cols)] = weights[live]
        return pd.DataFrame(out, index=prices.index, columns=prices.columns, copy=False)

    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """The schedule's rows carried forward to every bar, and the mask of the rows' bars."""
        bars, cols, weights = self._rows(prices.index, prices.columns, prices.to_numpy())
        n_t = len(prices.index)
        schedule_mask = np.zeros(n_t, dtype=bool)
        schedule_mask[bars] = True
        which = np.full(n_t, -1, dtype=np.int64)
        which[bars] = np.arange(len(bars))
        which = np.maximum.accumulate(which)
        table = np.zeros((len(bars) + 1, prices.shape[1]))
        table[:-1, cols] = weights  # the extra last row (all zeros) serves which == -1
        return table[which], schedule_mask

    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        empty = np.full(prices.shape, np.nan)
        return empty, empty.copy()
