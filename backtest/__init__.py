"""Simulation over history: price panels, strategies, the jitted pass, engine, results, runner."""

# Importing portfolio first configures numba's source-keyed cache before any jitted function of
# this package is defined (see portfolio/_numba_cache.py).
import portfolio as _portfolio  # noqa: F401

__version__ = "0.1.0"
