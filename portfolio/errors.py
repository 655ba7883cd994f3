"""Project exception hierarchy.

Every error a user can cause (bad YAML, bad price files, infeasible optimization constraints)
raises a subclass of :class:`PortfolioBacktestError`. All of them are also ``ValueError`` so that
callers who only know the standard library can still catch them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "OptimizationError", "PortfolioBacktestError"]


class PortfolioBacktestError(ValueError):
    """Root of every error raised for bad user input in this project."""


class ConfigError(PortfolioBacktestError):
    """Invalid configuration: the message names the key path and the offending value."""


class DataError(PortfolioBacktestError):
    """Invalid price data: the message names the file, the column and the first bad date."""


class OptimizationError(PortfolioBacktestError):
    """Invalid optimization input or infeasible constraints: the message names which one."""
