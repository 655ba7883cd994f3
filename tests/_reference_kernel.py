"""Plain-Python reference of the accounting pass (:func:`backtest.kernel.simulate_nb`).

Written from the docstrings of :mod:`backtest.kernel`, :mod:`portfolio.rebalance_nb` and
:mod:`portfolio.allocation`, in a deliberately different style: per-account lists and dicts, a
dict of pending orders keyed by fill bar, an exact (piecewise-linear) solve of the buy scale
instead of a bisection, an allocation found on the breakpoints of ``f(lam)`` by interpolation.
What a lag >= 2 decision builds on (the holdings a sleeve will have once its pending orders fill,
the capital on its way in) is read off the dict of pending orders each bar, where the kernel
keeps running bookkeeping.
Details the docstrings leave open were taken from the kernel and are marked ``(kernel)``.

This module is a test helper, not a test module (the leading underscore keeps pytest away).
The one library function it reuses is :func:`portfolio.risk_adjusted.risk_adjusted_weights_nb`
(the tilt rule itself, tested in its own module); everything else is re-derived here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from portfolio.risk_adjusted import risk_adjusted_weights_nb

__all__ = [
    "RefOutput",
    "StepResult",
    "ref_allocate",
    "ref_buy_scale",
    "ref_commission",
    "ref_drift",
    "ref_order_cost",
    "ref_round_to_lot",
    "ref_step",
    "ref_target_units",
    "reference_simulate",
]

# Tolerance of the lot rounding, from the docstring of portfolio.position_sizer.round_to_lot_nb.
_LOT_EPS_ABS = 1e-9
_LOT_EPS_REL = 1e-14
# An order is dust, not an order, when |target - units| <= _DUST * max(|target|, |units|)
# (docstring of portfolio.rebalance_nb, step 1).
_DUST = 1e-9


# --------------------------------------------------------------------------------- cost model


def ref_commission(notional: float, costs: np.ndarray) -> float:
    """``max(min, bps * 1e-4 * N + fixed)`` for ``N > 0``, else 0."""
    if notional <= 0.0:
        return 0.0
    return max(float(costs[2]), float(costs[0]) * 1e-4 * notional + float(costs[1]))


def ref_order_cost(notional: float, costs: np.ndarray) -> float:
    """Commission plus slippage of one order of notional ``N >= 0``."""
    if notional <= 0.0:
        return 0.0
    return ref_commission(notional, costs) + float(costs[3]) * 1e-4 * notional


def ref_round_to_lot(units: float, lot: float) -> float:
    """Toward zero to whole lots, keeping quantities within ``eps`` lots below a multiple."""
    if not lot > 0.0:
        return units
    x = abs(units) / lot
    n = math.floor(x)
    if (n + 1) - x <= _LOT_EPS_ABS + _LOT_EPS_REL * x:
        n += 1
    if n == 0:
        return 0.0
    return math.copysign(n * lot, units)


def ref_buy_scale(notionals: list[float], costs: np.ndarray, budget: float) -> float:
    """Exact supremum of ``k`` in ``[0, 1]`` with ``cash(k) <= budget``.

    For ``k > 0`` the cash of the scaled basket is ``sum_i n_i k (1 + s) + max(min, b n_i k + f)``,
    continuous and piecewise linear in ``k`` (a kink where an order leaves the minimum
    commission), with a jump at ``k = 0`` (an empty basket costs nothing). Each linear piece is
    solved exactly instead of bisecting.
    """
    ns = [n for n in notionals if n > 0.0]
    b, f, cmin, s = float(costs[0]) * 1e-4, float(costs[1]), float(costs[2]), float(costs[3]) * 1e-4

    def cash(k: float) -> float:
        return sum(n * k + max(cmin, b * n * k + f) + s * n * k for n in ns)

    if not ns:  # an empty basket costs nothing; a negative budget fits nothing at all
        return 1.0 if budget >= 0.0 else 0.0
    if cash(1.0) <= budget:
        return 1.0
    kinks = set()
    if b > 0.0 and cmin > f:
        for n in ns:
            k = (cmin - f) / (b * n)
            if 0.0 < k < 1.0:
                kinks.add(k)
    edges = [0.0, *sorted(kinks), 1.0]
    for lo, hi in itertools.pairwise(edges):
        if cash(hi) <= budget:
            continue
        mid = 0.5 * (lo + hi)
        at_min = [b * n * mid + f < cmin for n in ns]
        intercept = sum(cmin if m else f for m in at_min)
        slope = sum(n * (1.0 + s) + (0.0 if m else b * n) for n, m in zip(ns, at_min, strict=True))
        k = (budget - intercept) / slope
        return min(max(k, lo), hi)
    return 1.0  # pragma: no cover - cash(1) > budget means some piece fails


# --------------------------------------------------------------------------------- allocation


def ref_allocate(
    equity: float, weights: list[float], min_cap: list[float], max_cap: list[float]
) -> tuple[list[float], float]:
    """Target capital ``clip(lam * w, min, max)`` with ``sum == E``, plus unallocated cash."""
    n = len(weights)
    if not equity > 0.0:
        return [0.0] * n, equity
    sum_min = sum(min_cap)
    if equity <= sum_min:
        return [m * equity / sum_min for m in min_cap], 0.0

    def clip(x: float, lo: float, hi: float) -> float:
        return min(max(x, lo), hi)

    def f(lam: float) -> float:
        return sum(
            clip(lam * w, lo, hi) if w > 0.0 else lo
            for w, lo, hi in zip(weights, min_cap, max_cap, strict=True)
        )

    cap_total = sum(
        hi if w > 0.0 else lo for w, lo, hi in zip(weights, min_cap, max_cap, strict=True)
    )
    if equity >= cap_total:
        return [
            hi if w > 0.0 else lo for w, lo, hi in zip(weights, min_cap, max_cap, strict=True)
        ], equity - cap_total
    points = sorted(
        {
            x
            for w, lo, hi in zip(weights, min_cap, max_cap, strict=True)
            if w > 0.0
            for x in (lo / w, hi / w)
            if math.isfinite(x) and x > 0.0
        }
    )
    lam_prev, f_prev = 0.0, f(0.0)
    lam = math.nan
    for x in points:
        fx = f(x)
        if fx >= equity:
            lam = lam_prev + (equity - f_prev) * (x - lam_prev) / (fx - f_prev)
            break
        lam_prev, f_prev = x, fx
    else:
        # beyond the last finite breakpoint only uncapped sleeves still grow
        slope = sum(
            w for w, hi in zip(weights, max_cap, strict=True) if w > 0.0 and not math.isfinite(hi)
        )
        lam = lam_prev + (equity - f_prev) / slope
    return [
        clip(lam * w, lo, hi) if w > 0.0 else lo
        for w, lo, hi in zip(weights, min_cap, max_cap, strict=True)
    ], 0.0


def ref_drift(
    current: list[float], targets: list[float], equity: float, relative: bool
) -> list[float]:
    """Relative drift ``(c - t) / t`` (absolute ``c / E`` at a zero target) or ``(c - t) / E``."""
    if not equity > 0.0:
        return [0.0] * len(current)
    return [
        (c - t) / t if relative and t > 0.0 else (c - t) / equity
        for c, t in zip(current, targets, strict=True)
    ]


def ref_target_units(
    weights: list[float],
    capital: float,
    prices: list[float],
    risk_multiplier: float,
    max_leverage: float,
    lot: float,
) -> list[float]:
    """``round_to_lot(w * m * capital / p)``, ``m`` capped so ``sum |w| * m <= max_leverage``.

    The gross exposure counts only the assets that can be bought (finite positive price): a
    weight on an unlisted asset buys nothing, so it must not shrink the others.
    """
    gross = sum(
        abs(w) for w, p in zip(weights, prices, strict=True) if math.isfinite(p) and p > 0.0
    )
    m = risk_multiplier
    if gross > 0.0 and gross * m > max_leverage:
        m = max_leverage / gross
    out = []
    for w, p in zip(weights, prices, strict=True):
        if w != 0.0 and math.isfinite(p) and p > 0.0 and capital > 0.0:
            out.append(ref_round_to_lot(w * m * capital / p, lot))
        else:
            out.append(0.0)
    return out


# --------------------------------------------------------------------------------- one step


@dataclass
class StepResult:
    """What one rebalance step did (all per account, currency)."""

    quantities: dict[tuple[int, int], float]  # (account, asset) -> signed executed units
    transfers: list[float]
    trades: list[tuple[float, ...]]  # rows of TRADE_FIELDS, sells first
    saved: float
    notional: list[float]
    commission: list[float]
    slippage: list[float]


def ref_step(
    prices: list[float],
    units: list[list[float]],
    cash: list[float],
    equity: list[float],
    target: list[list[float]],
    active: list[bool],
    transfer: list[float],
    costs: np.ndarray,
    min_trade_value: float,
    lot: float,
    max_leverage: float,
    netting: bool,
    bar: int,
) -> StepResult:
    """Apply one rebalance step to ``units`` and ``cash`` (lists, updated in place)."""
    n_acc = len(units)
    tradable = [math.isfinite(p) and p > 0.0 for p in prices]

    # 1. orders, dropping floating-point dust and those below the minimum notional
    orders: dict[tuple[int, int], float] = {}
    for s in range(n_acc):
        if not active[s]:
            continue
        for a, p in enumerate(prices):
            if not tradable[a]:
                continue
            d = target[s][a] - units[s][a]
            dust = _DUST * max(abs(target[s][a]), abs(units[s][a]))
            if abs(d) > dust and abs(d) * p >= min_trade_value:
                orders[(s, a)] = d

    # 2. sells first: proceeds net of standalone costs; loss-making sells (proceeds below
    #    their own costs) are dropped when the account would otherwise be overdrawn
    avail = list(cash)
    for (s, a), d in orders.items():
        if d < 0.0:
            n = -d * prices[a]
            avail[s] += n - ref_order_cost(n, costs)
    for s in range(n_acc):
        if active[s] and avail[s] + (max_leverage - 1.0) * max(equity[s], 0.0) < 0.0:
            avail[s] = cash[s]
            for (acc, a), d in list(orders.items()):
                if acc != s or d >= 0.0:
                    continue
                net = -d * prices[a] - ref_order_cost(-d * prices[a], costs)
                if net < 0.0:
                    del orders[(acc, a)]
                else:
                    avail[s] += net

    # 3. transfers: givers release at most their cash after sells, receivers share pro rata
    eff = [0.0] * n_acc
    released = 0.0
    for s in range(n_acc):
        if transfer[s] < 0.0:
            eff[s] = -min(-transfer[s], max(avail[s], 0.0))
            released += -eff[s]
    wanted = sum(t for t in transfer if t > 0.0)
    ratio = min(1.0, released / wanted) if wanted > 0.0 else 1.0
    for s in range(n_acc):
        if transfer[s] > 0.0:
            eff[s] = transfer[s] * ratio

    # 4. buys scaled to the buying power with standalone costs
    for s in range(n_acc):
        buys = {a: d for (acc, a), d in orders.items() if acc == s and d > 0.0}
        if not buys:
            continue
        budget = avail[s] + eff[s] + (max_leverage - 1.0) * max(equity[s], 0.0)
        k = ref_buy_scale([d * prices[a] for a, d in buys.items()], costs, budget)
        if k < 1.0:
            for a, d in buys.items():
                scaled = ref_round_to_lot(d * k, lot)
                if scaled * prices[a] < min_trade_value:
                    scaled = 0.0
                orders[(s, a)] = scaled
    orders = {key: d for key, d in orders.items() if d != 0.0}

    # 5. fills (with netting: one order per asset, costs shared pro rata to |q|)
    for s in range(n_acc):
        cash[s] += eff[s]
    notional = [0.0] * n_acc
    commission = [0.0] * n_acc
    slippage = [0.0] * n_acc
    saved = 0.0
    trades: list[tuple[float, ...]] = []
    slip = float(costs[3]) * 1e-4
    for a, p in enumerate(prices):
        legs = {s: d for (s, aa), d in orders.items() if aa == a}
        if not legs:
            continue
        gross_value = sum(abs(d) * p for d in legs.values())
        net_value = abs(sum(legs.values())) * p
        net_cost = ref_commission(net_value, costs) + slip * net_value
        if netting:
            saved += sum(ref_order_cost(abs(d) * p, costs) for d in legs.values()) - net_cost
        for s, d in legs.items():
            value = abs(d) * p
            if netting:
                share = value / gross_value
                comm = ref_commission(net_value, costs) * share
                slp = slip * net_value * share
            else:
                comm = ref_commission(value, costs)
                slp = slip * value
            units[s][a] += d
            cash[s] -= d * p + comm + slp
            notional[s] += value
            commission[s] += comm
            slippage[s] += slp
            # (kernel) "netted" marks an asset that more than one account traded in the step
            netted = 1.0 if netting and len(legs) > 1 else 0.0
            trades.append((float(bar), float(s), float(a), d, p, value, comm, slp, netted))
    # sells before buys; (kernel) within a side by asset, then account
    trades.sort(key=lambda r: (r[3] > 0.0, r[2], r[1]))
    return StepResult(orders, eff, trades, saved, notional, commission, slippage)


# --------------------------------------------------------------------------------- the pass


@dataclass
class _Order:
    target: list[list[float]]
    active: list[bool]
    transfer: list[float]
    portfolio: bool


@dataclass
class RefOutput:
    """Same fields as :class:`backtest.kernel.SimulationOutput`, as numpy arrays."""

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
    extra: dict[str, object] = field(default_factory=dict)


def reference_simulate(
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
    record_sleeve_units: bool = True,
) -> RefOutput:
    """The whole pass, one bar at a time, with the arguments of ``simulate_nb``."""
    n_t, n_a = prices.shape
    n_s = len(alloc_weights)
    n_acc = n_s + 1
    reserve = n_s
    base_w = [float(w) for w in alloc_weights]
    mins = [float(x) for x in min_capital]
    maxs = [float(x) for x in max_capital]

    start, unalloc0 = ref_allocate(float(initial_capital), base_w, mins, maxs)
    cash = [*start, unalloc0]
    units = [[0.0] * n_a for _ in range(n_acc)]
    last_w: list[list[float] | None] = [None] * n_s
    pending: dict[int, _Order] = {}  # fill bar -> order decided lag bars before
    calendar_owed = False  # a calendar date fell while a rebalance was in flight

    rec_eq: list[list[float]] = []
    rec_cash: list[list[float]] = []
    rec_units: list[list[float]] = []
    rec_sleeve: list[list[list[float]]] = []
    traded = np.zeros((n_t, n_acc))
    comm = np.zeros((n_t, n_acc))
    slip = np.zeros((n_t, n_acc))
    saved = np.zeros(n_t)
    flows = np.zeros((n_t, n_acc))
    drift_out = np.zeros((n_t, n_s))
    target_cap = np.zeros((n_t, n_acc))
    trades: list[tuple[float, ...]] = []
    events: list[tuple[int, int, int, int, int]] = []

    def mark(px: list[float]) -> list[float]:
        # Units are only ever held in listed assets, so NaN prices meet zero units (skipped).
        return [
            cash[s] + sum(units[s][a] * px[a] for a in range(n_a) if units[s][a] != 0.0)
            for s in range(n_acc)
        ]

    def run_step(t: int, px: list[float], eq: list[float], order: _Order) -> None:
        nonlocal saved
        res = ref_step(
            px, units, cash, eq, order.target, order.active, order.transfer, costs,
            min_trade_value, lot_size, max_leverage, netting, t,
        )  # fmt: skip
        trades.extend(res.trades)
        saved[t] += res.saved
        for s in range(n_acc):
            flows[t, s] += res.transfers[s]
            traded[t, s] += res.notional[s]
            comm[t, s] += res.commission[s]
            slip[t, s] += res.slippage[s]

    for t in range(n_t):
        px = [float(x) for x in prices[t]]

        # 1. fill what was decided lag bars ago, at this close
        if t in pending:
            run_step(t, px, mark(px), pending.pop(t))

        # 2. mark to this close
        eq = mark(px)
        total = sum(eq)

        # 3. decide with data up to t
        w_now = base_w
        if risk_adjusted and t >= 2:
            # (kernel) trailing time-weighted sleeve returns over min(t, lookback) bars
            n_win = min(t, ra_lookback)
            window = np.zeros((n_win, n_s))
            for i, tt in enumerate(range(t - n_win + 1, t + 1)):
                for s in range(n_s):
                    prev = rec_eq[tt - 1][s]
                    now = eq[s] if tt == t else rec_eq[tt][s]
                    flow = flows[tt, s]
                    at_work = prev + max(flow, 0.0)  # an inflow works for the whole bar
                    window[i, s] = (now - flow - prev) / at_work if at_work > 0.0 else 0.0
            denom = max(total, 1e-300)
            w_now = [
                float(x)
                for x in risk_adjusted_weights_nb(
                    window,
                    np.asarray(base_w),
                    ra_sensitivity,
                    np.asarray(mins) / denom,
                    np.asarray(maxs) / denom,
                )
            ]
        caps, unalloc = ref_allocate(total, w_now, mins, maxs)
        target_cap[t] = [*caps, unalloc]
        drift = ref_drift(eq[:n_s], caps, total, relative_band)
        drift_out[t] = drift

        in_flight = any(o.portfolio for o in pending.values())
        reason = -1
        if portfolio_rebalancing and calendar_mask[t]:
            calendar_owed = True  # a calendar date is never dropped, at most deferred
        if portfolio_rebalancing and not in_flight and total > 0.0:
            if calendar_owed:
                reason = 2
                calendar_owed = False
            elif check_mask[t] and max(abs(d) for d in drift) > threshold:
                reason = 1

        # What is decided but not filled yet. With lag 1 the order decided at t - 1 has just
        # filled, so this only matters with lag >= 2. Fill bars follow decision bars, so the
        # pending order with the largest fill bar is the latest decision.
        def will_hold(s: int) -> list[float]:
            """Units of account ``s`` once its pending orders fill (latest pending target)."""
            for fill_bar in sorted(pending, reverse=True):
                if pending[fill_bar].active[s]:
                    return pending[fill_bar].target[s]
            return units[s]

        # capital on its way into each account (negative: on its way out)
        incoming = [sum(o.transfer[s] for o in pending.values()) for s in range(n_acc)]

        target = [list(row) for row in units]
        active = [False] * n_acc
        transfer = [0.0] * n_acc
        for s in range(n_s):
            signal = bool(has_signal[s, t])
            if signal:
                last_w[s] = [float(x) for x in weights[s, t]]
                events.append((t, t + lag, 0, 0, s))
            lw = last_w[s]
            if reason >= 0:
                # capital moves to the target; holdings resized by target / equity
                active[s] = True
                transfer[s] = caps[s] - eq[s]
                holds_nothing = all(u == 0.0 for u in will_hold(s))
                if lw is not None and (signal or eq[s] <= 0.0 or holds_nothing):
                    # new weights, or a sleeve with nothing to resize (empty or drained to
                    # cash) with known weights: sized on the target capital directly
                    target[s] = ref_target_units(
                        lw, caps[s], px, float(risk_multiplier[s]), max_leverage, lot_size
                    )
                elif caps[s] == eq[s]:
                    # already on target: left out of the step (a pending order fills as is)
                    active[s] = False
                else:
                    # resize what the sleeve will hold once its pending orders fill, so a
                    # pending signal is not undone; (kernel) ratio 1 for an empty sleeve
                    ratio = caps[s] / eq[s] if eq[s] > 0.0 else 1.0
                    target[s] = [ref_round_to_lot(u * ratio, lot_size) for u in will_hold(s)]
            elif signal and lw is not None:
                # sized on the capital the sleeve will have once transfers in flight arrive
                active[s] = True
                target[s] = ref_target_units(
                    lw, eq[s] + incoming[s], px, float(risk_multiplier[s]), max_leverage,
                    lot_size,
                )  # fmt: skip
        if reason >= 0:
            transfer[reserve] = unalloc - eq[reserve]
            events.append((t, t + lag, 1, reason, -1))

        if any(active):
            order = _Order(target, active, transfer, reason >= 0)
            if lag == 0:
                run_step(t, px, eq, order)
                eq = mark(px)
            elif t + lag < n_t:
                pending[t + lag] = order

        # 4. record end of bar
        rec_eq.append(list(eq))
        rec_cash.append(list(cash))
        rec_units.append([sum(units[s][a] for s in range(n_acc)) for a in range(n_a)])
        rec_sleeve.append([list(row) for row in units])

    return RefOutput(
        equity=np.array(rec_eq),
        cash=np.array(rec_cash),
        units=np.array(rec_units).reshape(n_t, n_a),
        sleeve_units=(
            np.array(rec_sleeve).reshape(n_t, n_acc, n_a)
            if record_sleeve_units
            else np.zeros((0, n_acc, n_a))
        ),
        traded=traded,
        commission=comm,
        slippage=slip,
        netting_saved=saved,
        trades=np.array(trades, dtype=np.float64).reshape(-1, 9),
        events=np.array(events, dtype=np.int64).reshape(-1, 5),
        target_capital=target_cap,
        flows=flows,
        drift=drift_out,
    )
