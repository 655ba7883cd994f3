"""Wall-clock medians for the speed-goal tests (ratios measured in the same run)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_times(
    fns: dict[str, Callable[[], Any]], repeats: int, *, warmup: bool = False
) -> dict[str, float]:
    """Median wall time of each callable, seconds; runs interleaved so load drifts hit all alike.

    Parameters
    ----------
    fns : dict of name -> callable
        What to time (called with no argument).
    repeats : int
        Timed calls of each.
    warmup : bool
        Call each once, untimed, first (compilation, caches).
    """
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def median_seconds(fn: Callable[[], Any], repeats: int, *, warmup: bool = False) -> float:
    """:func:`median_times` of one callable."""
    return median_times({"fn": fn}, repeats, warmup=warmup)["fn"]
