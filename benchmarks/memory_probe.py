"""Peak resident memory of one backtest, measured in a fresh process (Linux).

Usage::

    python -m benchmarks.memory_probe {pass,engine} [--case large] [--stages]

prints one JSON object on stdout (see :func:`probe`). ``benchmarks/test_bench_suite.py`` runs it
in a subprocess, so that nothing an earlier test allocated, and no heap fragmentation it left,
is counted.

What is measured
----------------
The **working memory** of one run: the peak resident set size (RSS) of the process while the
run executes, minus the RSS just before it starts. By then the process has imported everything,
has run the same workload once on the small panel (so every numba kernel is compiled or loaded
from the on-disk cache and no compiler memory is counted), and holds the run's inputs:

* ``pass``: the arguments of :func:`backtest.kernel.simulate_nb` (prices ``(T, A)``, target
  weights ``(S, T, A)``, signal mask, calendar masks), as :func:`benchmarks.workloads.kernel_args`
  builds them; the run is one call of ``simulate_nb``;
* ``engine``: a :class:`backtest.portfolio_engine.PortfolioBacktestEngine` holding the price
  panel and one ``WeightScheduleStrategy`` per sleeve, whose schedule holds the sleeve's
  monthly target rows (:func:`benchmarks.workloads.make_engine`); the run is
  ``engine.run()``: each strategy's ``(T, A)`` target frame, the engine validating and
  stacking them, the pass, one standalone pass per sleeve, the result's frames and metrics.

Why RSS and not ``tracemalloc``: arrays created inside a jitted function are allocated by
numba's runtime (NRT), which calls the C allocator directly; ``tracemalloc`` only sees memory
allocated through Python's and NumPy's allocator hooks, so it would miss every array the pass
returns. RSS counts every page the process touches, whoever allocated it.

The peak is the kernel's high-water mark ``VmHWM`` of ``/proc/self/status``, reset to the
current RSS just before the run by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0,
see ``man 5 proc``), so it is the peak *of the run*, not of building the inputs.
``getrusage(RUSAGE_SELF).ru_maxrss`` is not used: it is the larger of that mark and a maximum
the kernel keeps from before ``exec``, which the reset does not clear, so a process started by
a large one (the pytest process holding the benchmark panels) inherits the parent's RSS there
(measured: a child of an 800 MB parent reports an ``ru_maxrss`` of 800 MB right after the
reset, and a ``VmHWM`` of 9 MB).

Arrays larger than glibc's mmap threshold (at most 32 MiB) come from ``mmap`` and go back to
the system when freed; pages never written (for example the unused tail of an ``np.empty``
buffer, or an ``np.zeros`` array not yet filled) are not resident. The figures are therefore
the memory the run really touched, with a granularity of one page.

The goal
--------
``peak_extra <= budget = 3 * prices.nbytes + outputs.nbytes`` where ``prices`` is the
``(T, A)`` float64 close array and ``outputs`` are

* ``pass``: every array of the returned :class:`backtest.kernel.SimulationOutput` (equity,
  cash, units, traded, commission, slippage, netting_saved, trades, events, target_capital,
  flows, drift; ``sleeve_units`` is empty since the engine never records it);
* ``engine``: every DataFrame and Series of the returned
  :class:`backtest.result.PortfolioBacktestResult` except ``prices`` (a view of the input
  panel), counted with ``memory_usage(index=False, deep=False)`` (the indexes are the panel's
  own, object columns point at shared strings), plus its arrays (``trade_records``).

With ``--stages`` (engine only) the run is instrumented instead: the high-water mark is reset
when each of ``strategy_targets``, ``simulate_nb`` (once for the book, once per standalone
sleeve) and ``build_result`` starts, and the RSS at entry, the peak and the RSS at exit of each
are reported, in order; that shows where the memory goes. It is a separate invocation because
the resets spoil the overall peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.workloads import (
    check_engine_result,
    check_simulation_output,
    kernel_args,
    make_case,
    make_engine,
)

__all__ = [
    "PRICE_COPIES",
    "main",
    "measurement_available",
    "outputs_nbytes_engine",
    "outputs_nbytes_pass",
    "probe",
]

#: The goal's allowance of working memory besides the outputs, in copies of the price array.
PRICE_COPIES = 3

_KIB = 1024
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


# --------------------------------------------------------------------------- measuring
def _status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` in bytes."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * _KIB
    raise RuntimeError(f"no {field} line in {_STATUS}")


def rss_bytes() -> int:
    """Current resident set size of this process (``VmRSS``), bytes."""
    return _status_bytes("VmRSS")


def reset_peak() -> None:
    """Reset the peak-RSS high-water mark to the current RSS (``/proc/self/clear_refs``)."""
    _CLEAR_REFS.write_text("5")


def peak_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak` (``VmHWM``), bytes."""
    return _status_bytes("VmHWM")


def measurement_available() -> str | None:
    """``None`` when the peak can be measured here, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"peak-RSS reset needs Linux /proc, platform is {sys.platform}"
    try:
        reset_peak()
    except OSError as exc:
        return f"cannot reset the peak RSS via {_CLEAR_REFS}: {exc}"
    return None


# --------------------------------------------------------------------------- output sizes
def outputs_nbytes_pass(out: Any) -> dict[str, int]:
    """Bytes of every array of a ``SimulationOutput``, by field name."""
    return {name: int(np.asarray(arr).nbytes) for name, arr in out._asdict().items()}


def outputs_nbytes_engine(result: Any) -> dict[str, int]:
    """Bytes of every frame of a ``PortfolioBacktestResult`` except ``prices``, by field name."""
    sizes: dict[str, int] = {}
    for f in dataclasses.fields(result):
        if f.name == "prices":
            continue
        name, value = f.name, getattr(result, f.name)
        if isinstance(value, pd.DataFrame):
            sizes[name] = int(value.memory_usage(index=False, deep=False).sum())
        elif isinstance(value, pd.Series):
            sizes[name] = int(value.memory_usage(index=False, deep=False))
        elif isinstance(value, np.ndarray):
            sizes[name] = int(value.nbytes)
    return sizes


# --------------------------------------------------------------------------- the probe
def _warm_up(kind: str) -> None:
    """Run the workload once on the small panel: compile or load every kernel it uses."""
    small = make_case("small")
    if kind == "pass":
        from backtest.kernel import simulate_nb

        simulate_nb(*kernel_args(small))
    else:
        make_engine(small, "warm_up").run()


def _instrument(stages: list[dict[str, Any]]) -> None:
    """Wrap the engine's stages so each records its entry RSS, peak and exit RSS."""
    import backtest.portfolio_engine as pe

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any, **kwargs: Any) -> Any:
            gc.collect()
            start = rss_bytes()
            reset_peak()
            value = fn(*args, **kwargs)
            stages.append(
                {"stage": name, "rss_start": start, "peak": peak_bytes(), "rss_end": rss_bytes()}
            )
            return value

        return inner

    pe.simulate_nb = wrap("simulate_nb", pe.simulate_nb)  # type: ignore[assignment]
    pe.build_result = wrap("build_result", pe.build_result)
    pe.PortfolioBacktestEngine.strategy_targets = wrap(  # type: ignore[method-assign]
        "strategy_targets", pe.PortfolioBacktestEngine.strategy_targets
    )


def probe(kind: str, case: str = "large", *, stages: bool = False) -> dict[str, Any]:
    """Measure the working memory of one run of ``kind`` on ``case`` in this process.

    Parameters
    ----------
    kind : {"pass", "engine"}
        One call of ``simulate_nb``, or one ``PortfolioBacktestEngine.run()``.
    case : str
        A synthetic case of :data:`benchmarks.workloads.SIZES`.
    stages : bool
        Engine only: report each stage's memory (see the module docstring).

    Returns
    -------
    dict
        All sizes in bytes: ``prices_nbytes``, ``rss_imports`` (after imports and warm-up),
        ``rss_inputs`` (inputs built: the baseline), ``peak`` (peak RSS of the run),
        ``peak_extra = peak - rss_inputs``, ``retained_extra`` (RSS after the run, result
        alive, minus the baseline), ``outputs`` (by array/frame), ``outputs_nbytes`` (their
        sum), ``budget = PRICE_COPIES * prices_nbytes + outputs_nbytes``, ``ratio = peak_extra /
        budget``, ``seconds`` (wall time of the run), ``stages`` (with ``stages=True``).
    """
    if kind not in ("pass", "engine"):
        raise ValueError(f"kind: expected 'pass' or 'engine', got {kind!r}")
    if stages and kind != "engine":
        raise ValueError("stages: only the engine has stages")
    reason = measurement_available()
    if reason is not None:
        raise RuntimeError(reason)
    _warm_up(kind)
    gc.collect()
    rss_imports = rss_bytes()

    panel = make_case(case)
    prices_nbytes = int(panel.prices.nbytes)
    shape = {"bars": panel.prices.shape[0], "assets": panel.prices.shape[1]}
    stage_log: list[dict[str, Any]] = []
    run: Callable[[], Any]
    if kind == "pass":
        from backtest.kernel import simulate_nb

        args = kernel_args(panel)

        def run() -> Any:
            return simulate_nb(*args)

    else:
        engine = make_engine(panel, f"memory_{case}")
        del panel  # the engine holds its own inputs: the price panel and the schedules
        if stages:
            _instrument(stage_log)
        run = engine.run
    gc.collect()
    rss_inputs = rss_bytes()

    reset_peak()
    t0 = time.perf_counter()
    out: Any = run()
    seconds = time.perf_counter() - t0
    peak = peak_bytes()
    rss_after = rss_bytes()

    if kind == "pass":
        outputs = outputs_nbytes_pass(out)
        check_simulation_output(out, args[0])
    else:
        outputs = outputs_nbytes_engine(out)
        check_engine_result(out)
    outputs_nbytes = sum(outputs.values())
    budget = PRICE_COPIES * prices_nbytes + outputs_nbytes
    report: dict[str, Any] = {
        "kind": kind,
        "case": case,
        **shape,
        "prices_nbytes": prices_nbytes,
        "rss_imports": rss_imports,
        "rss_inputs": rss_inputs,
        "peak": peak,
        "peak_extra": peak - rss_inputs,
        "retained_extra": rss_after - rss_inputs,
        "outputs": outputs,
        "outputs_nbytes": outputs_nbytes,
        "budget": budget,
        "ratio": (peak - rss_inputs) / budget,
        "seconds": seconds,
    }
    if stages:
        report["stages"] = [
            {
                **s,
                "start_extra": s["rss_start"] - rss_inputs,
                "peak_extra": s["peak"] - rss_inputs,
                "end_extra": s["rss_end"] - rss_inputs,
            }
            for s in stage_log
        ]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print :func:`probe`'s report as one JSON line; exit 0, or 2 on bad usage."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory_probe",
        description="Peak resident memory of one backtest run (Linux).",
    )
    parser.add_argument("kind", choices=("pass", "engine"))
    parser.add_argument("--case", default="large", help="synthetic case (default: large)")
    parser.add_argument("--stages", action="store_true", help="per-stage figures (engine)")
    ns = parser.parse_args(argv)
    try:
        report = probe(ns.kind, ns.case, stages=ns.stages)
    except (RuntimeError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
