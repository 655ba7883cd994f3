"""The benchmark suite beyond the pass (issue 5): full engine, runner, peak memory.

Groups (``@pytest.mark.benchmark(group=...)``; the pass is in ``test_bench_engine.py``, the
per-close Black-Litterman step and the optimizer in ``test_bench_bl.py`` and
``test_bench_optimizer.py``):

``engine``
    ``PortfolioBacktestEngine.run()`` on every case of :data:`benchmarks.workloads.CASES`:
    the strategies' target frames (validated and stacked by the engine), the pass, one
    standalone pass per sleeve, the result's frames and metrics. On the synthetic cases each
    sleeve is a ``WeightScheduleStrategy`` replaying the panel's monthly target rows
    (:func:`benchmarks.workloads.make_engine`); on ``real`` they are the default
    configuration's three strategies on the embedded data.
``runner``
    The command line end to end (default configuration on the embedded data: load, run, CSVs,
    HTML report, all written under pytest's ``tmp_path``): ``portfolio_runner.main`` in process
    with a warm numba cache, and the CLI in a subprocess (plus interpreter start and imports)
    with the warm cache and with an empty ``NUMBA_CACHE_DIR`` (every kernel compiled).
``memory``
    Peak resident memory of the ``large`` case (10080 bars x 1000 assets x 3 sleeves), the pass
    alone and the full engine, each measured in a fresh subprocess by
    :mod:`benchmarks.memory_probe` (the timing of this group is the subprocess's wall time;
    the memory figures are printed and stored in the benchmark's ``extra_info``).

Goals asserted here: a warm runner takes seconds (< :data:`MAX_WARM_RUNNER_S`); the working
memory of the large case stays under ``3 * prices.nbytes + outputs.nbytes`` (definitions in
:mod:`benchmarks.memory_probe`). Every benchmark checks its own result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtest.kernel import simulate_nb
from benchmarks.memory_probe import PRICE_COPIES, measurement_available
from benchmarks.workloads import (
    CASES,
    check_engine_result,
    kernel_args,
    load_case,
    make_case_engine,
)

ROOT = Path(__file__).resolve().parent.parent
#: pytest-benchmark rounds of one ``engine.run()`` per case.
ENGINE_ROUNDS = {"small": 10, "medium": 5, "large": 3, "real": 5}
MAX_WARM_RUNNER_S = 10.0
_MB = 1e6
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- group "engine"
@pytest.mark.benchmark(group="engine")
@pytest.mark.parametrize("case", CASES)
def test_engine_run(benchmark: Any, case: str) -> None:
    """PortfolioBacktestEngine.run(): strategies + pass + standalone passes + result."""
    engine = make_case_engine(case)
    result = benchmark.pedantic(engine.run, rounds=ENGINE_ROUNDS[case], warmup_rounds=1)
    check_engine_result(result)


def test_engine_main_pass_is_the_benchmarked_pass() -> None:
    """The engine benchmark runs the same backtest as the pass benchmark (small case).

    The book equity of ``engine.run()`` equals, bit for bit, the summed account equity of
    ``simulate_nb(*kernel_args(panel))``, and so do the trade records.
    """
    panel = load_case("small")
    result = make_case_engine("small").run()
    out = simulate_nb(*kernel_args(panel))
    np.testing.assert_array_equal(result.equity.to_numpy(), out.equity.sum(axis=1))
    np.testing.assert_array_equal(result.trade_records, out.trades)


# --------------------------------------------------------------------------- group "runner"
def _cli_args(tmp_path: Path) -> list[str]:
    """Runner options writing the CSVs and the HTML report under ``tmp_path``."""
    return ["--out", str(tmp_path / "out"), "--report", str(tmp_path / "report.html"),
            "--no-progress"]  # fmt: skip


def _check_runner_output(tmp_path: Path) -> None:
    """What the runner wrote: equity finite and > 0 at every bar, trades made, the report."""
    out_dir = tmp_path / "out"
    assert (tmp_path / "report.html").stat().st_size > 0
    equity = pd.read_csv(out_dir / "equity.csv", index_col=0)
    values = equity.iloc[:, 0].to_numpy(dtype=np.float64)
    assert len(values) > 8000  # the embedded data: 8313 bars
    assert np.isfinite(values).all()
    assert (values > 0.0).all()
    trades = pd.read_csv(out_dir / "trades.csv")
    assert len(trades) > 0


@pytest.mark.benchmark(group="runner")
def test_runner_warm_in_process(benchmark: Any, tmp_path: Path) -> None:
    """``portfolio_runner.main`` with the default config on the embedded data, warm cache:
    load, run, CSVs, HTML report.

    Goal: a warm run takes seconds (< :data:`MAX_WARM_RUNNER_S`, timed once more after the
    benchmark so that it is checked in disabled mode too).
    """
    from backtest.portfolio_runner import main

    argv = _cli_args(tmp_path)
    code = benchmark.pedantic(main, args=(argv,), rounds=3, warmup_rounds=1)
    assert code == 0
    _check_runner_output(tmp_path)
    t0 = time.perf_counter()
    assert main(argv) == 0
    warm_s = time.perf_counter() - t0
    msg = f"runner warm run (in process, CSVs + report) {warm_s:.2f} s (goal < {MAX_WARM_RUNNER_S})"
    print(f"\n[runner bench] {msg}")
    assert warm_s < MAX_WARM_RUNNER_S, msg


def _run_cli(tmp_path: Path, cache_dir: str | None) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter; ``cache_dir`` overrides ``NUMBA_CACHE_DIR``."""
    env = dict(os.environ, **_ONE_THREAD)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return subprocess.run(
        [sys.executable, "-m", "backtest.portfolio_runner", *_cli_args(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.mark.benchmark(group="runner")
def test_runner_subprocess_warm(benchmark: Any, tmp_path: Path) -> None:
    """The CLI as a user runs it, numba cache warm: interpreter start, imports, run, CSVs,
    HTML report."""
    # The warm-up round fills the cache if the sources changed since the last compile.
    proc = benchmark.pedantic(_run_cli, args=(tmp_path, None), rounds=3, warmup_rounds=1)
    assert proc.returncode == 0, proc.stderr
    _check_runner_output(tmp_path)


@pytest.mark.benchmark(group="runner")
def test_runner_subprocess_cold(benchmark: Any, tmp_path: Path) -> None:
    """The CLI with an empty ``NUMBA_CACHE_DIR``: every kernel is compiled (one round)."""
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        proc = benchmark.pedantic(_run_cli, args=(tmp_path, cache), rounds=1)
        cold_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    _check_runner_output(tmp_path)
    print(f"\n[runner bench] runner cold (empty NUMBA_CACHE_DIR, subprocess) {cold_s:.2f} s")


# --------------------------------------------------------------------------- group "memory"
def run_memory_probe(kind: str, *options: str) -> dict[str, Any]:
    """Run :mod:`benchmarks.memory_probe` in a fresh interpreter and return its report."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_probe", kind, "--case", "large", *options],
        cwd=ROOT, env=dict(os.environ, **_ONE_THREAD), capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def _memory_summary(r: dict[str, Any]) -> str:
    price = r["prices_nbytes"]
    return (
        f"{r['kind']} {r['case']} ({r['bars']} x {r['assets']}): peak working memory "
        f"{r['peak_extra'] / _MB:.1f} MB = {r['peak_extra'] / price:.2f} x prices; budget "
        f"{r['budget'] / _MB:.1f} MB = {PRICE_COPIES} x prices {price / _MB:.1f} MB + "
        f"outputs {r['outputs_nbytes'] / _MB:.1f} MB; ratio {r['ratio']:.2f} (goal <= 1); "
        f"retained after the run {r['retained_extra'] / _MB:.1f} MB; RSS before the run "
        f"{r['rss_inputs'] / _MB:.1f} MB ({r['rss_imports'] / _MB:.1f} MB after imports); "
        f"run {r['seconds']:.2f} s"
    )


def _stage_table(stages: list[dict[str, Any]]) -> str:
    rows = [
        f"  {s['stage']:<17} entry {s['start_extra'] / _MB:8.1f}  peak "
        f"{s['peak_extra'] / _MB:8.1f}  exit {s['end_extra'] / _MB:8.1f} MB"
        for s in stages
    ]
    return "memory above the inputs, per stage of engine.run():\n" + "\n".join(rows)


@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("kind", ["pass", "engine"])
def test_peak_memory_large(benchmark: Any, kind: str) -> None:
    """Goal: working memory of the large case <= 3 x its price array + its outputs.

    Measured in a fresh subprocess (:mod:`benchmarks.memory_probe`, peak RSS). The probe
    itself checks the run's result. That the measurement sees the arrays numba allocates is
    checked here too: the pages the run leaves behind must hold at least its outputs. When the
    engine misses the goal, its per-stage figures are added to the failure message.
    """
    reason = measurement_available()
    if reason is not None:
        pytest.skip(reason)
    report = benchmark.pedantic(run_memory_probe, args=(kind,), rounds=1)
    keys = ("prices_nbytes", "peak_extra", "retained_extra", "outputs_nbytes", "budget", "ratio")
    benchmark.extra_info.update({k: report[k] for k in keys})
    summary = _memory_summary(report)
    print(f"\n[memory bench] {summary}")
    # Sanity of the method: numba's outputs (e.g. the (T, A) units) are resident afterwards.
    assert report["retained_extra"] >= 0.9 * report["outputs_nbytes"], summary
    if report["peak_extra"] > report["budget"] and kind == "engine":
        stages = run_memory_probe(kind, "--stages")["stages"]
        summary += "\n" + _stage_table(stages)
    assert report["peak_extra"] <= report["budget"], summary
