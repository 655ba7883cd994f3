"""Capital allocation across strategy sleeves: clamped targets and drift.

Target capital
--------------
For portfolio equity ``E`` (currency) and sleeves with target weights ``w_i``, capital bounds
``[min_i, max_i]``, the target of sleeve ``i`` is ``w_i * E`` clamped to its bounds, with the
capital that clamped sleeves give up (or need) redistributed to the unclamped sleeves pro rata to
their target weights, repeatedly, until nothing changes. The fixed point of that procedure is

    target_i = clip(lam * w_i, min_i, max_i)    with lam chosen so that sum_i target_i = E,

(every unclamped sleeve gets the same multiple ``lam`` of its weight) and
:func:`allocate_capital` computes it directly: ``f(lam) = sum_i clip(lam * w_i, min_i, max_i)``
is continuous and non-decreasing and piecewise linear with breakpoints ``min_i / w_i`` and
``max_i / w_i``, so ``lam`` is found exactly on the one linear piece where ``f`` crosses ``E``.

Special cases, chosen so that targets (plus unallocated cash) always add up to ``E``:

* ``E <= sum(min_i)``: every target is ``min_i * E / sum(min_i)`` (the minimums scaled pro rata).
* Every positive-weight sleeve at ``max_i`` and ``E`` above the caps: the remainder
  ``E - sum(caps)`` is *unallocated* cash, returned under the key :data:`UNALLOCATED`
  (the backtest keeps it as reserve cash outside the sleeves).
* A zero-weight sleeve never receives redistributed capital: its target is ``min_i`` (0 by
  default), scaled like the others when ``E`` is below the sum of minimums.
* ``E <= 0`` (a wiped-out portfolio): every target is 0 and ``E`` is reported as unallocated.

Drift
-----
``relative`` (default): ``(current_i - target_i) / target_i``; for a zero target, where a
relative drift is undefined, the drift is absolute in weight terms, ``current_i / E``.
``absolute``: ``(current_i - target_i) / E``, the difference of weights. With ``E <= 0`` every
drift is 0 (there is nothing meaningful to rebalance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
from numba import njit

from portfolio.contracts import PortfolioConfig
from portfolio.errors import ConfigError

__all__ = [
    "UNALLOCATED",
    "AllocationCalculator",
    "allocate_capital",
    "allocate_capital_into",
    "drift_into_nb",
    "drift_nb",
]

#: Key of the cash no sleeve may hold (all positive-weight sleeves at their caps).
UNALLOCATED = "__unallocated__"

DriftBand = Literal["relative", "absolute"]


@njit(cache=True)
def _clip(x: float, lo: float, hi: float) -> float:
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@njit(cache=True)
def allocate_capital(
    equity: float, weights: np.ndarray, min_cap: np.ndarray, max_cap: np.ndarray
) -> tuple[np.ndarray, float]:
    """Target capital per sleeve: weights times equity, clamped, excess redistributed.

    Parameters
    ----------
    equity : float
        Portfolio equity ``E`` in currency.
    weights : np.ndarray
        Target weights ``w``, float64, shape (n,), each >= 0 (they need not sum to 1).
    min_cap, max_cap : np.ndarray
        Capital bounds in currency, float64, shape (n,), ``0 <= min_cap <= max_cap``
        (``max_cap`` may be ``inf``). Not re-validated here (hot path): validate upstream,
        e.g. through :class:`~portfolio.contracts.PortfolioConfig`.

    Returns
    -------
    targets : np.ndarray
        Target capital per sleeve, float64, shape (n,).
    unallocated : float
        Capital no sleeve may hold (all positive-weight sleeves at ``max_cap``), or ``E`` itself
        when ``E <= 0``; otherwise 0. ``targets.sum() + unallocated == E`` up to rounding.

    Notes
    -----
    See the module docstring for the rule; the result is ``clip(lam * w, min_cap, max_cap)``
    with ``lam`` solved exactly on the linear piece of ``f(lam) = sum clip(lam * w, min, max)``
    that crosses ``E``, so it costs O(n^2) for n sleeves and never iterates to a tolerance.
    """
    targets = np.zeros(weights.shape[0], dtype=np.float64)
    unallocated = allocate_capital_into(equity, weights, min_cap, max_cap, targets)
    return targets, unallocated


@njit(cache=True)
def allocate_capital_into(
    equity: float,
    weights: np.ndarray,
    min_cap: np.ndarray,
    max_cap: np.ndarray,
    targets: np.ndarray,
) -> float:
    """:func:`allocate_capital` writing the targets into ``targets`` (shape (n,)).

    The backtest pass calls this every bar, so it allocates nothing but its small sort buffer;
    returns the unallocated capital. Same rule and arguments as :func:`allocate_capital`.
    """
    n = weights.shape[0]
    targets[:] = 0.0
    if not equity > 0.0:  # also catches NaN
        return equity

    sum_min = 0.0
    for i in range(n):
        sum_min += min_cap[i]
    if equity <= sum_min:
        scale = equity / sum_min
        for i in range(n):
            targets[i] = min_cap[i] * scale
        return 0.0

    # f(inf): positive-weight sleeves at their caps, zero-weight sleeves at their minimums.
    cap_total = 0.0
    for i in range(n):
        cap_total += max_cap[i] if weights[i] > 0.0 else min_cap[i]
    if equity >= cap_total:
        for i in range(n):
            targets[i] = max_cap[i] if weights[i] > 0.0 else min_cap[i]
        return equity - cap_total

    # Breakpoints of f, sorted; find consecutive (lam_lo, lam_hi] with f(lam_lo) < E <= f(lam_hi).
    bps = np.empty(2 * n, dtype=np.float64)
    m = 0
    for i in range(n):
        if weights[i] > 0.0:
            bps[m] = min_cap[i] / weights[i]
            bps[m + 1] = max_cap[i] / weights[i]
            m += 2
    bps = np.sort(bps[:m])
    lam_lo = 0.0
    lam_hi = np.inf
    for k in range(m):
        b = bps[k]
        if b <= lam_lo:
            continue
        if not b < np.inf:
            break
        f_b = 0.0
        for i in range(n):
            f_b += _clip(b * weights[i], min_cap[i], max_cap[i]) if weights[i] > 0.0 else min_cap[i]
        if f_b >= equity:
            lam_hi = b
            break
        lam_lo = b

    # On that piece each sleeve is either clamped (at min or at max) throughout, or free.
    fixed = 0.0
    w_free = 0.0
    for i in range(n):
        w = weights[i]
        if not w > 0.0:
            targets[i] = min_cap[i]
        elif max_cap[i] / w <= lam_lo:
            targets[i] = max_cap[i]
        elif min_cap[i] / w >= lam_hi:
            targets[i] = min_cap[i]
        else:
            targets[i] = np.nan  # free: set below
            w_free += w
            continue
        fixed += targets[i]
    if not w_free > 0.0:  # only reachable through rounding: keep the books balanced
        for i in range(n):
            if np.isnan(targets[i]):
                targets[i] = 0.0
        return equity - fixed
    lam = (equity - fixed) / w_free
    for i in range(n):
        if np.isnan(targets[i]):
            targets[i] = _clip(lam * weights[i], min_cap[i], max_cap[i])
    return 0.0


@njit(cache=True)
def drift_into_nb(
    current: np.ndarray, targets: np.ndarray, equity: float, relative: bool, out: np.ndarray
) -> None:
    """Drift of each sleeve from its target, written into ``out`` (shape (n,)).

    Parameters
    ----------
    current, targets : np.ndarray
        Current and target capital per sleeve in currency, float64, shape (n,).
    equity : float
        Portfolio equity in currency.
    relative : bool
        ``True``: ``(current - target) / target``, or ``current / equity`` where the target is 0.
        ``False``: ``(current - target) / equity``.
    out : np.ndarray
        Receives the drift per sleeve (dimensionless); all 0 when ``equity <= 0``.
    """
    n = current.shape[0]
    out[:] = 0.0
    if not equity > 0.0:
        return
    for i in range(n):
        if relative and targets[i] > 0.0:
            out[i] = (current[i] - targets[i]) / targets[i]
        else:
            # Zero target in relative mode: (current - 0) / equity, a weight.
            out[i] = (current[i] - targets[i]) / equity


@njit(cache=True)
def drift_nb(current: np.ndarray, targets: np.ndarray, equity: float, relative: bool) -> np.ndarray:
    """Drift of each sleeve from its target (see :func:`drift_into_nb` for the rule).

    Returns
    -------
    np.ndarray
        Drift per sleeve (dimensionless), float64, shape (n,); all 0 when ``equity <= 0``.
    """
    out = np.empty(current.shape[0], dtype=np.float64)
    drift_into_nb(current, targets, equity, relative, out)
    return out


class AllocationCalculator:
    """Target capital, drift and the rebalance decision for a :class:`PortfolioConfig`.

    Parameters
    ----------
    config : PortfolioConfig
        Sleeves, weights, capital bounds and the rebalance threshold.
    drift_band : {"relative", "absolute"}
        Drift definition (see the module docstring).

    Notes
    -----
    Mappings of current capital are keyed by strategy id; a missing id counts as 0 capital, an
    unknown id raises ``ConfigError``. The key :data:`UNALLOCATED` is accepted in the input (reserve
    cash counted in equity, never drifting).
    """

    def __init__(self, config: PortfolioConfig, drift_band: DriftBand = "relative") -> None:
        if not isinstance(config, PortfolioConfig):
            raise ConfigError(
                f"AllocationCalculator.config must be a PortfolioConfig, got "
                f"{type(config).__name__}"
            )
        if drift_band not in ("relative", "absolute"):
            raise ConfigError(
                f"AllocationCalculator.drift_band must be one of 'relative', 'absolute', "
                f"got {drift_band!r}"
            )
        self.config = config
        self.drift_band: DriftBand = drift_band
        self._ids = config.strategy_ids
        self._index = {sid: i for i, sid in enumerate(self._ids)}
        self._weights = config.target_weights
        self._min = np.array([a.min_capital for a in config.allocations], dtype=np.float64)
        self._max = np.array([a.max_capital for a in config.allocations], dtype=np.float64)
        for arr in (self._weights, self._min, self._max):
            arr.flags.writeable = False

    @property
    def weights(self) -> np.ndarray:
        """Target weights in allocation order, read-only float64 array (n,)."""
        return self._weights

    @property
    def min_capital(self) -> np.ndarray:
        """Minimum capital per sleeve (currency), read-only float64 array (n,)."""
        return self._min

    @property
    def max_capital(self) -> np.ndarray:
        """Maximum capital per sleeve (currency, may be inf), read-only float64 array (n,)."""
        return self._max

    def _vector(self, current: Mapping[str, float]) -> tuple[np.ndarray, float]:
        """Current capital in allocation order, and the equity including unallocated cash."""
        cur = np.zeros(len(self._ids), dtype=np.float64)
        extra = 0.0
        for sid, value in current.items():
            if sid == UNALLOCATED:
                extra = float(value)
                continue
            idx = self._index.get(sid)
            if idx is None:
                raise ConfigError(
                    f"unknown strategy {sid!r} in current allocations of portfolio "
                    f"{self.config.portfolio_id!r} (known: {', '.join(self._ids)})"
                )
            cur[idx] = float(value)
        equity = math.fsum([*cur.tolist(), extra])
        return cur, equity

    def calculate_targets(self, current_allocations: Mapping[str, float]) -> dict[str, float]:
        """Target capital per strategy for the equity in ``current_allocations``.

        Parameters
        ----------
        current_allocations : Mapping[str, float]
            Current capital per strategy id (currency); equity is their sum.

        Returns
        -------
        dict[str, float]
            Target capital per strategy id, plus :data:`UNALLOCATED` when (and only when)
            some capital cannot be placed (all caps reached, or equity <= 0); the values add up
            to the equity.
        """
        _, equity = self._vector(current_allocations)
        targets, unallocated = allocate_capital(equity, self._weights, self._min, self._max)
        out = dict(zip(self._ids, targets.tolist(), strict=True))
        if unallocated != 0.0:
            out[UNALLOCATED] = float(unallocated)
        return out

    def calculate_drift(self, current_allocations: Mapping[str, float]) -> dict[str, float]:
        """Drift of each strategy from its target (see the module docstring).

        Parameters
        ----------
        current_allocations : Mapping[str, float]
            Current capital per strategy id (currency).

        Returns
        -------
        dict[str, float]
            Drift per strategy id (dimensionless), never containing :data:`UNALLOCATED`.
        """
        cur, equity = self._vector(current_allocations)
        targets, _ = allocate_capital(equity, self._weights, self._min, self._max)
        drift = drift_nb(cur, targets, equity, self.drift_band == "relative")
        return dict(zip(self._ids, drift.tolist(), strict=True))

    def needs_rebalance(self, drift: Mapping[str, float]) -> bool:
        """Whether ``max |drift| > rebalance_threshold`` (strictly greater; NaN counts as true)."""
        threshold = self.config.rebalance_threshold
        # A NaN drift means broken marks: flag it rather than silently skip it.
        return any(not abs(d) <= threshold for d in drift.values())
