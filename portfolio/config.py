"""YAML configuration loader: ``config/portfolio.yaml`` -> frozen :class:`BacktestConfig`.

The file is read with a ``yaml.SafeLoader`` (subclassed only to reject duplicate keys, which
plain ``yaml.safe_load`` silently overwrites) and validated once, here. Every problem raises
:class:`~portfolio.errors.ConfigError` whose message starts with the source file name and the key
path of the offending entry::

    config/portfolio.yaml: portfolio.allocations[1].target_weight: must be in [0, 1], got 1.5

Unknown keys are errors (the message lists the allowed keys); a string where a number is
expected, or a boolean where a number is expected, is an error naming the type.

Sections (all optional except ``portfolio``; defaults in the dataclasses below):

``mode``            ``sleeves`` (default) or ``black_litterman``.
``portfolio``       -> :class:`~portfolio.contracts.PortfolioConfig` (keys ``id``,
                    ``total_capital``, ``rebalance_threshold``, ``rebalance_frequency_hours``,
                    ``allocations``; in an allocation ``max_capital: null`` means no cap).
``strategies``      id -> :class:`StrategySpec`. An allocated strategy without an entry gets
                    ``kind`` inferred from its id by stripping a trailing ``_v<digits>``
                    (``trendline_break_v1`` -> ``trendline_break``) and empty params; the same
                    inference applies when an entry omits ``kind``. An entry that no allocation
                    references is an error. Whether ``kind`` exists is checked by the engine's
                    strategy registry, not here (this module never imports :mod:`backtest`).
``costs``           -> :class:`~portfolio.contracts.CostModel`.
``rebalance``       -> :class:`RebalanceSettings`.
``execution``       -> :class:`ExecutionSettings`.
``metrics``         -> :class:`MetricsSettings`.
``data``            -> :class:`DataSettings`.
``risk_adjusted``   ``true``/``false`` or a mapping -> :class:`RiskAdjustedSettings`.
``black_litterman`` -> :class:`BLSettings`.
``optimizer``       -> :class:`OptimizerSettings`.
``sizing``          -> :class:`SizingSettings`.
``regime``          -> :class:`RegimeSettings`.

Relative file paths (``data.prices``, ``regime.series``) are resolved against the folder of the
YAML file (``base_dir`` for :func:`parse_config`) and must exist.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from portfolio.contracts import (
    WEIGHT_SUM_TOLERANCE,
    CostModel,
    PortfolioConfig,
    StrategyAllocation,
    _check_bool,
    _check_choice,
    _check_int,
    _check_real,
    _check_str,
    _describe,
    _fmt,
    _Invalid,
    _reduce,
    _run,
    _set,
)
from portfolio.errors import ConfigError

__all__ = [
    "BLSettings",
    "BacktestConfig",
    "DataSettings",
    "ExecutionSettings",
    "MetricsSettings",
    "OptimizerSettings",
    "RebalanceSettings",
    "RegimeSettings",
    "RiskAdjustedSettings",
    "SizingSettings",
    "StrategySpec",
    "default_config_path",
    "infer_strategy_kind",
    "load_config",
    "parse_config",
]

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("sleeves", "black_litterman")
DRIFT_BANDS: tuple[str, ...] = ("relative", "absolute")
CALENDARS: tuple[str, ...] = ("none", "month_end", "every_n_bars", "dates")
ALIGNS: tuple[str, ...] = ("intersection", "union")
COVARIANCES: tuple[str, ...] = ("ewma", "rolling")
SOLVERS: tuple[str, ...] = ("fast", "slsqp")
SIZING_METHODS: tuple[str, ...] = ("none", "vol_target", "kelly", "risk_budget")
REGIME_METHODS: tuple[str, ...] = ("hmm", "none", "series")
REFITS: tuple[str, ...] = ("expanding", "rolling")

_VERSION_SUFFIX = re.compile(r"_v\d+$")

_Rule = Callable[[Any], Any]


class _FieldInvalid(Exception):
    """Internal: a cross-field rule failed for ``field`` (``str(exc)`` is the message body)."""

    def __init__(self, field_name: str, body: str) -> None:
        super().__init__(body)
        self.field_name = field_name


# --------------------------------------------------------------------------------------------
# Value rules specific to the config file
# --------------------------------------------------------------------------------------------


def _check_path(value: Any) -> Path | None:
    """``None`` or a non-empty path string -> :class:`pathlib.Path` (not resolved here)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        return Path(value)
    return Path(_check_str(value))


def _check_date(value: Any, *, nullable: bool = False) -> str | None:
    """An ISO date (string, or a date YAML already parsed) -> ``'YYYY-MM-DD'``."""
    if value is None and nullable:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise _Invalid(f"must be an ISO date (YYYY-MM-DD), got {_describe(value)}")


def _check_dates(value: Any) -> tuple[str, ...]:
    """A list of ISO dates -> sorted tuple of unique ``'YYYY-MM-DD'`` strings."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _Invalid(f"must be a list of ISO dates, got {_describe(value)}")
    out: set[str] = set()
    for i, item in enumerate(value):
        try:
            out.add(str(_check_date(item)))
        except _Invalid as exc:
            raise _Invalid(str(exc), f"[{i}]") from None
    return tuple(sorted(out))


def _check_params(value: Any) -> MappingProxyType[str, Any]:
    """Strategy parameters: a mapping with string keys (``None`` = empty), copied read-only."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a mapping of parameter name -> value, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise _Invalid(f"parameter names must be non-empty strings, got {_describe(key)}")
    return MappingProxyType(copy.deepcopy(dict(value)))


def _check_universe(value: Any) -> tuple[str, ...] | None:
    """``None`` (all assets) or a non-empty list of unique, non-empty asset names."""
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _Invalid(f"must be a list of asset names or null, got {_describe(value)}")
    if len(value) == 0:
        raise _Invalid("must list at least one asset (use null for all assets)")
    seen: set[str] = set()
    for i, item in enumerate(value):
        try:
            _check_str(item)
        except _Invalid as exc:
            raise _Invalid(str(exc), f"[{i}]") from None
        if item in seen:
            raise _Invalid(f"duplicate asset {item!r}", f"[{i}]")
        seen.add(item)
    return tuple(value)


def _check_market_weights(value: Any) -> MappingProxyType[str, float] | None:
    """``None`` (equal weight) or asset -> weight >= 0, summing to 1 within 1e-9."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a mapping of asset -> weight or null, got {_describe(value)}")
    if not value:
        raise _Invalid("must list at least one asset (use null for equal weights)")
    out: dict[str, float] = {}
    for key, weight in value.items():
        if not isinstance(key, str) or not key.strip():
            raise _Invalid(f"asset names must be non-empty strings, got {_describe(key)}")
        try:
            out[key] = _check_real(weight, ge=0.0)
        except _Invalid as exc:
            raise _Invalid(str(exc), f".{key}") from None
    total = math.fsum(out.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise _Invalid(f"weights must sum to 1 (tolerance 1e-9), got {total!r}")
    return MappingProxyType(out)


def _real(**bounds: Any) -> _Rule:
    return lambda v: _check_real(v, **bounds)


def _int(ge: int) -> _Rule:
    return lambda v: _check_int(v, ge=ge)


def _choice(choices: tuple[str, ...]) -> _Rule:
    return lambda v: _check_choice(v, choices)


def _plain(value: Any) -> Any:
    """Settings value -> plain YAML/JSON-friendly value (Path -> str, tuple -> list, ...)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Settings dataclasses. Each section has a rule table shared by the dataclass (direct
# construction, messages "Class.field ...") and the YAML parser (messages "file: path: ...").
# --------------------------------------------------------------------------------------------


def _validate(
    obj: Any, rules: Mapping[str, _Rule], cross: Callable[[dict[str, Any]], None] | None
) -> None:
    owner = type(obj).__name__
    values = {name: _run(rule, getattr(obj, name), owner, name) for name, rule in rules.items()}
    if cross is not None:
        try:
            cross(values)
        except _FieldInvalid as exc:
            raise ConfigError(f"{owner}.{exc.field_name} {exc}") from None
    for name, value in values.items():
        _set(obj, name, value)


def _to_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def _rebalance_cross(values: dict[str, Any]) -> None:
    if values["calendar"] == "dates" and not values["dates"]:
        raise _FieldInvalid("dates", "must list at least one date when calendar is 'dates'")


_REBALANCE_RULES: dict[str, _Rule] = {
    "drift_band": _choice(DRIFT_BANDS),
    "calendar": _choice(CALENDARS),
    "every_n_bars": _int(1),
    "dates": _check_dates,
    "min_trade_value": _real(ge=0.0),
    "lot_size": _real(ge=0.0),
    "netting": _check_bool,
    "max_leverage": _real(ge=1.0),
}


@dataclass(frozen=True, slots=True)
class RebalanceSettings:
    """When and how sleeves are rebalanced.

    Parameters
    ----------
    drift_band : {"relative", "absolute"}
        Drift definition (see :mod:`portfolio.allocation`).
    calendar : {"none", "month_end", "every_n_bars", "dates"}
        Calendar trigger, OR-ed with the drift band.
    every_n_bars : int
        Period in bars (>= 1) when ``calendar == "every_n_bars"``.
    dates : tuple of str
        Rebalance dates ``YYYY-MM-DD`` (sorted, unique) when ``calendar == "dates"``.
    min_trade_value : float
        Orders below this notional (currency, >= 0) are skipped.
    lot_size : float
        Units are rounded to multiples of this (> 0), or 0 for fractional units.
    netting : bool
        Net opposite orders on the same symbol across sleeves before costs.
    max_leverage : float
        Gross exposure cap per sleeve (>= 1; 1.0 means cash never goes negative).
    """

    drift_band: str = "relative"
    calendar: str = "none"
    every_n_bars: int = 21
    dates: tuple[str, ...] = ()
    min_trade_value: float = 10.0
    lot_size: float = 1.0
    netting: bool = True
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        _validate(self, _REBALANCE_RULES, _rebalance_cross)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``dates`` as a list)."""
        return _to_dict(self)


_METRICS_RULES: dict[str, _Rule] = {
    "periods_per_year": _int(1),
    "rf_annual": _real(gt=-1.0, lt=1.0),
}


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Conventions of the performance metrics (printed in every report header).

    Parameters
    ----------
    periods_per_year : int
        Bars per year for annualization (>= 1): 252 for daily bars, 52 weekly, 12 monthly;
        for intraday data, bars per trading day times 252.
    rf_annual : float
        Annual risk-free rate as a decimal in (-1, 1) (0.02 = 2%), used by Sharpe and Sortino.
    """

    periods_per_year: int = 252
    rf_annual: float = 0.0

    def __post_init__(self) -> None:
        _validate(self, _METRICS_RULES, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return _to_dict(self)


_EXECUTION_RULES: dict[str, _Rule] = {"lag": _int(0)}


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """Fill timing.

    Parameters
    ----------
    lag : int
        Bars (>= 0) between the decision close and the fill close: a decision at close ``t``
        fills at the close of bar ``t + lag``.
    """

    lag: int = 1

    def __post_init__(self) -> None:
        _validate(self, _EXECUTION_RULES, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return _to_dict(self)


def _data_cross(values: dict[str, Any]) -> None:
    start, end = values["start"], values["end"]
    if start is not None and end is not None and end < start:
        raise _FieldInvalid("end", f"must be on or after start ({start}), got {end}")


_DATA_RULES: dict[str, _Rule] = {
    "prices": _check_path,
    "start": lambda v: _check_date(v, nullable=True),
    "end": lambda v: _check_date(v, nullable=True),
    "align": _choice(ALIGNS),
    "ffill_limit": _int(0),
}


@dataclass(frozen=True, slots=True)
class DataSettings:
    """Price data source.

    Parameters
    ----------
    prices : pathlib.Path or None
        CSV / CSV.gz / Parquet file of prices; ``None`` uses the embedded dataset.
    start, end : str or None
        Inclusive date range ``YYYY-MM-DD``; ``None`` = unbounded.
    align : {"intersection", "union"}
        How the columns' date ranges are combined.
    ffill_limit : int
        Maximum consecutive bars (>= 0) a missing price is forward-filled.
    """

    prices: Path | None = None
    start: str | None = None
    end: str | None = None
    align: str = "intersection"
    ffill_limit: int = 5

    def __post_init__(self) -> None:
        _validate(self, _DATA_RULES, _data_cross)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``prices`` as a string)."""
        return _to_dict(self)


_RISK_ADJUSTED_RULES: dict[str, _Rule] = {
    "enabled": _check_bool,
    "lookback_period_days": _int(2),
    "adjustment_sensitivity": _real(ge=0.0),
}


@dataclass(frozen=True, slots=True)
class RiskAdjustedSettings:
    """Risk-adjusted sleeve allocation.

    Parameters
    ----------
    enabled : bool
        Whether allocations are adjusted for recent risk. In YAML, ``risk_adjusted: true`` /
        ``false`` sets only this; a mapping without ``enabled`` means ``enabled: true``.
    lookback_period_days : int
        Lookback in days (>= 2).
    adjustment_sensitivity : float
        Strength of the adjustment (>= 0).
    """

    enabled: bool = False
    lookback_period_days: int = 30
    adjustment_sensitivity: float = 0.1

    def __post_init__(self) -> None:
        _validate(self, _RISK_ADJUSTED_RULES, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return _to_dict(self)


_BL_RULES: dict[str, _Rule] = {
    "risk_aversion": _real(gt=0.0),
    "tau": _real(gt=0.0),
    "default_view_confidence": _real(ge=0.0, le=1.0),
    "covariance": _choice(COVARIANCES),
    "lookback": _int(2),
    "halflife": _real(gt=0.0),
    "shrinkage": _real(ge=0.0, le=1.0),
    "min_history": _int(2),
    "market_weights": _check_market_weights,
    "signal_threshold": _real(ge=0.0),
    "drift_threshold": _real(ge=0.0),
    "view_halflife": _real(gt=0.0, nullable=True),
}


@dataclass(frozen=True, slots=True)
class BLSettings:
    """Black-Litterman mode settings.

    Parameters
    ----------
    risk_aversion : float
        Market risk aversion delta (> 0) for implied returns ``pi = delta * Sigma @ w_mkt``.
    tau : float
        Scale of the prior covariance (> 0).
    default_view_confidence : float
        View confidence in [0, 1] when a strategy does not give one.
    covariance : {"ewma", "rolling"}
        Causal covariance estimator.
    lookback : int
        Window in bars (>= 2).
    halflife : float
        EWMA half-life in bars (> 0).
    shrinkage : float
        Convex shrinkage toward the diagonal, in [0, 1].
    min_history : int
        Bars (>= 2) before the first optimization.
    market_weights : Mapping[str, float] or None
        Market portfolio (weights >= 0 summing to 1); ``None`` = equal weight.
    signal_threshold, drift_threshold : float
        Thresholds (>= 0) for acting on views and on weight drift.
    view_halflife : float or None
        Half-life in bars (> 0) of a causal EWMA applied to each strategy's expected returns
        and confidences before they become views (daily signals are noisy, and mean-variance
        weights amplify the noise into turnover); ``None`` = the raw views.
    """

    risk_aversion: float = 2.5
    tau: float = 0.05
    default_view_confidence: float = 0.5
    covariance: str = "ewma"
    lookback: int = 252
    halflife: float = 63.0
    shrinkage: float = 0.1
    min_history: int = 60
    market_weights: Mapping[str, float] | None = None
    signal_threshold: float = 0.15
    drift_threshold: float = 0.05
    view_halflife: float | None = None

    def __post_init__(self) -> None:
        _validate(self, _BL_RULES, None)

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType cannot be pickled or deep-copied: rebuild from plain values.
        return _reduce(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``market_weights`` as a dict or ``None``)."""
        return _to_dict(self)


def _optimizer_cross(values: dict[str, Any]) -> None:
    # long_only raises a negative lower bound to 0 (a positive one is kept).
    if values["long_only"] and values["min_weight"] < 0.0:
        values["min_weight"] = 0.0
    if values["min_weight"] > values["max_weight"]:
        raise _FieldInvalid(
            "min_weight",
            f"must be <= max_weight ({_fmt(values['max_weight'])}), "
            f"got {_fmt(values['min_weight'])}",
        )


_OPTIMIZER_RULES: dict[str, _Rule] = {
    "min_weight": _real(),
    "max_weight": _real(),
    "max_leverage": _real(gt=0.0),
    "target_return": _real(nullable=True),
    "long_only": _check_bool,
    "risk_aversion": _real(gt=0.0),
    "solver": _choice(SOLVERS),
    "budget": _real(nullable=True),
}


@dataclass(frozen=True, slots=True)
class OptimizerSettings:
    """Mean-variance optimizer settings (objective ``0.5 w'Σw - λ μ'w``).

    Parameters
    ----------
    min_weight, max_weight : float
        Per-asset weight bounds, ``min_weight <= max_weight``.
    max_leverage : float
        Cap on gross exposure ``sum |w|`` (> 0).
    target_return : float or None
        Required expected return ``μ'w``, or ``None``.
    long_only : bool
        If true, a negative ``min_weight`` is raised to 0 at construction (so the stored
        ``min_weight`` is what the optimizer uses).
    risk_aversion : float
        γ (> 0), the classical risk aversion of ``max μ'w - (γ/2) w'Σw``; the optimizer's
        return weight is ``λ = 1/γ`` in ``min 0.5 w'Σw - λ μ'w``. The default 2.5 equals the
        Black-Litterman ``risk_aversion`` δ, so with no views and loose constraints the
        unconstrained optimum is ``(δ Σ_BL)^-1 π = w_mkt / (1 + τ)`` (``Σ_BL = (1 + τ) Σ``
        without views), the market portfolio up to the budget's rescaling.
    solver : {"fast", "slsqp"}
        Solver implementation.
    budget : float or None
        Required net exposure ``sum w``; ``None`` = unconstrained.
    """

    min_weight: float = -0.25
    max_weight: float = 0.25
    max_leverage: float = 3.0
    target_return: float | None = None
    long_only: bool = False
    risk_aversion: float = 2.5
    solver: str = "fast"
    budget: float | None = 1.0

    def __post_init__(self) -> None:
        _validate(self, _OPTIMIZER_RULES, _optimizer_cross)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return _to_dict(self)


_SIZING_RULES: dict[str, _Rule] = {
    "method": _choice(SIZING_METHODS),
    "target_vol": _real(gt=0.0),
    "max_position": _real(gt=0.0),
    "kelly_fraction": _real(gt=0.0, le=1.0),
    "risk_budget": _real(gt=0.0),
}


@dataclass(frozen=True, slots=True)
class SizingSettings:
    """Position sizing settings.

    Parameters
    ----------
    method : {"none", "vol_target", "kelly", "risk_budget"}
        Sizing rule.
    target_vol : float
        Annualized volatility target (> 0, decimal: 0.10 = 10 %).
    max_position : float
        Cap on one position's weight (> 0).
    kelly_fraction : float
        Fraction of full Kelly, in (0, 1].
    risk_budget : float
        Risk budget per position (> 0).
    """

    method: str = "none"
    target_vol: float = 0.10
    max_position: float = 0.25
    kelly_fraction: float = 0.5
    risk_budget: float = 0.02

    def __post_init__(self) -> None:
        _validate(self, _SIZING_RULES, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return _to_dict(self)


def _regime_cross(values: dict[str, Any]) -> None:
    if values["method"] == "series" and values["series"] is None:
        raise _FieldInvalid("series", "is required when method is 'series', got None")


_REGIME_RULES: dict[str, _Rule] = {
    "method": _choice(REGIME_METHODS),
    "series": _check_path,
    "market": _check_str,
    "refit": _choice(REFITS),
    "refit_every": _int(1),
    "window": _int(50),
    "min_history": _int(50),
}


@dataclass(frozen=True, slots=True)
class RegimeSettings:
    """Regime (market clarity) model settings.

    Parameters
    ----------
    method : {"hmm", "none", "series"}
        Model: a fitted HMM, none, or a given series.
    series : pathlib.Path or None
        CSV of clarity values in [0, 1]; required for ``method == "series"``.
    market : str
        ``"index"`` (the embedded S&P 500) or an asset column name.
    refit : {"expanding", "rolling"}
        Refit window type.
    refit_every : int
        Refit period in bars (>= 1).
    window : int
        Rolling window in bars (>= 50).
    min_history : int
        Bars (>= 50) before the first fit.
    """

    method: str = "hmm"
    series: Path | None = None
    market: str = "index"
    refit: str = "expanding"
    refit_every: int = 63
    window: int = 756
    min_history: int = 252

    def __post_init__(self) -> None:
        _validate(self, _REGIME_RULES, _regime_cross)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``series`` as a string)."""
        return _to_dict(self)


_SETTINGS: dict[str, tuple[type, dict[str, _Rule], Callable[[dict[str, Any]], None] | None]] = {
    "rebalance": (RebalanceSettings, _REBALANCE_RULES, _rebalance_cross),
    "execution": (ExecutionSettings, _EXECUTION_RULES, None),
    "metrics": (MetricsSettings, _METRICS_RULES, None),
    "data": (DataSettings, _DATA_RULES, _data_cross),
    "black_litterman": (BLSettings, _BL_RULES, None),
    "optimizer": (OptimizerSettings, _OPTIMIZER_RULES, _optimizer_cross),
    "sizing": (SizingSettings, _SIZING_RULES, None),
    "regime": (RegimeSettings, _REGIME_RULES, _regime_cross),
}
# Fields holding file paths: resolved against the YAML folder and checked to exist.
_PATH_FIELDS: dict[str, tuple[str, ...]] = {"data": ("prices",), "regime": ("series",)}


def infer_strategy_kind(strategy_id: str) -> str:
    """Strategy kind from its id: strip a trailing ``_v<digits>`` (``momentum_v1`` -> ``momentum``).

    An id without such a suffix is its own kind.
    """
    kind = _VERSION_SUFFIX.sub("", strategy_id)
    return kind or strategy_id


_STRATEGY_RULES: dict[str, _Rule] = {
    "strategy_id": _check_str,
    "kind": _check_str,
    "params": _check_params,
    "universe": _check_universe,
}


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """Which strategy implementation a sleeve runs, and with what parameters.

    Parameters
    ----------
    strategy_id : str
        Sleeve id (as in ``portfolio.allocations``).
    kind : str
        Registry name of the implementation (checked by the engine, not here).
    params : Mapping[str, Any]
        Keyword parameters; stored as a read-only copy.
    universe : tuple of str or None
        Assets the strategy trades; ``None`` = every asset of the price panel.
    """

    strategy_id: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    universe: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _validate(self, _STRATEGY_RULES, None)

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType cannot be pickled or deep-copied: rebuild from plain values.
        return _reduce(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (without ``strategy_id``, as under ``strategies:`` in YAML)."""
        return {
            "kind": self.kind,
            "params": copy.deepcopy(dict(self.params)),
            "universe": None if self.universe is None else list(self.universe),
        }


_TOP_KEYS: tuple[str, ...] = (
    "mode",
    "portfolio",
    "strategies",
    "costs",
    "rebalance",
    "execution",
    "metrics",
    "data",
    "risk_adjusted",
    "black_litterman",
    "optimizer",
    "sizing",
    "regime",
)
_PORTFOLIO_KEYS = (
    "id",
    "total_capital",
    "rebalance_threshold",
    "rebalance_frequency_hours",
    "allocations",
)
_ALLOCATION_KEYS = ("strategy_id", "target_weight", "min_capital", "max_capital", "risk_multiplier")
_COST_KEYS = ("commission_bps", "commission_fixed", "commission_min", "slippage_bps")


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """The whole validated configuration of a run.

    Parameters
    ----------
    mode : {"sleeves", "black_litterman"}
        Capital sleeves per strategy, or one Black-Litterman optimized book.
    portfolio : PortfolioConfig
        Portfolio and its allocations.
    strategies : Mapping[str, StrategySpec]
        One spec per allocated strategy id (exactly the allocation ids), read-only.
    costs : CostModel
    rebalance : RebalanceSettings
    execution : ExecutionSettings
    metrics : MetricsSettings
    data : DataSettings
    risk_adjusted : RiskAdjustedSettings
    black_litterman : BLSettings
    optimizer : OptimizerSettings
    sizing : SizingSettings
    regime : RegimeSettings
    source : str
        Where the configuration came from (file path or ``"<dict>"``); not part of
        :meth:`to_dict` nor of :meth:`config_hash`.
    """

    mode: str
    portfolio: PortfolioConfig
    strategies: Mapping[str, StrategySpec]
    costs: CostModel = field(default_factory=CostModel)
    rebalance: RebalanceSettings = field(default_factory=RebalanceSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    data: DataSettings = field(default_factory=DataSettings)
    risk_adjusted: RiskAdjustedSettings = field(default_factory=RiskAdjustedSettings)
    black_litterman: BLSettings = field(default_factory=BLSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    sizing: SizingSettings = field(default_factory=SizingSettings)
    regime: RegimeSettings = field(default_factory=RegimeSettings)
    source: str = "<dict>"

    def __post_init__(self) -> None:
        owner = "BacktestConfig"
        _run(_choice(MODES), self.mode, owner, "mode")
        expected: dict[str, type] = {
            "portfolio": PortfolioConfig,
            "costs": CostModel,
            "rebalance": RebalanceSettings,
            "execution": ExecutionSettings,
            "metrics": MetricsSettings,
            "data": DataSettings,
            "risk_adjusted": RiskAdjustedSettings,
            "black_litterman": BLSettings,
            "optimizer": OptimizerSettings,
            "sizing": SizingSettings,
            "regime": RegimeSettings,
        }
        for name, cls in expected.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(
                    f"{owner}.{name} must be a {cls.__name__}, got {type(value).__name__}"
                )
        _run(_check_str, self.source, owner, "source")
        if not isinstance(self.strategies, Mapping):
            raise ConfigError(
                f"{owner}.strategies must be a mapping, got {_describe(self.strategies)}"
            )
        ids = self.portfolio.strategy_ids
        for sid, spec in self.strategies.items():
            if not isinstance(spec, StrategySpec) or spec.strategy_id != sid:
                raise ConfigError(
                    f"{owner}.strategies[{sid!r}] must be a StrategySpec with strategy_id "
                    f"{sid!r}, got {spec!r}"
                )
            if sid not in ids:
                raise ConfigError(
                    f"{owner}.strategies[{sid!r}] is not referenced by any allocation "
                    f"(allocated: {', '.join(ids)})"
                )
        missing = [sid for sid in ids if sid not in self.strategies]
        if missing:
            raise ConfigError(
                f"{owner}.strategies lacks a spec for allocated strategy id(s) "
                f"{', '.join(repr(s) for s in missing)}"
            )
        # Store in allocation order, read-only.
        _set(self, "strategies", MappingProxyType({sid: self.strategies[sid] for sid in ids}))

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType cannot be pickled or deep-copied: rebuild from plain values.
        return _reduce(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping in the YAML layout; ``parse_config(cfg.to_dict(), cfg.source) == cfg``.

        ``max_capital = inf`` is written as ``None`` (null), paths as absolute strings.
        """
        p = self.portfolio
        return {
            "mode": self.mode,
            "portfolio": {
                "id": p.portfolio_id,
                "total_capital": p.total_capital,
                "rebalance_threshold": p.rebalance_threshold,
                "rebalance_frequency_hours": p.rebalance_frequency_hours,
                "allocations": [
                    {
                        "strategy_id": a.strategy_id,
                        "target_weight": a.target_weight,
                        "min_capital": a.min_capital,
                        "max_capital": None if math.isinf(a.max_capital) else a.max_capital,
                        "risk_multiplier": a.risk_multiplier,
                    }
                    for a in p.allocations
                ],
            },
            "strategies": {sid: spec.to_dict() for sid, spec in self.strategies.items()},
            "costs": self.costs.to_dict(),
            "rebalance": self.rebalance.to_dict(),
            "execution": self.execution.to_dict(),
            "metrics": self.metrics.to_dict(),
            "data": self.data.to_dict(),
            "risk_adjusted": self.risk_adjusted.to_dict(),
            "black_litterman": self.black_litterman.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "sizing": self.sizing.to_dict(),
            "regime": self.regime.to_dict(),
        }

    def config_hash(self) -> str:
        """SHA-256 hex digest of the canonical JSON of :meth:`to_dict` (sorted keys).

        Independent of :attr:`source`; depends on resolved (absolute) data paths.
        """
        text = json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), default=_json_default
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_default(obj: Any) -> Any:
    """JSON fallback for YAML scalars that JSON lacks (dates in strategy params, sets)."""
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    return repr(obj)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


class _Parser:
    """Walks the raw mapping, raising ``ConfigError('<source>: <key.path>: <problem>')``."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, path: str, body: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {path}: {body}")

    def value(self, rule: _Rule, raw: Any, path: str) -> Any:
        try:
            return rule(raw)
        except _Invalid as exc:
            self.fail(f"{path}{exc.sub}", str(exc))

    def mapping(self, raw: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        """A section: ``None`` counts as empty; unknown keys are errors listing ``allowed``."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping, got {_describe(raw)}")
        for key in raw:
            if not isinstance(key, str):
                self.fail(path or "top level", f"keys must be strings, got {_describe(key)}")
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                self.fail(where, f"unknown key; allowed keys: {', '.join(allowed)}")
        return raw

    def settings(self, name: str, raw: Any) -> Any:
        cls, rules, cross = _SETTINGS[name]
        section = self.mapping(raw, name, tuple(rules))
        values: dict[str, Any] = {}
        for f in fields(cls):
            given = section.get(f.name, f.default)
            values[f.name] = self.value(rules[f.name], given, f"{name}.{f.name}")
        if cross is not None:
            try:
                cross(values)
            except _FieldInvalid as exc:
                self.fail(f"{name}.{exc.field_name}", str(exc))
        for key in _PATH_FIELDS.get(name, ()):
            values[key] = self.resolve(values[key], f"{name}.{key}")
        return cls(**values)

    def resolve(self, path: Path | None, where: str) -> Path | None:
        if path is None:
            return None
        resolved = (self.base_dir / path.expanduser()).resolve()
        if not resolved.is_file():
            self.fail(where, f"file not found: {str(path)!r} (resolved to {str(resolved)!r})")
        return resolved

    def portfolio(self, raw: Any) -> PortfolioConfig:
        if raw is None:
            self.fail("portfolio", "required section is missing")
        sec = self.mapping(raw, "portfolio", _PORTFOLIO_KEYS)
        for key in ("id", "total_capital", "allocations"):
            if key not in sec:
                self.fail(f"portfolio.{key}", "required key is missing")
        pid = self.value(_check_str, sec["id"], "portfolio.id")
        total = self.value(_real(gt=0.0), sec["total_capital"], "portfolio.total_capital")
        threshold = self.value(
            _real(ge=0.0), sec.get("rebalance_threshold", 0.05), "portfolio.rebalance_threshold"
        )
        freq = self.value(
            _real(gt=0.0),
            sec.get("rebalance_frequency_hours", 24.0),
            "portfolio.rebalance_frequency_hours",
        )
        raw_allocs = sec["allocations"]
        if isinstance(raw_allocs, str | bytes | Mapping) or not isinstance(raw_allocs, Sequence):
            self.fail("portfolio.allocations", f"must be a list, got {_describe(raw_allocs)}")
        if not raw_allocs:
            self.fail("portfolio.allocations", "must list at least one strategy")
        allocs: list[StrategyAllocation] = []
        first_seen: dict[str, int] = {}
        for i, entry in enumerate(raw_allocs):
            path = f"portfolio.allocations[{i}]"
            if entry is None:
                self.fail(path, "must be a mapping, got None")
            a = self.mapping(entry, path, _ALLOCATION_KEYS)
            for key in ("strategy_id", "target_weight"):
                if key not in a:
                    self.fail(f"{path}.{key}", "required key is missing")
            sid = self.value(_check_str, a["strategy_id"], f"{path}.strategy_id")
            if sid in first_seen:
                self.fail(
                    f"{path}.strategy_id",
                    f"duplicate strategy id {sid!r} (also at "
                    f"portfolio.allocations[{first_seen[sid]}])",
                )
            first_seen[sid] = i
            weight = self.value(_real(ge=0.0, le=1.0), a["target_weight"], f"{path}.target_weight")
            min_cap = self.value(_real(ge=0.0), a.get("min_capital", 0.0), f"{path}.min_capital")
            raw_max = a.get("max_capital")
            max_cap = (
                math.inf
                if raw_max is None
                else self.value(_real(ge=0.0, allow_inf=True), raw_max, f"{path}.max_capital")
            )
            if min_cap > max_cap:
                self.fail(
                    f"{path}.min_capital",
                    f"must be <= max_capital ({_fmt(max_cap)}), got {_fmt(min_cap)}",
                )
            mult = self.value(
                _real(ge=0.0), a.get("risk_multiplier", 1.0), f"{path}.risk_multiplier"
            )
            allocs.append(StrategyAllocation(sid, weight, min_cap, max_cap, mult))
        total_weight = math.fsum(a.target_weight for a in allocs)
        if abs(total_weight - 1.0) > WEIGHT_SUM_TOLERANCE:
            listing = ", ".join(f"{a.strategy_id}={_fmt(a.target_weight)}" for a in allocs)
            self.fail(
                "portfolio.allocations",
                f"target weights must sum to 1 (tolerance 1e-9), got {total_weight!r} ({listing})",
            )
        return PortfolioConfig(pid, total, tuple(allocs), threshold, freq)

    def strategies(self, raw: Any, ids: tuple[str, ...]) -> dict[str, StrategySpec]:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.fail(
                "strategies", f"must be a mapping of strategy id -> spec, got {_describe(raw)}"
            )
        given: dict[str, StrategySpec] = {}
        for sid, entry in raw.items():
            if not isinstance(sid, str) or not sid.strip():
                self.fail("strategies", f"keys must be non-empty strings, got {_describe(sid)}")
            path = f"strategies.{sid}"
            if sid not in ids:
                self.fail(
                    path,
                    f"not referenced by any portfolio.allocations entry "
                    f"(allocated: {', '.join(ids)})",
                )
            sec = self.mapping(entry, path, ("kind", "params", "universe"))
            kind = (
                self.value(_check_str, sec["kind"], f"{path}.kind")
                if "kind" in sec
                else infer_strategy_kind(sid)
            )
            params = self.value(_check_params, sec.get("params"), f"{path}.params")
            universe = self.value(_check_universe, sec.get("universe"), f"{path}.universe")
            given[sid] = StrategySpec(sid, kind, params, universe)
        out: dict[str, StrategySpec] = {}
        for sid in ids:
            if sid in given:
                out[sid] = given[sid]
            else:
                out[sid] = StrategySpec(sid, infer_strategy_kind(sid), {}, None)
                logger.debug("strategy %r: kind %r inferred from its id", sid, out[sid].kind)
        return out

    def costs(self, raw: Any) -> CostModel:
        sec = self.mapping(raw, "costs", _COST_KEYS)
        values = {
            key: self.value(_real(ge=0.0), sec.get(key, 0.0), f"costs.{key}") for key in _COST_KEYS
        }
        return CostModel(**values)

    def risk_adjusted(self, raw: Any) -> RiskAdjustedSettings:
        if raw is None:
            return RiskAdjustedSettings()
        if isinstance(raw, bool):
            return RiskAdjustedSettings(enabled=raw)
        if not isinstance(raw, Mapping):
            self.fail("risk_adjusted", f"must be true/false or a mapping, got {_describe(raw)}")
        sec = self.mapping(raw, "risk_adjusted", tuple(_RISK_ADJUSTED_RULES))
        values: dict[str, Any] = {}
        for f in fields(RiskAdjustedSettings):
            # A mapping switches the feature on unless it says enabled: false.
            default = True if f.name == "enabled" else f.default
            given = sec.get(f.name, default)
            rule = _RISK_ADJUSTED_RULES[f.name]
            values[f.name] = self.value(rule, given, f"risk_adjusted.{f.name}")
        return RiskAdjustedSettings(**values)

    def parse(self, raw: Any) -> BacktestConfig:
        if not isinstance(raw, Mapping):
            what = "an empty document" if raw is None else _describe(raw)
            raise ConfigError(f"{self.source}: top level must be a mapping, got {what}")
        top = self.mapping(raw, "", _TOP_KEYS)
        mode = self.value(_choice(MODES), top.get("mode", "sleeves"), "mode")
        if "portfolio" not in top:
            self.fail("portfolio", "required section is missing")
        portfolio = self.portfolio(top["portfolio"])
        strategies = self.strategies(top.get("strategies"), portfolio.strategy_ids)
        sections = {name: self.settings(name, top.get(name)) for name in _SETTINGS}
        return BacktestConfig(
            mode=mode,
            portfolio=portfolio,
            strategies=strategies,
            costs=self.costs(top.get("costs")),
            risk_adjusted=self.risk_adjusted(top.get("risk_adjusted")),
            source=self.source,
            **sections,
        )


def parse_config(
    mapping: Mapping[str, Any],
    source: str = "<dict>",
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> BacktestConfig:
    """Validate an already-loaded configuration mapping.

    Parameters
    ----------
    mapping : Mapping[str, Any]
        The YAML layout (see the module docstring).
    source : str
        Name used as the prefix of every error message and stored as ``BacktestConfig.source``.
    base_dir : path-like, optional
        Folder against which relative data paths are resolved; default: the current directory.

    Returns
    -------
    BacktestConfig

    Raises
    ------
    ConfigError
        On any invalid entry; the message starts with ``source`` and the key path.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _Parser(source, base).parse(mapping)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it properly
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        with contextlib.suppress(TypeError):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_config(path: str | os.PathLike[str]) -> BacktestConfig:
    """Load and validate a YAML configuration file.

    Parameters
    ----------
    path : path-like
        The YAML file. Relative data paths inside it are resolved against its folder.

    Returns
    -------
    BacktestConfig
        With ``source`` set to ``str(path)`` as given.

    Raises
    ------
    ConfigError
        Missing or unreadable file, YAML syntax error (with line and column), a top level that
        is not a mapping, or any invalid entry; messages start with the file name.
    """
    source = os.fspath(path)
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "file not found"
        raise ConfigError(f"{source}: {what}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    return _Parser(source, file.resolve().parent).parse(raw)


def default_config_path() -> Path:
    """Path of the example configuration the runner uses by default.

    The copy shipped inside the wheel (``backtest/config/portfolio.yaml``, found through
    ``importlib.resources``) when it exists, else the repository's ``config/portfolio.yaml``
    next to this package (editable install / source checkout).
    """
    try:
        resource = importlib.resources.files("backtest") / "config" / "portfolio.yaml"
        if resource.is_file():
            return Path(str(resource))
    except (ModuleNotFoundError, TypeError):  # backtest absent or a namespace package
        pass
    return Path(__file__).resolve().parents[1] / "config" / "portfolio.yaml"
