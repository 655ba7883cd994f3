"""Report charts: plain functions that take data and return a matplotlib ``Figure``.

* Agg only, through the object-oriented API (``Figure`` + ``FigureCanvasAgg``): no pyplot, no
  global figure registry, nothing shown; :func:`figure_png` renders a figure and drops it.
* One style (:data:`STYLE`): DejaVu Sans, the sans-serif font bundled with matplotlib, so the
  output never depends on the fonts a machine happens to have; a fixed colour cycle (Okabe and
  Ito 2008, readable with colour-vision deficiencies).
* Deterministic bytes: PNGs are written without the ``Software`` tag and with fixed DPI, so the
  same data gives the same file.
* Long series are downsampled **for drawing only** (:func:`plot_rows`): every number in the report
  is computed at full resolution elsewhere.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

__all__ = [
    "STYLE",
    "allocation_chart",
    "attribution_chart",
    "contribution_chart",
    "drawdown_chart",
    "drift_chart",
    "equity_chart",
    "figure_png",
    "plot_rows",
    "posterior_last_chart",
    "posterior_path_chart",
    "view_confidence_chart",
    "weights_chart",
]

#: Okabe-Ito palette (black last: it is kept for the book itself).
PALETTE = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
    "#7F3C8D", "#11A579", "#3969AC", "#F2B701",
)  # fmt: skip
BOOK_COLOR = "#000000"
REASON_COLORS = {"signal": "#0072B2", "drift": "#D55E00", "calendar": "#009E73"}
DPI = 100
WIDTH_IN = 10.0
#: Points drawn per series at most; a 30-year daily series (~7,600 bars) is drawn from ~1,500.
MAX_POINTS = 1500

STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "lines.linewidth": 1.2,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "path.simplify": True,
}


@contextmanager
def _style() -> Iterator[None]:
    with mpl.rc_context(STYLE):  # type: ignore[arg-type]
        yield


def _figure(height: float, nrows: int = 1, height_ratios: Sequence[float] | None = None) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if nrows > 1:
        fig.subplots(nrows, 1, sharex=True, gridspec_kw={"height_ratios": height_ratios})
    else:
        fig.add_subplot(1, 1, 1)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` as PNG bytes (fixed DPI, no ``Software`` tag) and release it."""
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    return buf.getvalue()


def plot_rows(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Rows to draw from a long series: first, last and each bucket's extremes.

    The ``n`` rows are cut into ``max_points // 2`` buckets; from each the row of the minimum and
    of the maximum of ``values`` are kept (so a drawdown's trough or a spike is drawn where it
    is), plus the first and the last row.

    Parameters
    ----------
    values : ndarray, shape (n,)
        The series whose shape must survive (e.g. the book's equity); NaN are ignored.
    max_points : int
        Upper bound of the rows returned (about).

    Returns
    -------
    ndarray of int64
        Sorted unique row positions.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    edges = np.linspace(0, n, max(max_points // 2, 1) + 1).astype(np.int64)
    keep = [0, n - 1]
    v = np.where(np.isfinite(values), values, np.nanmedian(values))
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            keep.extend((lo + int(np.argmin(v[lo:hi])), lo + int(np.argmax(v[lo:hi]))))
    return np.unique(np.asarray(keep, dtype=np.int64))


def bucket_means(frame: pd.DataFrame, max_points: int = 400) -> pd.DataFrame:
    """Average ``frame`` over consecutive buckets of rows, for drawing a noisy stacked area.

    Daily weights jump with every signal; drawn bar by bar over decades they are an unreadable
    comb. The mean over buckets of ``ceil(n / max_points)`` bars (a month or so on 30 years of
    daily data), placed at each bucket's last date, shows the composition a reader can follow.
    """
    n = len(frame)
    if n <= max_points:
        return frame
    size = -(-n // max_points)
    groups = np.arange(n) // size
    means = frame.groupby(groups).mean()
    last = np.append(np.flatnonzero(np.diff(groups)), n - 1)
    means.index = frame.index[last]
    return means


def _bucket_last(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Rows for stacked areas: the last row of each bucket (a period-end sample)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.append(np.linspace(0, n - 1, max_points).astype(np.int64), n - 1))


def _money(ax: Axes, axis: str = "y") -> None:
    fmt = FuncFormatter(lambda v, _pos: _short_money(v))
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _short_money(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:,.3g}{suffix}"
    return f"{v:,.3g}"


def _legend_below(ax: Axes, ncol: int = 8) -> None:
    """A legend under the plot area, where it can never hide data (none if nothing is named)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=ncol)


def _finish(
    ax: Axes,
    ylabel: str,
    title: str,
    *,
    percent: bool = False,
    zero: bool = False,
    legend: str | None = "upper left",
    ncol: int = 2,
) -> None:
    """The common last touches: zero line, percent axis, labels, a legend where named."""
    if zero:
        ax.axhline(0.0, color="#444444", linewidth=0.6)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend == "below":
        _legend_below(ax, ncol)
    elif legend is not None and ax.get_legend_handles_labels()[0]:
        options: dict[str, Any] = {"loc": legend, "ncol": ncol}
        ax.legend(**options)


def _no_data(fig: Figure, message: str) -> Figure:
    ax = fig.axes[0]
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------ equity
def equity_chart(
    book: pd.Series,
    sleeves: pd.DataFrame,
    standalone_sum: pd.Series | None = None,
    title: str = "Equity: portfolio, sleeves (time-weighted) and standalone strategies",
) -> Figure:
    """Book equity, each sleeve's time-weighted value and the sum of standalone runs (log y).

    Parameters
    ----------
    book : Series, shape (T,)
        Book equity, currency.
    sleeves : DataFrame, shape (T, S)
        Time-weighted value of each sleeve, currency.
    standalone_sum : Series, shape (T,), optional
        Sum of the strategies run alone, currency.
    """
    with _style():
        fig = _figure(3.8)
        ax = fig.axes[0]
        if len(book) < 2:
            return _no_data(fig, "Not enough data to draw an equity curve (fewer than 2 bars).")
        rows = plot_rows(book.to_numpy(dtype=float))
        idx = book.index[rows]
        for i, col in enumerate(sleeves.columns):
            vals = sleeves[col].to_numpy(dtype=float)[rows]
            ax.plot(idx, np.where(vals > 0, vals, np.nan), color=PALETTE[i % len(PALETTE)],
                    label=f"sleeve {col}", linewidth=1.0)  # fmt: skip
        if standalone_sum is not None:
            ax.plot(idx, standalone_sum.to_numpy(dtype=float)[rows], color="#777777",
                    linestyle="--", label="sum of standalone strategies")  # fmt: skip
        ax.plot(idx, book.to_numpy(dtype=float)[rows], color=BOOK_COLOR, linewidth=1.6,
                label="portfolio")  # fmt: skip
        ax.set_yscale("log")
        _money(ax)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
        _finish(ax, "value (currency, log scale)", title)
    return fig


def drawdown_chart(book_dd: pd.Series, sleeves_dd: pd.DataFrame | None = None) -> Figure:
    """Underwater chart: drawdown of the book (filled) and of each sleeve (lines).

    Parameters
    ----------
    book_dd : Series, shape (T,)
        Decimal drawdown of the book from its running peak (<= 0).
    sleeves_dd : DataFrame, shape (T, S), optional
        Decimal drawdowns of the sleeves.
    """
    with _style():
        fig = _figure(2.8)
        ax = fig.axes[0]
        if len(book_dd) < 2:
            return _no_data(fig, "Not enough data to draw drawdowns (fewer than 2 bars).")
        rows = plot_rows(book_dd.to_numpy(dtype=float))
        idx = book_dd.index[rows]
        if sleeves_dd is not None:
            for i, col in enumerate(sleeves_dd.columns):
                ax.plot(idx, sleeves_dd[col].to_numpy(dtype=float)[rows], linewidth=0.8,
                        color=PALETTE[i % len(PALETTE)], alpha=0.8,
                        label=f"sleeve {col}")  # fmt: skip
        dd = book_dd.to_numpy(dtype=float)[rows]
        ax.fill_between(idx, dd, 0.0, color="#B22222", alpha=0.35, linewidth=0, label="portfolio")
        ax.plot(idx, dd, color="#B22222", linewidth=0.9)
        _finish(
            ax,
            "drawdown from peak",
            "Drawdown (underwater), from the running peak incl. the initial capital",
            percent=True,
            legend="lower left",
            ncol=4,
        )
    return fig


# -------------------------------------------------------------------------------- allocation
def _stack(ax: Axes, frame: pd.DataFrame, rows: np.ndarray, colors: Sequence[str]) -> None:
    """Stack positive parts upward and negative parts downward (shorts stay readable)."""
    idx = frame.index[rows]
    vals = frame.to_numpy(dtype=float)[rows]
    up = np.zeros(len(rows))
    down = np.zeros(len(rows))
    for j, col in enumerate(frame.columns):
        v = np.nan_to_num(vals[:, j])
        pos, neg = np.maximum(v, 0.0), np.minimum(v, 0.0)
        c = colors[j % len(colors)]
        if pos.any():
            ax.fill_between(idx, up, up + pos, color=c, linewidth=0, label=str(col), step="post")
        if neg.any():
            ax.fill_between(idx, down + neg, down, color=c, linewidth=0, step="post",
                            label=None if pos.any() else str(col))  # fmt: skip
        up, down = up + pos, down + neg


def allocation_chart(allocations: pd.DataFrame) -> Figure:
    """Stacked area of the capital held by each account (sleeves and the reserve), currency."""
    with _style():
        fig = _figure(3.4)
        ax = fig.axes[0]
        if len(allocations) < 2:
            return _no_data(fig, "Not enough data to draw allocations (fewer than 2 bars).")
        rows = _bucket_last(len(allocations))
        colors = [
            "#BBBBBB" if c == "unallocated" else PALETTE[i % len(PALETTE)]
            for i, c in enumerate(allocations.columns)
        ]
        _stack(ax, allocations, rows, colors)
        _money(ax)
        _finish(
            ax,
            "capital (currency)",
            "Capital per strategy sleeve (stacked; grey: unallocated reserve)",
            ncol=4,
        )
    return fig


def top_columns(frame: pd.DataFrame, top: int) -> pd.DataFrame:
    """Keep the ``top`` columns by mean absolute value; sum the rest into ``other``."""
    order = frame.abs().mean().sort_values(ascending=False, kind="stable").index
    out = frame[list(order[:top])].copy()
    if len(order) > top:
        out["other"] = frame[list(order[top:])].sum(axis=1)
    return out


def weights_chart(weights: pd.DataFrame, top: int = 8) -> Figure:
    """Stacked area of the book's asset weights: the ``top`` assets and ``other``.

    Long weights stack upward from 0, short weights downward.
    """
    with _style():
        fig = _figure(3.4)
        ax = fig.axes[0]
        if len(weights) < 2 or weights.shape[1] == 0:
            return _no_data(fig, "Not enough data to draw asset weights.")
        shown = bucket_means(top_columns(weights, top))
        colors = [*PALETTE[: shown.shape[1] - 1], "#BBBBBB"] if "other" in shown else PALETTE
        _stack(ax, shown, np.arange(len(shown)), colors)
        _finish(
            ax,
            "weight of book equity",
            f"Asset weights of the book (top {min(top, weights.shape[1])} and other)",
            percent=True,
            zero=True,
            legend="below",
            ncol=8,
        )
    return fig


# ------------------------------------------------------------------------------------ drift
def drift_chart(
    drift: pd.DataFrame,
    threshold: float,
    band: str,
    events: pd.DataFrame,
) -> Figure:
    """Each sleeve's drift from target with the threshold band, and rebalance events by reason.

    Parameters
    ----------
    drift : DataFrame, shape (T, S)
        Drift per sleeve (fraction: relative to target, or absolute weight difference).
    threshold : float
        ``rebalance_threshold``; the band is ``[-threshold, +threshold]``.
    band : str
        ``relative`` or ``absolute`` (axis label only).
    events : DataFrame
        :func:`backtest.report_data.rebalance_events` (``date`` and ``reasons``).
    """
    with _style():
        fig = _figure(4.2, nrows=2, height_ratios=(3.0, 1.0))
        ax, ev_ax = fig.axes
        if len(drift) < 2 or drift.shape[1] == 0:
            ev_ax.set_axis_off()
            return _no_data(fig, "Not enough data to draw allocation drift.")
        first = drift.abs().max(axis=1).to_numpy(dtype=float)
        rows = plot_rows(first)
        idx = drift.index[rows]
        ax.axhspan(-threshold, threshold, color="#cfe8cf", alpha=0.6, linewidth=0,
                   label=f"threshold band ±{threshold:.0%}")  # fmt: skip
        for i, col in enumerate(drift.columns):
            ax.plot(idx, drift[col].to_numpy(dtype=float)[rows], linewidth=0.7, alpha=0.85,
                    color=PALETTE[i % len(PALETTE)], label=str(col))  # fmt: skip
        _finish(
            ax,
            f"drift ({band})",
            "Allocation drift from target, and rebalance decisions by reason",
            percent=True,
            ncol=5,
        )
        reasons = list(REASON_COLORS)
        for k, reason in enumerate(reasons):
            if events.empty:
                dates = pd.DatetimeIndex([])
            else:
                has = events["reasons"].str.contains(reason, regex=False).to_numpy()
                dates = pd.DatetimeIndex(events["date"].to_numpy()[has])
            ev_ax.plot(dates, np.full(len(dates), k), "|", color=REASON_COLORS[reason],
                       markersize=9, markeredgewidth=0.8)  # fmt: skip
        ev_ax.set_yticks(range(len(reasons)), [f"{r}" for r in reasons])
        ev_ax.set_ylim(-0.6, len(reasons) - 0.4)
        ev_ax.grid(axis="y", visible=False)
        ev_ax.set_xlim(drift.index[0], drift.index[-1])
    return fig


# ----------------------------------------------------------------------------- contributions
def contribution_chart(contrib: pd.DataFrame, title: str) -> Figure:
    """Stacked bars of per-year contributions (positive up, negative down), book return as dots.

    Parameters
    ----------
    contrib : DataFrame, shape (years, k + 1)
        Decimal contributions per source and a ``portfolio`` column (their sum).
    title : str
        Chart title.
    """
    with _style():
        fig = _figure(3.6)
        ax = fig.axes[0]
        if contrib.empty:
            return _no_data(fig, "Not enough data for per-year contributions.")
        parts = contrib.drop(columns="portfolio")
        x = np.arange(len(parts))
        up = np.zeros(len(parts))
        down = np.zeros(len(parts))
        for j, col in enumerate(parts.columns):
            v = parts[col].to_numpy(dtype=float)
            pos, neg = np.maximum(v, 0.0), np.minimum(v, 0.0)
            c = "#BBBBBB" if col in ("other", "unattributed") else PALETTE[j % len(PALETTE)]
            if col == "costs":
                c = "#B22222"
            ax.bar(x, pos, bottom=up, color=c, width=0.8, label=str(col))
            ax.bar(x, neg, bottom=down, color=c, width=0.8)
            up, down = up + pos, down + neg
        ax.plot(x, contrib["portfolio"].to_numpy(dtype=float), "o", color=BOOK_COLOR,
                markersize=4, label="portfolio return")  # fmt: skip
        step = max(1, len(x) // 16)
        ax.set_xticks(x[::step], [str(y) for y in parts.index[::step]])
        _finish(ax, "contribution to the year's return", title, percent=True, zero=True,
                legend="below", ncol=8)  # fmt: skip
    return fig


# ---------------------------------------------------------------------------- Black-Litterman
def posterior_last_chart(pi: pd.Series, mu: pd.Series, date: pd.Timestamp) -> Figure:
    """Equilibrium vs posterior expected return per asset at one close (annualized)."""
    with _style():
        fig = _figure(3.4)
        ax = fig.axes[0]
        keep = pi.notna() & mu.notna()
        if not bool(keep.any()):
            return _no_data(fig, "No optimizable asset at the last close.")
        p, m = pi[keep], mu[keep]
        x = np.arange(len(p))
        ax.bar(x - 0.2, p.to_numpy(dtype=float), width=0.4, color=PALETTE[7],
               label="equilibrium π")  # fmt: skip
        ax.bar(x + 0.2, m.to_numpy(dtype=float), width=0.4, color=PALETTE[0],
               label="posterior μ (with views)")  # fmt: skip
        ax.set_xticks(x, [str(a) for a in p.index], rotation=60, ha="right")
        _finish(
            ax,
            "expected return (annualized)",
            f"Equilibrium vs posterior expected returns at the last close ({date.date()})",
            percent=True,
            zero=True,
        )
    return fig


def posterior_path_chart(pi: pd.DataFrame, mu: pd.DataFrame) -> Figure:
    """Cross-sectional mean and 10-90 % range of equilibrium and posterior returns over time."""
    with _style():
        fig = _figure(3.4)
        ax = fig.axes[0]
        ok = mu.notna().any(axis=1).to_numpy()
        if ok.sum() < 2:
            return _no_data(fig, "Not enough closes with a posterior to draw.")
        pi_, mu_ = pi[ok], mu[ok]
        mean_mu = mu_.mean(axis=1).to_numpy(dtype=float)
        rows = plot_rows(mean_mu)
        idx = mu_.index[rows]
        for frame, color, name in (
            (pi_, PALETTE[7], "equilibrium π"),
            (mu_, PALETTE[0], "posterior μ"),
        ):
            vals = frame.to_numpy(dtype=float)[rows]
            lo = np.nanquantile(vals, 0.1, axis=1)
            hi = np.nanquantile(vals, 0.9, axis=1)
            ax.fill_between(idx, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.plot(
                idx, np.nanmean(vals, axis=1), color=color, label=f"{name}: mean, 10-90 % of assets"
            )
        _finish(
            ax,
            "expected return (annualized)",
            "Equilibrium and posterior expected returns over time",
            percent=True,
            zero=True,
        )
    return fig


def view_confidence_chart(confidence: pd.DataFrame, clarity: pd.Series) -> Figure:
    """Each strategy's mean view confidence and the regime clarity over time (both in [0, 1])."""
    with _style():
        fig = _figure(3.2)
        ax = fig.axes[0]
        if len(clarity) < 2:
            return _no_data(fig, "Not enough data to draw view confidence.")
        # Clarity flips between near-certain and 0.5 from day to day: draw every bar faintly
        # and the bucket means boldly so both the flicker and the level are visible.
        rows = plot_rows(clarity.to_numpy(dtype=float))
        ax.plot(clarity.index[rows], clarity.to_numpy(dtype=float)[rows], color="#888888",
                linewidth=0.4, alpha=0.35, label="regime clarity, each close")  # fmt: skip
        smooth = bucket_means(pd.concat([confidence, clarity.rename("__clarity")], axis=1))
        for i, col in enumerate(confidence.columns):
            ax.plot(smooth.index, smooth[col].to_numpy(dtype=float), linewidth=1.1,
                    color=PALETTE[i % len(PALETTE)], label=f"confidence {col}")  # fmt: skip
        ax.plot(smooth.index, smooth["__clarity"].to_numpy(dtype=float), color=BOOK_COLOR,
                linewidth=1.4, label="regime clarity (bucket mean)")  # fmt: skip
        ax.set_ylim(0.0, 1.02)
        _finish(
            ax,
            "confidence / clarity",
            "View confidence per strategy (mean over assets) and regime clarity",
            legend="below",
            ncol=3,
        )
    return fig


def attribution_chart(net: pd.DataFrame) -> Figure:
    """Net book weight attributed to each source over time (stacked; shorts downward)."""
    with _style():
        fig = _figure(3.4)
        ax = fig.axes[0]
        if len(net) < 2:
            return _no_data(fig, "Not enough data to draw the attribution.")
        colors = [PALETTE[7], *PALETTE[: max(net.shape[1] - 1, 0)]]
        shown = bucket_means(net)
        _stack(ax, shown, np.arange(len(shown)), colors)
        _finish(
            ax,
            "net weight of the target book",
            "Strategy attribution of the book: net target weight per source",
            percent=True,
            zero=True,
            legend="below",
            ncol=8,
        )
    return fig
