"""Live bookkeeping of a multi-strategy portfolio: cash and units per sleeve, marked to market.

:class:`PortfolioTracker` is the live counterpart of the backtest's accounting arrays. It is
thread-safe: every read and write holds one re-entrant lock, so fills arriving from several
threads (e.g. broker callbacks) are applied atomically and a snapshot is always consistent.

Accounting identities (currency units):

* ``cash[s] += fill.cash_delta = -signed_quantity * price - commission`` (the executed price
  already includes slippage; see :class:`~portfolio.contracts.FillEvent`).
* ``capital[s] = cash[s] + sum_a units[s, a] * last_price[a]``.
* ``equity = sum_s capital[s]``.

Each sleeve starts with ``target_weight * total_capital`` in cash and no positions.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping

from portfolio.allocation import AllocationCalculator, DriftBand
from portfolio.contracts import (
    _POSITIVE,
    CostModel,
    FillEvent,
    OrderIntent,
    PortfolioConfig,
    PortfolioSnapshot,
    _check_int,
    _check_str,
    _run,
)
from portfolio.errors import ConfigError

__all__ = ["PortfolioTracker"]

logger = logging.getLogger(__name__)


class PortfolioTracker:
    """Thread-safe cash/positions ledger per strategy sleeve.

    Parameters
    ----------
    config : PortfolioConfig
        Sleeves and their target weights; initial cash of sleeve ``s`` is
        ``target_weight[s] * total_capital``.
    cost_model : CostModel, optional
        Used by :meth:`make_fill` to price commission and slippage; default: no costs.
    drift_band : {"relative", "absolute"}
        Drift definition for snapshots (see :mod:`portfolio.allocation`).
    """

    def __init__(
        self,
        config: PortfolioConfig,
        cost_model: CostModel | None = None,
        drift_band: DriftBand = "relative",
    ) -> None:
        self._calculator = AllocationCalculator(config, drift_band)
        if cost_model is not None and not isinstance(cost_model, CostModel):
            raise ConfigError(
                f"PortfolioTracker.cost_model must be a CostModel or None, got "
                f"{type(cost_model).__name__}"
            )
        self.config = config
        self.cost_model = cost_model if cost_model is not None else CostModel()
        self._lock = threading.RLock()
        self._cash: dict[str, float] = {
            a.strategy_id: a.target_weight * config.total_capital for a in config.allocations
        }
        self._units: dict[str, dict[str, float]] = {sid: {} for sid in config.strategy_ids}
        self._prices: dict[str, float] = {}
        self._timestamp_ns: int | None = None

    def _check_strategy(self, strategy_id: str) -> None:
        if strategy_id not in self._cash:
            raise ConfigError(
                f"unknown strategy {strategy_id!r} for portfolio {self.config.portfolio_id!r} "
                f"(known: {', '.join(self.config.strategy_ids)})"
            )

    def on_fill(self, fill: FillEvent) -> None:
        """Apply an executed trade: units, cash and the symbol's last price.

        Parameters
        ----------
        fill : FillEvent
            The fill; its ``strategy_id`` must be a sleeve of the portfolio.

        Raises
        ------
        ConfigError
            Unknown strategy id.
        """
        if not isinstance(fill, FillEvent):
            raise ConfigError(f"on_fill expects a FillEvent, got {type(fill).__name__}")
        with self._lock:
            self._check_strategy(fill.strategy_id)
            book = self._units[fill.strategy_id]
            units = book.get(fill.symbol, 0.0) + fill.signed_quantity
            if units == 0.0:
                book.pop(fill.symbol, None)  # a closed position leaves no stale entry
            else:
                book[fill.symbol] = units
            self._cash[fill.strategy_id] += fill.cash_delta
            self._prices[fill.symbol] = fill.price
            logger.debug(
                "fill %s %s %s x %s @ %s: units %s, cash %s",
                fill.strategy_id,
                fill.side,
                fill.symbol,
                fill.quantity,
                fill.price,
                units,
                self._cash[fill.strategy_id],
            )
            if fill.timestamp_ns and (
                self._timestamp_ns is None or fill.timestamp_ns > self._timestamp_ns
            ):
                self._timestamp_ns = fill.timestamp_ns

    def update_prices(self, prices: Mapping[str, float], timestamp_ns: int | None = None) -> None:
        """Set the last price of symbols (currency per unit, finite and > 0).

        Parameters
        ----------
        prices : Mapping[str, float]
            Symbol -> price. Validated completely before any price is stored.
        timestamp_ns : int, optional
            Time of these prices (ns since the epoch); becomes the default snapshot time.
        """
        owner = "PortfolioTracker.update_prices"
        if not isinstance(prices, Mapping):
            raise ConfigError(f"{owner}.prices must be a mapping, got {type(prices).__name__}")
        checked: dict[str, float] = {}
        for sym, px in prices.items():
            _run(_check_str, sym, owner, "prices key")
            checked[sym] = _run(_POSITIVE, px, owner, f"prices[{sym!r}]")
        ts = None if timestamp_ns is None else _run(_check_int, timestamp_ns, owner, "timestamp_ns")
        with self._lock:
            self._prices.update(checked)
            if ts is not None:
                self._timestamp_ns = ts

    def make_fill(
        self, intent: OrderIntent, price: float | None = None, timestamp_ns: int = 0
    ) -> FillEvent:
        """Fill an order at ``price`` (default: its reference price) under :attr:`cost_model`.

        The executed price moves against the trade by ``slippage_bps``
        (``price * (1 ± slippage_bps * 1e-4)``); the reported ``slippage`` is the currency cost
        of that move, ``slippage_bps * 1e-4 * quantity * price``; the commission is
        ``cost_model.commission(quantity * price)``. The fill is returned, not applied: pass it to
        :meth:`on_fill`.
        """
        ref = intent.price if price is None else price
        costs = self.cost_model
        notional = intent.quantity * ref
        sign = 1.0 if intent.side == "buy" else -1.0
        executed = ref * (1.0 + sign * costs.slippage_bps * 1e-4)
        return FillEvent(
            strategy_id=intent.strategy_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            price=executed,
            commission=costs.commission(notional),
            slippage=costs.slippage(notional),
            timestamp_ns=timestamp_ns,
        )

    def _capital_locked(self, strategy_id: str) -> float:
        book = self._units[strategy_id]
        marked = [units * self._prices[sym] for sym, units in book.items()]
        return math.fsum([self._cash[strategy_id], *marked])

    def get_strategy_capital(self, strategy_id: str) -> float:
        """Cash plus marked positions of one sleeve, in currency."""
        with self._lock:
            self._check_strategy(strategy_id)
            return self._capital_locked(strategy_id)

    def get_cash(self, strategy_id: str) -> float:
        """Cash of one sleeve, in currency."""
        with self._lock:
            self._check_strategy(strategy_id)
            return self._cash[strategy_id]

    def get_positions(self, strategy_id: str) -> dict[str, float]:
        """Units held by one sleeve per symbol (a copy)."""
        with self._lock:
            self._check_strategy(strategy_id)
            return dict(self._units[strategy_id])

    def get_total_equity(self) -> float:
        """Sum of all sleeves' capital, in currency."""
        with self._lock:
            return math.fsum(self._capital_locked(sid) for sid in self.config.strategy_ids)

    def get_snapshot(self, timestamp_ns: int | None = None) -> PortfolioSnapshot:
        """Consistent point-in-time state: capital, drift, rebalance flag, positions and cash.

        Parameters
        ----------
        timestamp_ns : int, optional
            Snapshot time; default: the latest time seen by :meth:`update_prices` or
            :meth:`on_fill`, else the current wall-clock time.
        """
        with self._lock:
            capital = {sid: self._capital_locked(sid) for sid in self.config.strategy_ids}
            positions = {sid: dict(book) for sid, book in self._units.items()}
            cash = dict(self._cash)
            seen = self._timestamp_ns
        drift = self._calculator.calculate_drift(capital)
        if timestamp_ns is not None:
            ts = timestamp_ns
        elif seen is not None:
            ts = seen
        else:
            ts = time.time_ns()
        return PortfolioSnapshot(
            portfolio_id=self.config.portfolio_id,
            timestamp_ns=ts,
            total_equity=math.fsum(capital.values()),
            strategy_allocations=capital,
            drift_from_target=drift,
            needs_rebalance=self._calculator.needs_rebalance(drift),
            positions=positions,
            cash=cash,
        )
