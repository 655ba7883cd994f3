"""Tests of portfolio.portfolio_optimizer: feasibility, optimality certificates, solver agreement.

Optimality is certified independently of both solvers by the Frank-Wolfe (linearization) gap
``gap(w) = grad f(w)'w - min_{s in C} grad f(w)'s``, computed with an LP (HiGHS) in a formulation
of the feasible set ``C`` that neither solver uses (``t_i >= |s_i|``). For convex ``f`` and
``w in C``, ``f(w) - min_C f <= gap(w)`` (Jaggi 2013, ICML, Sec. 2), so a small gap proves the
objective is within that much of the optimum whatever constraints are active.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from portfolio.errors import OptimizationError
from portfolio.portfolio_optimizer import (
    OptimizationConstraints,
    PortfolioOptimizer,
    _reduce_problem,
    portfolio_objective,
    project_onto_constraints,
    should_rebalance,
    should_rebalance_nb,
    solve_fast,
    solve_fast_status,
    solve_slsqp,
)

DATA = Path(__file__).resolve().parents[1] / "backtest" / "datasets" / "sp500_20_stocks.csv.gz"


# --------------------------------------------------------------------------------- helpers
def random_spd(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random symmetric positive definite matrix (Wishart-like plus a ridge), random scale."""
    a = rng.normal(size=(n, n))
    s = a @ a.T / n + rng.uniform(0.01, 0.5) * np.eye(n)
    return s * float(rng.choice([0.04, 1.0]))


def violation(w: np.ndarray, mu: np.ndarray, c: OptimizationConstraints) -> dict[str, float]:
    lo = c.effective_min_weight
    out = {
        "lower": float(np.max(lo - w)),
        "upper": float(np.max(w - c.max_weight)),
        "leverage": float(np.abs(w).sum() - c.max_leverage),
    }
    if c.budget is not None:
        out["budget"] = abs(float(w.sum()) - c.budget)
    if c.target_return is not None:
        out["target"] = c.target_return - float(mu @ w)
    return out


def assert_feasible(w: np.ndarray, mu: np.ndarray, c: OptimizationConstraints) -> None:
    for name, v in violation(w, mu, c).items():
        assert v <= 1e-8, (name, v)


def lp_extreme_return(mu: np.ndarray, c: OptimizationConstraints, sign: float) -> float:
    """max (sign=1) or min (sign=-1) of mu'w over C, in the (s, t >= |s|) formulation."""
    n = mu.size
    cost = np.concatenate([-sign * mu, np.zeros(n)])
    return sign * -_lp_min(cost, mu, c, target=None)


def _lp_min(
    cost: np.ndarray, mu: np.ndarray, c: OptimizationConstraints, target: float | None
) -> float:
    n = mu.size
    eye = np.eye(n)
    a_ub = [np.hstack([eye, -eye]), np.hstack([-eye, -eye])]
    b_ub = [np.zeros(n), np.zeros(n)]
    if math.isfinite(c.max_leverage):
        a_ub.append(np.concatenate([np.zeros(n), np.ones(n)])[None, :])
        b_ub.append(np.array([c.max_leverage]))
    if target is not None:
        a_ub.append(np.concatenate([-mu, np.zeros(n)])[None, :])
        b_ub.append(np.array([-target]))
    kw = {}
    if c.budget is not None:
        kw = {"A_eq": np.concatenate([np.ones(n), np.zeros(n)])[None, :], "b_eq": [c.budget]}
    bounds = [(c.effective_min_weight, c.max_weight)] * n + [(0.0, None)] * n
    res = linprog(
        cost,
        A_ub=np.vstack(a_ub),
        b_ub=np.concatenate(b_ub),
        bounds=bounds,
        method="highs",
        **kw,
    )
    assert res.status == 0, res.message
    return float(res.fun)


def fw_gap(
    w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, lam: float, c: OptimizationConstraints
) -> float:
    """Frank-Wolfe gap: an upper bound on f(w) - min_C f for feasible w."""
    g = sigma @ w - lam * mu
    cost = np.concatenate([g, np.zeros(mu.size)])
    return float(g @ w - _lp_min(cost, mu, c, c.target_return))


def singular_psd(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random positive semidefinite matrix of rank max(1, n // 3)."""
    k = max(1, n // 3)
    a = rng.normal(size=(n, k))
    return a @ a.T / k * float(rng.choice([0.04, 1.0]))


def random_problem(
    seed: int, n: int, cov: Callable[[np.random.Generator, int], np.ndarray] = random_spd
) -> tuple[np.ndarray, np.ndarray, float, OptimizationConstraints]:
    """A feasible random problem: SPD covariance, varied bounds, budget, leverage, target."""
    rng = np.random.default_rng(seed)
    sigma = cov(rng, n)
    mu = rng.normal(0.0, 0.1, n)
    lam = float(rng.choice([0.0, 0.5, 1.0, 5.0]))
    long_only = bool(rng.random() < 0.3)
    hi = float(rng.uniform(1.0 / n + 0.01, 1.0))
    lo = 0.0 if long_only else -float(rng.uniform(0.0, 1.0))
    budget = None if rng.random() < 0.2 else float(rng.uniform(max(n * lo, -1.0), min(n * hi, 1.0)))
    gmin = 0.0 if budget is None else abs(budget)
    # Leverage from exactly |budget| (sign-restricted) to loose; often an active cap.
    lev = gmin + float(rng.choice([0.0, rng.uniform(0.0, 0.5), rng.uniform(0.0, 3.0)]))
    lev = lev if lev > 0 else 0.5
    c = OptimizationConstraints(lo, hi, lev, None, long_only, budget)
    if rng.random() < 0.4:
        best = lp_extreme_return(mu, c, 1.0)
        worst = lp_extreme_return(mu, c, -1.0)
        target = worst + float(rng.uniform(0.3, 0.95)) * (best - worst)
        c = OptimizationConstraints(lo, hi, lev, target, long_only, budget)
    return mu, sigma, lam, c


def factor_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, 1.0, (n, 3))
    b[:, 0] = rng.normal(1.0, 0.3, n)
    sigma = b @ np.diag([0.04, 0.01, 0.01]) @ b.T + np.diag(rng.uniform(0.1, 0.3, n) ** 2)
    mu = 0.15 * sigma @ rng.normal(0.0, 1.0, n) + rng.normal(0.0, 0.02, n)
    return mu, sigma


# --------------------------------------------------------------------------------- constraints
def test_constraint_defaults_and_long_only() -> None:
    c = OptimizationConstraints()
    assert (c.min_weight, c.max_weight, c.max_leverage) == (-0.25, 0.25, 3.0)
    assert c.target_return is None and c.long_only is False and c.budget == 1.0
    assert c.effective_min_weight == -0.25
    lo_c = OptimizationConstraints(long_only=True)
    assert lo_c.min_weight == -0.25 and lo_c.effective_min_weight == 0.0
    assert OptimizationConstraints(0.02, 0.5, long_only=True).effective_min_weight == 0.02
    lo, hi = lo_c.bounds(3)
    np.testing.assert_array_equal(lo, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(hi, [0.25, 0.25, 0.25])
    with pytest.raises(AttributeError):
        c.max_weight = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_weight": math.nan}, r"min_weight must be a finite number, got nan"),
        ({"max_weight": "0.3"}, r"max_weight must be a finite number, got '0.3'"),
        ({"max_leverage": 0.0}, r"max_leverage must be a number > 0, got 0.0"),
        ({"max_leverage": -1.0}, r"max_leverage must be a number > 0, got -1.0"),
        ({"target_return": math.inf}, r"target_return must be a finite number or None, got inf"),
        ({"budget": True}, r"budget must be a finite number or None, got True"),
        ({"long_only": 1}, r"long_only must be a bool, got 1"),
        ({"min_weight": 0.3, "max_weight": 0.2}, r"min_weight=0.3 > max_weight=0.2"),
        ({"long_only": True, "max_weight": -0.1}, r"min_weight=0.0 \(long_only raises it to 0\)"),
        ({"budget": 2.0, "max_leverage": 1.5}, r"budget=2.0 is infeasible: \|budget\| > "),
        ({"budget": -3.5}, r"budget=-3.5 is infeasible: \|budget\| > max_leverage=3.0"),
    ],
)
def test_constraint_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(OptimizationError, match=r"OptimizationConstraints\.") as info:
        OptimizationConstraints(**kwargs)  # type: ignore[arg-type]
    assert info.match(match)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"return_weight": -1.0}, r"return_weight must be a finite number >= 0, got -1.0"),
        ({"solver": "cvx"}, r"solver must be 'fast' or 'slsqp', got 'cvx'"),
        ({"tol": 0.0}, r"tol must be a number in \(0, 1\), got 0.0"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"constraints": {"budget": 1}}, r"constraints must be an OptimizationConstraints"),
    ],
)
def test_optimizer_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(OptimizationError, match=match):
        PortfolioOptimizer(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- projection
@pytest.mark.parametrize("seed", range(8))
def test_projection_is_exact(seed: int) -> None:
    """The projection is the QP min 0.5||w - z||^2 over C: certify with the FW gap."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 25))
    z = rng.normal(0.0, 0.5, n)
    lo, hi = -float(rng.uniform(0.0, 0.5)), float(rng.uniform(0.1, 0.6))
    budget = float(rng.uniform(max(n * lo, -1.0), min(n * hi, 1.0)))
    lev = abs(budget) + float(rng.uniform(0.0, 1.0))
    c = OptimizationConstraints(lo, hi, lev, None, False, budget)
    w = project_onto_constraints(z, np.full(n, lo), np.full(n, hi), budget, lev)
    assert_feasible(w, z, c)
    # f(w) = 0.5||w||^2 - z'w differs from 0.5||w - z||^2 by a constant.
    assert fw_gap(w, z, np.eye(n), 1.0, c) <= 1e-12


def test_projection_active_cap_by_hand() -> None:
    """z = (1, -1), box [-1, 1], no budget, cap 1: soft-threshold by 0.5 gives (0.5, -0.5)."""
    w = project_onto_constraints(
        np.array([1.0, -1.0]), np.array([-1.0, -1.0]), np.array([1.0, 1.0]), None, 1.0
    )
    np.testing.assert_allclose(w, [0.5, -0.5], rtol=0, atol=1e-15)
    # Budget 0.5 on top: w = (0.75, -0.25) is the closest point with sum 0.5 and sum|w| = 1.
    w = project_onto_constraints(
        np.array([1.0, -1.0]), np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 0.5, 1.0
    )
    np.testing.assert_allclose(w, [0.75, -0.25], rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------- optimality
def test_kkt_box_budget_problem() -> None:
    """Box + budget only: stationarity g_i + nu = 0 on free weights, signs at the bounds."""
    mu, sigma = factor_problem(12, seed=5)
    c = OptimizationConstraints(-0.3, 0.3, 12 * 0.3, None, False, 1.0)  # cap implied
    for solver in ("fast", "slsqp"):
        opt = PortfolioOptimizer(c, return_weight=2.0, solver=solver)
        w = opt.optimize_array(mu, sigma)
        assert_feasible(w, mu, c)
        g = sigma @ w - 2.0 * mu
        free = (w > -0.3 + 1e-7) & (w < 0.3 - 1e-7)
        assert free.sum() >= 2 and (~free).sum() >= 1
        nu = -float(np.mean(g[free]))
        tol = 1e-9 if solver == "fast" else 1e-6
        np.testing.assert_allclose(g[free] + nu, 0.0, rtol=0, atol=tol)
        at_lo = w <= -0.3 + 1e-7
        at_hi = w >= 0.3 - 1e-7
        assert np.all(g[at_lo] + nu >= -tol)  # multiplier of w >= lo is >= 0
        assert np.all(g[at_hi] + nu <= tol)  # multiplier of w <= hi is >= 0


def test_active_leverage_cap_optimality() -> None:
    """Active gross cap: FW gap certificate and no improving feasible perturbation."""
    mu, sigma = factor_problem(15, seed=2)
    c = OptimizationConstraints(-0.5, 0.5, 1.6, None, False, 1.0)
    lo, hi = c.bounds(15)
    rng = np.random.default_rng(7)
    for solver, gap_tol in (("fast", 1e-9), ("slsqp", 1e-6)):
        opt = PortfolioOptimizer(c, return_weight=3.0, solver=solver)  # type: ignore[arg-type]
        w = opt.optimize_array(mu, sigma)
        assert_feasible(w, mu, c)
        assert np.abs(w).sum() == pytest.approx(1.6, abs=1e-8)  # the cap is active
        assert fw_gap(w, mu, sigma, 3.0, c) <= gap_tol
        f0 = portfolio_objective(w, mu, sigma, 3.0)
        for _ in range(200):
            s = project_onto_constraints(rng.normal(0.0, 0.5, 15), lo, hi, 1.0, 1.6)
            assert_feasible(s, mu, c)
            for t in (1e-4, 1e-2, 0.3, 1.0):
                # Convex combinations of feasible points stay feasible.
                assert portfolio_objective(w + t * (s - w), mu, sigma, 3.0) >= f0 - 1e-12


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 30), singular=st.booleans())
def test_fast_matches_slsqp(seed: int, n: int, singular: bool) -> None:
    mu, sigma, lam, c = random_problem(seed, n, cov=singular_psd if singular else random_spd)
    fast = PortfolioOptimizer(c, return_weight=lam, solver="fast")
    ref = PortfolioOptimizer(c, return_weight=lam, solver="slsqp")
    wf = fast.optimize_array(mu, sigma)
    ws = ref.optimize_array(mu, sigma)
    assert fast.last_solver == "fast"
    assert_feasible(wf, mu, c)
    assert_feasible(ws, mu, c)
    ff = portfolio_objective(wf, mu, sigma, lam)
    fs = portfolio_objective(ws, mu, sigma, lam)
    assert abs(ff - fs) <= 1e-6
    assert fw_gap(wf, mu, sigma, lam, c) <= 1e-8


def test_random_problems_certified() -> None:
    """Deterministic sweep: both solvers feasible and certified by the FW gap."""
    for seed in range(12):
        mu, sigma, lam, c = random_problem(seed, 4 + 2 * seed)
        wf = PortfolioOptimizer(c, lam, "fast").optimize_array(mu, sigma)
        ws = PortfolioOptimizer(c, lam, "slsqp").optimize_array(mu, sigma)
        assert_feasible(wf, mu, c)
        assert_feasible(ws, mu, c)
        assert fw_gap(wf, mu, sigma, lam, c) <= 1e-8
        assert fw_gap(ws, mu, sigma, lam, c) <= 1e-6


@pytest.mark.parametrize("seed", [257, 285, 310, 349, 353, 369])
def test_singular_covariance_with_target(seed: int) -> None:
    """Singular covariance: mu'w(eta) jumps at the target's multiplier; the fast solver must
    still hit the target exactly (convex combination of the bracket ends), without fallback.
    These seeds made the return-target loop fail before that step existed."""
    mu, sigma, lam, c = random_problem(seed, 3 + seed % 28, cov=singular_psd)
    assert c.target_return is not None
    assert np.linalg.matrix_rank(sigma) < mu.size
    opt = PortfolioOptimizer(c, lam)
    w = opt.optimize_array(mu, sigma)
    assert opt.last_solver == "fast"
    assert_feasible(w, mu, c)
    assert fw_gap(w, mu, sigma, lam, c) <= 1e-8
    ws = PortfolioOptimizer(c, lam, "slsqp").optimize_array(mu, sigma)
    assert (
        abs(portfolio_objective(w, mu, sigma, lam) - portfolio_objective(ws, mu, sigma, lam))
        <= 1e-6
    )


def test_target_return_binds() -> None:
    mu, sigma = factor_problem(10, seed=3)
    free = PortfolioOptimizer(OptimizationConstraints(-0.4, 0.4, 2.0), 0.5)
    w_free = free.optimize_array(mu, sigma)
    best = lp_extreme_return(mu, OptimizationConstraints(-0.4, 0.4, 2.0), 1.0)
    assert best - float(mu @ w_free) > 1e-3
    target = float(mu @ w_free) + 0.5 * (best - float(mu @ w_free))
    c = OptimizationConstraints(-0.4, 0.4, 2.0, target_return=target)
    for solver in ("fast", "slsqp"):
        opt = PortfolioOptimizer(c, 0.5, solver)
        w = opt.optimize_array(mu, sigma)
        assert_feasible(w, mu, c)
        assert float(mu @ w) == pytest.approx(target, abs=1e-8)  # binding
        assert fw_gap(w, mu, sigma, 0.5, c) <= (1e-8 if solver == "fast" else 1e-6)


# ------------------------------------------------------------------ long-only redundancy
def test_redundant_cap_two_assets_analytic() -> None:
    """Long-only, budget 1, cap 1: w1 = (s22 - s12 + lam (mu1 - mu2)) / (s11 - 2 s12 + s22).

    Setting d f / d w1 = 0 with w2 = 1 - w1; the interior optimum is then clipped to [0, 1].
    """
    sigma = np.array([[0.04, 0.006], [0.006, 0.09]])
    mu = np.array([0.05, 0.11])
    lam = 0.5
    w1 = (0.09 - 0.006 + lam * (0.05 - 0.11)) / (0.04 - 2 * 0.006 + 0.09)
    expected = np.array([w1, 1 - w1])
    assert 0 < w1 < 1
    c = OptimizationConstraints(0.0, 1.0, 1.0, None, True, 1.0)
    _, _, cap = _reduce_problem(*c.bounds(2), c.budget, c.max_leverage)
    assert cap == math.inf  # the gross cap is implied and dropped
    for solver in ("fast", "slsqp"):
        w = PortfolioOptimizer(c, lam, solver).optimize_array(mu, sigma)
        np.testing.assert_allclose(w, expected, rtol=0, atol=1e-8)


def test_gross_cap_dropped_only_when_implied() -> None:
    lo, hi = np.full(10, -0.1), np.full(10, 0.2)
    assert _reduce_problem(lo, hi, 1.0, 2.0)[2] == math.inf  # max(|lo|, |hi|) * n = 2 <= 2
    assert _reduce_problem(lo, hi, 1.0, 1.5)[2] == 1.5
    zero, one = np.zeros(4), np.ones(4)
    assert _reduce_problem(zero, one, 1.0, 1.0)[2] == math.inf  # long-only, budget <= cap
    assert _reduce_problem(zero, one, 0.5, 1.0)[2] == math.inf
    assert _reduce_problem(zero, one, None, 1.0)[2] == 1.0  # no budget: sum w is free
    # |budget| == cap forces the sign of every weight and then drops the cap.
    lo2, hi2, cap = _reduce_problem(np.full(4, -0.5), np.full(4, 0.5), -1.0, 1.0)
    assert cap == math.inf
    np.testing.assert_array_equal(lo2, np.full(4, -0.5))
    np.testing.assert_array_equal(hi2, np.zeros(4))


def test_redundant_cap_three_assets_brute_force() -> None:
    rng = np.random.default_rng(11)
    sigma = random_spd(rng, 3)
    mu = rng.normal(0.0, 0.2, 3)
    c = OptimizationConstraints(-1.0, 0.6, 1.0, None, True, 1.0)
    grid = np.linspace(0.0, 0.6, 601)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    third = 1.0 - a - b
    ok = (third >= 0) & (third <= 0.6 + 1e-12)
    pts = np.stack([a[ok], b[ok], third[ok]], axis=1)
    vals = 0.5 * np.einsum("ij,jk,ik->i", pts, sigma, pts) - pts @ mu
    best = float(vals.min())
    for solver in ("fast", "slsqp"):
        w = PortfolioOptimizer(c, 1.0, solver).optimize_array(mu, sigma)
        assert_feasible(w, mu, c)
        f = portfolio_objective(w, mu, sigma, 1.0)
        assert f <= best + 1e-12  # at least as good as every grid point
        # ... and close to the grid optimum (grid step 1e-3: error O(1e-6) at most here).
        assert best - f <= 1e-5


def test_budget_equal_to_leverage_forces_sign() -> None:
    mu, sigma = factor_problem(8, seed=4)
    c = OptimizationConstraints(-0.5, 0.5, 1.0, None, False, 1.0)
    for solver in ("fast", "slsqp"):
        w = PortfolioOptimizer(c, 1.0, solver).optimize_array(mu, sigma)
        assert_feasible(w, mu, c)
        assert w.min() >= -1e-12
        assert fw_gap(w, mu, sigma, 1.0, c) <= 1e-6


# --------------------------------------------------------------------------------- warm start
def test_warm_start_same_answer_fewer_iterations() -> None:
    mu, sigma = factor_problem(40, seed=9)
    opt = PortfolioOptimizer()
    w_cold = opt.optimize_array(mu, sigma)
    cold_iter = opt.last_n_iter
    # Next "close": a slightly different problem, warm-started from the previous solution.
    rng = np.random.default_rng(1)
    mu2 = mu + rng.normal(0.0, 1e-3, mu.size)
    opt2 = PortfolioOptimizer()
    w2_cold = opt2.optimize_array(mu2, sigma)
    cold2 = opt2.last_n_iter
    w2_warm = opt2.optimize_array(mu2, sigma, warm_start=w_cold)
    warm2 = opt2.last_n_iter
    assert warm2 < cold2
    np.testing.assert_allclose(w2_warm, w2_cold, rtol=0, atol=1e-8)
    # Same problem again: the remembered solution is used as the start automatically.
    w_again = opt.optimize_array(mu, sigma)
    assert opt.last_n_iter < cold_iter
    np.testing.assert_allclose(w_again, w_cold, rtol=0, atol=1e-9)
    opt.reset()
    opt.optimize_array(mu, sigma)
    assert opt.last_n_iter == cold_iter


def test_optimize_remembers_per_instrument_set() -> None:
    mu, sigma = factor_problem(10, seed=1)
    names = [f"A{i}" for i in range(10)]
    opt = PortfolioOptimizer()
    first = opt.optimize(mu, sigma, names)
    cold = opt.last_n_iter
    second = opt.optimize(mu, sigma, names)
    assert opt.last_n_iter < cold
    for k in names:
        assert second[k] == pytest.approx(first[k], abs=1e-9)


def test_optimize_array_memory_keyed_by_names() -> None:
    mu, sigma = factor_problem(10, seed=1)
    names_a = [f"A{i}" for i in range(10)]
    names_b = [f"B{i}" for i in range(10)]
    opt = PortfolioOptimizer()
    w = opt.optimize_array(mu, sigma, instrument_names=names_a)
    cold = opt.last_n_iter
    # Another universe of the same size does not start from universe A's weights.
    opt.optimize_array(mu, sigma, instrument_names=names_b)
    assert opt.last_n_iter == cold
    w_again = opt.optimize_array(mu, sigma, instrument_names=names_a)
    assert opt.last_n_iter < cold
    np.testing.assert_allclose(w_again, w, rtol=0, atol=1e-9)
    with pytest.raises(OptimizationError, match="instrument_names has 2 names but"):
        opt.optimize_array(mu, sigma, instrument_names=["x", "y"])
    with pytest.raises(OptimizationError, match=r"warm_start must have shape \(10,\)"):
        opt.optimize_array(mu, sigma, warm_start=np.zeros(3))


# --------------------------------------------------------------------------------- fallback
def test_fallback_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    mu, sigma = factor_problem(10, seed=6)
    c = OptimizationConstraints()
    opt = PortfolioOptimizer(c, solver="fast", max_iter=1)
    with caplog.at_level(logging.WARNING, logger="portfolio.portfolio_optimizer"):
        w = opt.optimize_array(mu, sigma)
    records = [r for r in caplog.records if r.name == "portfolio.portfolio_optimizer"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "falling back to SLSQP" in records[0].getMessage()
    assert opt.last_solver == "slsqp-fallback"
    ref = PortfolioOptimizer(c, solver="slsqp").optimize_array(mu, sigma)
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-12)
    assert_feasible(w, mu, c)


def test_no_warning_when_fast_converges(caplog: pytest.LogCaptureFixture) -> None:
    mu, sigma = factor_problem(10, seed=6)
    with caplog.at_level(logging.WARNING, logger="portfolio.portfolio_optimizer"):
        PortfolioOptimizer().optimize_array(mu, sigma)
    assert not [r for r in caplog.records if r.name == "portfolio.portfolio_optimizer"]


# --------------------------------------------------------------------------------- array API
def test_solve_fast_direct() -> None:
    mu, sigma = factor_problem(25, seed=8)
    lo, hi = np.full(25, -0.2), np.full(25, 0.3)
    w, conv = solve_fast(mu, sigma, 1.0, lo, hi, 1.0, 2.0, math.nan, np.zeros(0), 1e-10, 5000)
    assert conv
    c = OptimizationConstraints(-0.2, 0.3, 2.0)
    assert_feasible(w, mu, c)
    assert fw_gap(w, mu, sigma, 1.0, c) <= 1e-8
    # No budget, no cap (inf): the box-only optimum.
    w2, conv2 = solve_fast(mu, sigma, 1.0, lo, hi, math.nan, math.inf, math.nan, w, 1e-10, 5000)
    assert conv2
    c2 = OptimizationConstraints(-0.2, 0.3, math.inf, None, False, None)
    assert fw_gap(w2, mu, sigma, 1.0, c2) <= 1e-8
    ws, ok = solve_slsqp(mu, sigma, 1.0, lo, hi, None, math.inf, None)
    assert ok
    assert portfolio_objective(w2, mu, sigma, 1.0) == pytest.approx(
        portfolio_objective(ws, mu, sigma, 1.0), abs=1e-9
    )
    _, status, iters = solve_fast_status(
        mu, sigma, 1.0, lo, hi, 1.0, 2.0, math.nan, np.zeros(0), 1e-10, 1
    )
    assert status == 1 and iters == 1


def test_zero_covariance_is_linear_program() -> None:
    mu = np.array([0.3, 0.1, -0.2, 0.05])
    c = OptimizationConstraints(-0.25, 0.5, 1.5, None, False, 1.0)
    w = PortfolioOptimizer(c).optimize_array(mu, np.zeros((4, 4)))
    assert_feasible(w, mu, c)
    # LP optimum by hand: longs 0.5 in the two best, short 0.25 in the worst, and the last
    # weight fills the budget: 0.5 + 0.5 - 0.25 + x = 1 -> x = 0.25 (gross 1.5, the cap).
    np.testing.assert_allclose(w, [0.5, 0.5, -0.25, 0.25], rtol=0, atol=1e-9)


def test_real_data_sp500() -> None:
    prices = pd.read_csv(DATA, index_col="Date", parse_dates=["Date"]).iloc[-505:]
    rets = prices.pct_change().iloc[1:].to_numpy()
    mu = rets.mean(axis=0) * 252
    sigma = np.cov(rets, rowvar=False) * 252
    c = OptimizationConstraints(-0.1, 0.2, 1.6, None, False, 1.0)
    wf = PortfolioOptimizer(c, 0.2).optimize_array(mu, sigma)
    ws = PortfolioOptimizer(c, 0.2, "slsqp").optimize_array(mu, sigma)
    assert_feasible(wf, mu, c)
    assert_feasible(ws, mu, c)
    assert portfolio_objective(wf, mu, sigma, 0.2) == pytest.approx(
        portfolio_objective(ws, mu, sigma, 0.2), abs=1e-6
    )
    assert fw_gap(wf, mu, sigma, 0.2, c) <= 1e-8


# --------------------------------------------------------------------------------- named API
def test_optimize_mapping_array_and_dataframe_agree() -> None:
    mu, sigma = factor_problem(6, seed=12)
    names = ["a", "b", "c", "d", "e", "f"]
    c = OptimizationConstraints(-0.5, 0.5, 2.0)
    base = PortfolioOptimizer(c).optimize_array(mu, sigma)
    by_map = PortfolioOptimizer(c).optimize(dict(zip(names, mu, strict=True)), sigma, names)
    assert list(by_map) == names
    np.testing.assert_allclose([by_map[k] for k in names], base, rtol=0, atol=1e-12)
    # A shuffled DataFrame is realigned by name.
    order = [3, 0, 5, 1, 4, 2]
    df = pd.DataFrame(sigma, index=names, columns=names).iloc[order, order]
    by_df = PortfolioOptimizer(c).optimize(mu, df, names)
    np.testing.assert_allclose([by_df[k] for k in names], base, rtol=0, atol=1e-12)


def test_optimize_with_bl() -> None:
    mu, sigma = factor_problem(5, seed=13)
    names = ["x1", "x2", "x3", "x4", "x5"]
    bl = {
        "posterior_returns": dict(zip(names, mu, strict=True)),
        "posterior_covariance": sigma,
        "other_key": "ignored",
    }
    c = OptimizationConstraints(-0.5, 0.6, 2.0)
    out = PortfolioOptimizer(c).optimize_with_bl(bl, names)
    direct = PortfolioOptimizer(c).optimize_array(mu, sigma)
    np.testing.assert_allclose([out[k] for k in names], direct, rtol=0, atol=1e-12)
    with pytest.raises(OptimizationError, match="bl_result has no key 'posterior_covariance'"):
        PortfolioOptimizer(c).optimize_with_bl(
            {"posterior_returns": bl["posterior_returns"]}, names
        )


@pytest.mark.parametrize(
    ("mu", "sigma", "names", "match"),
    [
        (
            {"a": 0.1},
            np.eye(2),
            ["a", "b"],
            r"expected_returns has no value for instruments \['b'\]",
        ),
        (
            {"a": 0.1, "b": 0.2, "z": 0.0},
            np.eye(2),
            ["a", "b"],
            r"not in instrument_names: \['z'\]",
        ),
        ([0.1, 0.2, 0.3], np.eye(2), ["a", "b"], r"expected_returns must have 2 values"),
        ([0.1, math.nan], np.eye(2), ["a", "b"], r"expected_returns\[1\] must be finite, got nan"),
        ([0.1, 0.2], np.eye(3), ["a", "b"], r"covariance must have shape \(2, 2\), got \(3, 3\)"),
        (
            [0.1, 0.2],
            [[1.0, math.inf], [0.0, 1.0]],
            ["a", "b"],
            r"covariance\[0, 1\] must be finite",
        ),
        ([0.1, 0.2], [[1.0, 0.5], [0.4, 1.0]], ["a", "b"], r"covariance is not symmetric"),
        (
            [0.1, 0.2],
            [[1.0, 2.0], [2.0, 1.0]],
            ["a", "b"],
            r"not positive semidefinite: smallest eigenvalue -1",
        ),
        ([0.1, 0.2], np.eye(2), ["a", "a"], r"instrument_names has the duplicate 'a'"),
        ([0.1, 0.2], np.eye(2), "ab", r"instrument_names must be a sequence of names"),
    ],
)
def test_optimize_input_errors(mu: object, sigma: object, names: object, match: str) -> None:
    c = OptimizationConstraints(-1.0, 1.0, 2.0)
    for solver in ("fast", "slsqp"):
        with pytest.raises(OptimizationError, match=match):
            PortfolioOptimizer(c, solver=solver).optimize(mu, sigma, names)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- infeasible
def test_infeasible_target_return() -> None:
    mu = np.array([0.05, 0.12, 0.08])
    sigma = np.diag([0.04, 0.09, 0.0625])
    # Long-only, budget 1, weights <= 1: max mu'w = max(mu) = 0.12 (all in the best asset).
    c = OptimizationConstraints(0.0, 1.0, 1.0, 0.15, True, 1.0)
    for solver in ("fast", "slsqp"):
        with pytest.raises(OptimizationError) as info:
            PortfolioOptimizer(c, solver=solver).optimize_array(mu, sigma)
        assert "target_return=0.15 is infeasible" in str(info.value)
        assert "is 0.12" in str(info.value)
    # Exactly the maximum is feasible and attained by (0, 1, 0).
    w = PortfolioOptimizer(OptimizationConstraints(0.0, 1.0, 1.0, 0.12, True, 1.0)).optimize_array(
        mu, sigma
    )
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0], rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("c", "n", "match"),
    [
        (
            OptimizationConstraints(0.2, 0.5, 3.0, None, False, 1.0),
            10,
            r"budget=1.0 is infeasible: the weights' lower bounds sum to 2 \(n \* min_weight "
            r"with n=10\) > budget",
        ),
        (
            OptimizationConstraints(-0.1, 0.05, 3.0, None, False, 1.0),
            10,
            r"budget=1.0 is infeasible: the weights' upper bounds sum to 0.5 \(n \* max_weight "
            r"with n=10\) < budget",
        ),
        (
            OptimizationConstraints(0.2, 0.5, 1.0, None, True, None),
            10,
            r"max_leverage=1.0 is infeasible: the bounds and budget need a gross leverage "
            r"sum\|w\| of at least 2",
        ),
    ],
)
def test_infeasible_bounds(c: OptimizationConstraints, n: int, match: str) -> None:
    mu, sigma = factor_problem(n, seed=0)
    for solver in ("fast", "slsqp"):
        with pytest.raises(OptimizationError, match=match):
            PortfolioOptimizer(c, solver=solver).optimize_array(mu, sigma)


# --------------------------------------------------------------------------------- rebalance
def test_should_rebalance() -> None:
    cur = {"a": 0.5, "b": 0.5}
    tgt = {"a": 0.25, "b": 0.75}  # drift 0.25 exactly
    assert should_rebalance(cur, tgt, 0.0, drift_threshold=0.25) is False  # strict
    assert should_rebalance(cur, tgt, 0.0, drift_threshold=0.2) is True
    assert should_rebalance(cur, cur, 0.2) is True  # signal alone
    assert should_rebalance(cur, cur, -0.2) is True  # absolute signal change
    assert should_rebalance(cur, cur, 0.125, signal_threshold=0.125) is False  # strict
    assert should_rebalance(cur, cur, 0.0) is False
    # Missing name = weight 0: a zero target still has a drift band.
    assert should_rebalance({"a": 0.0625}, {}, 0.0, drift_threshold=0.0625) is False
    assert should_rebalance({"a": 0.0625}, {}, 0.0, drift_threshold=0.05) is True
    assert should_rebalance({}, {"c": -0.5}, 0.0) is True
    arr_cur = np.array([0.1, 0.2, 0.7])
    assert should_rebalance(arr_cur, np.array([0.1, 0.2, 0.7]), 0.0) is False
    assert should_rebalance(arr_cur, np.array([0.1, 0.3, 0.6]), 0.0) is True
    assert should_rebalance([0.5, 0.5], [0.5, 0.5], 0.0) is False


def test_should_rebalance_nb_matches_python() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        cur = np.round(rng.uniform(-0.5, 0.5, 5), 2)
        tgt = np.round(cur + rng.choice([0.0, 0.03, 0.0625, 0.125], 5), 4)
        change = float(rng.choice([0.0, 0.125, -0.25]))
        expected = abs(change) > 0.125 or bool(np.max(np.abs(cur - tgt)) > 0.0625)
        assert should_rebalance_nb(cur, tgt, change, 0.125, 0.0625) is expected
        assert should_rebalance(cur, tgt, change, 0.125, 0.0625) is expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (({"a": 1.0}, [1.0], 0.0), "both be mappings or both be arrays"),
        (([0.5, 0.5], [1.0], 0.0), r"current_weights shape \(2,\) != target_weights shape"),
        (([0.5], [0.5], math.nan), "signal_change must be a finite number, got nan"),
        (([0.5], [math.inf], 0.0), r"target_weights\[0\] must be finite, got inf"),
        (([0.5], [0.5], 0.0, -0.1), "thresholds must be >= 0"),
    ],
)
def test_should_rebalance_errors(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(OptimizationError, match=match):
        should_rebalance(*args)  # type: ignore[arg-type]
