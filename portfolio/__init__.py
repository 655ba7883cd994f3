"""Portfolio domain: contracts, allocation, sizing, rebalancing, Black-Litterman, optimization.

Nothing in this package depends on :mod:`backtest`; imports flow ``backtest -> portfolio`` only.
"""

from portfolio.errors import ConfigError, DataError, OptimizationError, PortfolioBacktestError

__all__ = ["ConfigError", "DataError", "OptimizationError", "PortfolioBacktestError"]
