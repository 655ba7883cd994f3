"""Frozen, validated data contracts: the public vocabulary of the project.

Every contract is a ``@dataclass(frozen=True, slots=True)`` whose ``__post_init__`` validates and
normalizes its fields (ints become floats where a float is expected, lists become tuples, mappings
become read-only :class:`types.MappingProxyType`), so that an instance that exists is valid and
cannot be changed afterwards. Invalid input raises :class:`~portfolio.errors.ConfigError` whose
message names the class, the field and the offending value, for example::

    StrategyAllocation.target_weight must be in [0, 1], got -0.1 (strategy 'momentum_v1')

Each contract has ``to_dict()`` (plain ``dict``/``list``/``float`` values) and ``from_dict()``
(the inverse, rejecting unknown keys by name), so ``Cls.from_dict(x.to_dict()) == x``.

Units: capital, cash, notional, commission and slippage are in the portfolio currency; quantities
are units (shares) of an asset; prices are currency per unit; weights are fractions of equity;
timestamps are integer nanoseconds since the Unix epoch.

The small ``_check_*`` helpers at the top are shared with :mod:`portfolio.config`, so that a YAML
file and a direct constructor call are held to exactly the same rules.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Self, TypeVar, cast

import numpy as np

from portfolio.errors import ConfigError
from portfolio.rebalance_nb import commission_nb

__all__ = [
    "CostModel",
    "FillEvent",
    "OrderIntent",
    "PortfolioConfig",
    "PortfolioSnapshot",
    "RebalancePlan",
    "Side",
    "StrategyAllocation",
]

Side = Literal["buy", "sell"]
_SIDES: tuple[str, ...] = ("buy", "sell")
#: Tolerance on ``sum(target_weight) == 1``.
WEIGHT_SUM_TOLERANCE = 1e-9

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Shared value checks. Each returns the normalized value or raises ``_Invalid`` whose text is the
# message body without the field name ("must be in [0, 1], got 1.5"); callers prefix it with
# either ``Class.field`` (contracts) or ``file: key.path:`` (config loader).
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """Internal: a value failed a check; ``str(exc)`` is the message body.

    ``sub`` locates the bad element inside a container value (``"[2]"`` or ``".AAPL"``); it is
    appended to the field name or key path by the caller.
    """

    def __init__(self, body: str, sub: str = "") -> None:
        super().__init__(body)
        self.sub = sub


def _fmt(value: Any) -> str:
    """Render an offending value for a message (``-0.1``, ``3``, ``'abc'``, ``True``)."""
    if isinstance(value, bool | np.bool_):
        return repr(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return repr(value)


def _describe(value: Any) -> str:
    """Type and value, for wrong-type messages (``str 'abc'``, ``bool True``)."""
    return f"{type(value).__name__} {_fmt(value)}"


def _bound(b: float) -> str:
    """Render an interval bound without a spurious ``.0`` (``0``, ``1``, ``0.5``)."""
    return str(int(b)) if float(b).is_integer() else repr(float(b))


def _check_real(
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    allow_inf: bool = False,
    nullable: bool = False,
) -> Any:
    """A real number (bool rejected) within the given bounds, returned as ``float``."""
    if value is None and nullable:
        return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _Invalid(f"must be a number, got {_describe(value)}")
    try:
        x = float(value)
    except OverflowError:  # an int too large for a float
        raise _Invalid(f"must be finite, got {_fmt(value)}") from None
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise _Invalid(f"must be finite, got {_fmt(x)}")
    low_ok = (ge is None or x >= ge) and (gt is None or x > gt)
    high_ok = (le is None or x <= le) and (lt is None or x < lt)
    if low_ok and high_ok:
        return x
    lo = ge if ge is not None else gt
    hi = le if le is not None else lt
    if lo is not None and hi is not None:
        left = "[" if ge is not None else "("
        right = "]" if le is not None else ")"
        rule = f"must be in {left}{_bound(lo)}, {_bound(hi)}{right}"
    elif lo is not None:
        rule = f"must be {'>=' if ge is not None else '>'} {_bound(lo)}"
    else:
        rule = f"must be {'<=' if le is not None else '<'} {_bound(cast(float, hi))}"
    raise _Invalid(f"{rule}, got {_fmt(value)}")


def _check_int(value: Any, *, ge: int | None = None) -> int:
    """An integer (bool and float rejected), optionally ``>= ge``, returned as ``int``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise _Invalid(f"must be an integer, got {_describe(value)}")
    n = int(value)
    if ge is not None and n < ge:
        raise _Invalid(f"must be an integer >= {ge}, got {n}")
    return n


def _check_bool(value: Any) -> bool:
    """A boolean (``true``/``false``); numbers and strings are rejected."""
    if not isinstance(value, bool | np.bool_):
        raise _Invalid(f"must be a boolean (true/false), got {_describe(value)}")
    return bool(value)


def _check_str(value: Any, *, nullable: bool = False) -> Any:
    """A non-empty string (surrounding whitespace is not stripped, but blank is rejected)."""
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_describe(value)}")
    if not value.strip():
        raise _Invalid(f"must be a non-empty string, got {value!r}")
    return value


def _check_choice(value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (exact, case-sensitive)."""
    allowed = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str) or value not in choices:
        raise _Invalid(f"must be one of {allowed}, got {_fmt(value)}")
    return value


def _run(check: Callable[..., _T], value: Any, owner: str, name: str, context: str = "") -> _T:
    """Apply ``check`` and turn a failure into ``ConfigError('Owner.name <body><context>')``."""
    try:
        return check(value)
    except _Invalid as exc:
        raise ConfigError(f"{owner}.{name}{exc.sub} {exc}{context}") from None


def _set(obj: object, name: str, value: Any) -> None:
    """Normalize a field of a frozen dataclass inside ``__post_init__``."""
    object.__setattr__(obj, name, value)


def _field(
    obj: object, owner: str, name: str, check: Callable[[Any], Any], context: str = ""
) -> None:
    """Validate and normalize field ``name`` of ``obj`` in place (inside ``__post_init__``)."""
    _set(obj, name, _run(check, getattr(obj, name), owner, name, context))


def _thaw(value: Any) -> Any:
    """Read-only mapping proxies (also nested ones) -> plain dicts, for pickling and copying."""
    if isinstance(value, MappingProxyType):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _rebuild(cls: type[_T], kwargs: dict[str, Any]) -> _T:
    """Unpickle / deep-copy helper: re-run the constructor (and so the validation)."""
    return cls(**kwargs)


def _reduce(obj: Any) -> tuple[Any, ...]:
    """``__reduce__`` for frozen contracts holding ``MappingProxyType`` (not picklable itself)."""
    kwargs = {f.name: _thaw(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return (_rebuild, (type(obj), kwargs))


_NONNEG = functools.partial(_check_real, ge=0.0)
_POSITIVE = functools.partial(_check_real, gt=0.0)
_UNIT = functools.partial(_check_real, ge=0.0, le=1.0)
_NONNEG_OR_INF = functools.partial(_check_real, ge=0.0, allow_inf=True)


def _check_keys(owner: str, data: Any, required: Iterable[str], optional: Iterable[str]) -> None:
    """``from_dict`` guard: a mapping with every required key and no unknown key."""
    required = tuple(required)
    allowed = required + tuple(optional)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{owner}.from_dict expects a mapping, got {_describe(data)}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(
            f"{owner}.from_dict: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(
            f"{owner}.from_dict: missing required key(s) {', '.join(repr(k) for k in missing)}"
        )


def _float_mapping(value: Any, owner: str, name: str) -> MappingProxyType[str, float]:
    """Read-only copy of a ``str -> finite float`` mapping."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{owner}.{name} must be a mapping, got {_describe(value)}")
    out: dict[str, float] = {}
    for key, item in value.items():
        _run(_check_str, key, owner, f"{name} key")
        out[key] = _run(_check_real, item, owner, f"{name}[{key!r}]")
    return MappingProxyType(out)


def _is_sequence(value: Any) -> bool:
    """A list-like container: iterable, but not a string, bytes or mapping."""
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _as_tuple(value: Any, owner: str, name: str, item: str, ctx: str = "") -> tuple[Any, ...]:
    """Field ``name`` as a tuple; a non-sequence raises ``ConfigError`` naming ``item`` type."""
    if not _is_sequence(value):
        raise ConfigError(
            f"{owner}.{name} must be a sequence of {item}, got {_describe(value)}{ctx}"
        )
    return tuple(value)


def _decode_items(owner: str, name: str, raw: Any, item_cls: Any) -> tuple[Any, ...]:
    """``from_dict`` helper: a list of ``item_cls`` instances or their ``to_dict()`` mappings."""
    if not _is_sequence(raw):
        raise ConfigError(f"{owner}.from_dict: {name} must be a list, got {_describe(raw)}")
    return tuple(x if isinstance(x, item_cls) else item_cls.from_dict(x) for x in raw)


# --------------------------------------------------------------------------------------------
# Contracts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StrategyAllocation:
    """Capital sleeve of one strategy inside a portfolio.

    Parameters
    ----------
    strategy_id : str
        Non-empty identifier of the strategy.
    target_weight : float
        Target fraction of portfolio equity, in [0, 1].
    min_capital, max_capital : float
        Bounds on the sleeve's capital in currency, ``0 <= min_capital <= max_capital``;
        ``max_capital`` may be ``inf`` (no cap), every other number must be finite.
    risk_multiplier : float
        Non-negative scale applied to the sleeve's risk (1.0 = unchanged).
    """

    strategy_id: str
    target_weight: float
    min_capital: float = 0.0
    max_capital: float = math.inf
    risk_multiplier: float = 1.0

    def __post_init__(self) -> None:
        owner = "StrategyAllocation"
        _run(_check_str, self.strategy_id, owner, "strategy_id")
        ctx = f" (strategy {self.strategy_id!r})"
        _field(self, owner, "target_weight", _UNIT, ctx)
        _field(self, owner, "min_capital", _NONNEG, ctx)
        _field(self, owner, "max_capital", _NONNEG_OR_INF, ctx)
        _field(self, owner, "risk_multiplier", _NONNEG, ctx)
        if self.min_capital > self.max_capital:
            raise ConfigError(
                f"{owner}.min_capital must be <= max_capital ({_fmt(self.max_capital)}), "
                f"got {_fmt(self.min_capital)}{ctx}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (``max_capital`` may be ``inf``)."""
        return {
            "strategy_id": self.strategy_id,
            "target_weight": self.target_weight,
            "min_capital": self.min_capital,
            "max_capital": self.max_capital,
            "risk_multiplier": self.risk_multiplier,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            ("strategy_id", "target_weight"),
            ("min_capital", "max_capital", "risk_multiplier"),
        )
        return cls(**data)


@dataclass(frozen=True, slots=True)
class PortfolioConfig:
    """A portfolio of strategy sleeves.

    Parameters
    ----------
    portfolio_id : str
        Non-empty identifier.
    total_capital : float
        Initial capital in currency, finite and > 0.
    allocations : tuple of StrategyAllocation
        One per strategy, unique ``strategy_id``; target weights sum to 1 within 1e-9. A list is
        accepted and stored as a tuple.
    rebalance_threshold : float
        Drift band (>= 0): rebalance when ``max |drift| > rebalance_threshold``.
    rebalance_frequency_hours : float
        Minimum time between live rebalances in hours (> 0).
    """

    portfolio_id: str
    total_capital: float
    allocations: tuple[StrategyAllocation, ...]
    rebalance_threshold: float = 0.05
    rebalance_frequency_hours: float = 24.0

    def __post_init__(self) -> None:
        owner = "PortfolioConfig"
        _run(_check_str, self.portfolio_id, owner, "portfolio_id")
        ctx = f" (portfolio {self.portfolio_id!r})"
        _field(self, owner, "total_capital", _POSITIVE, ctx)
        _field(self, owner, "rebalance_threshold", _NONNEG, ctx)
        _field(self, owner, "rebalance_frequency_hours", _POSITIVE, ctx)
        allocs = _as_tuple(self.allocations, owner, "allocations", "StrategyAllocation", ctx)
        if not allocs:
            raise ConfigError(f"{owner}.allocations must not be empty{ctx}")
        seen: set[str] = set()
        for i, alloc in enumerate(allocs):
            if not isinstance(alloc, StrategyAllocation):
                raise ConfigError(
                    f"{owner}.allocations[{i}] must be a StrategyAllocation, "
                    f"got {_describe(alloc)}{ctx}"
                )
            if alloc.strategy_id in seen:
                raise ConfigError(
                    f"{owner}.allocations[{i}] duplicates strategy id {alloc.strategy_id!r}{ctx}"
                )
            seen.add(alloc.strategy_id)
        total = math.fsum(a.target_weight for a in allocs)
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ConfigError(
                f"{owner}.allocations target weights must sum to 1 (tolerance 1e-9), "
                f"got {total!r}{ctx}"
            )
        _set(self, "allocations", allocs)

    @property
    def strategy_ids(self) -> tuple[str, ...]:
        """Strategy ids in allocation order."""
        return tuple(a.strategy_id for a in self.allocations)

    @property
    def target_weights(self) -> np.ndarray:
        """Target weights in allocation order, float64 array of shape (n_strategies,)."""
        return np.array([a.target_weight for a in self.allocations], dtype=np.float64)

    def allocation(self, strategy_id: str) -> StrategyAllocation:
        """The allocation of ``strategy_id``; unknown id raises ``ConfigError`` naming it."""
        for alloc in self.allocations:
            if alloc.strategy_id == strategy_id:
                return alloc
        raise ConfigError(
            f"PortfolioConfig.allocation: unknown strategy {strategy_id!r} in portfolio "
            f"{self.portfolio_id!r} (known: {', '.join(self.strategy_ids)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``allocations`` is a list of :meth:`StrategyAllocation.to_dict`."""
        return {
            "portfolio_id": self.portfolio_id,
            "total_capital": self.total_capital,
            "allocations": [a.to_dict() for a in self.allocations],
            "rebalance_threshold": self.rebalance_threshold,
            "rebalance_frequency_hours": self.rebalance_frequency_hours,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            ("portfolio_id", "total_capital", "allocations"),
            ("rebalance_threshold", "rebalance_frequency_hours"),
        )
        kwargs = dict(data)
        kwargs["allocations"] = _decode_items(
            "PortfolioConfig", "allocations", kwargs["allocations"], StrategyAllocation
        )
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Point-in-time state of a portfolio.

    Parameters
    ----------
    portfolio_id : str
        Portfolio identifier.
    timestamp_ns : int
        Time of the snapshot, nanoseconds since the Unix epoch.
    total_equity : float
        Sum of all sleeves' capital, in currency.
    strategy_allocations : Mapping[str, float]
        Capital per strategy (cash + marked positions), in currency.
    drift_from_target : Mapping[str, float]
        Drift per strategy as computed by :class:`portfolio.allocation.AllocationCalculator`.
    needs_rebalance : bool
        Whether any drift exceeds the rebalance threshold.
    positions : Mapping[str, Mapping[str, float]]
        Units held per strategy per symbol (negative = short).
    cash : Mapping[str, float]
        Cash per strategy, in currency.

    Notes
    -----
    Mappings are stored as read-only :class:`types.MappingProxyType` copies (nested for
    ``positions``), so the snapshot cannot be altered; :meth:`to_dict` returns plain dicts.
    """

    portfolio_id: str
    timestamp_ns: int
    total_equity: float
    strategy_allocations: Mapping[str, float]
    drift_from_target: Mapping[str, float]
    needs_rebalance: bool
    positions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    cash: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = "PortfolioSnapshot"
        _run(_check_str, self.portfolio_id, owner, "portfolio_id")
        _field(self, owner, "timestamp_ns", _check_int)
        _field(self, owner, "total_equity", _check_real)
        _set(
            self,
            "strategy_allocations",
            _float_mapping(self.strategy_allocations, owner, "strategy_allocations"),
        )
        _set(
            self,
            "drift_from_target",
            _float_mapping(self.drift_from_target, owner, "drift_from_target"),
        )
        _field(self, owner, "needs_rebalance", _check_bool)
        if not isinstance(self.positions, Mapping):
            raise ConfigError(
                f"{owner}.positions must be a mapping, got {_describe(self.positions)}"
            )
        positions: dict[str, MappingProxyType[str, float]] = {}
        for sid, units in self.positions.items():
            _run(_check_str, sid, owner, "positions key")
            positions[sid] = _float_mapping(units, owner, f"positions[{sid!r}]")
        _set(self, "positions", MappingProxyType(positions))
        _set(self, "cash", _float_mapping(self.cash, owner, "cash"))

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType cannot be pickled or deep-copied: rebuild from plain dicts.
        return _reduce(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (mappings become ``dict``)."""
        return {
            "portfolio_id": self.portfolio_id,
            "timestamp_ns": self.timestamp_ns,
            "total_equity": self.total_equity,
            "strategy_allocations": dict(self.strategy_allocations),
            "drift_from_target": dict(self.drift_from_target),
            "needs_rebalance": self.needs_rebalance,
            "positions": {sid: dict(units) for sid, units in self.positions.items()},
            "cash": dict(self.cash),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            (
                "portfolio_id",
                "timestamp_ns",
                "total_equity",
                "strategy_allocations",
                "drift_from_target",
                "needs_rebalance",
            ),
            ("positions", "cash"),
        )
        return cls(**data)


def _check_side(value: Any) -> str:
    return _check_choice(value, _SIDES)


class _Trade:
    """Mixin for the fields an order and a fill share (``strategy_id`` ... ``price``).

    Holds no state (empty ``__slots__``), so the slotted dataclasses built on it stay slotted.
    """

    __slots__ = ()
    strategy_id: str
    symbol: str
    side: Side
    quantity: float
    price: float

    @property
    def notional(self) -> float:
        """``quantity * price`` in currency (always >= 0)."""
        return self.quantity * self.price

    @property
    def signed_quantity(self) -> float:
        """``+quantity`` for a buy, ``-quantity`` for a sell (units)."""
        return self.quantity if self.side == "buy" else -self.quantity


def _check_trade(obj: _Trade, owner: str) -> str:
    """Validate the :class:`_Trade` fields of ``obj`` in place; return the message context."""
    _run(_check_str, obj.strategy_id, owner, "strategy_id")
    ctx = f" (strategy {obj.strategy_id!r}, symbol {obj.symbol!r})"
    _run(_check_str, obj.symbol, owner, "symbol", ctx)
    _run(_check_side, obj.side, owner, "side", ctx)
    _field(obj, owner, "quantity", _POSITIVE, ctx)
    _field(obj, owner, "price", _POSITIVE, ctx)
    return ctx


@dataclass(frozen=True, slots=True)
class OrderIntent(_Trade):
    """An order a strategy sleeve wants to place (before execution).

    Parameters
    ----------
    strategy_id : str
        Sleeve placing the order.
    symbol : str
        Asset identifier.
    side : {"buy", "sell"}
        Direction.
    quantity : float
        Units to trade, finite and > 0 (the direction is in ``side``).
    price : float
        Reference price per unit used for sizing (e.g. the decision close), finite and > 0.
    reason : str
        Why the order exists (``"rebalance"`` by default).
    """

    strategy_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    reason: str = "rebalance"

    def __post_init__(self) -> None:
        ctx = _check_trade(self, "OrderIntent")
        _run(_check_str, self.reason, "OrderIntent", "reason", ctx)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return {
            "strategy_id": self.strategy_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": self.price,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__, data, ("strategy_id", "symbol", "side", "quantity", "price"), ("reason",)
        )
        return cls(**data)


@dataclass(frozen=True, slots=True)
class FillEvent(_Trade):
    """An executed trade.

    Parameters
    ----------
    strategy_id, symbol : str
        Sleeve and asset.
    side : {"buy", "sell"}
        Direction.
    quantity : float
        Units filled, finite and > 0.
    price : float
        Executed price per unit, finite and > 0, **including** slippage (a buy filled above
        the reference price carries its slippage in this price already).
    commission : float
        Fees charged, in currency, >= 0.
    slippage : float
        Cost of slippage in currency, >= 0, reported for attribution only: it is already inside
        ``price`` and is therefore **not** subtracted again by :attr:`cash_delta`.
    timestamp_ns : int
        Fill time, nanoseconds since the Unix epoch.
    """

    strategy_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float = 0.0
    slippage: float = 0.0
    timestamp_ns: int = 0

    def __post_init__(self) -> None:
        owner = "FillEvent"
        ctx = _check_trade(self, owner)
        _field(self, owner, "commission", _NONNEG, ctx)
        _field(self, owner, "slippage", _NONNEG, ctx)
        _field(self, owner, "timestamp_ns", _check_int, ctx)

    @property
    def cash_delta(self) -> float:
        """Change of the sleeve's cash: ``-signed_quantity * price - commission``.

        Slippage is not subtracted: it is already part of the executed ``price``.
        """
        return -self.signed_quantity * self.price - self.commission

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return {
            "strategy_id": self.strategy_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": self.price,
            "commission": self.commission,
            "slippage": self.slippage,
            "timestamp_ns": self.timestamp_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            ("strategy_id", "symbol", "side", "quantity", "price"),
            ("commission", "slippage", "timestamp_ns"),
        )
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """The trades one rebalance decision produces.

    Parameters
    ----------
    portfolio_id : str
        Portfolio identifier.
    timestamp_ns : int
        Decision time, nanoseconds since the Unix epoch.
    trades : tuple of OrderIntent
        Orders to place (a list is accepted and stored as a tuple); may be empty.
    expected_drift_reduction : float
        Reduction of ``max |drift|`` the trades are expected to achieve (finite, may be < 0).
    estimated_costs : float
        Estimated commission plus slippage in currency, >= 0.
    """

    portfolio_id: str
    timestamp_ns: int
    trades: tuple[OrderIntent, ...]
    expected_drift_reduction: float
    estimated_costs: float

    def __post_init__(self) -> None:
        owner = "RebalancePlan"
        _run(_check_str, self.portfolio_id, owner, "portfolio_id")
        ctx = f" (portfolio {self.portfolio_id!r})"
        _field(self, owner, "timestamp_ns", _check_int, ctx)
        trades = _as_tuple(self.trades, owner, "trades", "OrderIntent", ctx)
        for i, trade in enumerate(trades):
            if not isinstance(trade, OrderIntent):
                raise ConfigError(
                    f"{owner}.trades[{i}] must be an OrderIntent, got {_describe(trade)}{ctx}"
                )
        _set(self, "trades", trades)
        _field(self, owner, "expected_drift_reduction", _check_real, ctx)
        _field(self, owner, "estimated_costs", _NONNEG, ctx)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``trades`` is a list of :meth:`OrderIntent.to_dict`."""
        return {
            "portfolio_id": self.portfolio_id,
            "timestamp_ns": self.timestamp_ns,
            "trades": [t.to_dict() for t in self.trades],
            "expected_drift_reduction": self.expected_drift_reduction,
            "estimated_costs": self.estimated_costs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            (
                "portfolio_id",
                "timestamp_ns",
                "trades",
                "expected_drift_reduction",
                "estimated_costs",
            ),
            (),
        )
        kwargs = dict(data)
        kwargs["trades"] = _decode_items("RebalancePlan", "trades", kwargs["trades"], OrderIntent)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class CostModel:
    """Transaction cost model.

    Parameters
    ----------
    commission_bps : float
        Proportional commission in basis points of traded notional (1 bp = 1e-4).
    commission_fixed : float
        Fixed commission per order, in currency.
    commission_min : float
        Minimum commission per (non-zero) order, in currency.
    slippage_bps : float
        Slippage in basis points of traded notional.

    All four must be finite and >= 0.

    Notes
    -----
    For an order of notional ``N`` (currency, sign ignored)::

        commission(N) = 0                                             if N == 0
                      = max(commission_min, commission_bps*1e-4*|N| + commission_fixed)
        slippage(N)   = slippage_bps * 1e-4 * |N|

    :meth:`as_array` packs the parameters as ``[commission_bps, commission_fixed,
    commission_min, slippage_bps]`` (float64, shape (4,)) for numba kernels.
    """

    commission_bps: float = 0.0
    commission_fixed: float = 0.0
    commission_min: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commission_bps", "commission_fixed", "commission_min", "slippage_bps"):
            _field(self, "CostModel", name, _NONNEG)

    def commission(self, notional: float) -> float:
        """Commission in currency for one order of ``notional`` (currency, sign ignored).

        Evaluated by :func:`portfolio.rebalance_nb.commission_nb`, the very formula the
        backtest pass and the live rebalance step charge.
        """
        return float(commission_nb(abs(float(notional)), self.as_array()))

    def slippage(self, notional: float) -> float:
        """Slippage cost in currency for one order of ``notional`` (sign ignored)."""
        # Same parameter array and formula as the jitted step (``costs[3] * 1e-4 * notional``).
        return float(self.as_array()[3] * 1e-4 * abs(notional))

    def as_array(self) -> np.ndarray:
        """``[commission_bps, commission_fixed, commission_min, slippage_bps]``, float64 (4,)."""
        return np.array(
            [self.commission_bps, self.commission_fixed, self.commission_min, self.slippage_bps],
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return {
            "commission_bps": self.commission_bps,
            "commission_fixed": self.commission_fixed,
            "commission_min": self.commission_min,
            "slippage_bps": self.slippage_bps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        _check_keys(
            cls.__name__,
            data,
            (),
            ("commission_bps", "commission_fixed", "commission_min", "slippage_bps"),
        )
        return cls(**data)
