"""Benchmarks of the per-close Black-Litterman step and of a whole ``black_litterman`` run.

1. **Posterior + optimization per close** at 20, 50 and 200 assets, from raw inputs (covariance,
   market weights, absolute views with confidences) to weights: the jitted path the engine uses
   (:func:`portfolio.black_litterman.bl_posterior_nb` then
   :func:`portfolio.portfolio_optimizer.solve_fast`) against the reference path
   (:class:`portfolio.black_litterman.BlackLitterman` then ``PortfolioOptimizer(solver="slsqp")``).
   Both are timed in the same run; each result's objective is checked against the other's to
   1e-6, and the jitted path must be at least 20x faster at 50 assets.
2. **A whole run** of the embedded 33 years (about 8,300 closes, one optimization per close)
   in ``black_litterman`` mode, warm: it must finish in seconds.

BLAS is pinned to one thread (``make bench`` sets ``OMP_NUM_THREADS=1``,
``OPENBLAS_NUM_THREADS=1`` and ``MKL_NUM_THREADS=1``): for these small matrices thread start-up
costs more than it saves.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from benchmarks.timing import median_seconds
from portfolio.black_litterman import BlackLitterman, bl_posterior_nb
from portfolio.portfolio_optimizer import (
    OptimizationConstraints,
    PortfolioOptimizer,
    portfolio_objective,
    solve_fast,
)

DELTA, TAU = 2.5, 0.05
LAM = 1.0 / DELTA
CONSTRAINTS = OptimizationConstraints()  # [-0.25, 0.25], budget 1, gross <= 3
SIZES = (20, 50, 200)
MIN_RATIO_AT_50 = 20.0


def close_inputs(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """One close's raw inputs: covariance (n, n), market weights (n,), views (P, Q, Omega)."""
    rng = np.random.default_rng(seed + n)
    loadings = rng.normal(0.0, 0.5, (n, 4))
    loadings[:, 0] = rng.normal(1.0, 0.25, n)
    sigma = loadings @ np.diag([0.18, 0.08, 0.06, 0.05]) ** 2 @ loadings.T
    sigma += np.diag(rng.uniform(0.15, 0.35, n) ** 2)
    w_mkt = rng.lognormal(0.0, 1.0, n)
    w_mkt /= w_mkt.sum()
    n_views = 3 * n // 4  # three strategies viewing a quarter of the universe each
    assets = rng.integers(0, n, n_views)
    p = np.zeros((n_views, n))
    p[np.arange(n_views), assets] = 1.0
    q = rng.normal(0.08, 0.15, n_views)
    conf = rng.uniform(0.1, 0.9, n_views)
    omega = np.diag(TAU * sigma[assets, assets] / (conf + 1e-8))
    return {"sigma": sigma, "w_mkt": w_mkt, "p": p, "q": q, "omega": omega}


def jitted_path(x: dict[str, np.ndarray]) -> np.ndarray:
    """What the engine's per-close loop does (cold start, no warm start)."""
    n = x["w_mkt"].shape[0]
    pi = DELTA * (x["sigma"] @ x["w_mkt"])
    mu, sigma_bl, _ = bl_posterior_nb(pi, x["sigma"], x["p"], x["q"], x["omega"], TAU)
    w, ok = solve_fast(
        mu, sigma_bl, LAM, np.full(n, -0.25), np.full(n, 0.25), 1.0, 3.0, np.nan,
        np.zeros(0), 1e-10, 20_000,
    )  # fmt: skip
    assert ok
    return np.asarray(w)


def reference_path(x: dict[str, np.ndarray]) -> np.ndarray:
    """The validated Python API with the SLSQP reference solver."""
    bl = BlackLitterman()
    pi = bl.compute_equilibrium_returns(x["sigma"], x["w_mkt"])
    mu, sigma_bl = bl.posterior_returns(pi, x["sigma"], x["p"], x["q"], x["omega"])
    opt = PortfolioOptimizer(CONSTRAINTS, return_weight=LAM, solver="slsqp")
    return opt.optimize_array(mu, sigma_bl)


def _objective(x: dict[str, np.ndarray], w: np.ndarray) -> float:
    pi = DELTA * (x["sigma"] @ x["w_mkt"])
    mu, sigma_bl, _ = bl_posterior_nb(pi, x["sigma"], x["p"], x["q"], x["omega"], TAU)
    return float(portfolio_objective(w, mu, sigma_bl, LAM))


@pytest.mark.benchmark(group="bl-close")
@pytest.mark.parametrize("n", SIZES)
def test_bench_bl_close_jitted(benchmark: Any, n: int) -> None:
    x = close_inputs(n)
    w = benchmark(jitted_path, x)
    ref = reference_path(x)
    assert abs(_objective(x, w) - _objective(x, ref)) <= 1e-6
    assert abs(w.sum() - 1.0) <= 1e-8 and np.abs(w).max() <= 0.25 + 1e-9


@pytest.mark.benchmark(group="bl-close")
@pytest.mark.parametrize("n", SIZES[:2])
def test_bench_bl_close_reference(benchmark: Any, n: int) -> None:
    x = close_inputs(n)
    w = benchmark.pedantic(reference_path, args=(x,), rounds=5, iterations=1)
    assert abs(_objective(x, w) - _objective(x, jitted_path(x))) <= 1e-6


def test_bl_close_speed_ratio_at_50() -> None:
    """The jitted per-close path is at least 20x faster than the reference at 50 assets."""
    x = close_inputs(50)
    fast = median_seconds(lambda: jitted_path(x), 51, warmup=True)
    slow = median_seconds(lambda: reference_path(x), 7, warmup=True)
    ratio = slow / fast
    msg = (
        f"BL close at 50 assets: jitted {fast * 1e3:.3f} ms, reference (SLSQP) "
        f"{slow * 1e3:.2f} ms, ratio {ratio:.1f} (goal >= {MIN_RATIO_AT_50})"
    )
    print(f"\n[bl bench] {msg}")
    assert ratio >= MIN_RATIO_AT_50, msg


def test_black_litterman_full_run_warm() -> None:
    """A warm ``black_litterman`` run over the embedded 33 years finishes in seconds."""
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from portfolio.config import parse_config

    cfg = parse_config(
        {
            "mode": "black_litterman",
            "portfolio": {
                "id": "bl_bench",
                "total_capital": 1_000_000.0,
                "allocations": [
                    {"strategy_id": "momentum_v1", "target_weight": 0.4},
                    {"strategy_id": "trendline_break_v1", "target_weight": 0.3},
                    {"strategy_id": "rsi_tema_bb_v1", "target_weight": 0.3},
                ],
            },
            "costs": {"commission_bps": 1.0, "slippage_bps": 2.0},
        }
    )
    PortfolioBacktestEngine.from_config(cfg).run()  # compile
    t0 = time.perf_counter()
    result = PortfolioBacktestEngine.from_config(cfg).run()
    elapsed = time.perf_counter() - t0
    n_closes = len(result.equity)
    print(f"\n[bl bench] full black_litterman run: {n_closes} closes in {elapsed:.2f} s (warm)")
    assert n_closes > 8000
    assert result.manifest["traded_closes"] > 0
    assert elapsed < 20.0, f"{elapsed:.2f} s"
