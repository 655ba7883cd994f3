"""Strategy contract, parameter validation, shared signal helpers and the strategy registry.

A strategy turns a wide close panel into *target weights* for its capital sleeve (or, in the
``black_litterman`` mode, into *views*). It only looks at data; the backtest pass decides what
actually trades.

Contract
--------
:class:`Strategy` is the structural protocol the engine relies on. Every built-in strategy is a
frozen, keyword-only dataclass deriving from :class:`BaseStrategy`, whose fields are
``strategy_id``, ``universe`` and the strategy's parameters (with defaults, validated in
``__post_init__``, errors as :class:`~portfolio.errors.ConfigError` naming
``strategies.<id>.params.<name>`` and the value).

``target_weights(prices)`` returns a frame with the same index and columns as ``prices``:

* a row of finite weights means "at this close, rebalance the sleeve to these weights"
  (fractions of the sleeve's capital); an all-``NaN`` row means "hold"; no row is mixed;
* weights are ``>= 0``, sum to ``<= 1`` (the rest is cash), and are exactly ``0`` outside the
  strategy's universe and wherever the price is ``NaN``;
* a row is emitted only when the desired target changes from the previous bar, or on the
  strategy's own schedule (see :func:`emission_mask`). Rows before the strategy's first
  non-zero target are "hold": the sleeve starts in cash, so an all-zero row there would be a
  no-op. After that, an all-zero row (go to cash) is emitted when the target becomes empty.

``views(prices)`` returns :class:`StrategyViews`: an annualized decimal expected return and a
confidence in ``[0, 1]`` per (bar, asset), ``NaN`` where there is no view (warm-up, not listed,
outside the universe). Expected returns are clipped to ``[-1, 1]``.

Both are strictly causal: the row at bar ``t`` depends on prices at bars ``<= t`` only (and on
the index dates, i.e. the trading calendar, for calendar schedules).

Registry
--------
``@register_strategy("kind")`` registers a :class:`BaseStrategy` subclass;
:func:`create_strategy` builds one from config values; :func:`available_kinds` lists the kinds.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

from backtest.strategies.indicators import every_n_mask, month_end_mask
from portfolio.errors import ConfigError, DataError

__all__ = [
    "MAX_ABS_EXPECTED_RETURN",
    "PERIODS_PER_YEAR",
    "REBALANCE_CHOICES",
    "BaseStrategy",
    "Strategy",
    "StrategyViews",
    "available_kinds",
    "capped_equal_weights",
    "choice_param",
    "create_strategy",
    "emission_mask",
    "float_param",
    "get_strategy_class",
    "hold_state",
    "int_param",
    "register_strategy",
    "schedule_mask",
]

logger = logging.getLogger(__name__)

#: Bars per year used to annualize view returns.
PERIODS_PER_YEAR = 252
#: Views are clipped to this absolute annualized expected return.
MAX_ABS_EXPECTED_RETURN = 1.0
#: Calendar schedules understood by :func:`schedule_mask`.
REBALANCE_CHOICES: tuple[str, ...] = ("month_end", "every_n_bars")

_PARAM_KEY = "strategy_param"


# --------------------------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyViews:
    """Per-bar views of one strategy for the Black-Litterman mode.

    Attributes
    ----------
    expected_returns : DataFrame, shape (n_bars, n_assets)
        Annualized decimal expected return per (bar, asset), in ``[-1, 1]``; ``NaN`` = no view.
    confidence : DataFrame, shape (n_bars, n_assets)
        Confidence in ``[0, 1]``; ``NaN`` exactly where ``expected_returns`` is ``NaN``.
    """

    expected_returns: pd.DataFrame
    confidence: pd.DataFrame


@runtime_checkable
class Strategy(Protocol):
    """What the engine needs from a strategy (see the module docstring for the contract)."""

    @property
    def strategy_id(self) -> str:
        """Name of the strategy (its sleeve) in the config."""
        ...

    @property
    def universe(self) -> tuple[str, ...] | None:
        """Assets the strategy may trade, or ``None`` for every column of the panel."""
        ...

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target weight rows (rebalance) or all-``NaN`` rows (hold), shaped like ``prices``."""
        ...

    def views(self, prices: pd.DataFrame) -> StrategyViews:
        """Annualized expected returns and confidences per (bar, asset)."""
        ...


# --------------------------------------------------------------------------------------------
# parameter declarations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ParamSpec:
    kind: Literal["int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()


def int_param(default: int, *, low: int | None = None, high: int | None = None) -> int:
    """Declare an integer strategy parameter with inclusive bounds (dataclass field)."""
    spec = _ParamSpec("int", low, high)
    return field(default=default, metadata={_PARAM_KEY: spec})


def float_param(
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Declare a finite float strategy parameter (ints are accepted and converted)."""
    spec = _ParamSpec("float", low, high, low_inclusive, high_inclusive)
    return field(default=default, metadata={_PARAM_KEY: spec})


def choice_param(default: str, choices: Sequence[str]) -> str:
    """Declare a string strategy parameter restricted to ``choices``."""
    spec = _ParamSpec("choice", choices=tuple(choices))
    return field(default=default, metadata={_PARAM_KEY: spec})


def _bounds_text(spec: _ParamSpec) -> str:
    parts = []
    if spec.low is not None:
        parts.append(f"{'>=' if spec.low_inclusive else '>'} {spec.low:g}")
    if spec.high is not None:
        parts.append(f"{'<=' if spec.high_inclusive else '<'} {spec.high:g}")
    return " and ".join(parts)


def _coerce_param(spec: _ParamSpec, value: Any) -> tuple[Any, str | None]:
    """Return ``(converted value, None)`` or ``(value, problem description)``."""
    is_bool = isinstance(value, bool | np.bool_)
    if spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            return value, f"must be one of {list(spec.choices)}"
        return value, None
    if spec.kind == "int":
        if is_bool or not isinstance(value, int | np.integer):
            return value, f"must be an integer {_bounds_text(spec)}".rstrip()
        number: float = int(value)
    else:
        if is_bool or not isinstance(value, int | float | np.integer | np.floating):
            return value, f"must be a number {_bounds_text(spec)}".rstrip()
        number = float(value)
        if not math.isfinite(number):
            return value, "must be finite"
    low_bad = spec.low is not None and (
        number < spec.low if spec.low_inclusive else number <= spec.low
    )
    high_bad = spec.high is not None and (
        number > spec.high if spec.high_inclusive else number >= spec.high
    )
    if low_bad or high_bad:
        return value, f"must be {_bounds_text(spec)}"
    return number, None


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BaseStrategy(ABC):
    """Common machinery of the built-in strategies (an implementation of :class:`Strategy`).

    Subclasses are frozen keyword-only dataclasses that declare their parameters with
    :func:`int_param` / :func:`float_param` / :func:`choice_param`, optionally override
    :meth:`_validate_params` for cross-parameter rules, and implement :meth:`_targets` and
    :meth:`_views` on the universe-restricted panel. This class validates the prices, restricts
    them to the universe, zeroes weights where the price is ``NaN``, decides which rows are
    emitted, and puts the result back on the full panel's columns.

    Attributes
    ----------
    strategy_id : str
        Non-empty name of the strategy in the config (used in error messages).
    universe : tuple of str or None
        Assets this strategy trades; ``None`` means every column of the panel.
    """

    strategy_id: str
    universe: tuple[str, ...] | None = None

    #: Registry name, set by :func:`register_strategy`.
    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        sid = self.strategy_id
        if not isinstance(sid, str) or not sid.strip():
            raise ConfigError(f"strategies: strategy id must be a non-empty string, got {sid!r}")
        object.__setattr__(self, "universe", self._checked_universe(self.universe))
        for f in fields(self):
            spec = f.metadata.get(_PARAM_KEY)
            if spec is None:
                continue
            value = getattr(self, f.name)
            converted, problem = _coerce_param(spec, value)
            if problem is not None:
                raise self._param_error(f.name, problem, value)
            object.__setattr__(self, f.name, converted)
        self._validate_params()

    def _checked_universe(self, universe: Any) -> tuple[str, ...] | None:
        path = f"strategies.{self.strategy_id}.universe"
        if universe is None:
            return None
        if isinstance(universe, str) or not isinstance(universe, Sequence | np.ndarray):
            raise ConfigError(f"{path}: must be a list of asset names, got {universe!r}")
        names = tuple(universe)
        if not names:
            raise ConfigError(f"{path}: must not be empty (omit it to trade every asset)")
        bad = [a for a in names if not isinstance(a, str) or not a]
        if bad:
            raise ConfigError(f"{path}: asset names must be non-empty strings, got {bad!r}")
        dupes = sorted({a for a in names if names.count(a) > 1})
        if dupes:
            raise ConfigError(f"{path}: duplicate assets {dupes!r}")
        return names

    def _validate_params(self) -> None:
        """Cross-parameter checks; raise :meth:`_param_error` on failure. Default: none."""
        return None

    def _param_error(self, name: str, problem: str, value: Any) -> ConfigError:
        """A ConfigError naming ``strategies.<id>.params.<name>`` and the offending value."""
        return ConfigError(f"strategies.{self.strategy_id}.params.{name}: {problem}, got {value!r}")

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the configurable parameters (every declared field but id and universe)."""
        return tuple(f.name for f in fields(cls) if _PARAM_KEY in f.metadata)

    def params(self) -> dict[str, Any]:
        """Current parameter values by name (for manifests and reports)."""
        return {name: getattr(self, name) for name in self.param_names()}

    # -- panel handling ------------------------------------------------------------------------

    def _prepare(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``prices``; return the ``float64`` values and the universe column positions."""
        where = f"strategies.{self.strategy_id}"
        if not isinstance(prices, pd.DataFrame):
            raise DataError(f"{where}: prices must be a pandas DataFrame, got {type(prices)}")
        index = prices.index
        if not isinstance(index, pd.DatetimeIndex):
            raise DataError(f"{where}: prices index must be a DatetimeIndex, got {type(index)}")
        if not (index.is_unique and index.is_monotonic_increasing):
            raise DataError(f"{where}: prices index must be unique and strictly increasing")
        if not prices.columns.is_unique:
            dupes = sorted({str(c) for c in prices.columns[prices.columns.duplicated()]})
            raise DataError(f"{where}: duplicate price columns {dupes!r}")
        try:
            values = np.ascontiguousarray(prices.to_numpy(dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: prices must be numeric ({exc})") from exc
        bad = np.isinf(values) | (values <= 0.0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(
                f"{where}: price of {prices.columns[col]!r} on {index[row].date()} must be "
                f"finite and > 0 (or NaN when not listed), got {values[row, col]!r}"
            )
        if self.universe is None:
            cols = np.arange(values.shape[1])
        else:
            positions = {name: i for i, name in enumerate(prices.columns)}
            missing = [a for a in self.universe if a not in positions]
            if missing:
                raise ConfigError(f"{where}.universe: assets not in the price panel: {missing!r}")
            cols = np.array([positions[a] for a in self.universe], dtype=np.int64)
        return values, cols

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        """Target weight rows for the sleeve (see the module docstring for the contract).

        Parameters
        ----------
        prices : DataFrame, shape (n_bars, n_assets)
            Wide close panel; ``NaN`` = not listed.

        Returns
        -------
        DataFrame, shape (n_bars, n_assets)
            Same index and columns; each row either all finite (rebalance to these fractions of
            the sleeve) or all ``NaN`` (hold).
        """
        values, cols = self._prepare(prices)
        sub = values[:, cols]
        sub_frame = pd.DataFrame(sub, index=prices.index, columns=prices.columns[cols])
        desired, schedule = self._targets(sub_frame)
        desired = np.where(np.isfinite(desired) & np.isfinite(sub), desired, 0.0)
        full = np.zeros(values.shape)
        full[:, cols] = desired
        emit = emission_mask(full, schedule)
        out = np.where(emit[:, None], full, np.nan)
        logger.debug("%s: %d rebalance rows of %d bars", self.strategy_id, emit.sum(), len(emit))
        return pd.DataFrame(out, index=prices.index, columns=prices.columns)

    def views(self, prices: pd.DataFrame) -> StrategyViews:
        """Annualized expected returns and confidences (see each strategy for the formula).

        Parameters
        ----------
        prices : DataFrame, shape (n_bars, n_assets)
            Wide close panel; ``NaN`` = not listed.

        Returns
        -------
        StrategyViews
            Frames with the same index and columns; ``NaN`` outside the universe, before the
            warm-up and where the price is ``NaN``.
        """
        values, cols = self._prepare(prices)
        sub = values[:, cols]
        sub_frame = pd.DataFrame(sub, index=prices.index, columns=prices.columns[cols])
        er, conf = self._views(sub_frame)
        ok = np.isfinite(er) & np.isfinite(conf) & np.isfinite(sub)
        er_full = np.full(values.shape, np.nan)
        conf_full = np.full(values.shape, np.nan)
        er_full[:, cols] = np.where(
            ok, np.clip(er, -MAX_ABS_EXPECTED_RETURN, MAX_ABS_EXPECTED_RETURN), np.nan
        )
        conf_full[:, cols] = np.where(ok, np.clip(conf, 0.0, 1.0), np.nan)
        return StrategyViews(
            pd.DataFrame(er_full, index=prices.index, columns=prices.columns),
            pd.DataFrame(conf_full, index=prices.index, columns=prices.columns),
        )

    @abstractmethod
    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Desired weights on every bar and the optional schedule.

        Parameters
        ----------
        prices : DataFrame, shape (n_bars, n_universe)
            Validated ``float64`` closes of the universe only.

        Returns
        -------
        desired : ndarray, shape (n_bars, n_universe)
            The weights the strategy wants to hold after each close (``>= 0``, row sum
            ``<= 1``); non-finite entries and entries without a price are zeroed by the caller.
        schedule : ndarray of bool, shape (n_bars,), or None
            Bars on which a row is emitted even if the target did not change.
        """

    @abstractmethod
    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(expected_returns, confidence)``, each shaped (n_bars, n_universe).

        ``NaN`` = no view; the caller clips, masks and embeds them.
        """


# --------------------------------------------------------------------------------------------
# shared signal helpers
# --------------------------------------------------------------------------------------------


def emission_mask(desired: np.ndarray, schedule: np.ndarray | None) -> np.ndarray:
    """Which bars emit a target row.

    A bar emits when its desired row differs (exactly) from the previous bar's (the bar before
    the first counts as all zeros), or when it is on the ``schedule``; but never before the
    first bar with a non-zero target, since the sleeve starts in cash.

    Parameters
    ----------
    desired : ndarray, shape (n_bars, n_assets)
        Finite desired weights on every bar.
    schedule : ndarray of bool, shape (n_bars,), or None
        Calendar bars that rebalance even without a change.

    Returns
    -------
    ndarray of bool, shape (n_bars,)
    """
    n, m = desired.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    previous = np.vstack([np.zeros((1, m)), desired[:-1]])
    trigger = (desired != previous).any(axis=1)
    if schedule is not None:
        trigger |= schedule
    started = np.logical_or.accumulate((desired > 0.0).any(axis=1))
    return trigger & started


def hold_state(entry: np.ndarray, exit_: np.ndarray) -> np.ndarray:
    """Latch per column: held from an entry bar until the next exit bar (exclusive of it).

    Equivalent to ``state = 1 on entry, 0 on exit, forward-filled, 0 before any event``; an
    entry wins when both are true on the same bar.

    Parameters
    ----------
    entry, exit_ : ndarray of bool, shape (n_bars, n_assets)

    Returns
    -------
    ndarray of bool, shape (n_bars, n_assets)
        ``True`` where the position is held after the close.
    """
    n = entry.shape[0]
    event = entry | exit_
    rows = np.where(event, np.arange(n)[:, None], -1)
    last = np.maximum.accumulate(rows, axis=0)
    held = np.take_along_axis(entry, np.maximum(last, 0), axis=0)
    return held & (last >= 0)


def capped_equal_weights(held: np.ndarray, max_weight: float) -> np.ndarray:
    """Equal weight ``min(1 / n_held, max_weight)`` on held assets, the rest cash.

    Parameters
    ----------
    held : ndarray of bool, shape (n_bars, n_assets)
    max_weight : float
        Cap per asset, in ``(0, 1]``.

    Returns
    -------
    ndarray, shape (n_bars, n_assets)
    """
    count = held.sum(axis=1, keepdims=True)
    weight = np.minimum(1.0 / np.maximum(count, 1), max_weight)
    return np.where(held, weight, 0.0)


def schedule_mask(index: pd.Index, rebalance: str, n: int) -> np.ndarray:
    """Calendar rebalance bars: ``"month_end"`` or ``"every_n_bars"`` (bars 0, n, 2n, ...).

    Uses only the dates of ``index`` (the trading calendar), never prices.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"schedule_mask: expected a DatetimeIndex, got {type(index).__name__}")
    if rebalance == "month_end":
        return month_end_mask(index)
    if rebalance == "every_n_bars":
        return every_n_mask(len(index), n)
    raise ConfigError(f"rebalance: must be one of {list(REBALANCE_CHOICES)}, got {rebalance!r}")


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[BaseStrategy]] = {}

S = TypeVar("S", bound=BaseStrategy)


def register_strategy(kind: str) -> Callable[[type[S]], type[S]]:
    """Class decorator registering a :class:`BaseStrategy` subclass under ``kind``.

    Raises
    ------
    ValueError
        If ``kind`` is empty or already registered to another class (a programming error).
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"strategy kind must be a non-empty string, got {kind!r}")

    def decorator(cls: type[S]) -> type[S]:
        if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
            raise TypeError(f"@register_strategy({kind!r}) needs a BaseStrategy subclass")
        existing = _REGISTRY.get(kind)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"strategy kind {kind!r} is already registered to {existing}")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return decorator


def available_kinds() -> list[str]:
    """Sorted names of the registered strategy kinds."""
    return sorted(_REGISTRY)


def get_strategy_class(kind: str) -> type[BaseStrategy]:
    """The class registered under ``kind`` (``KeyError`` if unknown)."""
    return _REGISTRY[kind]


def create_strategy(
    strategy_id: str,
    kind: str,
    params: Mapping[str, Any] | None = None,
    universe: Sequence[str] | None = None,
) -> Strategy:
    """Build a registered strategy from config values.

    Parameters
    ----------
    strategy_id : str
        Name of the strategy in the config (``strategies.<id>``).
    kind : str
        Registered kind, see :func:`available_kinds`.
    params : mapping, optional
        Parameter overrides; missing ones take their defaults.
    universe : sequence of str, optional
        Assets to trade; ``None`` = every column of the panel.

    Raises
    ------
    ConfigError
        Unknown kind (``strategies.<id>.kind``), unknown or invalid parameter
        (``strategies.<id>.params.<name>``) or invalid universe (``strategies.<id>.universe``).
    """
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(
            f"strategies.{strategy_id}.kind: unknown strategy kind {kind!r}; "
            f"known kinds: {', '.join(available_kinds())}"
        )
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"strategies.{strategy_id}.params: must be a mapping, got {params!r}")
    known = cls.param_names()
    for name, value in params.items():
        if name not in known:
            raise ConfigError(
                f"strategies.{strategy_id}.params.{name}: unknown parameter for kind "
                f"{kind!r} (value {value!r}); known parameters: {', '.join(known)}"
            )
    return cls(strategy_id=strategy_id, universe=universe, **dict(params))  # type: ignore[arg-type]
