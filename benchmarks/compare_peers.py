"""Time the peer workload in ours, vectorbt and bt, and check that they agree (issue 5).

Usage::

    python -m benchmarks.compare_peers [--sizes small medium large] [--repeats N]
                                       [--bt-repeats N] [--bt-max-seconds S]
                                       [--fees-bps F] [--breakdown]

For each size of :data:`benchmarks.workloads.SIZES` the same workload
(:func:`benchmarks.peers.synthetic_workload`: one book rebalanced monthly to a fixed schedule
of 50-100 names) runs in the three engines in this one process. Each engine runs once untimed
first (numba compilation, imports, caches), then ``--repeats`` timed runs; the table shows the
median wall time, the ratio to ours, the final value and its relative difference to ours, and
the largest relative difference over the whole curve.

What is timed, for every engine, is the whole road from the pandas inputs to the value curve:

* ours: ``PortfolioBacktestEngine(...)`` (which validates the prices into a ``PricePanel``)
  and ``engine.run()`` with ``standalone=False`` (the strategy's rows, the pass, building the
  result with its frames and metrics);
* vectorbt: ``Portfolio.from_orders(...)`` and ``.value()``;
* bt: building ``bt.Strategy`` / ``bt.Backtest`` and ``bt.run``.

bt is a pure-Python event loop, orders of magnitude slower: it runs ``--bt-repeats`` times
(default 1) after its own untimed run, and is skipped, with a note, on a size where its
estimated time (extrapolated from the smaller sizes by bars x assets) exceeds
``--bt-max-seconds``. ``--breakdown`` also prints where our time goes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.peers import PeerWorkload, make_our_engine, run_bt, run_ours, run_vectorbt
from benchmarks.workloads import SIGNAL_EVERY, SIZES

__all__ = ["Row", "machine_summary", "main", "our_breakdown", "time_engine"]

Runner = Callable[[PeerWorkload, float, float], pd.Series]
ENGINES: dict[str, Runner] = {"ours": run_ours, "vectorbt": run_vectorbt, "bt": run_bt}


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    size: str
    engine: str
    seconds: float
    repeats: int
    final_value: float
    curve: pd.Series
    note: str = ""


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_summary() -> list[str]:
    """Lines describing the machine and the library versions."""
    libs = ["portfolio-backtest", "numpy", "pandas", "numba", "vectorbt", "bt"]
    return [
        f"CPU: {cpu_model()}; {os.cpu_count()} logical cores "
        f"(usable by this process: {len(os.sched_getaffinity(0))})",
        f"Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.release()}",
        "Libraries: " + ", ".join(f"{name} {_version(name)}" for name in libs),
    ]


def time_engine(
    run: Runner, work: PeerWorkload, repeats: int, fees_bps: float
) -> tuple[list[float], pd.Series]:
    """One untimed run, then ``repeats`` timed ones; return the times and the last curve."""
    curve = run(work, fees_bps, 0.0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        curve = run(work, fees_bps, 0.0)
        times.append(time.perf_counter() - start)
    return times, curve


def our_breakdown(work: PeerWorkload, fees_bps: float, repeats: int) -> dict[str, float]:
    """Median seconds of each step of our end-to-end run (engine internals, read-only use).

    Steps: building the engine (price validation), the strategy's target rows, the main
    pass, and building the result (frames, metrics, manifest). Their sum is close to a plain
    ``engine.run()`` plus construction (the engine runs with ``standalone=False``).
    """
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from backtest.result import build_result

    steps: dict[str, list[float]] = {}

    def clock(name: str, start: float) -> float:
        now = time.perf_counter()
        steps.setdefault(name, []).append(now - start)
        return now

    for _ in range(repeats + 1):  # the first round warms up and is dropped
        t0 = time.perf_counter()
        engine: PortfolioBacktestEngine = make_our_engine(work, fees_bps)
        t0 = clock("engine construction (PricePanel validation)", t0)
        weights, has = engine.strategy_targets()
        t0 = clock("strategy rows + weights_to_arrays", t0)
        out = engine._simulate(
            weights, has, engine.config.allocations, engine.config.total_capital,
            portfolio_rebalancing=True,
        )  # fmt: skip
        t0 = clock("main pass (simulate_nb)", t0)
        build_result(
            out, panel=engine.panel, config=engine.config, settings=engine.settings,
            standalone={}, mode="sleeves", config_hash=None,
        )  # fmt: skip
        clock("build_result (frames, metrics, manifest)", t0)
    return {name: statistics.median(times[1:]) for name, times in steps.items()}


def _bt_estimate(size: str, rows: list[Row]) -> float | None:
    """bt's time on ``size`` extrapolated linearly in bars x assets from its largest run."""
    done = [r for r in rows if r.engine == "bt" and r.repeats > 0]
    if not done:
        return None
    ref = max(done, key=lambda r: SIZES[r.size][0] * SIZES[r.size][1])
    cells = SIZES[size][0] * SIZES[size][1]
    ref_cells = SIZES[ref.size][0] * SIZES[ref.size][1]
    return ref.seconds * cells / ref_cells


def _format_table(rows: list[Row]) -> list[str]:
    header = (
        f"{'size':<8} {'engine':<9} {'median s':>10} {'runs':>4} {'ratio':>8} "
        f"{'final value':>18} {'rel diff final':>14} {'max rel diff':>12}"
    )
    lines = [header, "-" * len(header)]
    ours = {r.size: r for r in rows if r.engine == "ours"}
    for r in rows:
        base = ours[r.size]
        if r.repeats == 0:
            lines.append(f"{r.size:<8} {r.engine:<9} {'skipped':>10}   {r.note}")
            continue
        ratio = r.seconds / base.seconds
        rel = abs(r.final_value / base.final_value - 1.0)
        curve = float(np.max(np.abs(r.curve.to_numpy() / base.curve.to_numpy() - 1.0)))
        lines.append(
            f"{r.size:<8} {r.engine:<9} {r.seconds:>10.4f} {r.repeats:>4} {ratio:>8.3g} "
            f"{r.final_value:>18.6f} {rel:>14.2e} {curve:>12.2e}"
        )
    return lines


def _goal_lines(rows: list[Row]) -> list[str]:
    """The issue's speed goals per size: ours faster than vectorbt, >= 100x faster than bt."""
    timed = {(r.size, r.engine): r.seconds for r in rows if r.repeats > 0}
    lines = []
    for size in dict.fromkeys(r.size for r in rows):
        ours = timed.get((size, "ours"))
        if ours is None:
            continue
        parts = []
        if (size, "vectorbt") in timed:
            q = ours / timed[size, "vectorbt"]
            parts.append(f"ours/vectorbt = {q:.3g} ({'met' if q < 1.0 else 'NOT met'}: < 1)")
        if (size, "bt") in timed:
            q = timed[size, "bt"] / ours
            parts.append(f"bt/ours = {q:.3g} ({'met' if q >= 100.0 else 'NOT met'}: >= 100)")
        if parts:
            lines.append(f"goals {size}: " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; exit code 0, or 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_peers",
        description="Time one target-weight workload in ours, vectorbt and bt.",
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "medium"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours and vectorbt")
    parser.add_argument("--bt-repeats", type=int, default=1, help="timed runs of bt")
    parser.add_argument(
        "--bt-max-seconds", type=float, default=300.0,
        help="skip bt on a size whose estimated time per run exceeds this",
    )  # fmt: skip
    parser.add_argument("--fees-bps", type=float, default=0.0, help="commission in all engines")
    parser.add_argument("--breakdown", action="store_true", help="also time our steps")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.bt_repeats < 1:
        parser.error("--repeats and --bt-repeats must be >= 1")

    from benchmarks.peers import synthetic_workload

    print("\n".join(machine_summary()))
    print(
        f"Workload: one book rebalanced every {SIGNAL_EVERY} bars to a seeded target-weight "
        "row (50-100 names; half to all of them below 100 assets), fractional units, fills "
        f"at the decision close, commission {args.fees_bps:g} bps."
    )
    print(
        "Timed: pandas inputs -> value curve (ours: engine construction + run(standalone=False) "
        "and the result; vectorbt: from_orders + value(); bt: Backtest + run)."
    )
    rows: list[Row] = []
    notes: list[str] = []
    for size in args.sizes:
        work = synthetic_workload(size)
        n_bars, n_assets = SIZES[size]
        print(
            f"\n[{size}: {n_bars} bars x {n_assets} assets, {len(work.schedule)} rebalances]",
            flush=True,
        )
        for name, run in ENGINES.items():
            repeats = args.repeats
            if name == "bt":
                repeats = args.bt_repeats
                estimate = _bt_estimate(size, rows)
                if estimate is not None and estimate > args.bt_max_seconds:
                    note = (
                        f"estimated {estimate:.0f} s per run (x{repeats + 1} with the warm-up) "
                        f"> --bt-max-seconds {args.bt_max_seconds:g}"
                    )
                    rows.append(Row(size, name, float("nan"), 0, float("nan"), pd.Series(), note))
                    notes.append(f"bt skipped on {size}: {note}.")
                    print(f"  bt skipped: {note}", flush=True)
                    continue
            try:
                times, curve = time_engine(run, work, repeats, args.fees_bps)
            except ImportError as exc:
                note = f"not installed ({exc.name})"
                rows.append(Row(size, name, float("nan"), 0, float("nan"), pd.Series(), note))
                print(f"  {name} skipped: {note}", flush=True)
                continue
            seconds = statistics.median(times)
            rows.append(Row(size, name, seconds, repeats, float(curve.iloc[-1]), curve))
            spread = f"{min(times):.4f}-{max(times):.4f}"
            print(f"  {name}: median {seconds:.4f} s over {repeats} ({spread})", flush=True)
        if args.breakdown:
            parts = our_breakdown(work, args.fees_bps, args.repeats)
            total = sum(parts.values())
            print(f"  ours, by step (median of {args.repeats}; sum {total:.4f} s):")
            for step, seconds in parts.items():
                print(f"    {step:<45} {seconds:8.4f} s  {100 * seconds / total:5.1f} %")
    print()
    print("\n".join(_format_table(rows)))
    print(
        "ratio = median seconds / ours' (> 1: slower than ours); rel diff = |value / ours - 1| "
        "(final bar, and the largest over the whole curve)."
    )
    print("\n".join(_goal_lines(rows)))
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
