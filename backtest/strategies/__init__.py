"""Vectorized, causal strategies that produce target weights or Black-Litterman views.

Importing this package registers the built-in kinds: ``momentum``, ``trendline_break``,
``rsi_tema_bb`` and ``equal_weight``. See :mod:`backtest.strategies.base` for the contract.
"""

from backtest.strategies.base import (
    BaseStrategy,
    Strategy,
    StrategyViews,
    available_kinds,
    create_strategy,
    get_strategy_class,
    register_strategy,
)
from backtest.strategies.equal_weight import EqualWeightStrategy
from backtest.strategies.momentum import MomentumStrategy
from backtest.strategies.rsi_tema_bb import RsiTemaBbStrategy
from backtest.strategies.trendline_break import TrendlineBreakStrategy
from backtest.strategies.weight_schedule import WeightScheduleStrategy

__all__ = [
    "BaseStrategy",
    "EqualWeightStrategy",
    "MomentumStrategy",
    "RsiTemaBbStrategy",
    "Strategy",
    "StrategyViews",
    "TrendlineBreakStrategy",
    "WeightScheduleStrategy",
    "available_kinds",
    "create_strategy",
    "get_strategy_class",
    "register_strategy",
]
