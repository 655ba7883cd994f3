"""Portfolio domain: contracts, allocation, sizing, rebalancing, Black-Litterman, optimization.

Nothing in this package depends on :mod:`backtest`; imports flow ``backtest -> portfolio`` only.
"""

from portfolio._numba_cache import configure_numba_cache
from portfolio.errors import ConfigError, DataError, OptimizationError, PortfolioBacktestError

# Before any jitted function of the project is defined: see portfolio/_numba_cache.py.
configure_numba_cache()

__all__ = ["ConfigError", "DataError", "OptimizationError", "PortfolioBacktestError"]
