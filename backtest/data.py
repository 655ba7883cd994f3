"""Validated, aligned price panels: the only way price data enters the backtest.

A :class:`PricePanel` is a wide panel of closing prices: rows are bars (a unique, strictly
increasing :class:`pandas.DatetimeIndex` named ``"date"``, nanosecond resolution), columns are
assets (unique string names), values are ``float64`` prices in the quote currency.

Validation happens once, in the constructor; every ``from_*`` helper funnels through it, so
nothing past this module sees an unchecked frame. The rules:

* leading ``NaN`` values are allowed: an asset that lists later than the others is simply not
  tradable before its first valid price (see :meth:`PricePanel.first_valid_positions` and
  :meth:`PricePanel.tradable_mask`);
* from its first valid price on, every value must be finite and strictly positive: a ``NaN``
  gap, a zero, a negative price or an infinity is a :class:`~portfolio.errors.DataError`;
* dates must parse, be unique and strictly increasing; columns must be numeric.

Every error message names the source (file path, ``"<DataFrame>"`` or the label given), the
column and the first offending date or value.

Several sources are put on one calendar by an explicit policy (:meth:`PricePanel.from_sources`):
``"intersection"`` keeps only the dates present in every source; ``"union"`` keeps every date
and forward-fills a source's prices over at most ``ffill_limit`` consecutive missing bars. Values
are never back-filled: that would leak a later price into an earlier bar.

The embedded reference data (20 S&P 500 stocks and the S&P 500 index, 1990-01-02 ..
2022-12-28, BSD-3 licensed from skfolio, see ``backtest/datasets/``) loads through
:mod:`importlib.resources`, so it also works from a non-editable wheel install.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.resources
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from portfolio.errors import ConfigError, DataError

__all__ = [
    "PricePanel",
    "load_default_index",
    "load_default_panel",
    "load_prices",
]

logger = logging.getLogger(__name__)

#: Label used in messages for frames passed without a source label.
FRAME_SOURCE = "<DataFrame>"

_DATASETS_PACKAGE = "backtest.datasets"
_DEFAULT_PANEL_FILE = "sp500_20_stocks.csv.gz"
_DEFAULT_INDEX_FILE = "sp500_index.csv.gz"
_DEFAULT_INDEX_NAME = "SP500"

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq")

_HASH_TAG = b"backtest.data.PricePanel/v1"

#: pandas >= 3 always uses copy-on-write, so a shallow copy is a safe read-only view there.
_COPY_ON_WRITE = int(pd.__version__.split(".", 1)[0]) >= 3

Align = Literal["intersection", "union"]
DateLike = str | pd.Timestamp | datetime.date | np.datetime64


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _fmt_date(ts: Any) -> str:
    """Format a timestamp for messages: ``YYYY-MM-DD`` for midnight, ISO 8601 otherwise."""
    stamp = pd.Timestamp(ts)
    if stamp is pd.NaT:
        return "NaT"
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return stamp.isoformat()


def _view(obj: pd.DataFrame) -> pd.DataFrame:
    """Return a copy that cannot write back into ``obj`` (lazy under copy-on-write)."""
    return obj.copy(deep=not _COPY_ON_WRITE)


def _plain_index(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Return ``index`` named ``"date"`` and without a ``freq``.

    A freq would make equal panels compare unequal depending on how their dates were built.
    """
    # pandas accepts freq=None (drop it); pandas-stubs only types str | BaseOffset.
    return pd.DatetimeIndex(index, freq=None, name="date")  # type: ignore[arg-type]


def _find_date_column(columns: pd.Index) -> Any:
    """Return the label of the date column: ``Date`` (any case), else the first column."""
    for label in columns:
        if isinstance(label, str) and label.strip().lower() == "date":
            return label
    return columns[0]


def _parse_dates(raw: pd.Index | pd.Series, source: str, what: str) -> pd.DatetimeIndex:
    """Parse ISO 8601 dates, raising a DataError that names the first value that fails.

    Parameters
    ----------
    raw
        Date values, one per row: strings, or datetimes already parsed.
    source
        File path or label used in messages.
    what
        Where the dates live, e.g. ``"column 'Date'"`` or ``"index"``.

    Returns
    -------
    pandas.DatetimeIndex
        Same length as ``raw``, nanosecond resolution, name ``"date"``, no ``freq``.
    """
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.DatetimeIndex(raw)
    else:
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(raw, format="ISO8601", errors="coerce"))
        except (ValueError, TypeError, OverflowError) as exc:
            # Mixed time zones or values pandas refuses outright: no single row to point at.
            raise DataError(f"{source}: {what}: cannot parse dates as ISO 8601 ({exc})") from exc
    bad = np.flatnonzero(np.asarray(parsed.isna()))
    if bad.size:
        row = int(bad[0])
        value = np.asarray(raw, dtype=object)[row]
        shown = "a missing date" if pd.isna(value) else f"date {value!r}"
        raise DataError(
            f"{source}: {what}: cannot parse {shown} in data row {row + 1} "
            "(expected ISO 8601 dates such as 2020-01-31)"
        )
    try:
        parsed = parsed.as_unit("ns")
    except (OverflowError, ValueError) as exc:
        raise DataError(
            f"{source}: {what}: dates outside the supported range 1677-09-22 .. 2262-04-11 ({exc})"
        ) from exc
    return _plain_index(parsed)


def _split_dates(frame: pd.DataFrame, source: str) -> tuple[pd.DatetimeIndex, pd.DataFrame, str]:
    """Separate the dates from the asset columns of a raw frame.

    The dates are the index when it already is a DatetimeIndex, else a ``Date`` column (any
    case), else an index of date strings.

    Returns
    -------
    tuple
        ``(dates, asset_frame, where)``; ``where`` names the date column for messages.
    """
    index = frame.index
    if isinstance(index, pd.DatetimeIndex) or pd.api.types.is_string_dtype(index.dtype):
        # A file reader stores the name of the file's date column as the index name.
        what = "index" if index.name is None else f"column {index.name!r}"
        if isinstance(index, pd.DatetimeIndex) or not any(
            isinstance(c, str) and c.strip().lower() == "date" for c in frame.columns
        ):
            return _parse_dates(index, source, what), frame, what
    for label in frame.columns:
        if isinstance(label, str) and label.strip().lower() == "date":
            what = f"column {label!r}"
            return _parse_dates(frame[label], source, what), frame.drop(columns=[label]), what
    raise DataError(
        f"{source}: no dates: expected a DatetimeIndex, a 'Date' column or an index of ISO "
        f"dates, got an index of dtype {index.dtype}"
    )


def _numeric_block(frame: pd.DataFrame, index: pd.DatetimeIndex, source: str) -> np.ndarray:
    """Convert every asset column to float64, naming the first non-numeric value.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(T, A)``; missing values become ``NaN``.
    """
    n_rows, n_cols = frame.shape
    if n_cols and all(dt == np.float64 for dt in frame.dtypes):
        # Already float64 everywhere (the common case): one conversion, nothing to name.
        return np.array(frame.to_numpy(dtype=np.float64), dtype=np.float64, order="C")
    out = np.empty((n_rows, n_cols), dtype=np.float64)
    # Loop over columns (few), never over rows.
    for j, label in enumerate(frame.columns):
        col = frame.iloc[:, j]
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
            raise DataError(f"{source}: column {label!r} is not numeric (dtype {dtype})")
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise DataError(f"{source}: column {label!r} is not numeric (dtype {dtype})")
        if not pd.api.types.is_numeric_dtype(dtype):
            coerced = pd.to_numeric(col, errors="coerce")
            bad = np.flatnonzero(np.asarray(col.notna() & coerced.isna()))
            if bad.size:
                row = int(bad[0])
                raise DataError(
                    f"{source}: column {label!r} is not numeric: value {col.iloc[row]!r} on "
                    f"{_fmt_date(index[row])}"
                )
            col = coerced
        try:
            out[:, j] = col.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: column {label!r} is not numeric ({exc})") from exc
    return out


def _check_columns(columns: pd.Index, source: str) -> list[str]:
    names: list[str] = []
    for label in columns:
        if not isinstance(label, str) or not label.strip():
            raise DataError(
                f"{source}: asset column names must be non-empty strings, got {label!r}"
            )
        names.append(label)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{source}: duplicate asset column {name!r}")
        seen.add(name)
    return names


def _check_index_order(index: pd.DatetimeIndex, source: str, what: str) -> None:
    """Raise on the first date that is not strictly after its predecessor."""
    stamps = index.asi8
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps <= 0)
    if not bad.size:
        return
    i = int(bad[0])
    if steps[i] == 0:
        raise DataError(
            f"{source}: {what}: duplicate date {_fmt_date(index[i + 1])} "
            f"(data rows {i + 1} and {i + 2})"
        )
    raise DataError(
        f"{source}: {what}: dates are not sorted: {_fmt_date(index[i + 1])} (data row {i + 2}) "
        f"comes after {_fmt_date(index[i])}"
    )


def _started(values: np.ndarray) -> np.ndarray:
    """Boolean ``(T, A)``: True from each column's first non-NaN value on."""
    result: np.ndarray = np.logical_or.accumulate(~np.isnan(values), axis=0)
    return result


def _check_values(
    values: np.ndarray, index: pd.DatetimeIndex, columns: list[str], source: str
) -> None:
    """Raise on the earliest price that is missing, non-finite or non-positive after listing."""
    started = _started(values)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values > 0.0)
    bad = started & ~ok
    rows = np.flatnonzero(bad.any(axis=1))
    if not rows.size:
        return
    row = int(rows[0])
    col = int(np.argmax(bad[row]))
    value = float(values[row, col])
    label = columns[col]
    date = _fmt_date(index[row])
    if np.isnan(value):
        first = int(np.argmax(started[:, col]))
        raise DataError(
            f"{source}: column {label!r} has a missing price (NaN) on {date} after its first "
            f"valid price on {_fmt_date(index[first])}; only leading NaN (before listing) is "
            "allowed"
        )
    kind = "non-finite" if not np.isfinite(value) else "non-positive"
    raise DataError(
        f"{source}: column {label!r} has a {kind} price {value!r} on {date} "
        "(prices must be finite and > 0 from the first valid price on)"
    )


def _to_timestamp(value: Any, name: str, tz: Any, source: str) -> pd.Timestamp | None:
    """Parse a slice bound; ``None`` means open-ended."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{source}: slice {name}={value!r} is not a valid date ({exc})") from exc
    if ts is pd.NaT:
        raise DataError(f"{source}: slice {name}={value!r} is not a valid date")
    if tz is not None and ts.tz is None:
        ts = ts.tz_localize(tz)
    elif tz is None and ts.tz is not None:
        raise DataError(
            f"{source}: slice {name}={value!r} has a time zone but the panel's dates are naive"
        )
    return ts


def _sniff(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(4)


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def _read_csv(
    handle: str | IO[bytes], source: str, compression: Literal["gzip"] | None
) -> pd.DataFrame:
    """Read a CSV price file into a frame with a parsed ``date`` index."""
    try:
        header = pd.read_csv(handle, header=None, nrows=1, compression=compression, dtype=str)
        if not isinstance(handle, str):
            handle.seek(0)
        raw = pd.read_csv(handle, compression=compression)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{source}: price file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{source}: cannot read as CSV ({exc})") from exc
    names = [str(v) for v in header.iloc[0].tolist()]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            # pandas silently renames a repeated header to "X.1": catch it here.
            raise DataError(f"{source}: duplicate column {name!r} in the header")
        seen.add(name)
    return _frame_with_dates(raw, source)


def _frame_with_dates(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Take the ``Date`` column (or first column) of a raw file frame as the index."""
    if raw.shape[1] == 0:
        raise DataError(f"{source}: price file has no columns")
    if isinstance(raw.index, pd.DatetimeIndex):
        frame = raw
        frame.index = _parse_dates(raw.index, source, "index")
    else:
        label = _find_date_column(raw.columns)
        dates = _parse_dates(raw[label], source, f"column {label!r}")
        frame = raw.drop(columns=[label])
        # Keep the file's column name so later messages say "column 'Date'".
        frame.index = dates.rename(label)
    if frame.shape[0] == 0:
        raise DataError(f"{source}: price file has a header but no rows")
    if frame.shape[1] == 0:
        raise DataError(
            f"{source}: no asset columns (expected a 'Date' column followed by one column per "
            "asset)"
        )
    return frame


def _read_parquet(path: str, source: str) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise DataError(
            f"{source}: reading Parquet needs the optional package pyarrow "
            "(pip install pyarrow), or convert the file to CSV"
        ) from exc
    try:
        raw = pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: cannot read as Parquet ({exc})") from exc
    return _frame_with_dates(raw, source)


# --------------------------------------------------------------------------------------------
# the panel
# --------------------------------------------------------------------------------------------


class PricePanel:
    """Validated wide panel of closing prices, shape ``(T, A)`` = (bars, assets).

    Parameters
    ----------
    prices
        Wide frame of prices (quote currency per unit). Dates come from a DatetimeIndex, a
        ``Date`` column (any case) or an index of ISO date strings; every other column is an
        asset. Values are converted to ``float64``.
    source
        Label used in error messages and :attr:`source`: the file path, or ``"<DataFrame>"``.

    Raises
    ------
    portfolio.errors.DataError
        Unparseable, duplicate or unsorted dates; non-string, empty or duplicate column names;
        non-numeric columns; a missing, non-finite or non-positive price after an asset's
        first valid price; an empty panel. The message names ``source``, the column and the
        first offending date.

    Notes
    -----
    The panel is immutable: :attr:`prices` returns a copy-on-write view and :meth:`values`
    a fresh array, so callers cannot change a validated panel (nor the cached embedded data).
    Leading ``NaN`` values mark an asset that is not listed yet.
    """

    __slots__ = ("_hash", "_prices", "_source")

    _prices: pd.DataFrame
    _source: str

    def __init__(self, prices: pd.DataFrame, source: str = FRAME_SOURCE) -> None:
        if not isinstance(prices, pd.DataFrame):
            raise DataError(
                f"{source}: expected a pandas DataFrame of prices, got {type(prices).__name__}"
            )
        if prices.shape[0] == 0 or prices.shape[1] == 0:
            raise DataError(
                f"{source}: empty price panel ({prices.shape[0]} rows x {prices.shape[1]} columns)"
            )
        index, frame, what = _split_dates(prices, source)
        if frame.shape[1] == 0:
            raise DataError(f"{source}: no asset columns besides the dates")
        columns = _check_columns(frame.columns, source)
        _check_index_order(index, source, what)
        values = _numeric_block(frame, index, source)
        _check_values(values, index, columns, source)
        self._prices = pd.DataFrame(values, index=index, columns=pd.Index(columns), copy=False)
        self._source = str(source)
        self._hash: str | None = None  # content_hash, computed once (the panel is immutable)

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, source: str = FRAME_SOURCE) -> PricePanel:
        """Build a panel from a wide DataFrame (see the class docstring for the layout).

        Parameters
        ----------
        frame
            Wide frame of prices, rows = dates, columns = assets.
        source
            Label used in error messages.

        Returns
        -------
        PricePanel
        """
        return cls(frame, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PricePanel:
        """Load a panel from a CSV, gzip CSV or Parquet file.

        The format is detected from the file's first bytes (gzip / ``PAR1`` magic), falling
        back to the suffix (``.parquet``, ``.pq``). CSV files hold a ``Date`` column (or the
        first column) of ISO dates, then one column per asset.

        Parameters
        ----------
        path
            File to read.

        Returns
        -------
        PricePanel
            Its :attr:`source` is ``str(path)``.

        Raises
        ------
        portfolio.errors.DataError
            Missing, empty or unreadable file, Parquet without pyarrow, or invalid contents.
        """
        source = os.fspath(path)
        if not os.path.exists(source):
            raise DataError(f"{source}: price file not found")
        if os.path.isdir(source):
            raise DataError(f"{source}: is a directory, expected a price file")
        try:
            magic = _sniff(source)
        except OSError as exc:
            raise DataError(f"{source}: cannot open price file ({exc})") from exc
        if not magic:
            raise DataError(f"{source}: price file is empty")
        if magic == _PARQUET_MAGIC or source.lower().endswith(_PARQUET_SUFFIXES):
            frame = _read_parquet(source, source)
        else:
            frame = _read_csv(source, source, "gzip" if magic[:2] == _GZIP_MAGIC else None)
        panel = cls(frame, source)
        logger.debug("loaded %s: %d bars x %d assets", source, panel.n_bars, panel.n_assets)
        return panel

    @classmethod
    def from_sources(
        cls,
        sources: Sequence[PricePanel | pd.DataFrame | str | os.PathLike[str]],
        align: Align = "intersection",
        ffill_limit: int = 5,
    ) -> PricePanel:
        """Combine several sources onto one calendar.

        Parameters
        ----------
        sources
            Panels, frames (labelled ``"<DataFrame #i>"`` by position) or file paths. Asset
            names must not repeat across sources.
        align
            ``"intersection"``: keep only dates present in every source. ``"union"``: keep
            every date; a source's prices are forward-filled over at most ``ffill_limit``
            consecutive dates it lacks. Never back-filled: an asset stays ``NaN`` (not
            tradable) before its first valid price.
        ffill_limit
            Maximum number of consecutive bars to forward-fill under ``"union"`` (>= 0).

        Returns
        -------
        PricePanel
            Columns in source order; :attr:`source` joins the source labels with ``" + "``.

        Raises
        ------
        portfolio.errors.DataError
            Invalid source, an asset name in two sources (naming both), an empty result, or,
            under ``"union"``, a gap longer than ``ffill_limit`` after an asset's first valid
            price (naming the source, column and first unfilled date).
        portfolio.errors.ConfigError
            Unknown ``align`` or a negative / non-integer ``ffill_limit``.
        """
        if align not in ("intersection", "union"):
            raise ConfigError(f"align={align!r}: expected 'intersection' or 'union'")
        if isinstance(ffill_limit, bool) or not isinstance(ffill_limit, (int, np.integer)):
            raise ConfigError(f"ffill_limit={ffill_limit!r}: expected a non-negative integer")
        if ffill_limit < 0:
            raise ConfigError(f"ffill_limit={ffill_limit!r}: expected a non-negative integer")
        items: Sequence[PricePanel | pd.DataFrame | str | os.PathLike[str]] = (
            [sources]
            if isinstance(sources, (str, os.PathLike, pd.DataFrame, PricePanel))
            else sources
        )
        panels: list[PricePanel] = []
        for i, src in enumerate(items):
            if isinstance(src, PricePanel):
                panels.append(src)
            elif isinstance(src, pd.DataFrame):
                panels.append(cls(src, f"<DataFrame #{i}>"))
            elif isinstance(src, (str, os.PathLike)):
                panels.append(cls.from_file(src))
            else:
                raise DataError(
                    f"sources[{i}]: expected a PricePanel, DataFrame or path, got "
                    f"{type(src).__name__}"
                )
        if not panels:
            raise DataError("from_sources: no price sources given")

        owner: dict[str, str] = {}
        for panel in panels:
            for asset in panel.assets:
                if asset in owner:
                    raise DataError(
                        f"asset column {asset!r} appears in both {owner[asset]} and "
                        f"{panel.source}; rename or drop one"
                    )
                owner[asset] = panel.source
        tzs = {str(p.index.tz) for p in panels}
        if len(tzs) > 1:
            raise DataError(
                "price sources mix time zones "
                + ", ".join(f"{p.source}: {p.index.tz}" for p in panels)
            )
        label = " + ".join(p.source for p in panels)

        if align == "intersection":
            calendar = panels[0].index
            for panel in panels[1:]:
                calendar = calendar.intersection(panel.index)
            calendar = calendar.sort_values()
            if len(calendar) == 0:
                raise DataError(f"{label}: no date is common to all sources (align='intersection')")
            # Every kept date exists in every source, so this introduces no NaN.
            parts = [p._prices.reindex(calendar) for p in panels]
        else:
            calendar = panels[0].index
            for panel in panels[1:]:
                calendar = calendar.union(panel.index)
            calendar = calendar.sort_values()
            parts = []
            for panel in panels:
                part = panel._prices.reindex(calendar)
                if ffill_limit > 0:
                    # Only dates the source lacks are NaN after listing, so ffill fills only
                    # those; leading NaN (before listing) has nothing before it to copy.
                    part = part.ffill(limit=ffill_limit)
                _check_fill(part, panel.source, ffill_limit)
                parts.append(part)
        combined = pd.concat(parts, axis=1)
        combined.index = _plain_index(calendar)
        return cls(combined, label)

    # ---- views -----------------------------------------------------------------------------

    @property
    def prices(self) -> pd.DataFrame:
        """Prices, ``float64`` ``(T, A)``, DatetimeIndex ``date``; a copy-on-write view."""
        return _view(self._prices)

    @property
    def source(self) -> str:
        """File path or label the panel came from (used in error messages)."""
        return self._source

    @property
    def assets(self) -> list[str]:
        """Asset names in column order."""
        return [str(c) for c in self._prices.columns]

    @property
    def index(self) -> pd.DatetimeIndex:
        """Bar dates (immutable), strictly increasing, name ``date``."""
        index = self._prices.index
        if not isinstance(index, pd.DatetimeIndex):  # pragma: no cover - guaranteed by init
            raise DataError(f"{self._source}: internal error: index is not a DatetimeIndex")
        return index

    @property
    def n_bars(self) -> int:
        """Number of bars ``T``."""
        return int(self._prices.shape[0])

    @property
    def n_assets(self) -> int:
        """Number of assets ``A``."""
        return int(self._prices.shape[1])

    def __len__(self) -> int:
        return self.n_bars

    def __repr__(self) -> str:
        if self.n_bars == 0:  # pragma: no cover - empty panels are rejected
            return f"PricePanel(source={self._source!r}, empty)"
        return (
            f"PricePanel(source={self._source!r}, {self.n_bars} bars x {self.n_assets} assets, "
            f"{_fmt_date(self.index[0])} .. {_fmt_date(self.index[-1])})"
        )

    def values(self) -> np.ndarray:
        """Prices as a fresh ``float64`` C-contiguous array of shape ``(T, A)``.

        ``NaN`` marks bars before an asset's first valid price.
        """
        return np.array(self._prices.to_numpy(dtype=np.float64), dtype=np.float64, order="C")

    def first_valid_positions(self) -> np.ndarray:
        """Row of each asset's first valid price.

        Returns
        -------
        numpy.ndarray
            ``int64`` array of shape ``(A,)``; ``n_bars`` for an asset with no valid price.
        """
        valid = ~np.isnan(self._prices.to_numpy(dtype=np.float64))
        first = np.argmax(valid, axis=0).astype(np.int64)
        first[~valid.any(axis=0)] = self.n_bars
        return first

    def tradable_mask(self) -> np.ndarray:
        """Boolean ``(T, A)`` array: True from each asset's first valid price on.

        Validation forbids gaps after listing, so this equals "has a price at this bar".
        """
        rows = np.arange(self.n_bars, dtype=np.int64)[:, None]
        mask: np.ndarray = rows >= self.first_valid_positions()[None, :]
        return mask

    def returns(self) -> pd.DataFrame:
        """Simple returns ``p_t / p_{t-1} - 1`` (decimal), shape ``(T, A)``.

        The first row is ``NaN``, and so is every bar up to and including an asset's first
        valid price (no previous price to compare with).
        """
        prices = self._prices.to_numpy(dtype=np.float64)
        out = np.full(prices.shape, np.nan, dtype=np.float64)
        out[1:] = prices[1:] / prices[:-1] - 1.0
        return pd.DataFrame(out, index=self.index, columns=self._prices.columns, copy=False)

    def content_hash(self) -> str:
        """SHA-256 hex digest of the dates, asset names and prices (not the source label).

        Stable across processes and file formats: two panels with equal dates, names and
        values (``NaN`` counted equal) hash equal. Used in run manifests.
        """
        if self._hash is not None:
            return self._hash
        digest = hashlib.sha256(_HASH_TAG)
        index = self.index
        digest.update(str(index.tz).encode())
        digest.update(np.ascontiguousarray(index.as_unit("ns").asi8, dtype="<i8").tobytes())
        digest.update(json.dumps(self.assets, ensure_ascii=False).encode("utf-8"))
        values = np.ascontiguousarray(self.values(), dtype="<f8")
        # NaN has many bit patterns: canonicalize so equal panels always hash equal.
        values[np.isnan(values)] = np.nan
        digest.update(values.data)  # the array's own buffer: no bytes copy
        self._hash = digest.hexdigest()
        return self._hash

    # ---- subsets ---------------------------------------------------------------------------

    def slice(self, start: DateLike | None = None, end: DateLike | None = None) -> PricePanel:
        """Bars with ``start <= date <= end`` (both inclusive; ``None`` = open-ended).

        Parameters
        ----------
        start, end
            ISO date strings, Timestamps, datetimes or ``None``. A string is one instant
            (``"2020"`` is 2020-01-01 00:00), not a pandas partial-string period.

        Raises
        ------
        portfolio.errors.DataError
            Unparseable bound (naming the value), ``start > end`` or no bar in the range.
        """
        tz = self.index.tz
        lo = _to_timestamp(start, "start", tz, self._source)
        hi = _to_timestamp(end, "end", tz, self._source)
        if lo is not None and hi is not None and lo > hi:
            raise DataError(
                f"{self._source}: slice start {_fmt_date(lo)} is after end {_fmt_date(hi)}"
            )
        index = self.index
        i0 = 0 if lo is None else int(index.searchsorted(lo, side="left"))
        i1 = self.n_bars if hi is None else int(index.searchsorted(hi, side="right"))
        if i1 <= i0:
            raise DataError(
                f"{self._source}: no bars between start "
                f"{'(none)' if lo is None else _fmt_date(lo)} and end "
                f"{'(none)' if hi is None else _fmt_date(hi)} (panel covers "
                f"{_fmt_date(index[0])} .. {_fmt_date(index[-1])})"
            )
        return PricePanel(self._prices.iloc[i0:i1], self._source)

    def select(self, assets: Sequence[str]) -> PricePanel:
        """Panel restricted to ``assets``, in the given order.

        Raises
        ------
        portfolio.errors.DataError
            Empty selection, a repeated name, or an asset the panel lacks.
        """
        names = [assets] if isinstance(assets, str) else list(assets)
        if not names:
            raise DataError(f"{self._source}: select() needs at least one asset")
        self.require_assets(names, "select")
        if len(set(names)) != len(names):
            dup = next(n for i, n in enumerate(names) if n in names[:i])
            raise DataError(f"{self._source}: select(): asset {dup!r} listed twice")
        return PricePanel(self._prices[names], self._source)

    def require_assets(self, assets: Iterable[str], context: str) -> None:
        """Check that every asset of a strategy universe is in the panel.

        Parameters
        ----------
        assets
            Asset names required, e.g. a strategy's universe.
        context
            Where the names come from, for the message, e.g.
            ``"strategies.momentum_v1.universe"``.

        Raises
        ------
        portfolio.errors.DataError
            Naming ``context``, the missing assets and the panel's source.
        """
        names = [assets] if isinstance(assets, str) else list(assets)
        have = set(self.assets)
        missing = [n for n in names if n not in have]
        if missing:
            listed = ", ".join(repr(n) for n in missing)
            raise DataError(
                f"{context}: asset(s) {listed} not in the price panel {self._source} "
                f"(available: {', '.join(self.assets)})"
            )


def _check_fill(part: pd.DataFrame, source: str, ffill_limit: int) -> None:
    """After union alignment, reject a gap the forward fill could not close."""
    values = part.to_numpy(dtype=np.float64)
    gap = _started(values) & np.isnan(values)
    rows = np.flatnonzero(gap.any(axis=1))
    if not rows.size:
        return
    row = int(rows[0])
    col = int(np.argmax(gap[row]))
    raise DataError(
        f"{source}: column {part.columns[col]!r} has no price on {_fmt_date(part.index[row])} "
        f"after union alignment: the source lacks more than ffill_limit={ffill_limit} "
        "consecutive dates of the combined calendar"
    )


# --------------------------------------------------------------------------------------------
# embedded data
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _embedded_panel(name: str) -> PricePanel:
    """Parse and validate one embedded file once per process (callers get copies)."""
    resource = importlib.resources.files(_DATASETS_PACKAGE).joinpath(name)
    source = f"{_DATASETS_PACKAGE}/{name}"
    try:
        with resource.open("rb") as fh:
            frame = _read_csv(fh, source, "gzip")
    except FileNotFoundError as exc:
        raise DataError(f"{source}: embedded data file missing from the installation") from exc
    return PricePanel(frame, source)


def load_default_panel() -> PricePanel:
    """Embedded daily adjusted closes of 20 S&P 500 stocks, 1990-01-02 .. 2022-12-28.

    Returns
    -------
    PricePanel
        8313 bars x 20 assets (AAPL ... XOM). Data: skfolio (BSD 3-Clause), see
        ``backtest/datasets/LICENSE-skfolio-data.txt``; for tests and examples only.
    """
    # The cached panel is immutable (views and copies only), so sharing it is safe.
    return _embedded_panel(_DEFAULT_PANEL_FILE)


def load_default_index() -> pd.Series:
    """Embedded daily close of the S&P 500 index on the same dates as the default panel.

    Returns
    -------
    pandas.Series
        ``float64`` index points, name ``"SP500"``, DatetimeIndex ``date``; a copy the caller
        may modify freely.
    """
    frame = _embedded_panel(_DEFAULT_INDEX_FILE).prices
    series = frame[_DEFAULT_INDEX_NAME].copy(deep=True)
    series.name = _DEFAULT_INDEX_NAME
    return series


def load_prices(
    path: str | os.PathLike[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> PricePanel:
    """Load a price file (or the embedded default panel when ``path`` is None) and slice it.

    Parameters
    ----------
    path
        CSV, gzip CSV or Parquet file; ``None`` for :func:`load_default_panel`.
    start, end
        Inclusive bounds passed to :meth:`PricePanel.slice`; ``None`` = open-ended.

    Returns
    -------
    PricePanel
    """
    panel = load_default_panel() if path is None else PricePanel.from_file(path)
    if start is None and end is None:
        return panel
    return panel.slice(start, end)
