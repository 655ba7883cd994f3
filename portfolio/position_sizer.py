"""Position sizing: units from capital, and position weights from volatility, Kelly or VaR budgets.

Two kinds of output live here:

* **Units** (:meth:`PositionSizer.calculate_position_size`): how many shares/contracts a strategy
  buys with the capital allocated to it, rounded toward zero to whole lots by
  :func:`round_to_lot_nb`. The jitted backtest pass imports that very function, so the live
  sizing and the backtest cannot round differently.
* **Position weights** (fractions of capital, signed: negative is short) from three classic
  rules, each clamped to ``[-max_position, max_position]``:

  - volatility targeting: ``target_vol / instrument_vol`` (Moskowitz, Ooi & Pedersen 2012,
    "Time series momentum", J. Financial Economics 104(2), scale positions by ``1/sigma``);
  - fractional Kelly: ``kelly_fraction * mu / sigma**2`` (Kelly 1956, "A new interpretation of
    information rate"; for one asset with normally distributed excess return the growth-optimal
    fraction is ``mu / sigma**2``, Thorp 2006, "The Kelly criterion in blackjack, sports betting
    and the stock market");
  - risk budgeting: ``budget * component_var / total_var`` (Euler allocation of VaR, see
    :mod:`portfolio.risk`).

Soft limits: a position whose ``conviction`` is above ``soft_limit_conviction`` (0.8) may exceed
``max_position`` by up to ``soft_limit_factor`` (1.2x); a warning is logged whenever it does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
from numba import njit

from portfolio.errors import ConfigError, DataError

__all__ = [
    "LOT_EPSILON_ABS",
    "LOT_EPSILON_REL",
    "PositionSizer",
    "SizingMethod",
    "round_to_lot_array_nb",
    "round_to_lot_nb",
]

logger = logging.getLogger(__name__)

SizingMethod = Literal["vol_target", "kelly", "risk_budget"]
_METHODS: tuple[str, ...] = ("vol_target", "kelly", "risk_budget")

#: Absolute tolerance in lots: a lot count this close *below* the next whole lot counts as that
#: lot. ``0.3 / 0.1`` is ``2.9999999999999996`` in binary floating point; without the tolerance
#: an exact multiple of the lot would lose one lot.
LOT_EPSILON_ABS = 1e-9
#: Relative tolerance (fraction of the lot count) on top of :data:`LOT_EPSILON_ABS`: above ~1e7
#: lots a few units in the last place exceed 1e-9 lots, so the absolute term alone would no
#: longer absorb the rounding error of ``units / lot_size`` (a few 1e-16 relative). 1e-14 covers
#: ~45 such roundings and is far below anything economically visible.
LOT_EPSILON_REL = 1e-14

_KNOWN_POSITION_KEYS = frozenset(
    {
        "vol",
        "expected_return",
        "variance",
        "component_var",
        "total_var",
        "risk_budget",
        "conviction",
    }
)


@njit(cache=True)
def round_to_lot_nb(units: float, lot_size: float) -> float:
    """Round a signed quantity toward zero to a whole multiple of ``lot_size``.

    With ``x = |units| / lot_size`` lots and ``n = floor(x)``, the result is
    ``sign(units) * n * lot_size``, except that ``n + 1`` is taken when ``n + 1 - x <= eps`` with
    ``eps = 1e-9 + 1e-14 * x`` lots (:data:`LOT_EPSILON_ABS`, :data:`LOT_EPSILON_REL`), so that
    exact multiples spoiled by binary floating point (``0.3 / 0.1 = 2.9999999999999996`` lots)
    are kept. The price of the tolerance is that a quantity within ``eps`` lots *below* a
    multiple is rounded up to it (never by more than ``eps``, never past the next lot); whole
    lot counts are returned exactly, however large.

    Parameters
    ----------
    units : float
        Signed quantity in units (shares, contracts); negative is short.
    lot_size : float
        Lot size in units. ``lot_size <= 0`` means fractional units: ``units`` is returned as is.

    Returns
    -------
    float
        The rounded quantity; ``0.0`` (never ``-0.0``) when less than one lot. NaN and infinite
        ``units`` (or a NaN ``lot_size``) are returned unchanged / as NaN: validate before.
    """
    if not lot_size > 0.0:
        if np.isnan(lot_size):
            return np.nan
        return units
    if not np.isfinite(units):
        return units
    lots = abs(units) / lot_size
    # np.floor stays in float64: math.floor would go through int64 and overflow above 9.2e18.
    n = np.floor(lots)
    # Compare against the next lot instead of adding eps before flooring: adding would push a
    # huge whole count (1e17 lots) up by eps, while this can only ever step to n + 1.
    if (n + 1.0) - lots <= LOT_EPSILON_ABS + LOT_EPSILON_REL * lots:
        n += 1.0
    if n == 0.0:
        return 0.0
    if units < 0.0:
        return -n * lot_size
    return n * lot_size


@njit(cache=True)
def round_to_lot_array_nb(units: np.ndarray, lot_size: float) -> np.ndarray:
    """Vectorized :func:`round_to_lot_nb` over a 1-D array.

    Parameters
    ----------
    units : ndarray, shape (n,)
        Signed quantities in units.
    lot_size : float
        Lot size in units; ``<= 0`` means fractional units.

    Returns
    -------
    ndarray, shape (n,)
        A new float64 array with each element rounded toward zero to whole lots.
    """
    out = np.empty(units.shape[0], dtype=np.float64)
    for i in range(units.shape[0]):
        out[i] = round_to_lot_nb(units[i], lot_size)
    return out


def _is_real(x: object) -> bool:
    """True for int/float (and numpy scalars) but not bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _config_float(name: str, value: object, *, lo: float, hi: float, lo_open: bool) -> float:
    """Validate one numeric constructor argument, raising :class:`ConfigError` naming it."""
    if not _is_real(value):
        raise ConfigError(f"PositionSizer.{name} must be a real number, got {value!r}")
    v = float(value)  # type: ignore[arg-type]
    bad_lo = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or bad_lo or v > hi:
        lo_br = "(" if lo_open else "["
        raise ConfigError(
            f"PositionSizer.{name} must be finite and in {lo_br}{lo}, {hi}], got {v!r}"
        )
    return v


def _data_float(what: str, value: object) -> float:
    """Convert a scalar input to float, raising :class:`DataError` if it is not finite."""
    if not _is_real(value):
        raise DataError(f"{what} must be a real number, got {value!r}")
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        raise DataError(f"{what} must be finite, got {v!r}")
    return v


class PositionSizer:
    """Size positions in units (lot-rounded) and in weights (vol target, Kelly, VaR budget).

    Parameters
    ----------
    lot_size : float, default 1.0
        Trading lot in units; ``0`` means fractional units (no rounding).
    risk_multipliers : mapping of str to float, optional
        Per-strategy multiplier applied to allocated capital (``>= 0``; ``0`` switches a strategy
        off). Strategies not listed use 1.0.
    target_vol : float, default 0.10
        Volatility target for :meth:`vol_target_size`, same units (period) as the instrument
        volatility passed in, e.g. both annualized.
    max_position : float, default 0.25
        Hard cap on ``|position weight|`` as a fraction of capital (``> 0``).
    kelly_fraction : float, default 0.5
        Fraction of full Kelly in ``(0, 1]``; 0.5 is "half Kelly".
    soft_limit_conviction : float, default 0.8
        Conviction strictly above this (in ``[0, 1]``) lifts the cap to
        ``soft_limit_factor * max_position``.
    soft_limit_factor : float, default 1.2
        Soft-limit multiplier of ``max_position`` (``>= 1``).

    Raises
    ------
    ConfigError
        For any argument out of range; the message names the field and the value.
    """

    def __init__(
        self,
        lot_size: float = 1.0,
        risk_multipliers: Mapping[str, float] | None = None,
        target_vol: float = 0.10,
        max_position: float = 0.25,
        kelly_fraction: float = 0.5,
        soft_limit_conviction: float = 0.8,
        soft_limit_factor: float = 1.2,
    ) -> None:
        inf = math.inf
        self.lot_size = _config_float("lot_size", lot_size, lo=0.0, hi=inf, lo_open=False)
        self.target_vol = _config_float("target_vol", target_vol, lo=0.0, hi=inf, lo_open=True)
        self.max_position = _config_float(
            "max_position", max_position, lo=0.0, hi=inf, lo_open=True
        )
        self.kelly_fraction = _config_float(
            "kelly_fraction", kelly_fraction, lo=0.0, hi=1.0, lo_open=True
        )
        self.soft_limit_conviction = _config_float(
            "soft_limit_conviction", soft_limit_conviction, lo=0.0, hi=1.0, lo_open=False
        )
        self.soft_limit_factor = _config_float(
            "soft_limit_factor", soft_limit_factor, lo=1.0, hi=inf, lo_open=False
        )
        mults: dict[str, float] = {}
        if risk_multipliers is not None:
            if not isinstance(risk_multipliers, Mapping):
                raise ConfigError(
                    f"PositionSizer.risk_multipliers must be a mapping, got {risk_multipliers!r}"
                )
            for key, val in risk_multipliers.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        f"PositionSizer.risk_multipliers keys must be strategy ids (str), "
                        f"got {key!r}"
                    )
                mults[key] = _config_float(
                    f"risk_multipliers[{key!r}]", val, lo=0.0, hi=inf, lo_open=False
                )
        self.risk_multipliers: Mapping[str, float] = mults

    def __repr__(self) -> str:
        return (
            f"PositionSizer(lot_size={self.lot_size!r}, "
            f"risk_multipliers={dict(self.risk_multipliers)!r}, target_vol={self.target_vol!r}, "
            f"max_position={self.max_position!r}, kelly_fraction={self.kelly_fraction!r}, "
            f"soft_limit_conviction={self.soft_limit_conviction!r}, "
            f"soft_limit_factor={self.soft_limit_factor!r})"
        )

    # ------------------------------------------------------------------ units

    def risk_multiplier(self, strategy_id: str) -> float:
        """Risk multiplier of ``strategy_id`` (1.0 when not configured)."""
        return self.risk_multipliers.get(strategy_id, 1.0)

    def apply_risk_multiplier(self, strategy_id: str, size: float) -> float:
        """Return ``size * risk_multiplier(strategy_id)``; ``size`` in any unit, sign kept.

        Raises
        ------
        DataError
            If ``size`` is not a finite real number.
        """
        s = _data_float(f"size of strategy {strategy_id!r}", size)
        return s * self.risk_multiplier(strategy_id)

    def calculate_position_size(
        self,
        strategy_id: str,
        symbol: str,
        allocated_capital: float,
        current_price: float,
    ) -> float:
        """Units to hold: ``round_to_lot(allocated_capital * multiplier / current_price)``.

        Parameters
        ----------
        strategy_id : str
            Strategy whose risk multiplier applies.
        symbol : str
            Instrument, only used in error messages.
        allocated_capital : float
            Capital in currency. Zero gives 0 units; a negative amount means a short of that
            notional and gives negative units, also rounded toward zero (never a bigger short).
        current_price : float
            Price per unit in the same currency; must be finite and ``> 0``.

        Returns
        -------
        float
            Signed units, a whole multiple of ``lot_size`` (or fractional when ``lot_size`` is
            0). A price so high that the capital buys less than one lot gives 0.

        Raises
        ------
        DataError
            (a ``ValueError``) for a non-positive or non-finite price, naming symbol and price;
            for non-finite capital; or when the unit count overflows float64.
        """
        price = float(current_price) if _is_real(current_price) else math.nan
        if not (math.isfinite(price) and price > 0.0):
            raise DataError(
                f"current_price of {symbol!r} (strategy {strategy_id!r}) must be finite and "
                f"> 0, got {current_price!r}"
            )
        capital = _data_float(
            f"allocated_capital of strategy {strategy_id!r} for {symbol!r}", allocated_capital
        )
        if capital == 0.0:
            return 0.0
        # Float math throughout: Python ints would never overflow but numba and numpy would.
        units = capital / price * self.risk_multiplier(strategy_id)
        if not math.isfinite(units):
            raise DataError(
                f"position size of {symbol!r} overflows: capital {capital!r} / price {price!r}"
            )
        return float(round_to_lot_nb(units, self.lot_size))

    # --------------------------------------------------------------- weights

    def _cap(self, conviction: float) -> float:
        """Position cap for a conviction: soft-limit cap above the threshold, else hard cap."""
        if conviction > self.soft_limit_conviction:
            return self.max_position * self.soft_limit_factor
        return self.max_position

    def _raw_vol_target(self, instrument_vol: float, what: str = "instrument_vol") -> float:
        v = _data_float(what, instrument_vol)
        if v <= 0.0:
            raise DataError(f"{what} must be > 0, got {v!r}")
        return self.target_vol / v

    def _raw_kelly(self, expected_return: float, return_variance: float, what: str = "") -> float:
        mu = _data_float(f"expected_return{what}", expected_return)
        var = _data_float(f"return_variance{what}", return_variance)
        if var <= 0.0:
            raise DataError(f"return_variance{what} must be > 0, got {var!r}")
        return self.kelly_fraction * mu / var

    def _raw_risk_budget(
        self, total_risk_budget: float, component_var: float, total_var: float, what: str = ""
    ) -> float:
        budget = _data_float(f"total_risk_budget{what}", total_risk_budget)
        cvar = _data_float(f"component_var{what}", component_var)
        tvar = _data_float(f"total_var{what}", total_var)
        if budget < 0.0:
            raise DataError(f"total_risk_budget{what} must be >= 0, got {budget!r}")
        if tvar <= 0.0:
            raise DataError(f"total_var{what} must be > 0, got {tvar!r}")
        return budget * cvar / tvar

    def vol_target_size(self, instrument_vol: float) -> float:
        """Volatility-target weight ``min(target_vol / instrument_vol, max_position)``.

        Parameters
        ----------
        instrument_vol : float
            Instrument volatility in the same units as ``target_vol`` (e.g. annualized);
            must be finite and ``> 0``: a zero volatility has no meaningful inverse.

        Returns
        -------
        float
            Weight in ``[0, max_position]`` (fraction of capital, long).

        Raises
        ------
        DataError
            If ``instrument_vol`` is NaN, infinite or ``<= 0``.
        """
        return min(self._raw_vol_target(instrument_vol), self.max_position)

    def fractional_kelly_size(self, expected_return: float, return_variance: float) -> float:
        """Fractional Kelly weight ``kelly_fraction * mu / sigma**2``, clamped to ``±max_position``.

        Parameters
        ----------
        expected_return : float
            Expected (excess) return ``mu`` per period; negative gives a short.
        return_variance : float
            Return variance ``sigma**2`` per the *same* period (``> 0``); the ratio is then
            independent of the period (daily and annualized inputs give the same weight).

        Raises
        ------
        DataError
            For non-finite inputs or ``return_variance <= 0``.
        """
        raw = self._raw_kelly(expected_return, return_variance)
        return max(-self.max_position, min(raw, self.max_position))

    def risk_budget_size(
        self, total_risk_budget: float, component_var: float, total_var: float
    ) -> float:
        """Weight proportional to the position's share of portfolio VaR.

        ``size = total_risk_budget * component_var / total_var``, clamped to ``±max_position``:
        the position receives the share of the budget equal to its Euler share of total VaR
        (:meth:`portfolio.risk.VaRCalculator.component_var`), so components summing to the total
        spread exactly ``total_risk_budget``. A negative component VaR (a hedge that lowers total
        VaR) gives a negative size.

        Parameters
        ----------
        total_risk_budget : float
            Budget as a fraction of capital (``>= 0``), e.g. 1.0 for the whole book.
        component_var : float
            Component VaR of the position, any unit.
        total_var : float
            Total portfolio VaR in the same unit (``> 0``).

        Raises
        ------
        DataError
            For non-finite inputs, a negative budget or ``total_var <= 0``.
        """
        raw = self._raw_risk_budget(total_risk_budget, component_var, total_var)
        return max(-self.max_position, min(raw, self.max_position))

    def size_portfolio(
        self,
        positions: Mapping[str, Mapping[str, float]],
        method: SizingMethod,
    ) -> dict[str, float]:
        """Size several positions with one method, applying soft limits by conviction.

        Parameters
        ----------
        positions : mapping of str to mapping of str to float
            Per position the inputs of ``method``: ``vol`` (``vol_target``);
            ``expected_return`` and ``variance`` (``kelly``); ``component_var``, ``total_var`` and
            optional ``risk_budget`` (default 1.0) (``risk_budget``). Optional ``conviction`` in
            ``[0, 1]`` (default 0). Other keys raise, to catch typos.
        method : {"vol_target", "kelly", "risk_budget"}
            Sizing rule, see :meth:`vol_target_size`, :meth:`fractional_kelly_size`,
            :meth:`risk_budget_size`.

        Returns
        -------
        dict of str to float
            Weights in the order of ``positions``. The cap is ``max_position``, or
            ``soft_limit_factor * max_position`` when conviction exceeds
            ``soft_limit_conviction``; a warning is logged for each position that goes beyond
            ``max_position`` that way. ``vol_target`` weights are clamped to ``[0, cap]``, the
            others to ``[-cap, cap]``.

        Raises
        ------
        ConfigError
            For an unknown ``method``.
        DataError
            For a missing, unknown or invalid input, naming the position and key.
        """
        if method not in _METHODS:
            raise ConfigError(f"size_portfolio method must be one of {_METHODS}, got {method!r}")
        out: dict[str, float] = {}
        for name, params in positions.items():
            if not isinstance(params, Mapping):
                raise DataError(
                    f"position {name!r} must map input names to numbers, got {params!r}"
                )
            unknown = set(params) - _KNOWN_POSITION_KEYS
            if unknown:
                raise DataError(
                    f"position {name!r} has unknown keys {sorted(unknown)}; "
                    f"allowed: {sorted(_KNOWN_POSITION_KEYS)}"
                )

            def need(key: str, name: str = name, params: Mapping[str, float] = params) -> float:
                if key not in params:
                    raise DataError(f"position {name!r} needs {key!r} for method {method!r}")
                return params[key]

            what = f" of position {name!r}"
            conviction = _data_float(f"conviction{what}", params.get("conviction", 0.0))
            if not 0.0 <= conviction <= 1.0:
                raise DataError(f"conviction{what} must be in [0, 1], got {conviction!r}")
            cap = self._cap(conviction)
            if method == "vol_target":
                raw = self._raw_vol_target(need("vol"), f"vol{what}")
                size = min(raw, cap)
            elif method == "kelly":
                raw = self._raw_kelly(need("expected_return"), need("variance"), what)
                size = max(-cap, min(raw, cap))
            else:
                raw = self._raw_risk_budget(
                    params.get("risk_budget", 1.0), need("component_var"), need("total_var"), what
                )
                size = max(-cap, min(raw, cap))
            if abs(size) > self.max_position:
                logger.warning(
                    "position %r: conviction %.3g > %.3g lifts |size| %.6g above max_position "
                    "%.6g (soft limit %.6g)",
                    name,
                    conviction,
                    self.soft_limit_conviction,
                    abs(size),
                    self.max_position,
                    cap,
                )
            out[name] = size
        return out

    def scale_weights(
        self,
        weights: np.ndarray,
        method: SizingMethod,
        *,
        vols: np.ndarray | float | None = None,
        expected_returns: np.ndarray | float | None = None,
        variances: np.ndarray | float | None = None,
        component_var: np.ndarray | float | None = None,
        total_var: np.ndarray | float | None = None,
        conviction: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Vectorized sizing for the engine's per-close path.

        ``out = clip(weights * raw, -cap, cap)`` elementwise, where ``raw`` is the unclamped
        size of ``method`` (``target_vol / vols``; ``kelly_fraction * expected_returns /
        variances``; ``component_var / total_var``) and ``cap`` is ``max_position``, or
        ``soft_limit_factor * max_position`` where ``conviction > soft_limit_conviction``.
        ``weights`` are signed exposure signals (e.g. strategy target weights or ±1): with
        ``weights = 1`` the result equals :meth:`size_portfolio` for a long signal, and for
        ``risk_budget`` ``weights`` plays the role of the budget.

        Parameters
        ----------
        weights : ndarray, shape (S,) or (T, S)
            Signed exposure signals.
        method : {"vol_target", "kelly", "risk_budget"}
            Sizing rule.
        vols, expected_returns, variances, component_var, total_var, conviction : array_like
            Inputs of ``method``, broadcastable to ``weights.shape`` (e.g. ``total_var`` of shape
            (T, 1) or a scalar). ``conviction`` defaults to 0 (hard cap everywhere).

        Returns
        -------
        ndarray, same shape as ``weights``
            Float64 sized weights. Where a weight is exactly 0 the result is 0 whatever the
            inputs; elsewhere NaN in any input gives NaN (e.g. a warm-up volatility), except a
            NaN ``conviction``, which conservatively means the hard cap.

        Raises
        ------
        ConfigError
            For an unknown ``method``.
        DataError
            For a missing input, a shape that does not broadcast, infinite values, or finite
            values out of range (``vols``, ``variances``, ``total_var`` ``<= 0``; conviction
            outside ``[0, 1]``), naming the array and the first bad index.
        """
        if method not in _METHODS:
            raise ConfigError(f"scale_weights method must be one of {_METHODS}, got {method!r}")
        w = np.asarray(weights, dtype=np.float64)
        shape = w.shape
        if np.isinf(w).any():
            raise DataError(f"weights contain inf at index {_first_index(np.isinf(w))}")

        def arr(name: str, value: np.ndarray | float | None) -> np.ndarray:
            if value is None:
                raise DataError(f"scale_weights method {method!r} needs {name!r}")
            a = np.asarray(value, dtype=np.float64)
            try:
                a = np.broadcast_to(a, shape)
            except ValueError:
                raise DataError(
                    f"{name} of shape {np.shape(value)} does not broadcast to weights {shape}"
                ) from None
            if np.isinf(a).any():
                raise DataError(f"{name} contains inf at index {_first_index(np.isinf(a))}")
            return a

        def positive(name: str, a: np.ndarray) -> None:
            bad = a <= 0.0  # NaN compares False: NaN propagates instead
            if bad.any():
                idx = _first_index(bad)
                raise DataError(f"{name} must be > 0, got {a[idx]!r} at index {idx}")

        with np.errstate(invalid="ignore", divide="ignore"):
            if method == "vol_target":
                v = arr("vols", vols)
                positive("vols", v)
                raw = self.target_vol / v
            elif method == "kelly":
                mu = arr("expected_returns", expected_returns)
                var = arr("variances", variances)
                positive("variances", var)
                raw = self.kelly_fraction * mu / var
            else:
                cv = arr("component_var", component_var)
                tv = arr("total_var", total_var)
                positive("total_var", tv)
                raw = cv / tv
        conv = arr("conviction", 0.0 if conviction is None else conviction)
        bad_conv = (conv < 0.0) | (conv > 1.0)
        if bad_conv.any():
            idx = _first_index(bad_conv)
            raise DataError(f"conviction must be in [0, 1], got {conv[idx]!r} at index {idx}")
        cap = np.where(
            conv > self.soft_limit_conviction,
            self.max_position * self.soft_limit_factor,
            self.max_position,
        )
        out = np.clip(w * raw, -cap, cap)
        out[w == 0.0] = 0.0
        n_soft = int(np.count_nonzero(np.abs(out) > self.max_position))
        if n_soft:
            logger.warning(
                "%d position(s) exceed max_position %.6g under the conviction soft limit "
                "(cap %.6g)",
                n_soft,
                self.max_position,
                self.max_position * self.soft_limit_factor,
            )
        return out


def _first_index(mask: np.ndarray) -> tuple[int, ...] | int:
    """Index of the first True in ``mask`` (an int for 1-D, a tuple otherwise)."""
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))
    return idx[0] if len(idx) == 1 else idx
