"""The rebalance step: one jitted rule shared by the backtest pass and the live ``Rebalancer``.

Everything that turns *target units* into *fills* lives here, once:

1. **Orders.** For every active sleeve ``s`` and tradable asset ``a`` the raw order is
   ``d = target[s, a] - units[s, a]`` (targets are already lot-rounded). Orders whose notional
   ``|d| * price`` is below ``min_trade_value`` are dropped, and so is floating-point dust
   (``|d| <= 1e-9 * max(|target|, |units|)``).
2. **Sells before buys.** Sell proceeds net of the sleeve's *standalone* costs are credited first.
   If the account would still be overdrawn (beyond its leverage allowance), the sells whose
   proceeds do not cover their own costs (tiny lots under a minimum commission) are dropped.
3. **Capital transfers** between sleeves (portfolio-level rebalancing) are applied next. A
   negative transfer never takes a sleeve's cash below zero: it is clipped, and the positive
   transfers are scaled down pro rata by what could actually be released.
4. **Buys fit the cash, exactly.** If a sleeve's buys plus their standalone costs exceed its
   buying power ``cash + (max_leverage - 1) * equity``, all its buys are scaled by the largest
   ``k`` in ``[0, 1]`` that fits (found by bisection on the monotone cost function), then rounded
   toward zero to whole lots and filtered by ``min_trade_value`` again. Rounding down and
   dropping orders can only lower the cost, so the basket still fits (the lot rounding's
   1e-9-lot tolerance for floating error is the only, negligible, exception).
5. **Netting.** With netting on, the orders of all sleeves in one asset are crossed internally
   and only the net quantity goes to the market: one commission and slippage on the net notional,
   attributed back to the sleeves pro rata to ``|q_s|``. Because each sleeve's share is at most
   its standalone cost (commission is subadditive, slippage linear), and step 4 sizes buys with
   standalone costs, netting never changes the quantities of a step and never raises any
   sleeve's cost. (Over a whole run the cash it saves is reinvested at later rebalances, so
   later quantities may differ by the lots that cash buys.)

Costs: ``commission = max(commission_min, commission_bps * 1e-4 * notional + commission_fixed)``
per order with non-zero notional; ``slippage = slippage_bps * 1e-4 * notional``, adverse to the
trade. Trades are recorded at the reference (close) price with slippage as a separate cost, which
is the same cash as filling at ``price * (1 ± slippage_bps * 1e-4)``.

Cost parameters travel as a float64 array ``costs = [bps, fixed, min, slippage_bps]``
(:meth:`portfolio.contracts.CostModel.as_array`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from portfolio.position_sizer import round_to_lot_nb

__all__ = [
    "TRADE_FIELDS",
    "buy_scale_nb",
    "commission_nb",
    "execute_fills_nb",
    "plan_fills_nb",
    "sleeve_target_units_nb",
]

#: Columns of the trade record array written by :func:`execute_fills_nb`.
TRADE_FIELDS = (
    "bar",
    "sleeve",
    "asset",
    "units",
    "price",
    "notional",
    "commission",
    "slippage",
    "netted",
)
_N_TRADE_FIELDS = 9
#: Relative size below which an order is floating-point dust and is dropped.
_DUST = 1e-9


@njit(cache=True)
def commission_nb(notional: float, costs: np.ndarray) -> float:
    """Commission of one order in currency.

    ``max(costs[2], costs[0] * 1e-4 * notional + costs[1])`` for ``notional > 0``, else 0.
    """
    if notional <= 0.0:
        return 0.0
    c = costs[0] * 1e-4 * notional + costs[1]
    if c < costs[2]:
        return costs[2]
    return c


@njit(cache=True)
def _order_cost_nb(notional: float, costs: np.ndarray) -> float:
    """Commission plus slippage of one order with non-negative ``notional``."""
    if notional <= 0.0:
        return 0.0
    return commission_nb(notional, costs) + costs[3] * 1e-4 * notional


@njit(cache=True)
def _basket_cash_nb(notionals: np.ndarray, k: float, costs: np.ndarray) -> float:
    """Cash needed to buy ``k`` times every notional in the basket, costs included."""
    total = 0.0
    for i in range(notionals.shape[0]):
        n = notionals[i] * k
        if n > 0.0:
            total += n + _order_cost_nb(n, costs)
    return total


@njit(cache=True)
def buy_scale_nb(notionals: np.ndarray, costs: np.ndarray, budget: float) -> float:
    """Largest ``k`` in ``[0, 1]`` such that the scaled buy basket plus its costs fits ``budget``.

    Parameters
    ----------
    notionals : ndarray, shape (n,)
        Buy notionals in currency (non-negative).
    costs : ndarray, shape (4,)
        ``[commission_bps, commission_fixed, commission_min, slippage_bps]``.
    budget : float
        Cash available for the basket, in currency.

    Returns
    -------
    float
        1.0 when the whole basket fits; otherwise the bisection's feasible end, within 2**-60 of
        the exact maximum. The cash function is non-decreasing in ``k``, so the result always fits.
    """
    if _basket_cash_nb(notionals, 1.0, costs) <= budget:
        return 1.0
    if budget <= 0.0:
        return 0.0
    lo = 0.0  # feasible: an empty basket costs nothing
    hi = 1.0  # infeasible
    for _ in range(62):
        mid = 0.5 * (lo + hi)
        if _basket_cash_nb(notionals, mid, costs) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True)
def sleeve_target_units_nb(
    weights: np.ndarray,
    capital: float,
    prices: np.ndarray,
    risk_multiplier: float,
    max_leverage: float,
    lot_size: float,
    out: np.ndarray,
) -> None:
    """Target units of one sleeve for target weights and capital.

    ``units_a = round_to_lot(w_a * m * capital / price_a)`` where ``m`` is the risk multiplier,
    reduced so that the gross exposure ``sum |w_a| * m`` does not exceed ``max_leverage``.
    Assets without a valid price (not yet listed) get zero units.

    Parameters
    ----------
    weights : ndarray, shape (A,)
        Target weights as fractions of the sleeve's capital.
    capital : float
        Sleeve capital in currency.
    prices : ndarray, shape (A,)
        Decision prices; NaN marks a non-tradable asset.
    risk_multiplier, max_leverage, lot_size : float
        See :class:`portfolio.config.RebalanceSettings`; ``lot_size`` 0 means fractional units.
    out : ndarray, shape (A,)
        Written in place with the target units.
    """
    gross = 0.0
    for a in range(weights.shape[0]):
        if np.isfinite(prices[a]) and prices[a] > 0.0:  # only what can actually be bought
            gross += abs(weights[a])
    m = risk_multiplier
    if gross * m > max_leverage and gross > 0.0:
        m = max_leverage / gross
    for a in range(weights.shape[0]):
        p = prices[a]
        w = weights[a]
        if w != 0.0 and np.isfinite(p) and p > 0.0 and capital > 0.0:
            out[a] = round_to_lot_nb(w * m * capital / p, lot_size)
        else:
            out[a] = 0.0


@njit(cache=True)
def plan_fills_nb(
    prices: np.ndarray,
    units: np.ndarray,
    cash: np.ndarray,
    equity: np.ndarray,
    target: np.ndarray,
    active: np.ndarray,
    transfer: np.ndarray,
    costs: np.ndarray,
    min_trade_value: float,
    lot_size: float,
    max_leverage: float,
    q: np.ndarray,
    eff_transfer: np.ndarray,
) -> None:
    """Decide the executed quantity of every order of one rebalance step (no state change).

    Parameters
    ----------
    prices : ndarray, shape (A,)
        Fill prices (close of the fill bar); NaN or non-positive = not tradable.
    units : ndarray, shape (S, A)
        Current units per sleeve and asset.
    cash, equity : ndarray, shape (S,)
        Current cash and equity per sleeve, currency, at ``prices``.
    target : ndarray, shape (S, A)
        Target units per sleeve and asset; only rows with ``active[s]`` are used.
    active : ndarray of bool, shape (S,)
        Sleeves that trade in this step.
    transfer : ndarray, shape (S,)
        Requested cash transfers between sleeves (sum 0), currency.
    costs : ndarray, shape (4,)
        Cost model array.
    min_trade_value, lot_size, max_leverage : float
        Filters and limits, see the module docstring.
    q : ndarray, shape (S, A)
        Output: signed executed units per sleeve and asset.
    eff_transfer : ndarray, shape (S,)
        Output: transfers actually applied (clipped so no sleeve is overdrawn by one).
    """
    n_s, n_a = units.shape
    avail = np.zeros(n_s)
    for s in range(n_s):
        proceeds = 0.0
        for a in range(n_a):
            q[s, a] = 0.0
            if not active[s]:
                continue
            p = prices[a]
            if not (np.isfinite(p) and p > 0.0):
                continue
            d = target[s, a] - units[s, a]
            # Dust: a difference at the level of floating-point noise is not an order (with
            # fractional units and no minimum it would still pay a minimum commission).
            if abs(d) <= _DUST * max(abs(target[s, a]), abs(units[s, a])):
                continue
            if abs(d) * p < min_trade_value:
                continue
            q[s, a] = d
            if d < 0.0:
                n = -d * p
                proceeds += n - _order_cost_nb(n, costs)
        avail[s] = cash[s] + proceeds
        if active[s] and avail[s] + (max_leverage - 1.0) * max(equity[s], 0.0) < 0.0:
            # Sells whose proceeds do not even cover their own costs (tiny lots under a
            # minimum commission) would overdraw the account: drop them.
            proceeds = 0.0
            for a in range(n_a):
                d = q[s, a]
                if d < 0.0:
                    n = -d * prices[a]
                    net = n - _order_cost_nb(n, costs)
                    if net < 0.0:
                        q[s, a] = 0.0
                    else:
                        proceeds += net
            avail[s] = cash[s] + proceeds

    # Transfers: what a giving sleeve can release is bounded by its cash after sells.
    released = 0.0
    wanted = 0.0
    for s in range(n_s):
        t = transfer[s]
        if t < 0.0:
            room = avail[s] if avail[s] > 0.0 else 0.0
            eff = t if -t <= room else -room
            eff_transfer[s] = eff
            released -= eff
        else:
            eff_transfer[s] = 0.0
            wanted += t
    ratio = 1.0
    if wanted > 0.0 and released < wanted:
        ratio = released / wanted
    for s in range(n_s):
        if transfer[s] > 0.0:
            eff_transfer[s] = transfer[s] * ratio

    # Buys: scale the basket so it fits the buying power with standalone costs.
    buys = np.zeros(n_a)
    for s in range(n_s):
        if not active[s]:
            continue
        has_buy = False
        for a in range(n_a):
            if q[s, a] > 0.0:
                buys[a] = q[s, a] * prices[a]
                has_buy = True
            else:
                buys[a] = 0.0
        if not has_buy:
            continue
        eq = equity[s] if equity[s] > 0.0 else 0.0
        budget = avail[s] + eff_transfer[s] + (max_leverage - 1.0) * eq
        k = buy_scale_nb(buys, costs, budget)
        if k < 1.0:
            for a in range(n_a):
                if q[s, a] > 0.0:
                    scaled = round_to_lot_nb(q[s, a] * k, lot_size)
                    if scaled * prices[a] < min_trade_value:
                        scaled = 0.0
                    q[s, a] = scaled


@njit(cache=True)
def _grow_records_nb(rec: np.ndarray, n_rec: int, extra: int) -> np.ndarray:
    """Return ``rec`` or a copy with room for ``extra`` more rows (capacity doubling)."""
    if n_rec + extra <= rec.shape[0]:
        return rec
    cap = max(2 * rec.shape[0], n_rec + extra, 64)
    out = np.empty((cap, _N_TRADE_FIELDS))
    out[:n_rec] = rec[:n_rec]
    return out


@njit(cache=True)
def execute_fills_nb(
    prices: np.ndarray,
    units: np.ndarray,
    cash: np.ndarray,
    q: np.ndarray,
    eff_transfer: np.ndarray,
    costs: np.ndarray,
    netting: bool,
    bar: int,
    rec: np.ndarray,
    n_rec: int,
    sleeve_notional: np.ndarray,
    sleeve_commission: np.ndarray,
    sleeve_slippage: np.ndarray,
) -> tuple[np.ndarray, int, float]:
    """Apply a planned step: transfers, fills, costs; append trade records (sells first).

    Parameters
    ----------
    prices : ndarray, shape (A,)
        Fill prices (currency per unit).
    units : ndarray, shape (S, A)
        Units per sleeve and asset, updated in place.
    cash : ndarray, shape (S,)
        Cash per sleeve, updated in place.
    q, eff_transfer : ndarray
        Output of :func:`plan_fills_nb`.
    costs : ndarray, shape (4,)
        Cost model array.
    netting : bool
        Cross the sleeves' orders per asset and pay costs on the net order only.
    bar : int
        Bar index written into the trade records.
    rec : ndarray, shape (capacity, 9)
        Trade records (see :data:`TRADE_FIELDS`); grown when full.
    n_rec : int
        Number of records already written.
    sleeve_notional, sleeve_commission, sleeve_slippage : ndarray, shape (S,)
        Accumulators for the bar, in currency (added to, not reset).

    Returns
    -------
    rec : ndarray
        The (possibly reallocated) record array.
    n_rec : int
        New number of records.
    saved : float
        Costs saved by netting in this step (standalone minus netted), currency, >= 0.
    """
    n_s, n_a = q.shape
    for s in range(n_s):
        cash[s] += eff_transfer[s]
    rec = _grow_records_nb(rec, n_rec, n_s * n_a)
    saved = 0.0
    slip = costs[3] * 1e-4
    # Two passes so that the trade log lists every sell before any buy.
    for side in range(2):
        for a in range(n_a):
            p = prices[a]
            gross = 0.0
            net = 0.0
            standalone = 0.0
            n_part = 0
            for s in range(n_s):
                qs = q[s, a]
                if qs != 0.0:
                    gross += abs(qs)
                    net += qs
                    n_part += 1
                    if netting and side == 0:  # the saving is counted once per asset
                        standalone += _order_cost_nb(abs(qs) * p, costs)
            if gross == 0.0:
                continue
            net_comm = 0.0
            net_slip = 0.0
            if netting:
                net_comm = commission_nb(abs(net) * p, costs)
                net_slip = slip * abs(net) * p
            if side == 0 and netting and n_part > 1:
                # One participant pays exactly its standalone cost: nothing saved (and no
                # rounding noise reported as a negative saving).
                saved += max(standalone - net_comm - net_slip, 0.0)
            for s in range(n_s):
                qs = q[s, a]
                if qs == 0.0 or (side == 0 and qs > 0.0) or (side == 1 and qs < 0.0):
                    continue
                notional = abs(qs) * p
                if netting:
                    share = abs(qs) / gross
                    comm = net_comm * share
                    slp = net_slip * share
                else:
                    comm = commission_nb(notional, costs)
                    slp = slip * notional
                units[s, a] += qs
                cash[s] -= qs * p + comm + slp
                sleeve_notional[s] += notional
                sleeve_commission[s] += comm
                sleeve_slippage[s] += slp
                r = rec[n_rec]
                r[0] = bar
                r[1] = s
                r[2] = a
                r[3] = qs
                r[4] = p
                r[5] = notional
                r[6] = comm
                r[7] = slp
                r[8] = 1.0 if (netting and n_part > 1) else 0.0
                n_rec += 1
    return rec, n_rec, saved
