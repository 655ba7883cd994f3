"""`PortfolioBacktestResult`: the kernel's arrays with their dates and names put back.

Every number here is traceable to the pass: ``equity == cash + (positions * prices).sum(axis=1)``
at every bar, for the book and for each sleeve (``allocations``), and the metrics come from
:mod:`backtest.metrics` only.

Definitions
-----------
allocations
    Capital of each account (strategy sleeves plus ``unallocated``, the reserve that holds the
    capital beyond every sleeve's ``max_capital``), currency, end of bar. Transfers between
    sleeves change it.
strategy_equity
    Time-weighted value of each sleeve, starting at its initial capital:
    ``nav_t = nav_{t-1} * (1 + r_t)`` with ``r_t = (capital_t - flow_t - capital_{t-1}) /
    (capital_{t-1} + max(flow_t, 0))``, so capital moved in or out by portfolio rebalancing is
    not counted as performance (and the costs of deploying an inflow are measured against it).
    This is what the metrics rows of each strategy and the comparison with the standalone runs
    use.
weights
    Asset weights of the whole book: ``positions * price / equity``.
drift
    Drift of each sleeve's capital from its target at each close (relative to target, or absolute
    in weight when the band is absolute, see :func:`portfolio.allocation.drift_nb`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.io import atomic_write_csv, atomic_write_json, atomic_write_ndjson
from backtest.kernel import (
    LEVEL_PORTFOLIO,
    REASON_CALENDAR,
    REASON_DRIFT,
    SimulationOutput,
    period_returns_nb,
)
from backtest.metrics import metrics_table
from portfolio.contracts import PortfolioConfig, PortfolioSnapshot

if TYPE_CHECKING:
    from backtest.data import PricePanel
    from backtest.portfolio_engine import EngineSettings

__all__ = ["RESERVE", "PortfolioBacktestResult", "build_result", "time_weighted_nav"]

logger = logging.getLogger(__name__)

#: Name of the cash-only reserve account in ``allocations``.
RESERVE = "unallocated"
_REASONS = {0: "signal", REASON_DRIFT: "drift", REASON_CALENDAR: "calendar"}


def time_weighted_nav(capital: np.ndarray, flows: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Flow-adjusted value path of each account.

    Parameters
    ----------
    capital : ndarray, shape (T, K)
        End-of-bar account values, currency.
    flows : ndarray, shape (T, K)
        Capital moved into each account at each bar (negative = out), currency.
    initial : ndarray, shape (K,)
        Account values before the first bar.

    Returns
    -------
    ndarray, shape (T, K)
        ``nav_t = nav_{t-1} * (1 + r_t)`` from ``nav_{-1} = initial`` with the time-weighted
        bar returns of :func:`backtest.kernel.period_return_nb` (the rule the risk-adjusted
        tilt uses inside the pass).
    """
    returns = period_returns_nb(
        np.ascontiguousarray(capital, dtype=np.float64),
        np.ascontiguousarray(flows, dtype=np.float64),
        np.ascontiguousarray(initial, dtype=np.float64),
    )
    return np.asarray(initial, dtype=np.float64)[None, :] * np.cumprod(1.0 + returns, axis=0)


@dataclass(frozen=True)
class PortfolioBacktestResult:
    """Everything one run produced, as pandas objects indexed by bar timestamp.

    Attributes
    ----------
    equity : Series
        Book equity (currency).
    strategy_equity : DataFrame
        Time-weighted value of each sleeve (currency, starts at its initial capital).
    allocations : DataFrame
        Capital per account incl. ``unallocated`` (currency).
    target_allocations : DataFrame
        Capital targets per account from the allocation rules (currency).
    drift : DataFrame
        Sleeve drift from target (fraction).
    weights : DataFrame
        Asset weights of the whole book.
    positions : DataFrame
        Units per asset of the whole book.
    cash : Series
        Book cash (currency).
    sleeve_cash : DataFrame
        Cash per account (currency).
    trades : DataFrame
        One row per sleeve fill: timestamp, strategy, asset, units (signed), price, notional,
        commission, slippage, netted.
    rebalances : DataFrame
        One row per decision: timestamp (decision close), fill_timestamp (NaT if past the end),
        level (sleeve/portfolio), reason (signal/drift/calendar), strategy.
    costs : DataFrame
        Commission + slippage per bar and account (currency).
    traded_notional : DataFrame
        Gross traded notional per bar and account (currency).
    netting_saved : Series
        Costs saved by netting per bar (currency).
    metrics : DataFrame
        Rows ``portfolio`` and each strategy; columns from :func:`backtest.metrics.metrics_table`.
    standalone_equity : DataFrame
        Each strategy run alone with its target capital (currency).
    comparison : DataFrame
        In-portfolio versus standalone metrics per strategy.
    prices : DataFrame
        The closes the run used.
    manifest : dict
        Versions, hashes, dates, cost model: what is needed to reproduce the run.
    strategy_attribution : DataFrame or None
        ``black_litterman`` mode: per close, each strategy's share of the book's weight.
    flows : DataFrame
        Capital moved into each account at each bar (negative = out; currency). Flows between
        accounts add up to zero at every bar.
    initial_allocations : Series
        Capital of each account before the first bar (currency).
    standalone_traded, standalone_costs : DataFrame
        Gross traded notional and costs per bar of each standalone run (currency).
    bl_diagnostics : dict of DataFrame or None
        ``black_litterman`` mode: ``pi`` and ``mu`` (T, A), the equilibrium and posterior
        expected returns (annualized decimals, NaN where an asset was not optimizable),
        ``confidence`` (T, K), each strategy's mean view confidence over the assets it has a view
        on, and ``clarity`` (T, 1), the regime clarity.
    trade_records : ndarray, shape (n_trades, 9)
        The pass's raw trade records (:data:`portfolio.rebalance_nb.TRADE_FIELDS`).
    """

    equity: pd.Series
    strategy_equity: pd.DataFrame
    allocations: pd.DataFrame
    target_allocations: pd.DataFrame
    drift: pd.DataFrame
    weights: pd.DataFrame
    positions: pd.DataFrame
    cash: pd.Series
    sleeve_cash: pd.DataFrame
    trades: pd.DataFrame
    rebalances: pd.DataFrame
    costs: pd.DataFrame
    traded_notional: pd.DataFrame
    netting_saved: pd.Series
    metrics: pd.DataFrame
    standalone_equity: pd.DataFrame
    comparison: pd.DataFrame
    prices: pd.DataFrame
    manifest: dict[str, Any]
    trade_records: np.ndarray = field(repr=False)
    snapshots_needs_rebalance: pd.Series = field(repr=False)
    strategy_attribution: pd.DataFrame | None = None
    flows: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    initial_allocations: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    bl_diagnostics: dict[str, pd.DataFrame] | None = field(default=None, repr=False)
    standalone_traded: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    standalone_costs: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def total_costs(self) -> float:
        """Commission plus slippage paid over the run, currency."""
        return float(self.costs.to_numpy().sum())

    @property
    def total_netting_saved(self) -> float:
        """Costs saved by netting over the run, currency."""
        return float(self.netting_saved.sum())

    def sleeve_positions(self, account: str) -> pd.DataFrame:
        """Units per asset held by one account (a strategy id or ``unallocated``), end of bar.

        Rebuilt from the account's fills (units only change through fills, at most one per
        bar, asset and account), with the same additions in the same order as the pass, so it
        equals the pass's own holdings exactly.
        """
        names = list(self.allocations.columns)
        if account not in names:
            raise KeyError(f"unknown account {account!r}; have {names}")
        rec = self.trade_records
        mine = rec[rec[:, 1] == names.index(account)]
        delta = np.zeros(self.positions.shape)
        delta[mine[:, 0].astype(np.int64), mine[:, 2].astype(np.int64)] = mine[:, 3]
        return pd.DataFrame(
            np.cumsum(delta, axis=0), index=self.positions.index, columns=self.positions.columns
        )

    # ------------------------------------------------------------------ outputs
    def snapshots(self) -> list[PortfolioSnapshot]:
        """One :class:`PortfolioSnapshot` per bar (capital per strategy, drift, rebalance flag)."""
        ts = pd.DatetimeIndex(self.equity.index).as_unit("ns").asi8
        strat_cols = [c for c in self.allocations.columns if c != RESERVE]
        caps = self.allocations[strat_cols].to_numpy()
        drift = self.drift[strat_cols].to_numpy()
        eq = self.equity.to_numpy()
        need = self.snapshots_needs_rebalance.to_numpy()
        pid = str(self.manifest["portfolio_id"])
        return [
            PortfolioSnapshot(
                portfolio_id=pid,
                timestamp_ns=int(ts[t]),
                total_equity=float(eq[t]),
                strategy_allocations=dict(zip(strat_cols, caps[t].tolist(), strict=True)),
                drift_from_target=dict(zip(strat_cols, drift[t].tolist(), strict=True)),
                needs_rebalance=bool(need[t]),
            )
            for t in range(len(ts))
        ]

    def write_journal(self, directory: str | Path) -> list[Path]:
        """Journal snapshots and trades as NDJSON (``snapshots.ndjson``, ``trades.ndjson``)."""
        d = Path(directory)
        snaps = [s.to_dict() for s in self.snapshots()]
        trades = self.trades.assign(timestamp=self.trades["timestamp"].astype(str))
        rows: list[dict[str, Any]] = [
            {str(k): v for k, v in r.items()} for r in trades.to_dict(orient="records")
        ]
        return [
            atomic_write_ndjson(d / "snapshots.ndjson", snaps),
            atomic_write_ndjson(d / "trades.ndjson", rows),
        ]

    def write_csv(self, directory: str | Path) -> list[Path]:
        """Write every table as CSV plus ``manifest.json`` into ``directory`` (atomically)."""
        d = Path(directory)
        tables: dict[str, pd.DataFrame | pd.Series] = {
            "equity": self.equity.rename("equity"),
            "strategy_equity": self.strategy_equity,
            "allocations": self.allocations,
            "target_allocations": self.target_allocations,
            "drift": self.drift,
            "weights": self.weights,
            "positions": self.positions,
            "cash": self.cash.rename("cash"),
            "trades": self.trades,
            "rebalances": self.rebalances,
            "costs": self.costs,
            "metrics": self.metrics,
            "comparison": self.comparison,
            "standalone_equity": self.standalone_equity,
        }
        if self.strategy_attribution is not None:
            tables["strategy_attribution"] = self.strategy_attribution
        written = [atomic_write_csv(d / f"{name}.csv", t) for name, t in tables.items()]
        written.append(atomic_write_json(d / "manifest.json", self.manifest))
        return written


def _library_versions() -> dict[str, str]:
    import jinja2
    import matplotlib
    import numba
    import scipy
    import yaml

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "jinja2": jinja2.__version__,
        "matplotlib": matplotlib.__version__,
        "pyyaml": yaml.__version__,
    }


def _portfolio_hash(config: PortfolioConfig) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def build_manifest(
    *,
    panel: PricePanel,
    config: PortfolioConfig,
    settings: EngineSettings,
    mode: str,
    config_hash: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run manifest: package and library versions, hashes, date range, cost model, clock."""
    from backtest import __version__

    manifest: dict[str, Any] = {
        "package": "portfolio-backtest",
        "version": __version__,
        "mode": mode,
        "portfolio_id": config.portfolio_id,
        "total_capital": float(config.total_capital),
        "rebalance_threshold": float(config.rebalance_threshold),
        "rebalance_frequency_hours": float(config.rebalance_frequency_hours),
        "target_weights": {a.strategy_id: float(a.target_weight) for a in config.allocations},
        "config_hash": config_hash or _portfolio_hash(config),
        "data_source": panel.source,
        "data_hash": panel.content_hash(),
        "start": str(panel.index[0].date()),
        "end": str(panel.index[-1].date()),
        "n_bars": panel.n_bars,
        "assets": panel.assets,
        "cost_model": settings.costs.to_dict(),
        "execution_lag": settings.execution_lag,
        "rebalance": settings.rebalance.to_dict(),
        "rf_annual": settings.rf_annual,
        "periods_per_year": settings.periods_per_year,
        "seed": None,
        "libraries": _library_versions(),
    }
    if extra:
        manifest.update(extra)
    return manifest


def build_result(
    out: SimulationOutput,
    *,
    panel: PricePanel,
    config: PortfolioConfig,
    settings: EngineSettings,
    standalone: Mapping[str, SimulationOutput],
    mode: str,
    config_hash: str | None,
    account_names: list[str] | None = None,
    initial_accounts: np.ndarray | None = None,
    strategy_attribution: pd.DataFrame | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    bl_diagnostics: dict[str, pd.DataFrame] | None = None,
) -> PortfolioBacktestResult:
    """Wrap the kernel output into a :class:`PortfolioBacktestResult` with metrics.

    Parameters
    ----------
    out : SimulationOutput
        The main pass.
    panel, config, settings :
        What the pass ran on.
    standalone : mapping of strategy id -> SimulationOutput
        Each strategy run alone with its target capital (empty in black_litterman mode).
    mode : str
        ``sleeves`` or ``black_litterman`` (manifest only).
    config_hash : str or None
        Hash of the YAML configuration when the run came from one.
    account_names : list of str, optional
        Names of the accounts in ``out`` (default: strategy ids plus ``unallocated``).
    initial_accounts : ndarray, optional
        Capital of each account before the first bar (default: the allocation rules' split).
    strategy_attribution, manifest_extra, bl_diagnostics :
        Passed through (black_litterman mode).
    """
    from portfolio.allocation import allocate_capital

    index = panel.index
    assets = panel.assets
    sids = list(config.strategy_ids) if account_names is None else account_names[:-1]
    names = [*sids, RESERVE] if account_names is None else list(account_names)
    if initial_accounts is None:
        caps, unalloc = allocate_capital(
            float(config.total_capital),
            np.array([a.target_weight for a in config.allocations]),
            np.array([a.min_capital for a in config.allocations]),
            np.array([a.max_capital for a in config.allocations]),
        )
        initial_accounts = np.append(caps, unalloc)

    prices = panel.prices
    equity = pd.Series(out.equity.sum(axis=1), index=index, name="equity")
    allocations = pd.DataFrame(out.equity, index=index, columns=names)
    nav = time_weighted_nav(out.equity[:, :-1], out.flows[:, :-1], initial_accounts[:-1])
    strategy_equity = pd.DataFrame(nav, index=index, columns=sids)
    # The (T, A) frames are the largest objects of a run: build them in place and hand the
    # arrays to pandas without a copy (pandas 3 copies by default).
    positions = pd.DataFrame(out.units, index=index, columns=assets, copy=False)
    w = panel.values()  # a fresh array, turned into the weights in place
    np.nan_to_num(w, copy=False, nan=0.0)
    w *= out.units
    book = out.equity.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w /= np.where(book != 0.0, book, np.inf)[:, None]  # a zero book has zero weights
    weights = pd.DataFrame(w, index=index, columns=assets, copy=False)
    cash = pd.Series(out.cash.sum(axis=1), index=index, name="cash")
    sleeve_cash = pd.DataFrame(out.cash, index=index, columns=names)
    cost_arr = out.commission + out.slippage
    costs = pd.DataFrame(cost_arr, index=index, columns=names)
    traded = pd.DataFrame(out.traded, index=index, columns=names)
    drift = pd.DataFrame(out.drift, index=index, columns=sids)
    target_alloc = pd.DataFrame(out.target_capital, index=index, columns=names)

    tr = out.trades
    bars = tr[:, 0].astype(np.int64)
    trades = pd.DataFrame(
        {
            "timestamp": index[bars],
            "strategy": np.asarray(names, dtype=object)[tr[:, 1].astype(np.int64)],
            "asset": np.asarray(assets, dtype=object)[tr[:, 2].astype(np.int64)],
            "units": tr[:, 3],
            "price": tr[:, 4],
            "notional": tr[:, 5],
            "commission": tr[:, 6],
            "slippage": tr[:, 7],
            "netted": tr[:, 8] > 0.5,
        }
    )
    ev = out.events
    fill = ev[:, 1]
    filled = fill < len(index)
    fill_pos = np.minimum(fill, len(index) - 1)
    # NaT where the fill bar would be past the end of the data (order never filled).
    fill_ts = pd.Series(index[fill_pos]).where(pd.Series(filled)).array
    level = np.where(ev[:, 2] == LEVEL_PORTFOLIO, "portfolio", "sleeve")
    sleeve_idx = ev[:, 4]
    strat_col = np.where(
        sleeve_idx >= 0,
        np.asarray(names, dtype=object)[np.maximum(sleeve_idx, 0)],
        "",
    )
    rebalances = pd.DataFrame(
        {
            "timestamp": index[ev[:, 0]],
            "fill_timestamp": fill_ts,
            "level": level,
            "reason": [_REASONS[int(r)] for r in ev[:, 3]],
            "strategy": strat_col,
        }
    )
    netting_saved = pd.Series(out.netting_saved, index=index, name="netting_saved")

    ppy = settings.periods_per_year
    rf = settings.rf_annual
    eq_frame = pd.concat([equity.rename("portfolio"), strategy_equity], axis=1)
    traded_frame = pd.concat([traded.sum(axis=1).rename("portfolio"), traded[sids]], axis=1)
    cost_frame = pd.concat([costs.sum(axis=1).rename("portfolio"), costs[sids]], axis=1)
    cap_frame = pd.concat([equity.rename("portfolio"), allocations[sids]], axis=1)
    init = {"portfolio": float(config.total_capital)}
    init.update({s: float(initial_accounts[i]) for i, s in enumerate(sids)})
    # A sleeve that never had capital (target weight 0) or whose value hit zero has no
    # defined returns: its row is NaN rather than a crash of the whole table.
    live = [c for c in eq_frame.columns if init[c] > 0.0 and bool((eq_frame[c] > 0.0).all())]
    for c in eq_frame.columns:
        if c not in live:
            logger.warning("no metrics for %r: its capital is zero at some bar", c)
    metrics = metrics_table(
        eq_frame[live],
        traded_notional=traded_frame[live],
        costs=cost_frame[live],
        initial_capital={c: init[c] for c in live},
        rf_annual=rf,
        periods_per_year=ppy,
        # Turnover is traded notional over the capital actually at work (the time-weighted
        # NAV of a capped sleeve can be orders of magnitude larger than its capital).
        turnover_capital=cap_frame[live],
    ).reindex(eq_frame.columns)

    standalone_equity = pd.DataFrame(
        {sid: o.equity.sum(axis=1) for sid, o in standalone.items()}, index=index, dtype=float
    )
    standalone_traded = pd.DataFrame(
        {sid: o.traded.sum(axis=1) for sid, o in standalone.items()}, index=index, dtype=float
    )
    standalone_costs = pd.DataFrame(
        {sid: (o.commission + o.slippage).sum(axis=1) for sid, o in standalone.items()},
        index=index,
        dtype=float,
    )
    if mode == "sleeves" and standalone:
        solo_live = [c for c in standalone if bool((standalone_equity[c] > 0.0).all())]
        solo_metrics = metrics_table(
            standalone_equity[solo_live],
            traded_notional=standalone_traded[solo_live],
            costs=standalone_costs[solo_live],
            initial_capital={
                a.strategy_id: a.target_weight * config.total_capital
                for a in config.allocations
                if a.strategy_id in solo_live
            },
            rf_annual=rf,
            periods_per_year=ppy,
        ).reindex(sids)
        keys = ["total_return", "cagr", "sharpe", "max_drawdown", "total_costs"]
        comparison = pd.concat(
            [
                metrics.loc[sids, keys].add_prefix("in_portfolio_"),
                solo_metrics[keys].add_prefix("standalone_"),
            ],
            axis=1,
        )
    else:
        comparison = pd.DataFrame()

    # needs_rebalance per bar, as a live snapshot would say it: drift beyond the band.
    need = (np.abs(out.drift) > config.rebalance_threshold).any(axis=1)
    manifest = build_manifest(
        panel=panel, config=config, settings=settings, mode=mode, config_hash=config_hash,
        extra=manifest_extra,
    )  # fmt: skip
    return PortfolioBacktestResult(
        equity=equity,
        strategy_equity=strategy_equity,
        allocations=allocations,
        target_allocations=target_alloc,
        drift=drift,
        weights=weights,
        positions=positions,
        cash=cash,
        sleeve_cash=sleeve_cash,
        trades=trades,
        rebalances=rebalances,
        costs=costs,
        traded_notional=traded,
        netting_saved=netting_saved,
        metrics=metrics,
        standalone_equity=standalone_equity,
        comparison=comparison,
        prices=prices,
        manifest=manifest,
        trade_records=out.trades,
        snapshots_needs_rebalance=pd.Series(need, index=index),
        strategy_attribution=strategy_attribution,
        flows=pd.DataFrame(out.flows, index=index, columns=names),
        initial_allocations=pd.Series(np.asarray(initial_accounts, dtype=float), index=names),
        bl_diagnostics=bl_diagnostics,
        standalone_traded=standalone_traded,
        standalone_costs=standalone_costs,
    )
