"""One workload in three engines: ours, vectorbt and bt (issue 5, cross-engine agreement).

The workload is the simplest thing all three engines do: one book that, on the dates of a fixed
schedule, rebalances to the schedule's target weights (fractions of the book's value, the rest
held as cash) at the close, and holds in between. Each ``run_*`` function takes a
:class:`PeerWorkload` and returns the book's value at every close (a Series on the workload's
dates, currency), so the curves can be compared bar by bar.

How each engine is configured, so that with zero costs all three do the same arithmetic:

* **ours**: :class:`~backtest.portfolio_engine.PortfolioBacktestEngine` with a single sleeve at
  100 % (:class:`~backtest.strategies.WeightScheduleStrategy`), execution lag 0 (an order fills
  at its decision close, as in vectorbt and bt), fractional units (``lot_size=0``), no minimum
  trade, no minimum or fixed commission, no calendar, netting off (one sleeve: nothing to net).
  Target units are ``w * equity / close`` with the equity at the decision close, sells before
  buys, costs paid from cash; if the buys plus costs exceed the cash, all buys are scaled by
  one factor so that they fit exactly (README, "How fills, costs and rebalancing work").
  With one sleeve at 100 % the capital drift is always exactly 0, so no capital rebalance ever
  fires. The engine runs with ``standalone=False``: the book is the whole workload, so the
  per-strategy standalone pass (for the comparison table) is skipped.
* **vectorbt**: ``Portfolio.from_orders(size_type="targetpercent", group_by=True,
  cash_sharing=True, call_seq="auto")``, the size a ``(T, A)`` frame with the schedule's rows
  on its dates and ``NaN`` (no order) elsewhere; orders fill at the close (``price`` default),
  sized on the group value at that close before costs, sells first (``call_seq="auto"``). A
  buy that does not fit the remaining cash is cut to what fits, and later buys get nothing.
  ``fees`` and ``slippage`` are fractions (bps / 1e4); slippage moves the fill price.
* **bt**: ``bt.Strategy`` with the algo stack ``[WeighTarget(schedule), Rebalance()]``
  (``WeighTarget`` stops the stack on dates without a row), ``integer_positions=False``; bt
  fills at the close too. Its ``commissions`` function is ``|q| * price * rate``. bt has no
  slippage setting, and a proportional slippage is the same cash as a commission at the same
  rate, so ``slippage_bps`` is added to the commission rate. bt sizes fee-inclusive: a buy
  spends exactly its weight's amount *including* its commission, a sell raises its amount
  *net* of commission, so costs come out of the positions, not the cash.

bt prepends a dummy row (the day before the first date, the initial capital); it is dropped.

vectorbt and bt are optional (``pip install vectorbt bt``) and imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from benchmarks.workloads import SEED, SIZES, asset_names, make_synthetic_panel

if TYPE_CHECKING:
    from backtest.portfolio_engine import PortfolioBacktestEngine

__all__ = [
    "CAPITAL",
    "REAL_END",
    "REAL_START",
    "PeerWorkload",
    "make_our_engine",
    "real_workload",
    "run_bt",
    "run_ours",
    "run_vectorbt",
    "synthetic_workload",
]

#: Initial capital of every peer run (currency).
CAPITAL = 1_000_000.0
#: Default date range of :func:`real_workload` (embedded data, every asset listed).
REAL_START, REAL_END = "2016-01-01", "2018-12-31"
_SLEEVE = "schedule"


@dataclass(frozen=True)
class PeerWorkload:
    """Prices and a target-weight schedule that every engine runs.

    Attributes
    ----------
    name : str
        Label for tables.
    prices : DataFrame, shape (T, A)
        Closes, currency per unit, all finite and > 0, DatetimeIndex.
    schedule : DataFrame, shape (R, A)
        Target weights on the R rebalance dates (a subset of ``prices.index``), each row
        finite, ``>= 0`` and summing to at most 1 (the rest is cash).
    capital : float
        Initial capital (currency).
    """

    name: str
    prices: pd.DataFrame
    schedule: pd.DataFrame
    capital: float = CAPITAL

    def order_sizes(self) -> pd.DataFrame:
        """The schedule on the price panel's dates: its rows where it has one, ``NaN`` elsewhere.

        Returns
        -------
        DataFrame, shape (T, A)
            vectorbt's ``size`` argument (``NaN`` = no order on that bar).
        """
        return self.schedule.reindex(self.prices.index)


def synthetic_workload(
    size: str, *, max_weight_sum: float = 1.0, normalize: bool = False, seed: int = SEED
) -> PeerWorkload:
    """The benchmark panel of a named size with one sleeve's monthly weights as the schedule.

    Parameters
    ----------
    size : str
        A key of :data:`benchmarks.workloads.SIZES` (``small``, ``medium``, ``large``).
    max_weight_sum : float
        Passed to :func:`~benchmarks.workloads.make_synthetic_panel`: each row sums to a random
        value in ``[0.85, 1] * max_weight_sum``.
    normalize : bool
        Scale every row to sum to exactly 1 (fully invested: with costs, the buys no longer fit
        the cash, which is where the engines' conventions differ).
    seed : int
        Seed of the panel.

    Returns
    -------
    PeerWorkload
    """
    if size not in SIZES:
        raise ValueError(f"size: expected one of {list(SIZES)}, got {size!r}")
    n_bars, n_assets = SIZES[size]
    panel = make_synthetic_panel(n_bars, n_assets, 1, max_weight_sum=max_weight_sum, seed=seed)
    columns = asset_names(n_assets)
    rows = panel.has_signal[0]
    weights = panel.weights[0][rows]
    if normalize:
        weights = weights / weights.sum(axis=1, keepdims=True)
    return PeerWorkload(
        name=size,
        prices=pd.DataFrame(panel.prices, index=panel.index, columns=columns),
        schedule=pd.DataFrame(weights, index=panel.index[rows], columns=columns),
    )


def real_workload(
    start: str = REAL_START,
    end: str = REAL_END,
    *,
    every: int = 21,
    max_weight_sum: float = 1.0,
    normalize: bool = False,
    seed: int = SEED,
) -> PeerWorkload:
    """The embedded 20-stock S&P 500 closes with seeded random weights every ``every`` bars.

    Each rebalance row puts random weights (uniform in ``[0.1, 1]``, then scaled to a total
    drawn uniformly in ``[0.85, 1] * max_weight_sum``, or to exactly 1 with ``normalize``) on
    every asset, so each rebalance trades all of them.

    Parameters
    ----------
    start, end : str
        Inclusive date range of the embedded panel (default: 2016-2018, every asset listed).
    every : int
        Bars between two rebalance rows (bar 0 is the first).
    max_weight_sum, normalize, seed :
        As in :func:`synthetic_workload`.

    Returns
    -------
    PeerWorkload
    """
    from backtest.data import load_default_panel

    prices = load_default_panel().slice(start, end).prices
    if prices.isna().to_numpy().any():
        raise ValueError(f"real_workload: some asset is not listed over {start} .. {end}")
    rng = np.random.default_rng(seed)
    bars = np.arange(0, len(prices), every)
    raw = rng.uniform(0.1, 1.0, (len(bars), prices.shape[1]))
    if normalize:
        total = np.ones((len(bars), 1))
    else:
        total = rng.uniform(0.85, 1.0, (len(bars), 1)) * max_weight_sum
    weights = raw * (total / raw.sum(axis=1, keepdims=True))
    return PeerWorkload(
        name=f"real {start[:4]}-{end[:4]}",
        prices=prices,
        schedule=pd.DataFrame(weights, index=prices.index[bars], columns=prices.columns),
    )


# -------------------------------------------------------------------------------------- ours
def make_our_engine(
    work: PeerWorkload, fees_bps: float = 0.0, slippage_bps: float = 0.0
) -> PortfolioBacktestEngine:
    """Our engine set up for the workload (see the module docstring for every setting).

    Parameters
    ----------
    work : PeerWorkload
    fees_bps, slippage_bps : float
        Proportional commission and slippage, basis points of the traded notional.

    Returns
    -------
    PortfolioBacktestEngine
        Not run yet; building it validates the prices (``PricePanel``).
    """
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from backtest.strategies import WeightScheduleStrategy
    from portfolio.config import RebalanceSettings
    from portfolio.contracts import CostModel, PortfolioConfig, StrategyAllocation

    config = PortfolioConfig(
        portfolio_id="peers",
        total_capital=float(work.capital),
        allocations=(StrategyAllocation(_SLEEVE, 1.0),),
    )
    strategy = WeightScheduleStrategy(strategy_id=_SLEEVE, schedule=work.schedule)
    return PortfolioBacktestEngine(
        config,
        [strategy],
        prices=work.prices,
        costs=CostModel(commission_bps=float(fees_bps), slippage_bps=float(slippage_bps)),
        execution_lag=0,
        rebalance=RebalanceSettings(
            calendar="none", min_trade_value=0.0, lot_size=0.0, netting=False, max_leverage=1.0
        ),
        standalone=False,
    )


def run_ours(work: PeerWorkload, fees_bps: float = 0.0, slippage_bps: float = 0.0) -> pd.Series:
    """Book value per close in our engine, end to end (panel validation, run, result).

    Parameters
    ----------
    work : PeerWorkload
    fees_bps, slippage_bps : float
        Proportional commission and slippage, basis points of the traded notional.

    Returns
    -------
    Series, length T
        Equity at each close (currency), indexed by ``work.prices.index``.
    """
    return make_our_engine(work, fees_bps, slippage_bps).run().equity


# ---------------------------------------------------------------------------------- vectorbt
def run_vectorbt(work: PeerWorkload, fees_bps: float = 0.0, slippage_bps: float = 0.0) -> pd.Series:
    """Book value per close in vectorbt (``Portfolio.from_orders``, target percent, one group).

    Parameters
    ----------
    work : PeerWorkload
    fees_bps, slippage_bps : float
        ``fees`` and ``slippage`` of vectorbt, in basis points (divided by 1e4).

    Returns
    -------
    Series, length T
        ``Portfolio.value()`` of the single group (currency), indexed by the prices' dates.
    """
    import vectorbt as vbt

    pf = vbt.Portfolio.from_orders(
        work.prices,
        size=work.order_sizes(),
        size_type="targetpercent",
        fees=fees_bps * 1e-4,
        slippage=slippage_bps * 1e-4,
        init_cash=float(work.capital),
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
    )
    value = pf.value()
    return pd.Series(np.asarray(value, dtype=np.float64), index=work.prices.index, name="vectorbt")


# ---------------------------------------------------------------------------------------- bt
def run_bt(work: PeerWorkload, fees_bps: float = 0.0, slippage_bps: float = 0.0) -> pd.Series:
    """Book value per close in bt (``WeighTarget`` + ``Rebalance``, fractional positions).

    Parameters
    ----------
    work : PeerWorkload
    fees_bps, slippage_bps : float
        Both enter bt's commission function as ``|q| * price * (fees_bps + slippage_bps) / 1e4``
        (bt has no slippage; a proportional slippage costs the same cash as a commission).

    Returns
    -------
    Series, length T
        The strategy's value (currency) on the prices' dates (bt's leading dummy row dropped).
    """
    import bt

    rate = (fees_bps + slippage_bps) * 1e-4

    def commission(quantity: float, price: float) -> float:
        return abs(quantity) * price * rate

    strategy = bt.Strategy(_SLEEVE, [bt.algos.WeighTarget(work.schedule), bt.algos.Rebalance()])
    backtest = bt.Backtest(
        strategy,
        work.prices,
        initial_capital=float(work.capital),
        commissions=commission,
        integer_positions=False,
        progress_bar=False,
    )
    bt.run(backtest)
    values = backtest.strategy.values.loc[work.prices.index]
    return pd.Series(values.to_numpy(dtype=np.float64), index=work.prices.index, name="bt")
