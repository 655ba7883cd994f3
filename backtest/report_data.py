"""The numbers of the HTML report, computed from a :class:`PortfolioBacktestResult`.

Everything the report prints or draws comes from here, at full resolution (charts may downsample
what they draw, never what is computed), so the same tables are written beside the report as
CSV/JSON and tested on their own.

Contributions (``contributions_by_*``) are exact decompositions of each calendar year's book
return ``R_y = E_end(y) / E_end(y - 1) - 1`` (the initial capital for the first year):

* the book's P&L at bar ``t`` is ``E_t - E_{t-1}`` (no external flows);
* by account (sleeves): ``pnl_{k,t} = C_{k,t} - C_{k,t-1} - F_{k,t}`` where ``C`` is the
  account's capital and ``F`` the capital moved into it (transfers add up to zero over the
  accounts, so the accounts' P&L adds up to the book's);
* by asset: ``pnl_{a,t} = u_{a,t-1} (p_{a,t} - p_{a,t-1})`` with the book's units ``u``, plus one
  ``costs`` column ``-(commission + slippage)_t`` (trades happen at the close, so a fill moves
  value between cash and holdings only by its costs);
* by Black-Litterman source: each asset's price P&L split in proportion to each source's part of
  the target weight that was held over the bar (:func:`backtest.bl_mode.strategy_attribution`),
  the P&L of holdings whose target weight is zero under ``unattributed``, and ``costs``;

then ``contribution_{x,y} = sum_{t in y} pnl_{x,t} / E_end(y - 1)``, so the columns of a year add
up to ``R_y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtest.metrics import (
    EXTRA_FORMULAS,
    METRIC_FORMULAS,
    compute_metrics,
    drawdown_details,
    month_stats,
    monthly_returns,
    simple_returns,
    value_at_risk,
)
from backtest.result import RESERVE, PortfolioBacktestResult

__all__ = [
    "REPORT_METRIC_COLUMNS",
    "ReportData",
    "build_report_data",
    "contributions_by_account",
    "contributions_by_asset",
    "contributions_by_source",
    "rebalance_events",
    "report_metrics",
]

#: Row label of the sum of the standalone strategies in the metrics table.
STANDALONE_SUM = "sum of standalone"
#: Columns of :func:`report_metrics`, in display order.
REPORT_METRIC_COLUMNS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "dd_peak",
    "dd_trough",
    "dd_recovery",
    "dd_duration_bars",
    "calmar",
    "best_month",
    "worst_month",
    "positive_months",
    "var_5",
    "turnover",
    "total_costs",
    "netting_saved",
)
#: Fewer bars than this and the annualized statistics are flagged as not meaningful.
MIN_BARS_FOR_STATS = 20
#: Assets shown by name in the contribution and weight charts; the rest are summed as "other".
TOP_ASSETS = 8
#: Rows of the latest and of the largest rebalance events shown in the HTML.
EVENT_ROWS = 15


@dataclass(frozen=True)
class ReportData:
    """All the report's tables.

    Attributes
    ----------
    metrics : DataFrame
        :func:`report_metrics` (rows: ``portfolio``, each sleeve, ``sum of standalone``).
    monthly : DataFrame
        Portfolio monthly returns, shape (years, 13): months 1..12 and ``year`` (compounded);
        NaN where the month is outside the run.
    contrib_strategy, contrib_asset : DataFrame
        Per-year contributions (rows: years, columns: sources; a ``portfolio`` column holds the
        year's book return, equal to the sum of the other columns).
    events : DataFrame
        :func:`rebalance_events`.
    notes : list of str
        "Not enough data" and similar remarks to print.
    formulas : dict of str
        Every metric's formula.
    """

    metrics: pd.DataFrame
    monthly: pd.DataFrame
    contrib_strategy: pd.DataFrame
    contrib_asset: pd.DataFrame
    events: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    formulas: dict[str, str] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by file stem, as written beside the report."""
        return {
            "metrics": self.metrics,
            "monthly_returns": self.monthly,
            "contributions_by_strategy": self.contrib_strategy,
            "contributions_by_asset": self.contrib_asset,
            "rebalance_events": self.events,
        }


# ------------------------------------------------------------------------------------- metrics
def _curve_metrics(
    equity: pd.Series,
    *,
    initial: float,
    traded: pd.Series | None,
    costs: pd.Series | None,
    capital: pd.Series | None,
    ppy: float,
    rf: float,
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(REPORT_METRIC_COLUMNS, math.nan)
    if len(equity) == 0 or initial <= 0.0 or not bool((equity > 0.0).all()):
        return row  # no defined returns (no bars, or the curve hit zero)
    m = compute_metrics(
        equity, traded_notional=traded, costs=costs, initial_capital=initial, rf_annual=rf,
        periods_per_year=ppy, turnover_capital=capital,
    )  # fmt: skip
    row.update({k: m[k] for k in ("total_return", "cagr", "annual_volatility", "sharpe")})
    row.update({k: m[k] for k in ("sortino", "max_drawdown", "calmar", "turnover")})
    row["total_costs"] = m["total_costs"]
    dd = drawdown_details(equity, initial)
    row["dd_peak"], row["dd_trough"], row["dd_recovery"] = dd["peak"], dd["trough"], dd["recovery"]
    row["dd_duration_bars"] = dd["duration_bars"]
    row.update({k: v for k, v in month_stats(equity, initial).items() if k != "n_months"})
    row["var_5"] = value_at_risk(simple_returns(equity, initial), 0.05)
    return row


def report_metrics(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Metrics of the book, each sleeve and the sum of the standalone strategies.

    The book uses its equity and initial capital; a sleeve its time-weighted value
    (``strategy_equity``: capital moved in or out is not return) with turnover on the capital it
    had at work; ``sum of standalone`` adds up the equity of each strategy run alone with its
    target capital. Formulas: :data:`backtest.metrics.METRIC_FORMULAS` and ``EXTRA_FORMULAS``.
    ``dd_*`` are the peak, trough and recovery dates of the maximum drawdown (``None``: the peak
    is the initial capital, or not recovered yet) and its length in bars.

    Returns
    -------
    DataFrame, shape (n_rows, len(REPORT_METRIC_COLUMNS))
        Object dtype (dates and floats); NaN where a metric is undefined.
    """
    ppy = float(result.manifest.get("periods_per_year", 252))
    rf = float(result.manifest.get("rf_annual", 0.0))
    init = result.initial_allocations
    rows: dict[str, dict[str, Any]] = {}
    total = float(init.sum()) if len(init) else float(result.equity.iloc[0])
    rows["portfolio"] = _curve_metrics(
        result.equity, initial=total, traded=result.traded_notional.sum(axis=1),
        costs=result.costs.sum(axis=1), capital=None, ppy=ppy, rf=rf,
    )  # fmt: skip
    rows["portfolio"]["netting_saved"] = result.total_netting_saved
    # In black_litterman mode the one account is the book itself: no sleeve rows.
    sleeve_ids: list[str] = (
        []
        if result.strategy_attribution is not None
        else [str(c) for c in result.strategy_equity.columns]
    )
    for sid in sleeve_ids:
        rows[str(sid)] = _curve_metrics(
            result.strategy_equity[sid], initial=float(init.get(sid, 0.0)),
            traded=result.traded_notional[sid], costs=result.costs[sid],
            capital=result.allocations[sid], ppy=ppy, rf=rf,
        )  # fmt: skip
    solo = result.standalone_equity
    if solo.shape[1] > 0:
        capital = float(result.manifest.get("total_capital", total))
        weights = result.manifest.get("target_weights", {})
        solo_init = sum(float(weights.get(str(c), 0.0)) * capital for c in solo.columns)
        if solo_init <= 0.0:  # older manifests: the standalone runs start at their first value
            solo_init = float(solo.iloc[0].sum()) if len(solo) else 0.0
        rows[STANDALONE_SUM] = _curve_metrics(
            solo.sum(axis=1), initial=solo_init, traded=result.standalone_traded.sum(axis=1),
            costs=result.standalone_costs.sum(axis=1), capital=None, ppy=ppy, rf=rf,
        )  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(REPORT_METRIC_COLUMNS))


def monthly_table(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Portfolio monthly returns as a year x month grid plus the compounded year (decimals)."""
    cols = [*range(1, 13), "year"]
    if len(result.equity) == 0:
        return pd.DataFrame(columns=cols, dtype=float)
    init = float(result.initial_allocations.sum())
    m = monthly_returns(result.equity, init if init > 0 else None)
    years = sorted({p.year for p in m.index})
    grid = pd.DataFrame(np.nan, index=pd.Index(years, name="year"), columns=cols, dtype=float)
    for period, value in m.items():
        grid.loc[period.year, period.month] = value  # type: ignore[attr-defined]
    grid["year"] = (1.0 + grid[list(range(1, 13))].fillna(0.0)).prod(axis=1) - 1.0
    return grid


# ------------------------------------------------------------------------------- contributions
def _year_base(result: PortfolioBacktestResult) -> tuple[np.ndarray, np.ndarray]:
    """Year of each bar and the book's value at the end of the previous year, per bar."""
    eq = result.equity.to_numpy(dtype=float)
    years = pd.DatetimeIndex(result.equity.index).year.to_numpy()
    init = float(result.initial_allocations.sum()) if len(result.initial_allocations) else eq[0]
    base = np.empty_like(eq)
    prev_end = init
    for y in np.unique(years):
        sel = years == y
        base[sel] = prev_end
        prev_end = eq[np.flatnonzero(sel)[-1]]
    return years, base


def _per_year(pnl: pd.DataFrame, result: PortfolioBacktestResult) -> pd.DataFrame:
    years, base = _year_base(result)
    scaled = pnl.to_numpy(dtype=float) / base[:, None]
    out = pd.DataFrame(scaled, index=years, columns=pnl.columns).groupby(level=0).sum()
    out.index.name = "year"
    eq = result.equity
    ends = eq.groupby(pd.DatetimeIndex(eq.index).year).last().to_numpy()
    starts = np.concatenate(([float(result.initial_allocations.sum())], ends[:-1]))
    out["portfolio"] = ends / starts - 1.0
    return out


def contributions_by_account(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Per-year return contribution of each account (strategy sleeves, reserve); module doc."""
    alloc = result.allocations
    prev = alloc.shift(1)
    prev.iloc[0] = result.initial_allocations.reindex(alloc.columns).to_numpy()
    pnl = alloc - prev - result.flows.reindex(columns=alloc.columns).fillna(0.0)
    if RESERVE in pnl.columns and bool((pnl[RESERVE].abs() < 1e-9).all()):
        pnl = pnl.drop(columns=RESERVE)  # the reserve holds cash only: it never earns
    return _per_year(pnl, result)


def _asset_price_pnl(result: PortfolioBacktestResult) -> pd.DataFrame:
    px = result.prices.to_numpy(dtype=float)
    units = result.positions.to_numpy(dtype=float)
    prev_units = np.vstack([np.zeros((1, units.shape[1])), units[:-1]])
    dp = np.vstack([np.zeros((1, px.shape[1])), np.diff(px, axis=0)])
    # No holding, no P&L: a not-yet-listed asset's NaN price must not leak into the sum.
    pnl = np.where(prev_units != 0.0, prev_units * np.nan_to_num(dp), 0.0)
    return pd.DataFrame(pnl, index=result.prices.index, columns=result.prices.columns)


def contributions_by_asset(result: PortfolioBacktestResult, top: int = TOP_ASSETS) -> pd.DataFrame:
    """Per-year contribution of the ``top`` assets (by absolute total), ``other`` and ``costs``."""
    pnl = _asset_price_pnl(result)
    order = pnl.sum().abs().sort_values(ascending=False, kind="stable").index
    named = list(order[:top])
    frame = pnl[named].copy()
    if len(order) > top:
        frame["other"] = pnl[list(order[top:])].sum(axis=1)
    frame["costs"] = -result.costs.sum(axis=1)
    return _per_year(frame, result)


def contributions_by_source(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Per-year contribution of each Black-Litterman source (equilibrium, each strategy)."""
    attr = result.strategy_attribution
    if attr is None:
        raise ValueError("this result has no strategy attribution (sleeves mode)")
    pnl = _asset_price_pnl(result)
    lag = int(result.manifest.get("execution_lag", 1))
    sources = list(attr.columns.get_level_values(0).unique())
    assets = list(pnl.columns)
    # The target held over bar t was traded at close t - 1 - lag (see contribution_summary).
    held = {s: attr[s][assets].shift(1 + lag).fillna(0.0).to_numpy() for s in sources}
    weight = np.sum([held[s] for s in sources], axis=0)
    has = np.abs(weight) > 1e-12
    price = pnl.to_numpy()
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in sources:
            out[s] = np.where(has, held[s] / weight * price, 0.0).sum(axis=1)
    out["unattributed"] = np.where(has, 0.0, price).sum(axis=1)
    out["costs"] = -result.costs.sum(axis=1).to_numpy()
    return _per_year(pd.DataFrame(out, index=pnl.index), result)


# ------------------------------------------------------------------------------------ events
def rebalance_events(result: PortfolioBacktestResult) -> pd.DataFrame:
    """One row per decision close: reasons, accounts, and what was traded for it.

    Decisions taken at the same close are merged (a sleeve's signal and a portfolio drift
    rebalance decided together fill together); ``traded_notional``, ``costs`` and ``n_trades``
    are those of the fills at the decision's fill close in the accounts the decisions cover
    (every account for a portfolio-level decision). Decisions whose fill falls past the end of
    the data have NaT as fill date and nothing traded.

    Returns
    -------
    DataFrame
        Columns ``date, fill_date, reasons, accounts, traded_notional, costs, n_trades``.
    """
    cols = ["date", "fill_date", "reasons", "accounts", "traded_notional", "costs", "n_trades"]
    rb = result.rebalances
    if rb.empty:
        return pd.DataFrame(columns=cols)
    tr = result.trades
    agg = (
        tr.assign(gross=tr["notional"].abs(), cost=tr["commission"] + tr["slippage"], n=1)
        .groupby(["timestamp", "strategy"], sort=False)[["gross", "cost", "n"]]
        .sum()
    )
    by_fill = dict(zip(agg.index, agg.itertuples(index=False, name=None), strict=True))
    all_accounts = list(result.allocations.columns)
    rb = rb.sort_values("timestamp", kind="stable")
    ts_arr = rb["timestamp"].to_numpy()
    fill_arr = rb["fill_timestamp"].to_numpy()
    whole_arr = (rb["level"] == "portfolio").to_numpy()
    strat_arr = rb["strategy"].to_numpy()
    reason_arr = rb["reason"].to_numpy()
    # Plain-array group boundaries: per-group pandas indexing costs ~1 ms x thousands of events.
    starts = np.flatnonzero(np.concatenate(([True], ts_arr[1:] != ts_arr[:-1])))
    ends = np.append(starts[1:], len(ts_arr))
    rows = []
    for lo, hi in zip(starts, ends, strict=True):
        fill = fill_arr[lo]
        whole = bool(whole_arr[lo:hi].any())
        accounts = all_accounts if whole else sorted(set(strat_arr[lo:hi]))
        notional = costs = 0.0
        n = 0
        if not pd.isna(fill):
            fill_ts = pd.Timestamp(fill)
            for acct in accounts:
                a, c, k = by_fill.get((fill_ts, acct), (0.0, 0.0, 0))
                notional, costs, n = notional + float(a), costs + float(c), n + int(k)
        rows.append(
            {
                "date": pd.Timestamp(ts_arr[lo]),
                "fill_date": pd.NaT if pd.isna(fill) else pd.Timestamp(fill),
                "reasons": ", ".join(sorted(set(reason_arr[lo:hi]))),
                "accounts": "all" if whole else ", ".join(accounts),
                "traded_notional": notional,
                "costs": costs,
                "n_trades": n,
            }
        )
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------- assembly
def build_report_data(result: PortfolioBacktestResult) -> ReportData:
    """Compute every table of the report (full resolution) and the notes to print."""
    notes: list[str] = []
    n = len(result.equity)
    if n < MIN_BARS_FOR_STATS:
        notes.append(
            f"Not enough data: {n} bar{'s' if n != 1 else ''}; annualized figures (CAGR, "
            f"volatility, Sharpe, Sortino, Calmar) need at least {MIN_BARS_FOR_STATS} bars to "
            "mean anything."
        )
    if result.trades.empty:
        notes.append("No trades: no strategy traded in this run.")
    for sid in result.strategy_equity.columns:
        if not bool((result.trades["strategy"] == sid).any()):
            notes.append(f"Strategy {sid} made no trades in this run.")
    metrics = report_metrics(result)
    monthly = monthly_table(result)
    if len(monthly) and int(monthly[list(range(1, 13))].notna().to_numpy().sum()) < 2:
        notes.append("Not enough data for monthly statistics: the run spans a single month.")
    if result.strategy_attribution is not None:
        contrib_strategy = contributions_by_source(result)
    else:
        contrib_strategy = contributions_by_account(result)
    return ReportData(
        metrics=metrics,
        monthly=monthly,
        contrib_strategy=contrib_strategy,
        contrib_asset=contributions_by_asset(result),
        events=rebalance_events(result),
        notes=notes,
        formulas={**METRIC_FORMULAS, **EXTRA_FORMULAS},
    )
