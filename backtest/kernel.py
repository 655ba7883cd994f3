"""The simulation pass: one jitted loop over bars that does all path-dependent accounting.

Everything that depends only on data (target weights, calendars, drift-check bars) is computed
before this pass; everything that depends on the path (holdings, cash, which rebalances fire,
fills, costs) happens here. The pass is the only loop over bars in the engine.

The clock, per bar ``t`` (prices are closes):

1. **Fill** the orders decided at close ``t - lag`` (``lag >= 1``) at the close of ``t`` through
   the shared rebalance step (:mod:`portfolio.rebalance_nb`).
2. **Mark** every sleeve to the close of ``t``.
3. **Decide** with data up to ``t`` only:

   * a sleeve whose strategy emitted a target row at ``t`` re-targets its holdings (reason
     ``signal``);
   * on drift-check bars (``rebalance_frequency_hours`` mapped onto the calendar), if the largest
     sleeve drift from its capital target exceeds ``rebalance_threshold``, or on a calendar bar,
     capital is moved between sleeves (reasons ``drift`` / ``calendar``): each sleeve's target
     capital comes from :func:`portfolio.allocation.allocate_capital`, its holdings are resized
     by ``target / equity`` (its composition is kept; a sleeve holding nothing, or getting a
     new target row that bar, is sized from its strategy's latest weights instead), the
     difference moves as cash. A calendar date that falls while a rebalance is in flight
     (``lag >= 2``) fires as soon as nothing is in flight.
     Capital beyond every sleeve's ``max_capital`` waits in a cash-only *reserve* account (the
     last account, index ``S``).

   Target units are sized with the decision close and frozen; with ``lag == 0`` they fill at
   the same close, otherwise at the close of ``t + lag``. With ``lag >= 2`` decisions can overlap
   orders still in flight: no portfolio-level rebalance starts while another is in flight (so
   transfers never double), a capital rebalance resizes the holdings a sleeve will have once its
   pending orders fill, and a signal is sized on the sleeve's equity plus the capital on its way
   in.
4. **Record** end-of-bar equity, cash and units.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from portfolio.allocation import allocate_capital, allocate_capital_into, drift_into_nb
from portfolio.position_sizer import round_to_lot_nb
from portfolio.rebalance_nb import execute_fills_nb, plan_fills_nb, sleeve_target_units_nb
from portfolio.risk_adjusted import risk_adjusted_weights_nb

__all__ = [
    "LEVEL_PORTFOLIO",
    "LEVEL_SLEEVE",
    "REASON_CALENDAR",
    "REASON_DRIFT",
    "REASON_SIGNAL",
    "SimulationOutput",
    "check_bars_nb",
    "period_return_nb",
    "period_returns_nb",
    "simulate_nb",
]

REASON_SIGNAL = 0
REASON_DRIFT = 1
REASON_CALENDAR = 2
LEVEL_SLEEVE = 0
LEVEL_PORTFOLIO = 1

_N_EVENT_FIELDS = 5  # decision bar, fill bar, level, reason, sleeve (-1 = whole portfolio)


class SimulationOutput(NamedTuple):
    """Arrays written by :func:`simulate_nb` (``S`` strategy sleeves plus the reserve account).

    Attributes
    ----------
    equity : ndarray, shape (T, S + 1)
        End-of-bar equity per account, currency.
    cash : ndarray, shape (T, S + 1)
        End-of-bar cash per account, currency.
    units : ndarray, shape (T, A)
        End-of-bar units per asset of the whole book.
    sleeve_units : ndarray, shape (T, S + 1, A) or (0, S + 1, A)
        End-of-bar units per account and asset (empty when not recorded).
    traded : ndarray, shape (T, S + 1)
        Gross traded notional per account and bar, currency.
    commission, slippage : ndarray, shape (T, S + 1)
        Costs paid per account and bar, currency.
    netting_saved : ndarray, shape (T,)
        Costs saved by netting per bar, currency.
    trades : ndarray, shape (n_trades, 9)
        Trade records, columns :data:`portfolio.rebalance_nb.TRADE_FIELDS`.
    events : ndarray of int64, shape (n_events, 5)
        Rebalance decisions: decision bar, fill bar, level, reason, sleeve (-1 for portfolio).
    target_capital : ndarray, shape (T, S + 1)
        Capital target per account at each bar's close (from the allocation rules).
    flows : ndarray, shape (T, S + 1)
        Capital transferred into each account at each bar (negative = out), currency; the
        sleeve's time-weighted return is ``(equity_t - flow_t) / equity_{t-1} - 1``.
    drift : ndarray, shape (S,) per bar -> (T, S)
        Allocation drift of each strategy sleeve from its capital target at the bar's close,
        before any rebalance decided at that close (:func:`portfolio.allocation.drift_nb`).
    """

    equity: np.ndarray
    cash: np.ndarray
    units: np.ndarray
    sleeve_units: np.ndarray
    traded: np.ndarray
    commission: np.ndarray
    slippage: np.ndarray
    netting_saved: np.ndarray
    trades: np.ndarray
    events: np.ndarray
    target_capital: np.ndarray
    flows: np.ndarray
    drift: np.ndarray


@njit(cache=True)
def check_bars_nb(timestamps_ns: np.ndarray, every_ns: int) -> np.ndarray:
    """Drift-check bars: the first bar, then each first bar ``every_ns`` after the previous check.

    Parameters
    ----------
    timestamps_ns : ndarray of int64, shape (T,)
        Bar timestamps in nanoseconds, increasing.
    every_ns : int
        Minimum spacing between checks, nanoseconds (``rebalance_frequency_hours * 3600e9``).

    Returns
    -------
    ndarray of bool, shape (T,)
    """
    n = timestamps_ns.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return out
    last = timestamps_ns[0]
    out[0] = True
    for t in range(1, n):
        if timestamps_ns[t] - last >= every_ns:
            out[t] = True
            last = timestamps_ns[t]
    return out


@njit(cache=True)
def period_return_nb(prev_capital: float, capital: float, flow: float) -> float:
    """Time-weighted return of an account over one bar, capital moved in or out excluded.

    ``(capital - flow - prev_capital) / (prev_capital + max(flow, 0))``: the P&L of the bar
    (including the costs of deploying an inflow) over the capital at work, an inflow counting
    as present for the whole bar (it arrives at a close and is deployed at that close). 0 when
    there was no capital at work.

    Parameters
    ----------
    prev_capital, capital : float
        Account value at the previous and at this close, currency.
    flow : float
        Capital moved into the account at this close (negative = out), currency.
    """
    base = prev_capital + max(flow, 0.0)
    if not base > 0.0:
        return 0.0
    return (capital - flow - prev_capital) / base


@njit(cache=True)
def period_returns_nb(capital: np.ndarray, flows: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """:func:`period_return_nb` for every bar and account.

    Parameters
    ----------
    capital, flows : ndarray, shape (T, K)
        End-of-bar account values and flows into them, currency.
    initial : ndarray, shape (K,)
        Account values before the first bar.

    Returns
    -------
    ndarray, shape (T, K)
    """
    n_t, n_k = capital.shape
    out = np.empty((n_t, n_k))
    for k in range(n_k):
        prev = initial[k]
        for t in range(n_t):
            out[t, k] = period_return_nb(prev, capital[t, k], flows[t, k])
            prev = capital[t, k]
    return out


@njit(cache=True)
def _mark_nb(prices_t: np.ndarray, units: np.ndarray, cash: np.ndarray, equity: np.ndarray) -> None:
    """Equity per account = cash + sum(units * price), NaN prices (unlisted) valued at zero.

    The last account is the cash-only reserve: its equity is its cash.
    """
    n_acc, n_a = units.shape
    for s in range(n_acc - 1):
        v = cash[s]
        for a in range(n_a):
            u = units[s, a]
            if u != 0.0:
                v += u * prices_t[a]
        equity[s] = v
    equity[n_acc - 1] = cash[n_acc - 1]


@njit(cache=True)
def _push_event(
    events: np.ndarray, n_ev: int, d: int, f: int, level: int, reason: int, sleeve: int
) -> tuple[np.ndarray, int]:
    if n_ev >= events.shape[0]:
        grown = np.empty((2 * events.shape[0] + 16, _N_EVENT_FIELDS), dtype=np.int64)
        grown[:n_ev] = events[:n_ev]
        events = grown
    events[n_ev, 0] = d
    events[n_ev, 1] = f
    events[n_ev, 2] = level
    events[n_ev, 3] = reason
    events[n_ev, 4] = sleeve
    return events, n_ev + 1


@njit(cache=True)
def _fill_step_nb(
    p: np.ndarray,
    units: np.ndarray,
    cash: np.ndarray,
    eq: np.ndarray,
    target: np.ndarray,
    active: np.ndarray,
    transfer: np.ndarray,
    costs: np.ndarray,
    min_trade_value: float,
    lot_size: float,
    max_leverage: float,
    netting: bool,
    t: int,
    rec: np.ndarray,
    n_rec: int,
    q: np.ndarray,
    eff_t: np.ndarray,
    traded_row: np.ndarray,
    comm_row: np.ndarray,
    slip_row: np.ndarray,
    flow_row: np.ndarray,
    saved_out: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Plan and execute one rebalance step at bar ``t``; accumulate its flows and savings."""
    plan_fills_nb(
        p, units, cash, eq, target, active, transfer, costs, min_trade_value, lot_size,
        max_leverage, q, eff_t,
    )  # fmt: skip
    rec, n_rec, saved = execute_fills_nb(
        p, units, cash, q, eff_t, costs, netting, t, rec, n_rec, traded_row, comm_row, slip_row
    )
    saved_out[t] += saved
    for s in range(eff_t.shape[0]):
        flow_row[s] += eff_t[s]
    return rec, n_rec


@njit(cache=True)
def simulate_nb(
    prices: np.ndarray,
    weights: np.ndarray,
    has_signal: np.ndarray,
    alloc_weights: np.ndarray,
    min_capital: np.ndarray,
    max_capital: np.ndarray,
    risk_multiplier: np.ndarray,
    initial_capital: float,
    check_mask: np.ndarray,
    calendar_mask: np.ndarray,
    threshold: float,
    relative_band: bool,
    costs: np.ndarray,
    min_trade_value: float,
    lot_size: float,
    max_leverage: float,
    netting: bool,
    lag: int,
    portfolio_rebalancing: bool,
    risk_adjusted: bool,
    ra_lookback: int,
    ra_sensitivity: float,
    record_sleeve_units: bool,
) -> SimulationOutput:
    """Run the whole multi-sleeve accounting pass.

    Parameters
    ----------
    prices : ndarray, shape (T, A)
        Closes, currency per unit; NaN before an asset's first price (not tradable).
    weights : ndarray, shape (S, T, A)
        Target weight rows per sleeve (fractions of sleeve capital); rows where
        ``has_signal[s, t]`` is False are ignored ("hold").
    has_signal : ndarray of bool, shape (S, T)
        Whether sleeve ``s`` emitted a target row at close ``t``.
    alloc_weights, min_capital, max_capital, risk_multiplier : ndarray, shape (S,)
        From the portfolio configuration (weights sum to 1; capital in currency).
    initial_capital : float
        Total starting capital, split by the allocation rules at bar 0.
    check_mask, calendar_mask : ndarray of bool, shape (T,)
        Drift-check bars and calendar rebalance bars (from the calendar only, never prices).
    threshold : float
        Drift band; a rebalance fires when ``max |drift| > threshold``.
    relative_band : bool
        Drift relative to target (True) or absolute in weight (False).
    costs : ndarray, shape (4,)
        ``[commission_bps, commission_fixed, commission_min, slippage_bps]``.
    min_trade_value, lot_size, max_leverage : float
        Order filters and limits.
    netting : bool
        Net the sleeves' orders per asset before costs.
    lag : int
        Bars between decision close and fill close (>= 0).
    portfolio_rebalancing : bool
        Whether capital is ever moved between sleeves (False for standalone runs).
    risk_adjusted : bool
        Tilt the sleeve weights by trailing sleeve performance at each portfolio rebalance.
    ra_lookback : int
        Trailing window (bars) of sleeve returns for the risk-adjusted tilt.
    ra_sensitivity : float
        Tilt strength, see :mod:`portfolio.risk_adjusted`.
    record_sleeve_units : bool
        Keep the (T, S + 1, A) units history (memory S * T * A * 8 bytes).

    Returns
    -------
    SimulationOutput
    """
    n_t, n_a = prices.shape
    n_s = alloc_weights.shape[0]
    n_acc = n_s + 1  # strategy sleeves + reserve
    reserve = n_s

    units = np.zeros((n_acc, n_a))
    cash = np.zeros(n_acc)
    eq = np.zeros(n_acc)
    last_w = np.zeros((n_s, n_a))
    has_last_w = np.zeros(n_s, dtype=np.bool_)

    # Initial split of the capital by the allocation rules (reserve gets what caps leave over).
    init_targets, init_unalloc = allocate_capital(
        initial_capital, alloc_weights, min_capital, max_capital
    )
    for s in range(n_s):
        cash[s] = init_targets[s]
    cash[reserve] = init_unalloc

    out_eq = np.empty((n_t, n_acc))
    out_cash = np.empty((n_t, n_acc))
    out_units = np.empty((n_t, n_a))
    out_sleeve_units = np.zeros((n_t if record_sleeve_units else 0, n_acc, n_a))
    out_traded = np.zeros((n_t, n_acc))
    out_comm = np.zeros((n_t, n_acc))
    out_slip = np.zeros((n_t, n_acc))
    out_saved = np.zeros(n_t)
    out_target_cap = np.empty((n_t, n_acc))
    out_flow = np.zeros((n_t, n_acc))
    out_drift = np.zeros((n_t, n_s))

    # Room for ~64 full rebalances up front; np.empty leaves untouched pages unallocated.
    rec = np.empty((64 * n_acc * n_a + 64, 9))
    n_rec = 0
    events = np.empty((64, _N_EVENT_FIELDS), dtype=np.int64)
    n_ev = 0

    # Pending orders: one slot per fill bar modulo (lag + 1).
    n_slots = lag + 1
    pend_target = np.zeros((n_slots, n_acc, n_a))
    pend_active = np.zeros((n_slots, n_acc), dtype=np.bool_)
    pend_transfer = np.zeros((n_slots, n_acc))
    pend_has = np.zeros(n_slots, dtype=np.bool_)
    pend_portfolio = np.zeros(n_slots, dtype=np.bool_)
    n_portfolio_pending = 0
    # What is already decided but not filled (only with lag >= 2): the latest pending target of
    # each account and the capital on its way in, so that a new decision builds on them instead
    # of undoing a pending signal or sizing on equity from before a transfer.
    latest_target = np.zeros((n_acc, n_a))
    latest_slot = np.full(n_acc, -1, dtype=np.int64)
    pending_in = np.zeros(n_acc)
    calendar_due = False

    q = np.zeros((n_acc, n_a))
    eff_t = np.zeros(n_acc)
    tgt_units = np.zeros(n_a)
    dec_target = np.zeros((n_acc, n_a))
    dec_active = np.zeros(n_acc, dtype=np.bool_)
    dec_transfer = np.zeros(n_acc)
    cap_target = np.zeros(n_acc)
    base_w = alloc_weights.copy()
    rets = np.zeros((max(ra_lookback, 1), n_s))

    for t in range(n_t):
        p = prices[t]
        # 1. fills of orders decided at t - lag
        if lag > 0:
            slot = t % n_slots
            if pend_has[slot]:
                _mark_nb(p, units, cash, eq)
                rec, n_rec = _fill_step_nb(
                    p, units, cash, eq, pend_target[slot], pend_active[slot],
                    pend_transfer[slot], costs, min_trade_value, lot_size, max_leverage, netting,
                    t, rec, n_rec, q, eff_t, out_traded[t], out_comm[t], out_slip[t],
                    out_flow[t], out_saved,
                )  # fmt: skip
                pend_has[slot] = False
                for s in range(n_acc):
                    if latest_slot[s] == slot:
                        latest_slot[s] = -1
                    pending_in[s] -= pend_transfer[slot, s]
                if pend_portfolio[slot]:
                    pend_portfolio[slot] = False
                    n_portfolio_pending -= 1
                    if n_portfolio_pending == 0:
                        pending_in[:] = 0.0

        # 2. mark to the close of t
        _mark_nb(p, units, cash, eq)
        total = 0.0
        for s in range(n_acc):
            total += eq[s]

        # 3. decide with data up to t
        any_order = False
        for s in range(n_acc):
            dec_active[s] = False
            dec_transfer[s] = 0.0

        # capital targets (also recorded every bar for drift reports)
        w_now = base_w
        if risk_adjusted and t >= 2:
            n_win = min(t, ra_lookback)
            for i in range(n_win):
                tt = t - n_win + 1 + i
                for s in range(n_s):
                    # time-weighted: capital moved in or out is not performance
                    cur = eq[s] if tt == t else out_eq[tt, s]
                    rets[i, s] = period_return_nb(out_eq[tt - 1, s], cur, out_flow[tt, s])
            w_now = risk_adjusted_weights_nb(
                rets[:n_win], base_w, ra_sensitivity,
                min_capital / max(total, 1e-300), max_capital / max(total, 1e-300),
            )  # fmt: skip
        targets = cap_target[:n_s]
        cap_target[reserve] = allocate_capital_into(total, w_now, min_capital, max_capital, targets)

        worst = 0.0
        if total > 0.0:
            drift = out_drift[t]
            drift_into_nb(eq[:n_s], targets, total, relative_band, drift)
            for s in range(n_s):
                worst = max(worst, abs(drift[s]))
        fire_reason = -1
        if portfolio_rebalancing and calendar_mask[t]:
            calendar_due = True
        if portfolio_rebalancing and n_portfolio_pending == 0 and total > 0.0:
            if calendar_due:
                # A calendar date that fell while a rebalance was in flight (lag >= 2) fires
                # on the first bar where nothing is in flight: deferred, never dropped.
                fire_reason = REASON_CALENDAR
                calendar_due = False
            elif check_mask[t] and worst > threshold:
                fire_reason = REASON_DRIFT

        for s in range(n_s):
            signal = has_signal[s, t]
            if signal:
                for a in range(n_a):
                    last_w[s, a] = weights[s, t, a]
                has_last_w[s] = True
                events, n_ev = _push_event(events, n_ev, t, t + lag, LEVEL_SLEEVE, REASON_SIGNAL, s)
            if fire_reason >= 0:
                cap = cap_target[s]
                dec_transfer[s] = cap - eq[s]
                dec_active[s] = True
                # The holdings the sleeve will have once its pending orders fill.
                base = latest_target[s] if latest_slot[s] >= 0 else units[s]
                holds = False
                for a in range(n_a):
                    if base[a] != 0.0:
                        holds = True
                        break
                if signal or (has_last_w[s] and (not holds or eq[s] <= 0.0)):
                    # New weights, or a sleeve with nothing to resize (drained to cash or
                    # empty): size its strategy's latest weights on the target capital.
                    sleeve_target_units_nb(
                        last_w[s], cap, p, risk_multiplier[s], max_leverage, lot_size, tgt_units
                    )
                    for a in range(n_a):
                        dec_target[s, a] = tgt_units[a]
                elif cap == eq[s]:
                    # Already on target: no capital to move and nothing to resize. Left out of
                    # the step, so a pending order fills as it was decided (re-targeting it
                    # would re-buy whatever that fill gets cut for cash).
                    dec_active[s] = False
                else:
                    # Resize the holdings, composition kept.
                    ratio = cap / eq[s] if eq[s] > 0.0 else 1.0
                    for a in range(n_a):
                        dec_target[s, a] = round_to_lot_nb(base[a] * ratio, lot_size)
                # No sleeve in the step (all on target): no order, nothing in flight.
                any_order = any_order or dec_active[s]
            elif signal:
                sleeve_target_units_nb(
                    last_w[s], eq[s] + pending_in[s], p, risk_multiplier[s], max_leverage,
                    lot_size, tgt_units,
                )  # fmt: skip
                for a in range(n_a):
                    dec_target[s, a] = tgt_units[a]
                dec_active[s] = True
                any_order = True
        if fire_reason >= 0:
            dec_transfer[reserve] = cap_target[reserve] - eq[reserve]
            events, n_ev = _push_event(events, n_ev, t, t + lag, LEVEL_PORTFOLIO, fire_reason, -1)

        if any_order:
            if lag == 0:
                rec, n_rec = _fill_step_nb(
                    p, units, cash, eq, dec_target, dec_active, dec_transfer, costs,
                    min_trade_value, lot_size, max_leverage, netting, t, rec, n_rec, q, eff_t,
                    out_traded[t], out_comm[t], out_slip[t], out_flow[t], out_saved,
                )  # fmt: skip
                _mark_nb(p, units, cash, eq)
            elif t + lag < n_t:
                slot = (t + lag) % n_slots
                pend_target[slot, :, :] = dec_target
                pend_active[slot, :] = dec_active
                pend_transfer[slot, :] = dec_transfer
                pend_has[slot] = True
                for s in range(n_acc):
                    if dec_active[s]:
                        latest_target[s, :] = dec_target[s]
                        latest_slot[s] = slot
                    pending_in[s] += dec_transfer[s]
                if fire_reason >= 0:
                    pend_portfolio[slot] = True
                    n_portfolio_pending += 1

        # 4. record
        for s in range(n_acc):
            out_eq[t, s] = eq[s]
            out_cash[t, s] = cash[s]
            out_target_cap[t, s] = cap_target[s]
        # Row by row (memory order); the reserve account never holds units.
        row = out_units[t]
        row[:] = units[0]
        for s in range(1, n_s):
            for a in range(n_a):
                row[a] += units[s, a]
        if record_sleeve_units:
            out_sleeve_units[t, :, :] = units

    return SimulationOutput(
        out_eq,
        out_cash,
        out_units,
        out_sleeve_units,
        out_traded,
        out_comm,
        out_slip,
        out_saved,
        rec[:n_rec],
        events[:n_ev].copy(),
        out_target_cap,
        out_flow,
        out_drift,
    )
