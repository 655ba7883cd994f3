"""Self-contained HTML report of a run (Jinja templates + matplotlib charts).

:func:`render_report` returns the HTML of one :class:`PortfolioBacktestResult`;
:func:`write_report` writes it atomically with the same numbers as CSV/JSON and the run manifest
in a folder beside it::

    var/backtest/portfolio_<id>_report.html
    var/backtest/portfolio_<id>_report/   metrics.csv, monthly_returns.csv, ..., report.json,
                                          manifest.json

The HTML needs nothing else: inline CSS, charts as base64 PNG ``<img>`` with alt text, real
``<table>`` elements, no script and no network reference. Templates live in ``templates/`` and are
shipped in the wheel as ``backtest/templates`` (read through :mod:`importlib.resources`); Jinja
runs with ``StrictUndefined`` and autoescaping. The same result gives the same bytes (charts
without timestamps, JSON with sorted keys, the manifest holds no wall-clock time).
"""

from __future__ import annotations

import base64
import importlib.resources
import json
import math
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from backtest import charts
from backtest.io import atomic_write_bytes, atomic_write_csv, atomic_write_json
from backtest.metrics import drawdown_series
from backtest.report_data import (
    EVENT_ROWS,
    REPORT_METRIC_COLUMNS,
    STANDALONE_SUM,
    TOP_ASSETS,
    ReportData,
    build_report_data,
)
from backtest.result import RESERVE, PortfolioBacktestResult
from portfolio.errors import PortfolioBacktestError

__all__ = ["default_report_path", "render_report", "write_report"]

TEMPLATE = "portfolio_report.html.j2"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: How each metric column is printed: (header, kind).
_METRIC_FORMAT: dict[str, tuple[str, str]] = {
    "total_return": ("Total return", "pct"),
    "cagr": ("CAGR", "pct"),
    "annual_volatility": ("Volatility (ann.)", "pct"),
    "sharpe": ("Sharpe", "ratio"),
    "sortino": ("Sortino", "ratio"),
    "max_drawdown": ("Max drawdown", "pct"),
    "dd_peak": ("DD peak", "date"),
    "dd_trough": ("DD trough", "date"),
    "dd_recovery": ("DD recovery", "date"),
    "dd_duration_bars": ("DD length (bars)", "int"),
    "calmar": ("Calmar", "ratio"),
    "best_month": ("Best month", "pct"),
    "worst_month": ("Worst month", "pct"),
    "positive_months": ("Positive months", "pct"),
    "var_5": ("VaR 5% (1 bar)", "pct"),
    "turnover": ("Turnover (ann.)", "times"),
    "total_costs": ("Costs", "money"),
    "netting_saved": ("Saved by netting", "money"),
}


def _template_root() -> Traversable:
    """``backtest/templates`` inside an installed wheel, else the repository's ``templates/``."""
    packaged = importlib.resources.files("backtest") / "templates"
    if packaged.is_dir():
        return packaged
    return importlib.resources.files("backtest").joinpath("..", "templates")


def _load(name: str) -> str | None:
    path = _template_root() / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# ------------------------------------------------------------------------------ formatting
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def fmt(value: Any, kind: str) -> str:
    """Print one value; never prints NaN: undefined values become an em dash.

    Parameters
    ----------
    value : float, Timestamp or None
    kind : str
        ``pct`` (decimal -> %), ``ratio``, ``times`` (x), ``money``, ``int``, ``date``.
    """
    if kind == "date":
        if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
            return "—"
        return str(pd.Timestamp(value).date())
    if isinstance(value, (float, np.floating)) and math.isinf(float(value)):
        return "+∞" if value > 0 else "−∞"
    if not _finite(value):
        return "—"
    v = float(value)
    if kind == "pct":
        return f"{v * 100:,.2f}%"
    if kind == "ratio":
        return f"{v:,.2f}"
    if kind == "times":
        return f"{v:,.2f}×"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "int":
        return f"{v:,.0f}"
    return f"{v:,.4g}"


def _heat(v: float, scale: float) -> str:
    """Background colour of a heatmap cell: white to green (gain) or to red (loss)."""
    if not math.isfinite(v) or scale <= 0:
        return "#f4f4f4"
    t = min(abs(v) / scale, 1.0)
    target = (26, 152, 80) if v > 0 else (215, 48, 39)
    rgb = [round(255 + (c - 255) * t * 0.85) for c in target]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class _Table:
    caption: str
    columns: list[str]
    rows: list[dict[str, Any]]  # {"label": str, "cells": [{"text", "style"}]}
    note: str = ""


def _frame_table(
    frame: pd.DataFrame, caption: str, kinds: dict[str, str] | str, label: str = ""
) -> _Table:
    cols = [str(c) for c in frame.columns]
    rows = []
    for idx, r in frame.iterrows():
        cells = []
        for c, v in r.items():
            kind = kinds if isinstance(kinds, str) else kinds.get(str(c), "num")
            cells.append({"text": str(v) if kind == "text" else fmt(v, kind), "style": ""})
        rows.append({"label": fmt(idx, "date") if label == "date" else str(idx), "cells": cells})
    return _Table(caption=caption, columns=cols, rows=rows)


# ------------------------------------------------------------------------------- the charts
def _png(fig: Any) -> str:
    return base64.b64encode(charts.figure_png(fig)).decode("ascii")


def _chart(cid: str, fig: Any, alt: str, caption: str = "") -> dict[str, str]:
    return {"id": cid, "src": "data:image/png;base64," + _png(fig), "alt": alt, "caption": caption}


def _last_posterior_row(mu: pd.DataFrame) -> int | None:
    """Position of the last close with a posterior for some asset (None: never)."""
    has = np.flatnonzero(mu.notna().any(axis=1).to_numpy())
    return int(has[-1]) if has.size else None


def _charts(result: PortfolioBacktestResult, data: ReportData) -> dict[str, list[dict[str, str]]]:
    init = result.initial_allocations
    total = float(init.sum())
    sleeves = result.strategy_equity
    sleeve_ids = [str(c) for c in sleeves.columns]
    solo = result.standalone_equity
    solo_sum = solo.sum(axis=1) if solo.shape[1] > 0 else None
    out: dict[str, list[dict[str, str]]] = {}
    n = len(result.equity)
    book_dd = pd.Series(
        drawdown_series(result.equity, total) if n else np.zeros(0), index=result.equity.index
    )
    sleeve_dd = None
    if result.manifest.get("mode") == "sleeves" and n:
        sleeve_dd = pd.DataFrame(
            {
                s: drawdown_series(sleeves[s], float(init[s]))
                for s in sleeve_ids
                if float(init.get(s, 0.0)) > 0 and bool((sleeves[s] > 0).all())
            },
            index=sleeves.index,
        )
    show_sleeves = sleeves if result.manifest.get("mode") == "sleeves" else sleeves.iloc[:, :0]
    out["equity"] = [
        _chart(
            "equity",
            charts.equity_chart(
                result.equity,
                show_sleeves,
                solo_sum,
                title="Equity: portfolio, sleeves (time-weighted) and standalone strategies"
                if show_sleeves.shape[1]
                else "Equity of the portfolio",
            ),
            "Line chart, log scale: portfolio equity"
            + (
                f", each sleeve's time-weighted value ({', '.join(sleeve_ids)})"
                if show_sleeves.shape[1]
                else ""
            )
            + (" and the sum of the standalone strategies" if solo_sum is not None else "")
            + " over time.",
        ),
        _chart(
            "drawdown",
            charts.drawdown_chart(book_dd, sleeve_dd),
            "Underwater chart: drawdown of the portfolio from its running peak over time"
            + (", with each sleeve's drawdown as a line." if sleeve_dd is not None else "."),
        ),
    ]
    sleeves_mode = result.manifest.get("mode") == "sleeves"
    out["allocation"] = []
    if sleeves_mode:  # one account in black_litterman mode: nothing to stack
        out["allocation"].append(
            _chart(
                "allocation",
                charts.allocation_chart(result.allocations),
                "Stacked area chart: capital held by each account ("
                + ", ".join(str(c) for c in result.allocations.columns)
                + ") over time.",
            )
        )
    out["allocation"].append(
        _chart(
            "weights",
            charts.weights_chart(result.weights, TOP_ASSETS),
            f"Stacked area chart: weight of the book in its top {TOP_ASSETS} assets and all "
            "others over time; short weights stack below zero.",
            "Drawn from averages over buckets of consecutive bars (about 400 points).",
        )
    )
    if result.manifest.get("mode") == "sleeves":
        out["drift"] = [
            _chart(
                "drift",
                charts.drift_chart(
                    result.drift,
                    float(result.manifest.get("rebalance_threshold", 0.05)),
                    str(result.manifest.get("rebalance", {}).get("drift_band", "relative")),
                    data.events,
                ),
                "Line chart: each sleeve's allocation drift from its target with the shaded "
                "threshold band; below it, tick marks of rebalance decisions by reason (signal, "
                "drift, calendar) on the same time axis.",
            )
        ]
    by = "source" if result.strategy_attribution is not None else "strategy"
    out["contrib"] = [
        _chart(
            "contrib_strategy",
            charts.contribution_chart(
                data.contrib_strategy, f"Return contribution by {by} per year"
            ),
            f"Stacked bar chart: each {by}'s contribution to the portfolio's return in each "
            "calendar year, with the year's portfolio return as a dot.",
        ),
        _chart(
            "contrib_asset",
            charts.contribution_chart(
                data.contrib_asset, f"Return contribution by asset per year (top {TOP_ASSETS})"
            ),
            f"Stacked bar chart: contribution of the top {TOP_ASSETS} assets, all other assets "
            "and trading costs to the portfolio's return in each calendar year.",
        ),
    ]
    bl = result.bl_diagnostics
    if bl is not None and result.strategy_attribution is not None:
        mu, pi = bl["mu"], bl["pi"]
        last = _last_posterior_row(mu)
        last = len(mu) - 1 if last is None else last
        net = result.strategy_attribution.T.groupby(level=0, sort=False).sum().T
        out["bl"] = [
            _chart(
                "bl_last",
                charts.posterior_last_chart(pi.iloc[last], mu.iloc[last], mu.index[last]),
                "Grouped bar chart: equilibrium and posterior expected return of each asset at "
                "the last close with a posterior.",
            ),
            _chart(
                "bl_path",
                charts.posterior_path_chart(pi, mu),
                "Line chart with bands: mean and 10-90 percent range over assets of the "
                "equilibrium and the posterior expected returns over time.",
            ),
            _chart(
                "bl_confidence",
                charts.view_confidence_chart(bl["confidence"], bl["clarity"]["clarity"]),
                "Line chart: each strategy's mean view confidence and the regime clarity over "
                "time, both between 0 and 1.",
            ),
            _chart(
                "bl_attribution",
                charts.attribution_chart(net),
                "Stacked area chart: net target weight of the book attributed to the "
                "equilibrium and to each strategy over time.",
            ),
        ]
    return out


# ------------------------------------------------------------------------------- the tables
def _metrics_table(data: ReportData) -> _Table:
    # One column per series, one row per metric: a handful of series fit any page width.
    m = data.metrics
    rows = []
    for c in REPORT_METRIC_COLUMNS:
        header, kind = _METRIC_FORMAT[c]
        cells = [{"text": fmt(m.loc[name, c], kind), "style": ""} for name in m.index]
        rows.append({"label": header, "cells": cells})
    caption = (
        "Metrics of the portfolio, each strategy sleeve (time-weighted) and the sum of the "
        "standalone strategies"
        if len(m) > 1
        else "Metrics of the portfolio"
    )
    return _Table(
        caption=caption,
        columns=[str(c) for c in m.index],
        rows=rows,
        note="— = undefined for this series (for example no drawdown date, or netting that "
        "does not apply to a sleeve); formulas in the appendix.",
    )


def _monthly_table(data: ReportData) -> _Table:
    grid = data.monthly
    months = grid[list(range(1, 13))].to_numpy(dtype=float)
    finite = np.abs(months[np.isfinite(months)])
    scale = float(np.quantile(finite, 0.95)) if finite.size else 0.0
    rows = []
    for year, r in grid.iterrows():
        cells = []
        for k in range(1, 13):
            v = float(r[k])
            cells.append({"text": fmt(v, "pct"), "style": f"background:{_heat(v, scale)}"})
        cells.append({"text": fmt(float(r["year"]), "pct"), "style": "font-weight:bold"})
        rows.append({"label": str(year), "cells": cells})
    return _Table(
        caption="Portfolio monthly returns (compounded within each month; the last column "
        "compounds the year)",
        columns=[*_MONTHS, "Year"],
        rows=rows,
    )


def _events_tables(data: ReportData) -> tuple[list[dict[str, Any]], list[_Table]]:
    ev = data.events
    counts: list[dict[str, Any]] = []
    for reason in ("signal", "drift", "calendar"):
        sel = (
            ev["reasons"].str.contains(reason, regex=False).to_numpy(dtype=bool)
            if len(ev)
            else np.zeros(0, dtype=bool)
        )
        notional = ev["traded_notional"].to_numpy(dtype=float)[sel].sum() if len(ev) else 0.0
        cost = ev["costs"].to_numpy(dtype=float)[sel].sum() if len(ev) else 0.0
        counts.append(
            {
                "reason": reason,
                "n": int(sel.sum()),
                "notional": fmt(float(notional), "money"),
                "costs": fmt(float(cost), "money"),
            }
        )
    kinds = {"fill date": "date", "traded notional": "money", "costs": "money", "trades": "int"}
    shown = ev.set_index("date").rename(
        columns={"fill_date": "fill date", "traded_notional": "traded notional",
                 "n_trades": "trades"}
    )  # fmt: skip
    latest = _frame_table(
        shown.tail(EVENT_ROWS), f"Latest {min(EVENT_ROWS, len(ev))} rebalance decisions",
        {**kinds, "reasons": "text", "accounts": "text"}, label="date",
    )  # fmt: skip
    largest = _frame_table(
        shown.sort_values("traded notional", ascending=False, kind="stable").head(EVENT_ROWS),
        f"Largest {min(EVENT_ROWS, len(ev))} rebalance decisions by traded notional",
        {**kinds, "reasons": "text", "accounts": "text"}, label="date",
    )  # fmt: skip
    return counts, [latest, largest]


def _contrib_table(frame: pd.DataFrame, caption: str) -> _Table:
    t = _frame_table(frame, caption, "pct")
    # Per-year contributions are shares of different bases: they add up within a year, not
    # across years (the sum row is a plain arithmetic total, labelled as such).
    sums = frame.sum()
    t.rows.append(
        {
            "label": "sum of years",
            "cells": [{"text": fmt(float(v), "pct"), "style": "font-weight:bold"} for v in sums],
        }
    )
    return t


def _header(result: PortfolioBacktestResult) -> dict[str, Any]:
    m = result.manifest
    costs = m.get("cost_model", {})
    rb = m.get("rebalance", {})
    return {
        "portfolio_id": m.get("portfolio_id", ""),
        "mode": m.get("mode", ""),
        "start": m.get("start", ""),
        "end": m.get("end", ""),
        "n_bars": m.get("n_bars", len(result.equity)),
        "n_assets": len(m.get("assets", [])),
        "capital": fmt(float(m.get("total_capital", result.initial_allocations.sum())), "money"),
        "final_equity": fmt(float(result.equity.iloc[-1]), "money") if len(result.equity) else "—",
        "costs": ", ".join(f"{k} {v}" for k, v in sorted(costs.items())),
        "rebalance": ", ".join(f"{k} {v}" for k, v in sorted(rb.items())),
        "threshold": m.get("rebalance_threshold", ""),
        "frequency_hours": m.get("rebalance_frequency_hours", ""),
        "lag": m.get("execution_lag", ""),
        "ppy": m.get("periods_per_year", ""),
        "rf": m.get("rf_annual", ""),
        "version": m.get("version", ""),
        "config_hash": str(m.get("config_hash", ""))[:12],
        "data_hash": str(m.get("data_hash", ""))[:12],
        "data_source": m.get("data_source", ""),
        "seed": "none (the run draws no random numbers)" if m.get("seed") is None else m["seed"],
        "libraries": ", ".join(f"{k} {v}" for k, v in sorted(m.get("libraries", {}).items())),
        "allocations": [
            {"id": k, "weight": fmt(float(v), "pct")}
            for k, v in m.get("target_weights", {}).items()
        ],
    }


def _bl_tables(result: PortfolioBacktestResult) -> list[_Table]:
    if result.strategy_attribution is None or result.bl_diagnostics is None:
        return []
    from backtest.bl_mode import contribution_summary

    summary = contribution_summary(result)
    t1 = _frame_table(
        summary,
        "Attribution of the target book by source (weights averaged over closes; contribution = "
        "sum of attributed weight x asset return, before costs)",
        {"avg_net_weight": "pct", "avg_gross_weight": "pct", "return_contribution": "pct",
         "annualized_contribution": "pct"},
    )  # fmt: skip
    mu, pi = result.bl_diagnostics["mu"], result.bl_diagnostics["pi"]
    last = _last_posterior_row(mu)
    if last is None:
        return [t1]
    frame = pd.DataFrame({"equilibrium π": pi.iloc[last], "posterior μ": mu.iloc[last]})
    frame["views' tilt μ − π"] = frame["posterior μ"] - frame["equilibrium π"]
    frame["target weight"] = result.strategy_attribution.iloc[last].T.groupby(level=1).sum()
    t2 = _frame_table(
        frame.dropna(subset=["posterior μ"]),
        f"Expected returns (annualized) and target weights at the last close with a posterior "
        f"({mu.index[last].date()})",
        "pct",
    )
    return [t1, t2]


def _context(result: PortfolioBacktestResult, data: ReportData) -> dict[str, Any]:
    counts, event_tables = _events_tables(data)
    by = "source" if result.strategy_attribution is not None else "strategy"
    return {
        "h": _header(result),
        "notes": data.notes,
        "metrics": _metrics_table(data),
        "charts": _charts(result, data),
        "monthly": _monthly_table(data),
        "event_counts": counts,
        "event_tables": event_tables,
        "n_events": len(data.events),
        "n_trades": len(result.trades),
        "contrib_tables": [
            _contrib_table(data.contrib_strategy, f"Return contribution by {by} per year"),
            _contrib_table(
                data.contrib_asset,
                f"Return contribution by asset per year (top {TOP_ASSETS}, other, costs)",
            ),
        ],
        "bl_tables": _bl_tables(result),
        "formulas": sorted(data.formulas.items()),
        "manifest_json": json.dumps(result.manifest, indent=2, sort_keys=True, default=str),
        "is_bl": result.strategy_attribution is not None,
        "standalone_label": STANDALONE_SUM,
        "reserve": RESERVE,
    }


# ------------------------------------------------------------------------------- public API
def render_report(result: PortfolioBacktestResult, data: ReportData | None = None) -> str:
    """The report's HTML for ``result`` (one self-contained document).

    Raises
    ------
    PortfolioBacktestError
        The result has no bars.
    """
    if len(result.equity) == 0:
        raise PortfolioBacktestError("report: the result has no bars; nothing to report")
    data = build_report_data(result) if data is None else data
    html = _environment().get_template(TEMPLATE).render(**_context(result, data))
    return html


def default_report_path(result: PortfolioBacktestResult, root: str | Path = "var/backtest") -> Path:
    """``var/backtest/portfolio_<id>_report.html`` (the runner's default)."""
    pid = "".join(
        ch if ch.isalnum() or ch in "-_." else "_" for ch in str(result.manifest["portfolio_id"])
    )
    return Path(root) / f"portfolio_{pid}_report.html"


def write_report(result: PortfolioBacktestResult, path: str | Path) -> list[Path]:
    """Write the report to ``path`` and its numbers beside it, each file atomically.

    The numbers go to the folder ``<path without .html>/``: one CSV per table of
    :class:`ReportData`, ``report.json`` (every table plus the notes and formulas) and
    ``manifest.json``.

    Returns
    -------
    list of Path
        The files written, the HTML first.
    """
    target = Path(path)
    data = build_report_data(result)
    html = render_report(result, data)
    folder = target.with_suffix("")
    written = [atomic_write_bytes(target, html.encode("utf-8"))]
    payload: dict[str, Any] = {"notes": data.notes, "formulas": data.formulas}
    for name, table in data.tables().items():
        written.append(atomic_write_csv(folder / f"{name}.csv", table))
        payload[name] = json.loads(table.to_json(orient="split", date_format="iso"))
    written.append(atomic_write_json(folder / "report.json", payload))
    written.append(atomic_write_json(folder / "manifest.json", result.manifest))
    return written
