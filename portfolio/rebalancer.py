"""`Rebalancer`: one live capital-rebalancing step between strategy sleeves.

The plan is computed by the very jitted functions the backtest pass calls on every bar
(:func:`portfolio.rebalance_nb.plan_fills_nb` and :func:`portfolio.rebalance_nb.execute_fills_nb`,
run here on copies of the state), so the live API and the backtest cannot disagree about lot
rounding, the minimum trade filter, sells-before-buys, cash scaling, netting or costs.

Rule (the same as the backtest's portfolio-level rebalance): each sleeve's target capital comes
from :meth:`portfolio.allocation.AllocationCalculator.calculate_targets`; its holdings are resized
by ``target / current`` (its composition is kept) and rounded toward zero to whole lots; the
difference in capital moves between sleeves as cash; capital beyond every sleeve's cap waits as
unallocated cash.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from portfolio.allocation import UNALLOCATED, AllocationCalculator
from portfolio.contracts import CostModel, OrderIntent, PortfolioSnapshot, RebalancePlan
from portfolio.errors import ConfigError
from portfolio.position_sizer import PositionSizer, round_to_lot_nb
from portfolio.rebalance_nb import execute_fills_nb, plan_fills_nb

__all__ = ["Rebalancer"]


class Rebalancer:
    """Turn a snapshot into a :class:`RebalancePlan`.

    Parameters
    ----------
    allocator : AllocationCalculator
        Capital targets and drift for the portfolio.
    sizer : PositionSizer
        Its ``lot_size`` rounds target units toward zero.
    min_trade_value : float
        Orders below this notional (currency) are dropped.
    cost_model : CostModel, optional
        Commission and slippage used for the estimate (default: zero costs).
    netting : bool
        Net the sleeves' orders per asset before costs (default True).
    max_leverage : float
        Gross exposure cap per sleeve; 1.0 means cash never goes negative.
    """

    def __init__(
        self,
        allocator: AllocationCalculator,
        sizer: PositionSizer,
        min_trade_value: float = 10.0,
        *,
        cost_model: CostModel | None = None,
        netting: bool = True,
        max_leverage: float = 1.0,
    ) -> None:
        if not (np.isfinite(min_trade_value) and min_trade_value >= 0.0):
            raise ConfigError(f"min_trade_value must be >= 0, got {min_trade_value!r}")
        if not (np.isfinite(max_leverage) and max_leverage >= 1.0):
            raise ConfigError(f"max_leverage must be >= 1, got {max_leverage!r}")
        self.allocator = allocator
        self.sizer = sizer
        self.min_trade_value = float(min_trade_value)
        self.cost_model = cost_model if cost_model is not None else CostModel()
        self.netting = bool(netting)
        self.max_leverage = float(max_leverage)

    def create_rebalance_plan(
        self, snapshot: PortfolioSnapshot, current_prices: Mapping[str, float]
    ) -> RebalancePlan:
        """Plan the trades that bring every sleeve to its capital target.

        Parameters
        ----------
        snapshot : PortfolioSnapshot
            Capital per strategy (``strategy_allocations``), and for the asset-level plan the
            units per strategy and symbol (``positions``) and cash per strategy (``cash``; when
            missing, cash is capital minus the value of the positions).
        current_prices : mapping of symbol -> price
            Reference prices (currency per unit) for every held symbol.

        Returns
        -------
        RebalancePlan
            ``trades`` sells first, then buys; ``estimated_costs`` commission plus slippage
            (currency, after netting); ``expected_drift_reduction`` = largest |drift| before
            minus largest |drift| after the plan, at the reference prices.
        """
        sids = list(self.allocator.config.strategy_ids)
        unknown = [s for s in snapshot.strategy_allocations if s not in sids]
        if unknown:
            raise ConfigError(f"snapshot.strategy_allocations: unknown strategies {unknown}")
        symbols = sorted({sym for pos in snapshot.positions.values() for sym in pos})
        prices = np.empty(len(symbols))
        for j, sym in enumerate(symbols):
            if sym not in current_prices:
                raise ConfigError(f"current_prices: no price for held symbol {sym!r}")
            px = float(current_prices[sym])
            if not (np.isfinite(px) and px > 0.0):
                raise ConfigError(f"current_prices[{sym!r}]: must be > 0, got {px!r}")
            prices[j] = px

        n_acc = len(sids) + 1  # + the unallocated reserve
        units = np.zeros((n_acc, len(symbols)))
        cash = np.zeros(n_acc)
        capital = np.zeros(n_acc)
        for i, sid in enumerate(sids):
            pos = snapshot.positions.get(sid, {})
            for j, sym in enumerate(symbols):
                units[i, j] = float(pos.get(sym, 0.0))
            capital[i] = float(snapshot.strategy_allocations.get(sid, 0.0))
            held = float(units[i] @ prices)
            cash[i] = float(snapshot.cash[sid]) if sid in snapshot.cash else capital[i] - held
        reserve_cash = float(snapshot.total_equity) - float(capital[:-1].sum())
        cash[-1] = capital[-1] = max(reserve_cash, 0.0)

        current = {sid: float(capital[i]) for i, sid in enumerate(sids)}
        if capital[-1] > 0.0:
            current[UNALLOCATED] = float(capital[-1])
        targets = self.allocator.calculate_targets(current)
        target_cap = np.array([targets.get(s, 0.0) for s in sids] + [targets.get(UNALLOCATED, 0.0)])
        drift_before = self.allocator.calculate_drift(current)

        lot = float(self.sizer.lot_size)
        target_units = np.zeros_like(units)
        for i in range(len(sids)):
            if capital[i] > 0.0:
                ratio = target_cap[i] / capital[i]
                for j in range(len(symbols)):
                    target_units[i, j] = round_to_lot_nb(units[i, j] * ratio, lot)
            else:
                target_units[i] = units[i]
        active = np.ones(n_acc, dtype=np.bool_)
        active[-1] = False
        transfer = target_cap - capital

        q = np.zeros_like(units)
        eff = np.zeros(n_acc)
        costs = self.cost_model.as_array()
        plan_fills_nb(
            prices, units, cash, capital, target_units, active, transfer, costs,
            self.min_trade_value, lot, self.max_leverage, q, eff,
        )  # fmt: skip
        units_after = units.copy()
        cash_after = cash.copy()
        notional = np.zeros(n_acc)
        comm = np.zeros(n_acc)
        slip = np.zeros(n_acc)
        rec, n_rec, _saved = execute_fills_nb(
            prices, units_after, cash_after, q, eff, costs, self.netting, 0,
            np.empty((0, 9)), 0, notional, comm, slip,
        )  # fmt: skip

        trades = []
        for r in rec[:n_rec]:
            s, j, qty = int(r[1]), int(r[2]), float(r[3])
            trades.append(
                OrderIntent(
                    strategy_id=sids[s],
                    symbol=symbols[j],
                    side="buy" if qty > 0 else "sell",
                    quantity=abs(qty),
                    price=float(prices[j]),
                    reason="rebalance",
                )
            )
        after_cap = cash_after + units_after @ prices
        after = {sid: float(after_cap[i]) for i, sid in enumerate(sids)}
        if after_cap[-1] > 0.0:
            after[UNALLOCATED] = float(after_cap[-1])
        drift_after = self.allocator.calculate_drift(after)

        def worst(d: Mapping[str, float]) -> float:
            return max((abs(v) for k, v in d.items() if k != UNALLOCATED), default=0.0)

        return RebalancePlan(
            portfolio_id=snapshot.portfolio_id,
            timestamp_ns=snapshot.timestamp_ns,
            trades=tuple(trades),
            expected_drift_reduction=worst(drift_before) - worst(drift_after),
            estimated_costs=float(comm.sum() + slip.sum()),
        )
