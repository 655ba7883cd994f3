"""Benchmarks of the mean-variance optimizer on per-close Black-Litterman-style problems.

Each problem is a Black-Litterman posterior (He & Litterman 1999, "The Intuition Behind
Black-Litterman Model Portfolios", eqs. for the posterior mean and covariance) built from a
seeded random factor model, solved from a cold start with the default constraints (weights in
[-0.25, 0.25], budget 1, gross leverage <= 3). Every benchmarked result is checked against the
other solver's objective to 1e-6.

``test_fast_vs_slsqp_speed_ratio`` measures both solvers in the same run (medians of
``time.perf_counter`` over repeats) and asserts the fast solver is at least 20x faster at 50
assets. It runs only when benchmarking is enabled (``make bench``; the project's pytest addopts
has ``--benchmark-disable``, under which it is skipped) and it uses the ``benchmark`` fixture so
that ``--benchmark-only`` keeps it. BLAS is pinned to one thread when threadpoolctl is
importable (it is not a dependency of the project).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import pytest

from benchmarks.timing import median_seconds
from portfolio.portfolio_optimizer import (
    OptimizationConstraints,
    PortfolioOptimizer,
    portfolio_objective,
)

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

#: lam in 0.5 w'Sigma w - lam mu'w, i.e. 1 / (classical risk aversion 2.5).
LAM = 0.4
CONSTRAINTS = OptimizationConstraints()
SLSQP_ROUNDS = {20: 10, 50: 5, 200: 2}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    ctx: AbstractContextManager[Any] = (
        threadpool_limits(1) if threadpool_limits is not None else nullcontext()
    )
    with ctx:
        yield


def bl_problem(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (n,) and covariance (n, n), annual units, from a random factor model."""
    rng = np.random.default_rng(seed + n)
    k = 4
    loadings = rng.normal(0.0, 0.5, (n, k))
    loadings[:, 0] = rng.normal(1.0, 0.25, n)  # market factor
    factor_var = np.array([0.18, 0.08, 0.06, 0.05]) ** 2
    sigma = loadings @ np.diag(factor_var) @ loadings.T + np.diag(rng.uniform(0.15, 0.35, n) ** 2)
    w_mkt = rng.lognormal(0.0, 1.0, n)
    w_mkt /= w_mkt.sum()
    delta, tau = 2.5, 0.05
    pi = delta * sigma @ w_mkt  # implied equilibrium returns
    n_views = max(3, n // 5)
    p = np.zeros((n_views, n))
    for v in range(n_views):
        i, j = rng.choice(n, size=2, replace=False)
        p[v, i], p[v, j] = 1.0, -1.0  # relative views: asset i beats asset j
    q = p @ pi + rng.normal(0.0, 0.03, n_views)
    ts = tau * sigma
    omega = np.diag(np.diag(p @ ts @ p.T))
    gain = ts @ p.T @ np.linalg.inv(p @ ts @ p.T + omega)
    mu = pi + gain @ (q - p @ pi)
    post = sigma + ts - gain @ p @ ts
    return mu, 0.5 * (post + post.T)


_REFERENCE: dict[tuple[str, int], float] = {}


def reference_objective(solver: str, n: int) -> float:
    """Objective of ``solver``'s solution (computed once per size)."""
    key = (solver, n)
    if key not in _REFERENCE:
        mu, sigma = bl_problem(n)
        opt = PortfolioOptimizer(CONSTRAINTS, LAM, solver)  # type: ignore[arg-type]
        _REFERENCE[key] = portfolio_objective(opt.optimize_array(mu, sigma), mu, sigma, LAM)
    return _REFERENCE[key]


def cold_solver(solver: str, n: int) -> tuple[Callable[[], np.ndarray], np.ndarray, np.ndarray]:
    """A closure solving the size-n problem from a cold start (no remembered solution)."""
    mu, sigma = bl_problem(n)
    opt = PortfolioOptimizer(CONSTRAINTS, LAM, solver)  # type: ignore[arg-type]
    zeros = np.zeros(n)
    opt.optimize_array(mu, sigma)  # compile / warm caches outside the timing

    def run() -> np.ndarray:
        return opt.optimize_array(mu, sigma, warm_start=zeros)

    return run, mu, sigma


def check(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, other: str, n: int) -> None:
    assert abs(w.sum() - 1.0) <= 1e-8
    assert np.abs(w).sum() <= 3.0 + 1e-8
    assert w.min() >= -0.25 - 1e-8 and w.max() <= 0.25 + 1e-8
    f = portfolio_objective(w, mu, sigma, LAM)
    assert abs(f - reference_objective(other, n)) <= 1e-6


@pytest.mark.benchmark(group="optimizer")
@pytest.mark.parametrize("n", [20, 50, 200])
def test_bench_fast(benchmark: Any, n: int) -> None:
    run, mu, sigma = cold_solver("fast", n)
    w = benchmark(run)
    check(w, mu, sigma, "slsqp", n)


@pytest.mark.benchmark(group="optimizer")
@pytest.mark.parametrize("n", [20, 50, 200])
def test_bench_slsqp(benchmark: Any, n: int) -> None:
    run, mu, sigma = cold_solver("slsqp", n)
    w = benchmark.pedantic(run, rounds=SLSQP_ROUNDS[n], iterations=1)
    check(w, mu, sigma, "fast", n)


@pytest.mark.benchmark(group="optimizer")
def test_fast_vs_slsqp_speed_ratio(benchmark: Any) -> None:
    """The fast solver is at least 20x faster than SLSQP at 50 assets (same run)."""
    if benchmark.disabled:
        pytest.skip("speed ratio runs only with benchmarking enabled (make bench)")
    n = 50
    fast, mu, sigma = cold_solver("fast", n)
    slow, _, _ = cold_solver("slsqp", n)
    check(fast(), mu, sigma, "slsqp", n)
    check(slow(), mu, sigma, "fast", n)
    t_fast = median_seconds(fast, 51)
    t_slow = median_seconds(slow, 9)
    ratio = t_slow / t_fast
    benchmark.extra_info.update(
        {"fast_median_s": t_fast, "slsqp_median_s": t_slow, "ratio": ratio, "n_assets": n}
    )
    benchmark.pedantic(fast, rounds=5, iterations=1)
    assert ratio >= 20.0, f"fast {t_fast * 1e3:.3f} ms vs SLSQP {t_slow * 1e3:.3f} ms"
