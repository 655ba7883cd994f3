"""Simulation over history: price panels, strategies, the jitted pass, engine, results, runner."""

__version__ = "0.1.0"
