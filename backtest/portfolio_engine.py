"""`PortfolioBacktestEngine`: decide from data, then one jitted accounting pass.

Flow of :meth:`PortfolioBacktestEngine.run`:

1. every strategy computes its target-weight rows for the whole panel (vectorized, causal);
2. calendar and drift-check masks are built from the bar timestamps;
3. :func:`backtest.kernel.simulate_nb` runs the single pass over bars;
4. the arrays are wrapped into pandas objects (:class:`backtest.result.PortfolioBacktestResult`),
   metrics are computed, each strategy is also run alone with its target capital for comparison,
   and, with a ``journal_dir``, snapshots and trades are journaled as NDJSON.

In ``black_litterman`` mode step 1 is replaced by :mod:`backtest.bl_mode`: views, a causal
covariance, regime clarity, the Black-Litterman posterior and the optimizer give one book-level
target-weight path, which the same pass executes as a single account.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from backtest.calendar import calendar_mask, drift_check_mask
from backtest.data import PricePanel, load_default_panel, load_prices
from backtest.kernel import SimulationOutput, simulate_nb
from backtest.result import PortfolioBacktestResult, build_result
from backtest.strategies import Strategy, create_strategy
from portfolio.config import (
    BacktestConfig,
    BLSettings,
    OptimizerSettings,
    RebalanceSettings,
    RegimeSettings,
    RiskAdjustedSettings,
    SizingSettings,
)
from portfolio.contracts import CostModel, PortfolioConfig, StrategyAllocation
from portfolio.errors import ConfigError, PortfolioBacktestError

__all__ = ["EngineSettings", "PortfolioBacktestEngine"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of one run that are not part of the portfolio contract."""

    costs: CostModel
    rebalance: RebalanceSettings
    execution_lag: int
    risk_adjusted: RiskAdjustedSettings
    rf_annual: float = 0.0
    periods_per_year: int = 252


def _as_strategy_map(
    strategies: Mapping[str, Strategy] | Sequence[Strategy], config: PortfolioConfig
) -> dict[str, Strategy]:
    if isinstance(strategies, Mapping):
        out = dict(strategies)
    else:
        out = {}
        for strat in strategies:
            sid = getattr(strat, "strategy_id", None)
            if not isinstance(sid, str):
                raise ConfigError(f"strategies: {strat!r} has no string 'strategy_id'")
            if sid in out:
                raise ConfigError(f"strategies: duplicate strategy_id {sid!r}")
            out[sid] = strat
    missing = [s for s in config.strategy_ids if s not in out]
    if missing:
        raise ConfigError(
            f"strategies: no strategy given for allocation(s) {missing}; have {sorted(out)}"
        )
    extra = [s for s in out if s not in config.strategy_ids]
    if extra:
        raise ConfigError(
            f"strategies: {extra} have no allocation in portfolio {config.portfolio_id!r}"
        )
    return {sid: out[sid] for sid in config.strategy_ids}


def weights_to_arrays(
    frame: pd.DataFrame, prices: pd.DataFrame, strategy_id: str, *, allow_short: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one strategy's target-weight frame and turn it into kernel arrays.

    Parameters
    ----------
    frame : DataFrame, shape (T, A)
        Output of ``Strategy.target_weights``; rows all finite (rebalance) or all NaN (hold).
    prices : DataFrame, shape (T, A)
        The panel the strategy was given (index and columns must match exactly).
    strategy_id : str
        For error messages.
    allow_short : bool
        Accept negative weights (short sales); the engine allows them only with
        ``rebalance.max_leverage > 1``, since a short without margin would overdraw nothing but
        could take a sleeve's equity below zero.

    Returns
    -------
    weights : ndarray, shape (T, A)
        Rows with NaN replaced by 0 (ignored by the kernel where ``has_signal`` is False).
    has_signal : ndarray of bool, shape (T,)
    """
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"strategies.{strategy_id}: target_weights returned {type(frame).__name__}, "
            "expected a DataFrame"
        )
    if not frame.index.equals(prices.index) or list(frame.columns) != list(prices.columns):
        raise ConfigError(
            f"strategies.{strategy_id}: target_weights must return the price panel's index and "
            "columns unchanged"
        )
    w = frame.to_numpy(dtype=np.float64, copy=True)
    if np.isinf(w).any():
        t, a = np.argwhere(np.isinf(w))[0]
        raise ConfigError(
            f"strategies.{strategy_id}: infinite target weight for {prices.columns[a]} at "
            f"{prices.index[t].date()}"
        )
    finite = np.isfinite(w)
    has = finite.all(axis=1)
    partial = finite.any(axis=1) & ~has
    if partial.any():
        t = int(np.argmax(partial))
        raise ConfigError(
            f"strategies.{strategy_id}: target row at {prices.index[t].date()} mixes NaN and "
            "numbers; a row must be all weights (rebalance) or all NaN (hold)"
        )
    if not allow_short and (w[has] < 0.0).any():
        t, a = np.argwhere((w < 0.0) & has[:, None])[0]
        raise ConfigError(
            f"strategies.{strategy_id}: negative target weight {float(w[t, a])} for "
            f"{prices.columns[a]} at {prices.index[t].date()}; short sleeves need "
            "rebalance.max_leverage > 1"
        )
    w[~has] = 0.0
    return w, has


class PortfolioBacktestEngine:
    """Run several strategies over one aligned price panel.

    Parameters
    ----------
    portfolio_config : PortfolioConfig
        Capital, allocations, drift threshold and drift-check frequency.
    strategies : mapping of id -> Strategy, or sequence of Strategy
        One strategy per allocation (matched by ``strategy_id``).
    journal_dir : path, optional
        When given, ``snapshots.ndjson`` and ``trades.ndjson`` are written there atomically.
    prices : PricePanel or DataFrame, optional
        Closes; defaults to the embedded 20-stock S&P 500 panel (1990-2022).
    costs : CostModel, optional
        Commission and slippage; defaults to zero costs.
    execution_lag : int
        Bars between the decision close and the fill close (default 1; 0 fills at the decision
        close, which assumes the order could be sized and executed at that same close).
    rebalance : RebalanceSettings, optional
        Drift band, calendar, order filters, netting, leverage; defaults as in the YAML.
    risk_adjusted : RiskAdjustedSettings, optional
        Tilt sleeve targets by trailing sleeve Sharpe/drawdown (off by default).
    mode : {"sleeves", "black_litterman"}
        How strategies are combined.
    black_litterman, optimizer, sizing, regime : settings, optional
        Used in ``black_litterman`` mode.
    rf_annual : float
        Annual risk-free rate (decimal) used by Sharpe and Sortino.
    periods_per_year : int
        Bars per year for annualization (252 for daily bars).
    show_progress : bool
        Show a tqdm progress bar (the CLI turns it on when stderr is a terminal).
    standalone : bool
        Also run each strategy alone with its target capital (``standalone_equity`` and the
        ``comparison`` table; default True). False skips those passes when only the book
        matters (they are the larger part of the accounting time with few sleeves).
    """

    def __init__(
        self,
        portfolio_config: PortfolioConfig,
        strategies: Mapping[str, Strategy] | Sequence[Strategy],
        journal_dir: str | Path | None = None,
        *,
        prices: PricePanel | pd.DataFrame | None = None,
        costs: CostModel | None = None,
        execution_lag: int = 1,
        rebalance: RebalanceSettings | None = None,
        risk_adjusted: RiskAdjustedSettings | None = None,
        mode: Literal["sleeves", "black_litterman"] = "sleeves",
        black_litterman: BLSettings | None = None,
        optimizer: OptimizerSettings | None = None,
        sizing: SizingSettings | None = None,
        regime: RegimeSettings | None = None,
        market_series: pd.Series | None = None,
        clarity: pd.Series | None = None,
        rf_annual: float = 0.0,
        periods_per_year: int = 252,
        show_progress: bool = False,
        config_hash: str | None = None,
        standalone: bool = True,
    ) -> None:
        if not isinstance(portfolio_config, PortfolioConfig):
            raise ConfigError(
                f"portfolio_config: expected PortfolioConfig, got {type(portfolio_config).__name__}"
            )
        if isinstance(execution_lag, bool) or not isinstance(execution_lag, int | np.integer):
            raise ConfigError(f"execution.lag: must be an integer >= 0, got {execution_lag!r}")
        if execution_lag < 0:
            raise ConfigError(f"execution.lag: must be an integer >= 0, got {execution_lag!r}")
        if mode not in ("sleeves", "black_litterman"):
            raise ConfigError(f"mode: must be 'sleeves' or 'black_litterman', got {mode!r}")
        self.config = portfolio_config
        self.strategies = _as_strategy_map(strategies, portfolio_config)
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        if prices is None:
            panel = load_default_panel()
        elif isinstance(prices, PricePanel):
            panel = prices
        elif isinstance(prices, pd.DataFrame):
            panel = PricePanel.from_frame(prices)
        else:
            raise ConfigError(
                f"prices: expected a PricePanel or DataFrame, got {type(prices).__name__}"
            )
        self.panel = panel
        for sid, strat in self.strategies.items():
            universe = getattr(strat, "universe", None)
            if universe:
                panel.require_assets(universe, f"strategies.{sid}.universe")
        self.settings = EngineSettings(
            costs=costs if costs is not None else CostModel(),
            rebalance=rebalance if rebalance is not None else RebalanceSettings(),
            execution_lag=int(execution_lag),
            risk_adjusted=risk_adjusted if risk_adjusted is not None else RiskAdjustedSettings(),
            rf_annual=float(rf_annual),
            periods_per_year=int(periods_per_year),
        )
        self.mode = mode
        self.bl_settings = black_litterman if black_litterman is not None else BLSettings()
        self.optimizer_settings = optimizer if optimizer is not None else OptimizerSettings()
        self.sizing_settings = sizing if sizing is not None else SizingSettings()
        self.regime_settings = regime if regime is not None else RegimeSettings()
        self.market_series = market_series
        self.clarity = clarity
        self.show_progress = show_progress
        self.config_hash = config_hash
        self.standalone = bool(standalone)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(
        cls,
        config: BacktestConfig,
        *,
        prices: PricePanel | pd.DataFrame | str | Path | None = None,
        start: Any = None,
        end: Any = None,
        journal_dir: str | Path | None = None,
        show_progress: bool = False,
    ) -> PortfolioBacktestEngine:
        """Build an engine from a loaded YAML configuration.

        ``prices``/``start``/``end`` override the config's ``data`` section (CLI options).
        """
        data = config.data
        if prices is None:
            src = data.prices
            if src is None:
                panel = load_default_panel()
            else:
                align = cast(Literal["intersection", "union"], data.align)
                panel = PricePanel.from_sources([src], align=align, ffill_limit=data.ffill_limit)
        elif isinstance(prices, PricePanel):
            panel = prices
        elif isinstance(prices, pd.DataFrame):
            panel = PricePanel.from_frame(prices)
        else:
            panel = load_prices(prices)
        start = start if start is not None else data.start
        end = end if end is not None else data.end
        if start is not None or end is not None:
            panel = panel.slice(start, end)
        try:
            strategies = {
                sid: create_strategy(sid, spec.kind, spec.params, spec.universe)
                for sid, spec in config.strategies.items()
            }
            for sid, strat in strategies.items():
                if strat.universe:
                    panel.require_assets(strat.universe, f"strategies.{sid}.universe")
        except PortfolioBacktestError as exc:
            # Name the YAML file, like every other configuration error.
            raise type(exc)(f"{config.source}: {exc}") from None
        return cls(
            config.portfolio,
            strategies,
            journal_dir,
            prices=panel,
            costs=config.costs,
            execution_lag=config.execution.lag,
            rebalance=config.rebalance,
            risk_adjusted=config.risk_adjusted,
            mode=config.mode,  # type: ignore[arg-type]
            black_litterman=config.black_litterman,
            optimizer=config.optimizer,
            sizing=config.sizing,
            regime=config.regime,
            rf_annual=config.metrics.rf_annual,
            periods_per_year=config.metrics.periods_per_year,
            show_progress=show_progress,
            config_hash=config.config_hash(),
        )

    # ------------------------------------------------------------------ running
    def _progress(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.show_progress, leave=False)

    def strategy_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Target-weight arrays of every strategy: ``(weights (S, T, A), has_signal (S, T))``."""
        prices = self.panel.prices
        n_s = len(self.strategies)
        w = np.zeros((n_s, self.panel.n_bars, self.panel.n_assets))
        has = np.zeros((n_s, self.panel.n_bars), dtype=bool)
        for i, (sid, strat) in enumerate(self.strategies.items()):
            frame = strat.target_weights(prices)
            w[i], has[i] = weights_to_arrays(
                frame, prices, sid, allow_short=self.settings.rebalance.max_leverage > 1.0
            )
        return w, has

    def _simulate(
        self,
        weights: np.ndarray,
        has_signal: np.ndarray,
        allocations: Iterable[StrategyAllocation],
        initial_capital: float,
        *,
        portfolio_rebalancing: bool,
        max_leverage: float | None = None,
    ) -> SimulationOutput:
        allocs = list(allocations)
        rb = self.settings.rebalance
        index = self.panel.index
        n_t = self.panel.n_bars
        if portfolio_rebalancing:
            cal = calendar_mask(index, rb.calendar, rb.every_n_bars, rb.dates)
            chk = drift_check_mask(index, self.config.rebalance_frequency_hours)
        else:
            cal = np.zeros(n_t, dtype=bool)
            chk = np.zeros(n_t, dtype=bool)
        ra = self.settings.risk_adjusted
        return simulate_nb(
            np.ascontiguousarray(self.panel.values()),
            np.ascontiguousarray(weights),
            np.ascontiguousarray(has_signal),
            np.array([a.target_weight for a in allocs], dtype=np.float64),
            np.array([a.min_capital for a in allocs], dtype=np.float64),
            np.array([a.max_capital for a in allocs], dtype=np.float64),
            np.array([a.risk_multiplier for a in allocs], dtype=np.float64),
            float(initial_capital),
            chk,
            cal,
            float(self.config.rebalance_threshold),
            rb.drift_band == "relative",
            self.settings.costs.as_array(),
            float(rb.min_trade_value),
            float(rb.lot_size),
            float(rb.max_leverage if max_leverage is None else max_leverage),
            bool(rb.netting),
            int(self.settings.execution_lag),
            bool(portfolio_rebalancing),
            bool(ra.enabled and portfolio_rebalancing),
            int(ra.lookback_period_days),
            float(ra.adjustment_sensitivity),
            False,  # per-account units are rebuilt from the trades when asked
        )

    def run(self) -> PortfolioBacktestResult:
        """Run the backtest and return the result (pandas objects, metrics, comparison)."""
        if self.mode == "black_litterman":
            from backtest.bl_mode import run_black_litterman

            result = run_black_litterman(self)
            if self.journal_dir is not None:
                result.write_journal(self.journal_dir)
            return result
        with self._progress(3 + len(self.strategies), "backtest") as bar:
            weights, has = self.strategy_targets()
            bar.update(1)
            standalone: dict[str, SimulationOutput] = {}
            for i, alloc in enumerate(self.config.allocations):
                if alloc.target_weight <= 0.0 or not self.standalone:
                    bar.update(1)
                    continue  # no capital of its own (or not asked for): nothing to run alone
                solo = StrategyAllocation(
                    strategy_id=alloc.strategy_id,
                    target_weight=1.0,
                    min_capital=0.0,
                    max_capital=float("inf"),
                    risk_multiplier=alloc.risk_multiplier,
                )
                solo_out = self._simulate(
                    weights[i : i + 1], has[i : i + 1], [solo],
                    alloc.target_weight * self.config.total_capital,
                    portfolio_rebalancing=False,
                )  # fmt: skip
                # Only the per-account series are used (equity, traded, costs): drop the
                # (T, A) units and the trade records so they do not pile up per strategy.
                standalone[alloc.strategy_id] = solo_out._replace(
                    units=np.empty((0, solo_out.units.shape[1])),
                    trades=np.empty((0, solo_out.trades.shape[1])),
                )
                del solo_out
                bar.update(1)
            # The book's pass last: its (T, A) output then never coexists with a standalone
            # pass's (peak memory of the run; the passes are independent).
            out = self._simulate(
                weights, has, self.config.allocations, self.config.total_capital,
                portfolio_rebalancing=True,
            )  # fmt: skip
            bar.update(1)
            del weights, has  # (S, T, A): the largest array of a run, not needed from here on
            result = build_result(
                out,
                panel=self.panel,
                config=self.config,
                settings=self.settings,
                standalone=standalone,
                mode="sleeves",
                config_hash=self.config_hash,
            )
            bar.update(1)
        if self.journal_dir is not None:
            result.write_journal(self.journal_dir)
        return result
